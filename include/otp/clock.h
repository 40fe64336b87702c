// Time, injectable: production code uses SystemClock(); tests use a FakeClock
// and move it by hand, so expiry, TOTP windows and timers need no sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace otp {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The real wall clock. Thread-safe.
Clock& SystemClock();

// A clock that moves only when told. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(std::int64_t unix_seconds = 1'700'000'000) : ms_(unix_seconds * 1000) {}
  TimePoint Now() const override { return TimePoint(std::chrono::milliseconds(ms_.load())); }
  void Advance(std::chrono::milliseconds d) { ms_ += d.count(); }
  void Set(std::int64_t unix_seconds) { ms_ = unix_seconds * 1000; }

 private:
  std::atomic<std::int64_t> ms_;
};

std::int64_t ToUnixSeconds(TimePoint t);
std::int64_t ToUnixMillis(TimePoint t);
TimePoint FromUnixMillis(std::int64_t ms);
// RFC 3339 UTC with second precision, e.g. "2026-11-26T12:00:00Z".
std::string FormatRfc3339(TimePoint t);

}  // namespace otp
