// Fuzz target: base32 decoding (otp::Base32Decode), the parser behind every
// secret= of an otpauth:// URI and every factor secret an operator types.
//
// Properties beyond "no crash, no leak, no UB":
//  - what decodes re-encodes to text that decodes to the same bytes;
//  - any bytes round-trip: Base32Decode(Base32Encode(x)) == x, padded or not.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

#include "otp/base32.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::span<const std::uint8_t> bytes(data, size);

  auto decoded = otp::Base32Decode(text);
  if (decoded.ok()) {
    auto again = otp::Base32Decode(otp::Base32Encode(*decoded));
    if (!again.ok() || *again != *decoded) std::abort();
  }

  for (bool pad : {false, true}) {
    auto round = otp::Base32Decode(otp::Base32Encode(bytes, pad));
    if (!round.ok() || !std::equal(round->begin(), round->end(), bytes.begin(), bytes.end())) {
      std::abort();
    }
  }
  return 0;
}
