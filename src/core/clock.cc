#include "otp/clock.h"

#include <ctime>

namespace otp {
namespace {

class RealClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
};

}  // namespace

Clock& SystemClock() {
  static RealClock clock;
  return clock;
}

// floor, not duration_cast: times before 1970 round towards the past.
std::int64_t ToUnixSeconds(TimePoint t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::int64_t ToUnixMillis(TimePoint t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TimePoint FromUnixMillis(std::int64_t ms) { return TimePoint(std::chrono::milliseconds(ms)); }

std::string FormatRfc3339(TimePoint t) {
  const std::time_t secs = static_cast<std::time_t>(ToUnixSeconds(t));
  std::tm tm{};
  if (gmtime_r(&secs, &tm) == nullptr) return {};
  char buf[64];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

}  // namespace otp
