// HOTP (RFC 4226) and the keyed HMAC contexts behind HOTP and TOTP.
//
// An HotpKey precomputes the inner and outer hash states of HMAC for one secret
// once, so that each code costs two compression rounds. HotpKey is immutable
// after creation and safe to use from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "otp/status.h"

namespace otp {

enum class HashAlgorithm { kSha1, kSha256, kSha512 };

// "SHA1", "SHA256", "SHA512".
const char* HashAlgorithmName(HashAlgorithm alg);
// Accepts the names above case-insensitively.
Result<HashAlgorithm> ParseHashAlgorithm(std::string_view name);

class HotpKey {
 public:
  // Requires a non-empty secret (any length; RFC 4226 R6 minimums are enforced
  // by callers that generate or import secrets).
  static Result<HotpKey> Create(std::span<const std::uint8_t> secret, HashAlgorithm alg);

  HotpKey(HotpKey&&) noexcept;
  HotpKey& operator=(HotpKey&&) noexcept;
  HotpKey(const HotpKey&);
  HotpKey& operator=(const HotpKey&);
  ~HotpKey();

  HashAlgorithm algorithm() const;

  // The dynamically truncated 31-bit value for `counter` (RFC 4226 §5.3),
  // before reduction modulo 10^digits.
  std::uint32_t Truncated(std::uint64_t counter) const;

  // The code for `counter`, zero-padded to `digits` (6..10) characters.
  // For 10 digits the 31-bit value is printed zero-padded (as oathtool does).
  std::string Generate(std::uint64_t counter, int digits) const;

 private:
  struct State;
  explicit HotpKey(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Formats `value mod 10^digits` zero-padded to `digits` characters.
std::string FormatCode(std::uint32_t value, int digits);

// Checks `code` against counters [counter, counter + look_ahead]; returns the
// matching counter, or nullopt. Comparison is constant-time per candidate.
std::optional<std::uint64_t> HotpVerify(const HotpKey& key, std::string_view code,
                                        std::uint64_t counter, int digits, int look_ahead);

}  // namespace otp
