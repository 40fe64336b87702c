#include "otp/random.h"

#include <gtest/gtest.h>

#include <array>
#include <set>

#include "core/test_util.h"

namespace otp {
namespace {

using testing::SeededRandom;

// Pearson's chi-square statistic of `counts` against a uniform distribution.
template <std::size_t N>
double ChiSquare(const std::array<std::uint64_t, N>& counts) {
  std::uint64_t total = 0;
  for (std::uint64_t c : counts) total += c;
  const double expected = static_cast<double>(total) / N;
  double chi2 = 0;
  for (std::uint64_t c : counts) {
    const double d = static_cast<double>(c) - expected;
    chi2 += d * d / expected;
  }
  return chi2;
}

// With 9 degrees of freedom, P(chi2 > 40) is about 7e-6 for a uniform source,
// while "byte % 10" over 10^6 draws lands near 370.
constexpr double kChi2Bound9 = 40.0;
constexpr int kDraws = 1'000'000;

TEST(RandomTest, RandomBelowIsUniform) {
  SeededRandom random(1);
  std::array<std::uint64_t, 10> counts{};
  for (int i = 0; i < kDraws; ++i) {
    const std::uint64_t v = RandomBelow(random, 10);
    ASSERT_LT(v, 10u);
    ++counts[v];
  }
  EXPECT_LT(ChiSquare(counts), kChi2Bound9);
}

TEST(RandomTest, ChiSquareCatchesModuloBias) {
  // The test above has the power to see the bias of the naive method.
  SeededRandom random(1);
  std::array<std::uint64_t, 10> counts{};
  for (int i = 0; i < kDraws; ++i) {
    std::uint8_t byte;
    random.Fill({&byte, 1});
    ++counts[byte % 10];
  }
  EXPECT_GT(ChiSquare(counts), kChi2Bound9 * 4);
}

TEST(RandomTest, RandomBelowLargeBoundHasNoModuloBias) {
  // bound = 3 * 2^62: plain "x % bound" would put half the draws in the lowest third.
  SeededRandom random(2);
  const std::uint64_t bound = 3ULL << 62;
  std::array<std::uint64_t, 3> thirds{};
  for (int i = 0; i < 300'000; ++i) {
    const std::uint64_t v = RandomBelow(random, bound);
    ASSERT_LT(v, bound);
    ++thirds[v / (1ULL << 62)];
  }
  // 2 degrees of freedom: P(chi2 > 30) is about 3e-7.
  EXPECT_LT(ChiSquare(thirds), 30.0);
}

TEST(RandomTest, RandomBelowEdges) {
  SeededRandom random(3);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(RandomBelow(random, 1), 0u);
    EXPECT_LT(RandomBelow(random, 2), 2u);
    EXPECT_LT(RandomBelow(random, ~std::uint64_t{0}), ~std::uint64_t{0});
  }
}

TEST(RandomTest, NumericCodeShape) {
  SeededRandom random(4);
  for (int digits = 1; digits <= 40; ++digits) {
    const std::string code = RandomNumericCode(random, digits);
    ASSERT_EQ(code.size(), static_cast<std::size_t>(digits));
    for (char c : code) ASSERT_TRUE(c >= '0' && c <= '9') << code;
  }
  EXPECT_EQ(RandomNumericCode(random, 0), "");
}

// Every digit position of 6- and 10-digit codes, counted together.
std::array<std::uint64_t, 10> DigitCounts(Random& random, int digits, int codes) {
  std::array<std::uint64_t, 10> counts{};
  for (int i = 0; i < codes; ++i) {
    for (char c : RandomNumericCode(random, digits)) ++counts[static_cast<std::size_t>(c - '0')];
  }
  return counts;
}

TEST(RandomTest, NumericCodeDigitsAreUniform) {
  SeededRandom random(5);
  EXPECT_LT(ChiSquare(DigitCounts(random, 6, kDraws / 6)), kChi2Bound9);
  EXPECT_LT(ChiSquare(DigitCounts(random, 10, kDraws / 10)), kChi2Bound9);
  // The leading digit alone (codes may start with 0).
  std::array<std::uint64_t, 10> first{};
  for (int i = 0; i < 200'000; ++i)
    ++first[static_cast<std::size_t>(RandomNumericCode(random, 6)[0] - '0')];
  EXPECT_LT(ChiSquare(first), kChi2Bound9);
}

TEST(RandomTest, SystemRandomCodesAreUniform) {
  // Not reproducible, so a very generous bound: P(chi2 > 70) < 1e-10 for df 9.
  EXPECT_LT(ChiSquare(DigitCounts(SystemRandom(), 10, kDraws / 10)), 70.0);
}

TEST(RandomTest, SystemRandomBytesDiffer) {
  const std::vector<std::uint8_t> a = RandomBytes(SystemRandom(), 32);
  const std::vector<std::uint8_t> b = RandomBytes(SystemRandom(), 32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_TRUE(RandomBytes(SystemRandom(), 0).empty());
  // A large request exercises getrandom's partial reads.
  EXPECT_EQ(RandomBytes(SystemRandom(), 1 << 20).size(), 1u << 20);
}

TEST(RandomTest, HexAndBase64Url) {
  SeededRandom random(6);
  const std::string hex = RandomHex(random, 16);
  EXPECT_EQ(hex.size(), 32u);
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  for (std::size_t n : {0, 1, 2, 3, 24, 32}) {
    const std::string b64 = RandomBase64Url(random, n);
    EXPECT_EQ(b64.size(), (n * 4 + 2) / 3) << n;
    EXPECT_EQ(
        b64.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        std::string::npos);
  }
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) seen.insert(RandomHex(SystemRandom(), 16));
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
}  // namespace otp
