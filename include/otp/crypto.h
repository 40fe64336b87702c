// Small cryptographic helpers over OpenSSL, with no OpenSSL type in the API.
// All functions are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace otp {

using Sha256Digest = std::array<std::uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
Sha256Digest HmacSha256(std::span<const std::uint8_t> key, std::string_view data);

// Equal length and equal bytes, in time that depends only on the lengths.
bool ConstantTimeEqual(std::string_view a, std::string_view b);

std::string HexEncode(std::span<const std::uint8_t> data);
std::string Base64Encode(std::span<const std::uint8_t> data);  // standard, padded
// Standard or URL-safe alphabet, padding optional. Empty optional on bad input.
std::optional<std::vector<std::uint8_t>> Base64Decode(std::string_view text);
std::optional<std::vector<std::uint8_t>> HexDecode(std::string_view text);

// A 32-byte subkey of `master` for one purpose (HKDF-SHA256 with `label` as info),
// so that one master key serves code hashing, sealing, ... independently.
std::array<std::uint8_t, 32> DeriveKey(std::span<const std::uint8_t> master,
                                       std::string_view label);

// Keyed hashing of short codes (verification codes, recovery codes):
// HMAC-SHA256(key, binding || 0x00 || code), hex-encoded. `binding` ties the
// hash to its owner (a verification id, a user) so a hash cannot be reused elsewhere.
// The HMAC key's inner and outer hash states are computed once, here, so a hash
// costs a few SHA-256 compressions and no allocation but the answer's.
class CodeHasher {
 public:
  explicit CodeHasher(const std::array<std::uint8_t, 32>& key);
  std::string Hash(std::string_view binding, std::string_view code) const;
  // Constant-time comparison of Hash(binding, code) with `stored`.
  bool Matches(std::string_view binding, std::string_view code, std::string_view stored) const;

 private:
  struct State;
  std::shared_ptr<const State> state_;  // immutable, so copies share it
};

}  // namespace otp
