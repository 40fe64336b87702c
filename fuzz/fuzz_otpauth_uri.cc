// Fuzz target: the otpauth:// URI parser (otp::ParseOtpAuthUri), which reads
// URIs pasted by operators and written by other tools.
//
// Property beyond "no crash, no leak, no UB": a parsed URI, built again with
// BuildOtpAuthUri and parsed again, gives the same fields.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "otp/otpauth_uri.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = otp::ParseOtpAuthUri(text);
  if (!parsed.ok()) return 0;
  auto again = otp::ParseOtpAuthUri(otp::BuildOtpAuthUri(*parsed));
  if (!again.ok() || !(*again == *parsed)) std::abort();
  return 0;
}
