// Fuzz target: percent-decoding and form parsing (otp::PercentDecode,
// otp::ParseForm), which read every query string, the user ids of
// /v1/users/{user}/... and form-encoded delivery reports.
//
// Properties beyond "no crash, no leak, no UB": PercentDecode(PercentEncode(x))
// == x for any bytes; PercentEncode writes only RFC 3986 unreserved characters
// and escapes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "otp/percent.h"

namespace {

bool Unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  (void)otp::PercentDecode(text, false);
  (void)otp::PercentDecode(text, true);
  (void)otp::ParseForm(text);

  const std::string encoded = otp::PercentEncode(text);
  for (unsigned char c : encoded) {
    if (!Unreserved(c) && c != '%') std::abort();
  }
  for (bool plus_is_space : {false, true}) {
    auto decoded = otp::PercentDecode(encoded, plus_is_space);
    if (!decoded.ok() || *decoded != text) std::abort();
  }
  return 0;
}
