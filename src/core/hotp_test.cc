#include "otp/hotp.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <gtest/gtest.h>

#include "core/test_util.h"

namespace otp {
namespace {

using testing::Bytes;

using testing::MustKey;

const std::vector<std::uint8_t> kRfcSecret = Bytes("12345678901234567890");

TEST(HotpTest, Rfc4226AppendixDCodes) {
  const char* kCodes[] = {"755224", "287082", "359152", "969429", "338314",
                          "254676", "287922", "162583", "399871", "520489"};
  const HotpKey key = MustKey(kRfcSecret);
  for (std::uint64_t c = 0; c < 10; ++c) EXPECT_EQ(key.Generate(c, 6), kCodes[c]) << c;
}

TEST(HotpTest, Rfc4226AppendixDTruncatedValues) {
  const std::uint32_t kTruncated[] = {1284755224, 1094287082, 137359152, 1726969429, 1640338314,
                                      868254676,  1918287922, 82162583,  673399871,  645520489};
  const HotpKey key = MustKey(kRfcSecret);
  for (std::uint64_t c = 0; c < 10; ++c) EXPECT_EQ(key.Truncated(c), kTruncated[c]) << c;
}

TEST(HotpTest, OtherDigitCounts) {
  const HotpKey key = MustKey(kRfcSecret);
  EXPECT_EQ(key.Generate(0, 7), "4755224");
  EXPECT_EQ(key.Generate(0, 8), "84755224");
  EXPECT_EQ(key.Generate(0, 9), "284755224");
  // 10 digits: the whole 31-bit value, zero-padded.
  EXPECT_EQ(key.Generate(0, 10), "1284755224");
  EXPECT_EQ(key.Generate(2, 10), "0137359152");
  EXPECT_EQ(key.Generate(7, 10), "0082162583");
  EXPECT_THROW(key.Generate(0, 5), std::invalid_argument);
  EXPECT_THROW(key.Generate(0, 11), std::invalid_argument);
}

TEST(HotpTest, FormatCode) {
  EXPECT_EQ(FormatCode(0, 6), "000000");
  EXPECT_EQ(FormatCode(1234567, 6), "234567");
  EXPECT_EQ(FormatCode(2147483647, 10), "2147483647");
  EXPECT_EQ(FormatCode(4294967295u, 10), "4294967295");
  EXPECT_EQ(FormatCode(42, 10), "0000000042");
}

// Reference HMAC from OpenSSL's one-shot API, truncated as RFC 4226 §5.3 says.
std::uint32_t ReferenceTruncated(std::span<const std::uint8_t> secret, HashAlgorithm alg,
                                 std::uint64_t counter) {
  const EVP_MD* md = alg == HashAlgorithm::kSha1     ? EVP_sha1()
                     : alg == HashAlgorithm::kSha256 ? EVP_sha256()
                                                     : EVP_sha512();
  unsigned char msg[8];
  for (int i = 7; i >= 0; --i, counter >>= 8) msg[i] = static_cast<unsigned char>(counter);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, secret.data(), static_cast<int>(secret.size()), msg, sizeof msg, mac, &len);
  const unsigned off = mac[len - 1] & 0x0f;
  return (std::uint32_t{mac[off] & 0x7fu} << 24) | (std::uint32_t{mac[off + 1]} << 16) |
         (std::uint32_t{mac[off + 2]} << 8) | mac[off + 3];
}

TEST(HotpTest, MatchesOneShotHmacForEveryKeyLength) {
  testing::SeededRandom random(4226);
  for (HashAlgorithm alg : {HashAlgorithm::kSha1, HashAlgorithm::kSha256, HashAlgorithm::kSha512}) {
    // 1..300 bytes covers keys shorter than, equal to and longer than a block
    // (64 bytes for SHA1/SHA256, 128 for SHA512), which HMAC hashes first.
    for (std::size_t len = 1; len <= 300; ++len) {
      const std::vector<std::uint8_t> secret = RandomBytes(random, len);
      const HotpKey key = MustKey(secret, alg);
      EXPECT_EQ(key.algorithm(), alg);
      for (std::uint64_t counter : {std::uint64_t{0}, random.Next(), ~std::uint64_t{0}}) {
        ASSERT_EQ(key.Truncated(counter), ReferenceTruncated(secret, alg, counter))
            << HashAlgorithmName(alg) << " len=" << len << " counter=" << counter;
      }
    }
  }
}

TEST(HotpTest, EmptySecretRefused) {
  Result<HotpKey> key = HotpKey::Create({}, HashAlgorithm::kSha1);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
}

TEST(HotpTest, CopyAndMoveKeepTheKey) {
  HotpKey key = MustKey(kRfcSecret);
  HotpKey copy = key;
  EXPECT_EQ(copy.Generate(1, 6), "287082");
  HotpKey moved = std::move(key);
  EXPECT_EQ(moved.Generate(1, 6), "287082");
  HotpKey other = MustKey(Bytes("another secret"), HashAlgorithm::kSha256);
  other = copy;
  EXPECT_EQ(other.algorithm(), HashAlgorithm::kSha1);
  EXPECT_EQ(other.Generate(2, 6), "359152");
  other = std::move(moved);
  EXPECT_EQ(other.Generate(3, 6), "969429");
}

TEST(HotpTest, AlgorithmNames) {
  EXPECT_STREQ(HashAlgorithmName(HashAlgorithm::kSha1), "SHA1");
  EXPECT_STREQ(HashAlgorithmName(HashAlgorithm::kSha256), "SHA256");
  EXPECT_STREQ(HashAlgorithmName(HashAlgorithm::kSha512), "SHA512");
  EXPECT_EQ(*ParseHashAlgorithm("sha1"), HashAlgorithm::kSha1);
  EXPECT_EQ(*ParseHashAlgorithm("Sha256"), HashAlgorithm::kSha256);
  EXPECT_EQ(*ParseHashAlgorithm("SHA512"), HashAlgorithm::kSha512);
  EXPECT_FALSE(ParseHashAlgorithm("MD5").ok());
  EXPECT_FALSE(ParseHashAlgorithm("SHA-1").ok());
  EXPECT_FALSE(ParseHashAlgorithm("").ok());
}

TEST(HotpVerifyTest, LookAheadEdges) {
  const HotpKey key = MustKey(kRfcSecret);
  const std::uint64_t counter = 1000;
  EXPECT_EQ(HotpVerify(key, key.Generate(counter, 6), counter, 6, 10), counter);
  EXPECT_EQ(HotpVerify(key, key.Generate(counter + 5, 6), counter, 6, 10), counter + 5);
  EXPECT_EQ(HotpVerify(key, key.Generate(counter + 10, 6), counter, 6, 10), counter + 10);
  EXPECT_EQ(HotpVerify(key, key.Generate(counter + 11, 6), counter, 6, 10), std::nullopt);
  EXPECT_EQ(HotpVerify(key, key.Generate(counter - 1, 6), counter, 6, 10), std::nullopt);
  EXPECT_EQ(HotpVerify(key, key.Generate(counter + 1, 6), counter, 6, 0), std::nullopt);
}

TEST(HotpVerifyTest, RfcVectorsAndMalformedCodes) {
  const HotpKey key = MustKey(kRfcSecret);
  EXPECT_EQ(HotpVerify(key, "520489", 0, 6, 10), 9u);
  EXPECT_EQ(HotpVerify(key, "520489", 9, 6, 0), 9u);
  EXPECT_EQ(HotpVerify(key, "52048", 0, 6, 10), std::nullopt);
  EXPECT_EQ(HotpVerify(key, "5204890", 0, 6, 10), std::nullopt);
  EXPECT_EQ(HotpVerify(key, "", 0, 6, 10), std::nullopt);
  EXPECT_EQ(HotpVerify(key, "84755224", 0, 8, 10), 0u);
  EXPECT_EQ(HotpVerify(key, "755224", 0, 8, 10), std::nullopt);
}

TEST(HotpVerifyTest, CounterNearMaximumDoesNotWrap) {
  const HotpKey key = MustKey(kRfcSecret);
  const std::uint64_t max = ~std::uint64_t{0};
  EXPECT_EQ(HotpVerify(key, key.Generate(max, 6), max - 3, 6, 10), max);
  // Counter 0 lies "after" the maximum only by wrapping; it must not match.
  if (key.Generate(0, 6) != key.Generate(max, 6)) {
    EXPECT_EQ(HotpVerify(key, key.Generate(0, 6), max - 3, 6, 10), std::nullopt);
  }
}

}  // namespace
}  // namespace otp
