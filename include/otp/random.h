// Randomness, injectable: production code uses SystemRandom() (the OS CSPRNG);
// tests may pass a deterministic Random.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace otp {

class Random {
 public:
  virtual ~Random() = default;
  // Fills `out` with random bytes. Must not fail (aborts if the OS CSPRNG does).
  virtual void Fill(std::span<std::uint8_t> out) = 0;
};

// The process-wide OS CSPRNG (getrandom(2)). Thread-safe.
Random& SystemRandom();

std::vector<std::uint8_t> RandomBytes(Random& random, std::size_t n);

// A uniform integer in [0, bound) by rejection sampling (no modulo bias). bound > 0.
std::uint64_t RandomBelow(Random& random, std::uint64_t bound);

// `digits` decimal digits, each uniform over 0-9, leading zeros allowed.
std::string RandomNumericCode(Random& random, int digits);

// `n` bytes from `random`, as lower-case hex / as unpadded base64url.
std::string RandomHex(Random& random, std::size_t n);
std::string RandomBase64Url(Random& random, std::size_t n);

}  // namespace otp
