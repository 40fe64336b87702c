#include "otp/clock.h"

#include <gtest/gtest.h>

namespace otp {
namespace {

TEST(ClockTest, FormatRfc3339) {
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(0)), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(1'700'000'000'000)), "2023-11-14T22:13:20Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(1'700'000'000'999)), "2023-11-14T22:13:20Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(1'795'694'400'000)), "2026-11-26T12:00:00Z");
  // Past 2038 (TimePoint is nanoseconds since 1970, so it ends in 2262).
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(4'102'444'800'000)), "2100-01-01T00:00:00Z");
}

TEST(ClockTest, Conversions) {
  EXPECT_EQ(ToUnixMillis(FromUnixMillis(1'700'000'000'123)), 1'700'000'000'123);
  EXPECT_EQ(ToUnixSeconds(FromUnixMillis(1'700'000'000'999)), 1'700'000'000);
  // Before 1970 the seconds round down, not towards zero.
  EXPECT_EQ(ToUnixSeconds(FromUnixMillis(-1'500)), -2);
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(-1'000)), "1969-12-31T23:59:59Z");
}

TEST(ClockTest, FakeClockMovesOnlyWhenTold) {
  FakeClock clock(1'000);
  EXPECT_EQ(ToUnixSeconds(clock.Now()), 1'000);
  clock.Advance(std::chrono::milliseconds(1'500));
  EXPECT_EQ(ToUnixMillis(clock.Now()), 1'001'500);
  clock.Set(42);
  EXPECT_EQ(ToUnixSeconds(clock.Now()), 42);
}

TEST(ClockTest, SystemClockIsNow) {
  const std::int64_t now = ToUnixSeconds(SystemClock().Now());
  EXPECT_GT(now, 1'700'000'000);
  EXPECT_LE(ToUnixSeconds(SystemClock().Now()) - now, 5);
}

}  // namespace
}  // namespace otp
