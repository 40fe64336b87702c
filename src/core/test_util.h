// Helpers shared by the libotp unit tests.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otp/hotp.h"
#include "otp/random.h"

namespace otp::testing {

inline std::vector<std::uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

// An HotpKey for a secret the test knows to be valid.
inline HotpKey MustKey(std::span<const std::uint8_t> secret,
                       HashAlgorithm alg = HashAlgorithm::kSha1) {
  return std::move(HotpKey::Create(secret, alg)).value();
}
inline HotpKey MustKey(std::string_view secret, HashAlgorithm alg = HashAlgorithm::kSha1) {
  return MustKey(Bytes(secret), alg);
}

// A deterministic Random (SplitMix64), so statistical tests are reproducible.
// Not for production use.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  void Fill(std::span<std::uint8_t> out) override {
    for (std::size_t i = 0; i < out.size(); i += 8) {
      std::uint64_t v = Next();
      for (std::size_t j = i; j < out.size() && j < i + 8; ++j, v >>= 8) {
        out[j] = static_cast<std::uint8_t>(v);
      }
    }
  }

 private:
  std::uint64_t state_;
};

}  // namespace otp::testing
