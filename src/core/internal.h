// Helpers shared inside libotp that are not part of its public API.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace otp::internal {

// Unpadded base64url (RFC 4648 §5).
std::string Base64UrlEncode(std::span<const std::uint8_t> data);

// HKDF-SHA256 (RFC 5869) filling `out`; an empty `salt` means no salt (HashLen zeros).
void HkdfSha256(std::span<const std::uint8_t> ikm, std::span<const std::uint8_t> salt,
                std::string_view info, std::span<std::uint8_t> out);

inline std::span<const std::uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace otp::internal
