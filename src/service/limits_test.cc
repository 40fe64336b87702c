// Limits and fraud protection: the pure decisions (pumping verdicts with
// window roll-off and Retry-After, geo permissions, IP keys) and the request
// limiter over the memory store, all with an injected clock.
#include "service/limits.h"

#include <gtest/gtest.h>

#include "store/memory/memory_store.h"

namespace otpd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Minute m of the fake clock's epoch (1'700'000'000 s is minute 28'333'333 and 20 s).
constexpr std::int64_t kMinute0 = 1'700'000'000 / 60;

otp::TimePoint AtMinute(std::int64_t minute, int second = 0) {
  return otp::TimePoint(seconds(minute * 60 + second));
}

FraudPolicy Policy(int threshold = 10, int pct = 20, int window_s = 3600) {
  FraudPolicy p;
  p.prefix_threshold = threshold;
  p.min_conversion_pct = pct;
  p.window_s = window_s;
  return p;
}

TEST(Sec30_Pumping, UnderTheThresholdNothingIsJudged) {
  const FraudPolicy p = Policy(10);
  const std::vector<FraudBucket> nine = {{kMinute0, 9, 0}};
  const PumpingVerdict v = JudgePumping(nine, p.prefix_threshold, p, AtMinute(kMinute0, 30));
  EXPECT_FALSE(v.suspected);
  EXPECT_EQ(v.starts, 9);
}

TEST(Sec30_Pumping, AtTheThresholdConversionUnderTheFloorIsSuspect) {
  const FraudPolicy p = Policy(10, 20);
  const otp::TimePoint now = AtMinute(kMinute0 + 5);
  // 10 starts, 1 approval: 10 % < 20 %.
  EXPECT_TRUE(JudgePumping({{kMinute0, 10, 1}}, 10, p, now).suspected);
  // 10 starts, 2 approvals: exactly the floor is enough.
  EXPECT_FALSE(JudgePumping({{kMinute0, 10, 2}}, 10, p, now).suspected);
  // A floor of 0 never blocks; a threshold of 0 is never judged.
  EXPECT_FALSE(JudgePumping({{kMinute0, 100, 0}}, 10, Policy(10, 0), now).suspected);
  EXPECT_FALSE(JudgePumping({{kMinute0, 100, 0}}, 0, p, now).suspected);
}

TEST(Sec30_Pumping, OldMinutesRollOffTheWindow) {
  const FraudPolicy p = Policy(10, 20, 600);  // a 10-minute window
  const std::vector<FraudBucket> b = {{kMinute0, 6, 0}, {kMinute0 + 5, 6, 0}};
  // At minute 9 both buckets count: 12 starts, suspect.
  EXPECT_TRUE(JudgePumping(b, 10, p, AtMinute(kMinute0 + 9)).suspected);
  // At minute 10:59 the first is still in (window starts at minute 0 + ...).
  EXPECT_TRUE(JudgePumping(b, 10, p, AtMinute(kMinute0 + 10, 59)).suspected);
  // From minute 11 the first has left: 6 starts.
  const PumpingVerdict later = JudgePumping(b, 10, p, AtMinute(kMinute0 + 11));
  EXPECT_FALSE(later.suspected);
  EXPECT_EQ(later.starts, 6);
}

TEST(Sec30_Pumping, RetryAfterIsWhenEnoughMinutesHaveLeft) {
  const FraudPolicy p = Policy(10, 20, 600);
  const std::vector<FraudBucket> b = {{kMinute0, 3, 0}, {kMinute0 + 2, 4, 0}, {kMinute0 + 4, 5, 1}};
  const otp::TimePoint now = AtMinute(kMinute0 + 5);
  const PumpingVerdict v = JudgePumping(b, 10, p, now);
  ASSERT_TRUE(v.suspected);  // 12 starts, 1 approval
  // Without minute 0: 9 starts, under the threshold: clear when minute 0 leaves,
  // at (m0 + 1) * 60 + 600 s.
  EXPECT_EQ(v.retry_at, AtMinute(kMinute0 + 1) + seconds(600));

  // A prefix suspect even after its oldest minute leaves clears later.
  const std::vector<FraudBucket> heavy = {{kMinute0, 1, 0}, {kMinute0 + 1, 20, 0}};
  const PumpingVerdict h = JudgePumping(heavy, 10, p, AtMinute(kMinute0 + 3));
  ASSERT_TRUE(h.suspected);
  EXPECT_EQ(h.retry_at, AtMinute(kMinute0 + 2) + seconds(600));
}

TEST(Sec30_Pumping, TotalsJudgeTheSameWay) {
  const FraudPolicy p = Policy(10, 20);
  EXPECT_TRUE(PumpingSuspected(10, 1, 10, p));
  EXPECT_FALSE(PumpingSuspected(10, 2, 10, p));
  EXPECT_FALSE(PumpingSuspected(9, 0, 10, p));
}

TEST(Sec30_Pumping, PrefixIsTheNumberWithoutItsLastFourDigits) {
  EXPECT_EQ(NumberPrefix("+306912345678"), "+30691234");
  EXPECT_EQ(NumberPrefix("+1650"), "+");
  EXPECT_EQ(NumberPrefix("+12"), "");
}

TEST(Sec29_Geo, AllowedAndBlockedListsPerAppAndChannel) {
  GeoPermissions geo;
  EXPECT_TRUE(RegionAllowed(geo, "sms", "GR"));  // no lists: everything
  EXPECT_TRUE(RegionAllowed(geo, "sms", ""));
  geo.all.allowed = {"GR", "CY"};
  EXPECT_TRUE(RegionAllowed(geo, "sms", "GR"));
  EXPECT_FALSE(RegionAllowed(geo, "sms", "DE"));
  EXPECT_FALSE(RegionAllowed(geo, "voice", ""));  // no region is not in an allowed list
  geo.all.blocked = {"CY"};
  EXPECT_FALSE(RegionAllowed(geo, "sms", "CY"));  // blocked wins
  // A channel's own list replaces the app-wide one of its kind.
  geo.channels["voice"].allowed = {"DE"};
  EXPECT_TRUE(RegionAllowed(geo, "voice", "DE"));
  EXPECT_FALSE(RegionAllowed(geo, "voice", "GR"));
  EXPECT_FALSE(RegionAllowed(geo, "voice", "CY"));  // the app-wide blocked list still holds
  EXPECT_TRUE(RegionAllowed(geo, "sms", "GR"));
  geo.channels["sms"].blocked = {"GR"};
  EXPECT_FALSE(RegionAllowed(geo, "sms", "GR"));
  EXPECT_TRUE(RegionAllowed(geo, "sms", "CY"));  // sms's own blocked list replaced ["CY"]
}

TEST(Sec29_Geo, RegionsAreValidatedAgainstLibphonenumber) {
  EXPECT_TRUE(ValidateRegions({"GR", "CY", "US"}, "x").ok());
  EXPECT_FALSE(ValidateRegions({"UK"}, "x").ok());  // the United Kingdom is GB
  EXPECT_FALSE(ValidateRegions({"gr"}, "x").ok());
  EXPECT_FALSE(ValidateRegions({""}, "x").ok());
}

TEST(Sec30_IpLimitKey, NormalisesV4AndGroupsV6ByItsSlash64) {
  EXPECT_EQ(IpLimitKey("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(IpLimitKey("::ffff:192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(IpLimitKey("2001:DB8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(IpLimitKey("2001:db8:1:2::99"), "2001:db8:1:2::/64");
  for (const char* bad :
       {"", "1.2.3", "1.2.3.256", "example.com", "2001:db8::1::2", " 1.2.3.4", "192.0.2.1/24"}) {
    EXPECT_FALSE(IpLimitKey(bad).has_value()) << bad;
  }
}

class RequestLimiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    app_.id = "app_a";
    app_.settings.request_rate = 100;  // batches of 10
    app_.settings.request_burst = 50;
  }
  int Admitted(RequestLimiter& limiter, int tries) {
    int n = 0;
    for (int i = 0; i < tries; ++i) n += limiter.Admit(app_) == 0 ? 1 : 0;
    return n;
  }

  otp::FakeClock clock_;
  std::unique_ptr<Store> store_ = NewMemoryStore();
  App app_;
};

class Sec8_RequestLimiterTest : public RequestLimiterTest {};

TEST_F(Sec8_RequestLimiterTest, TwoNodesShareOneBucket) {
  RequestLimiter a(*store_, clock_);
  RequestLimiter b(*store_, clock_);
  EXPECT_EQ(RequestLimiter::BatchSize(app_.settings), 10);
  int admitted = 0;
  for (int i = 0; i < 40; ++i) admitted += Admitted(a, 1) + Admitted(b, 1);
  EXPECT_EQ(admitted, 50);  // the burst, between both nodes
  const int wait = a.Admit(app_);
  EXPECT_EQ(wait, 1);  // the next token is due in 10 ms: whole seconds, at least 1
}

TEST_F(RequestLimiterTest, RefillsAtTheRateAndDropsStrandedTokensAfterTheLease) {
  RequestLimiter a(*store_, clock_);
  EXPECT_EQ(Admitted(a, 60), 50);
  clock_.Advance(milliseconds(200));  // 20 tokens refilled
  EXPECT_EQ(Admitted(a, 5), 5);       // took a batch of 10, spent 5
  clock_.Advance(RequestLimiter::kLease);
  // The 5 left were stranded and dropped; the store's bucket refilled to its
  // burst (10 + 100 tokens, capped at 50).
  EXPECT_EQ(Admitted(a, 100), 50);
}

TEST_F(RequestLimiterTest, OffWhenTheRateIsZero) {
  app_.settings.request_rate = 0;
  RequestLimiter a(*store_, clock_);
  EXPECT_EQ(Admitted(a, 10000), 10000);
}

}  // namespace
}  // namespace otpd
