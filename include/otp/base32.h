// Base32 (RFC 4648 §6, alphabet A-Z2-7). Thread-safe pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otp/status.h"

namespace otp {

// Encodes `data`; with `pad` the output is '='-padded to a multiple of 8.
std::string Base32Encode(std::span<const std::uint8_t> data, bool pad = false);

// Decodes `text`. Accepts upper or lower case, optional '=' padding, and ignores
// spaces; anything else (or trailing bits that are not zero) is InvalidArgument.
Result<std::vector<std::uint8_t>> Base32Decode(std::string_view text);

}  // namespace otp
