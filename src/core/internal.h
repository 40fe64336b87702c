// Helpers shared inside libotp that are not part of its public API.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace otp::internal {

// Unpadded base64url (RFC 4648 §5). In crypto.cc.
std::string Base64UrlEncode(std::span<const std::uint8_t> data);

// HKDF-SHA256 (RFC 5869) filling `out`; an empty `salt` means no salt (HashLen
// zeros). In crypto.cc.
void HkdfSha256(std::span<const std::uint8_t> ikm, std::span<const std::uint8_t> salt,
                std::string_view info, std::span<std::uint8_t> out);

// The value of a hex digit of either case, or -1.
int HexDigitValue(char c);

// Equality ignoring the case of ASCII letters.
bool EqualsIgnoringAsciiCase(std::string_view a, std::string_view b);

// The last `digits` decimal digits of `value`, zero-padded to `digits` characters.
std::string ZeroPaddedDecimal(std::uint64_t value, int digits);

}  // namespace otp::internal
