// Limits and fraud protection (SPEC §6; SECURITY.md 6, 10, 24, 29, 30): the
// decisions of geo permissions and the SMS-pumping guard as pure functions
// (tested with an injected clock), end-user IP parsing, and the per-app
// request limiter.
//
// Where state is kept: every counter lives in the store (so limits hold
// across nodes and restarts); RequestLimiter keeps only tokens it has taken
// from the store's bucket. Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "otp/clock.h"
#include "store/store.h"

namespace otpd {

// --- end-user IPs

// The key an end user's IP is counted under: IPv4 in dotted form (an
// IPv4-mapped IPv6 address too), IPv6 as its /64 ("2001:db8:1:2::/64": one
// host usually holds a whole /64). nullopt when `text` is not an IP address.
std::optional<std::string> IpLimitKey(std::string_view text);

// --- geo permissions

// True when `region` (ISO 3166 alpha-2, "" when libphonenumber knows none) may
// receive messages on `channel` under `geo`: a channel's own non-empty list
// replaces the app-wide one; a non-empty allowed list admits only its regions.
bool RegionAllowed(const GeoPermissions& geo, std::string_view channel, std::string_view region);

// InvalidArgument unless every entry is a region libphonenumber knows ("GR").
otp::Status ValidateRegions(const std::vector<std::string>& regions, std::string_view what);

// --- the SMS-pumping guard

// A number's prefix: the E.164 number without its last 4 digits ("+3069123").
std::string NumberPrefix(std::string_view e164);

struct PumpingVerdict {
  bool suspected = false;  // at or over the threshold with conversion under the floor
  int starts = 0;          // in the window
  int approvals = 0;
  otp::TimePoint retry_at{};  // suspected: when enough buckets leave the window to clear it
};

// Judges one prefix or region from its per-minute buckets (oldest first, read
// from the minute of now - policy.window_s on): suspected when it has at least
// `threshold` starts and approvals * 100 < starts * policy.min_conversion_pct.
// `retry_at` assumes no new traffic (a later approval may clear it sooner).
PumpingVerdict JudgePumping(const std::vector<FraudBucket>& buckets, int threshold,
                            const FraudPolicy& policy, otp::TimePoint now);

// The same over totals (no buckets): for `otpctl fraud status`.
bool PumpingSuspected(int starts, int approvals, int threshold, const FraudPolicy& policy);

// --- per-app request rate

// Admits requests of an app against its token bucket in the store without a
// store write per request: a node takes tokens from the store in batches and
// spends them locally for at most kLease.
//
// Bounds, for N nodes, rate r, burst b and batch k = clamp(r/10, 1, b):
//  - over-admission: tokens are spent at most kLease after they were taken,
//    so over any interval T every node together admits at most
//    b + r * (T + kLease) requests (one bucket, shared in the store);
//  - under-admission: a node strands at most k - 1 taken tokens per lease
//    (dropped when the lease ends), so at any moment up to N * (k - 1) tokens
//    may sit unused on other nodes while one answers 429.
// When the store has no token, the node answers 429 until the store's next
// token is due without asking it again: a flood costs one write per node per
// refill, not one per request.
class RequestLimiter {
 public:
  static constexpr std::chrono::milliseconds kLease{1000};

  RequestLimiter(Store& store, otp::Clock& clock) : store_(store), clock_(clock) {}

  // 0 when a request of `app` may be served now; else the whole seconds
  // (>= 1) until it may, for Retry-After. An app with request_rate 0 is
  // always served. A store failure admits (the request then meets the store
  // itself and answers for it).
  int Admit(const App& app);

  // Tokens taken from the store per batch for `app`.
  static int BatchSize(const AppSettings& settings);

 private:
  struct Local {
    std::mutex mu;
    int tokens = 0;
    otp::TimePoint lease_until{};
    otp::TimePoint empty_until{};  // the store had none: refuse until then
  };
  Local& For(const std::string& app_id);

  Store& store_;
  otp::Clock& clock_;
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<Local>> apps_;
};

}  // namespace otpd
