#include "otp/random.h"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "core/internal.h"
#include "otp/crypto.h"

namespace otp {
namespace {

class OsRandom final : public Random {
 public:
  void Fill(std::span<std::uint8_t> out) override {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = getrandom(out.data() + done, out.size() - done, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("otp: getrandom");
        std::abort();  // No safe fallback: a weak code or seed is worse than a crash.
      }
      done += static_cast<std::size_t>(n);
    }
  }
};

}  // namespace

Random& SystemRandom() {
  static OsRandom random;
  return random;
}

std::vector<std::uint8_t> RandomBytes(Random& random, std::size_t n) {
  std::vector<std::uint8_t> out(n);
  random.Fill(out);
  return out;
}

std::uint64_t RandomBelow(Random& random, std::uint64_t bound) {
  if (bound <= 1) return 0;
  // 2^64 mod bound: draws below it would make the low residues more likely.
  const std::uint64_t reject_below = (0 - bound) % bound;
  for (;;) {
    std::array<std::uint8_t, 8> bytes;
    random.Fill(bytes);
    std::uint64_t x = 0;
    for (std::uint8_t b : bytes) x = (x << 8) | b;
    if (x >= reject_below) return x % bound;
  }
}

std::string RandomNumericCode(Random& random, int digits) {
  // A uniform number below 10^k, zero-padded, has k independent uniform digits;
  // drawing up to 18 digits at once saves calls to the generator.
  constexpr int kChunk = 18;
  std::string out;
  while (static_cast<int>(out.size()) < digits) {
    const int k = std::min(kChunk, digits - static_cast<int>(out.size()));
    std::uint64_t bound = 1;
    for (int i = 0; i < k; ++i) bound *= 10;
    out += internal::ZeroPaddedDecimal(RandomBelow(random, bound), k);
  }
  return out;
}

std::string RandomHex(Random& random, std::size_t n) { return HexEncode(RandomBytes(random, n)); }

std::string RandomBase64Url(Random& random, std::size_t n) {
  return internal::Base64UrlEncode(RandomBytes(random, n));
}

}  // namespace otp
