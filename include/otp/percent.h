// Percent-encoding (RFC 3986 §2.1) and application/x-www-form-urlencoded
// pairs, for otpauth:// URIs, query strings and form bodies.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "otp/status.h"

namespace otp {

// Escapes everything but RFC 3986 unreserved characters (so ':', '&', '=',
// '?', '/', '#', spaces and non-ASCII bytes are all escaped).
std::string PercentEncode(std::string_view in);

// Decodes %XX escapes; with `plus_is_space` (query values, form encoding) '+'
// is a space. InvalidArgument on a bad escape.
Result<std::string> PercentDecode(std::string_view in, bool plus_is_space);

// "a=1&b=x+y" → {{"a","1"},{"b","x y"}}, in order, names and values decoded.
// InvalidArgument on a bad escape.
Result<std::vector<std::pair<std::string, std::string>>> ParseForm(std::string_view form);

}  // namespace otp
