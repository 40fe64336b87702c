#include "otp/totp.h"

#include <gtest/gtest.h>

#include "core/test_util.h"

namespace otp {
namespace {

using testing::MustKey;

struct Rfc6238Vector {
  std::int64_t time;
  const char* sha1;
  const char* sha256;
  const char* sha512;
};

// RFC 6238 Appendix B (8 digits, step 30), plus T = 20000000000 (past 2038).
constexpr Rfc6238Vector kVectors[] = {
    {59, "94287082", "46119246", "90693936"},
    {1111111109, "07081804", "68084774", "25091201"},
    {1111111111, "14050471", "67062674", "99943326"},
    {1234567890, "89005924", "91819424", "93441116"},
    {2000000000, "69279037", "90698825", "38618901"},
    {20000000000, "65353130", "77737706", "47863826"},
};

TEST(TotpTest, Rfc6238AppendixB) {
  const HotpKey sha1 = MustKey("12345678901234567890", HashAlgorithm::kSha1);
  const HotpKey sha256 = MustKey("12345678901234567890123456789012", HashAlgorithm::kSha256);
  const HotpKey sha512 = MustKey("1234567890123456789012345678901234567890123456789012345678901234",
                                 HashAlgorithm::kSha512);
  const TotpParams params{.digits = 8, .period = 30, .t0 = 0};
  for (const Rfc6238Vector& v : kVectors) {
    EXPECT_EQ(TotpGenerate(sha1, v.time, params), v.sha1) << v.time;
    EXPECT_EQ(TotpGenerate(sha256, v.time, params), v.sha256) << v.time;
    EXPECT_EQ(TotpGenerate(sha512, v.time, params), v.sha512) << v.time;
    EXPECT_EQ(TotpVerify(sha1, v.sha1, v.time, params, 0), TotpStep(v.time, params));
  }
}

TEST(TotpTest, Steps) {
  const TotpParams params;  // 30 s, t0 = 0
  EXPECT_EQ(TotpStep(0, params), 0u);
  EXPECT_EQ(TotpStep(29, params), 0u);
  EXPECT_EQ(TotpStep(30, params), 1u);
  EXPECT_EQ(TotpStep(1111111109, params), 0x23523ECu);
  EXPECT_EQ(TotpStep(20000000000, params), 0x27BC86AAu);  // RFC 6238 App. B, past 2^32 s
  EXPECT_EQ(TotpStep(-5, params), 0u);
  const TotpParams shifted{.digits = 6, .period = 60, .t0 = 100};
  EXPECT_EQ(TotpStep(159, shifted), 0u);
  EXPECT_EQ(TotpStep(160, shifted), 1u);
  EXPECT_EQ(TotpStep(50, shifted), 0u);
}

class TotpVerifyTest : public ::testing::Test {
 protected:
  const HotpKey key_ = MustKey("12345678901234567890", HashAlgorithm::kSha1);
  const TotpParams params_{.digits = 6, .period = 30, .t0 = 0};
  const std::int64_t now_ = 1'700'000'015;  // mid-step
  const std::uint64_t step_ = TotpStep(now_, params_);

  std::string CodeAtStep(std::int64_t delta) const {
    return key_.Generate(step_ + static_cast<std::uint64_t>(delta), params_.digits);
  }
};

TEST_F(TotpVerifyTest, WindowOfOneStep) {
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(0), now_, params_, 1), step_);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(-1), now_, params_, 1), step_ - 1);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(+1), now_, params_, 1), step_ + 1);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(-2), now_, params_, 1), std::nullopt);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(+2), now_, params_, 1), std::nullopt);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(-1), now_, params_, 0), std::nullopt);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(0), now_, params_, 0), step_);
}

TEST_F(TotpVerifyTest, MinStepExclusiveRefusesReplays) {
  // The current step was already used: the same code and earlier ones are refused.
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(0), now_, params_, 1, step_), std::nullopt);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(-1), now_, params_, 1, step_), std::nullopt);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(+1), now_, params_, 1, step_), step_ + 1);
  // The previous step was used: the current one is still fine, the previous is not.
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(0), now_, params_, 1, step_ - 1), step_);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(-1), now_, params_, 1, step_ - 1), std::nullopt);
  // A later step was used (the +1 code): nothing in the window is left.
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(+1), now_, params_, 1, step_ + 1), std::nullopt);
}

TEST_F(TotpVerifyTest, MalformedCodes) {
  EXPECT_EQ(TotpVerify(key_, "", now_, params_, 1), std::nullopt);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(0).substr(1), now_, params_, 1), std::nullopt);
  EXPECT_EQ(TotpVerify(key_, CodeAtStep(0) + "0", now_, params_, 1), std::nullopt);
}

TEST_F(TotpVerifyTest, NearStepZero) {
  // Window reaching below step 0 must not wrap around.
  EXPECT_EQ(TotpVerify(key_, key_.Generate(0, 6), 10, params_, 1), 0u);
  EXPECT_EQ(TotpVerify(key_, key_.Generate(1, 6), 10, params_, 1), 1u);
  EXPECT_EQ(TotpVerify(key_, key_.Generate(~std::uint64_t{0}, 6), 10, params_, 1), std::nullopt);
}

}  // namespace
}  // namespace otp
