// Sealing of secrets at rest with AES-256-GCM.
//
// A sealed blob is text: "v1.<key_id>.<base64url(nonce 12 || ciphertext || tag 16)>".
// The key id lets several keys be readable at once (rotation): a Keyring holds
// them, seals with the primary one and opens with whichever the blob names.
// `associated_data` binds a blob to its row (e.g. a factor id) so blobs cannot be
// swapped between rows. Keyring is immutable after setup and thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otp/random.h"
#include "otp/status.h"

namespace otp {

using AesKey = std::array<std::uint8_t, 32>;

class Keyring {
 public:
  // Adds a key; the first key added is primary until SetPrimary. key_id is
  // [A-Za-z0-9_-]{1,32}.
  Status Add(std::string key_id, const AesKey& key);
  Status SetPrimary(std::string_view key_id);
  const std::string& primary_id() const { return primary_; }

  Result<std::string> Seal(std::span<const std::uint8_t> plaintext,
                           std::string_view associated_data, Random& random) const;
  // InvalidArgument for a malformed blob, NotFound for an unknown key id,
  // PermissionDenied when authentication fails (tampered or wrong AD).
  Result<std::vector<std::uint8_t>> Open(std::string_view sealed,
                                         std::string_view associated_data) const;
  // The key id a blob was sealed with (empty if malformed).
  static std::string KeyIdOf(std::string_view sealed);

 private:
  std::map<std::string, AesKey, std::less<>> keys_;
  std::string primary_;
};

}  // namespace otp
