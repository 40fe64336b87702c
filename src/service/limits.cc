#include "service/limits.h"

#include <arpa/inet.h>
#include <phonenumbers/phonenumberutil.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

namespace otpd {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::optional<std::string> IpLimitKey(std::string_view text) {
  if (text.empty() || text.size() > 45) return std::nullopt;
  const std::string s(text);
  std::array<unsigned char, 16> bytes{};
  char out[INET6_ADDRSTRLEN] = {};
  if (inet_pton(AF_INET, s.c_str(), bytes.data()) == 1) {
    inet_ntop(AF_INET, bytes.data(), out, sizeof out);
    return std::string(out);
  }
  if (inet_pton(AF_INET6, s.c_str(), bytes.data()) != 1) return std::nullopt;
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(std::begin(kMapped), std::end(kMapped), bytes.begin())) {
    inet_ntop(AF_INET, bytes.data() + 12, out, sizeof out);
    return std::string(out);
  }
  std::fill(bytes.begin() + 8, bytes.end(), 0);  // the /64
  inet_ntop(AF_INET6, bytes.data(), out, sizeof out);
  return std::string(out) + "/64";
}

bool RegionAllowed(const GeoPermissions& geo, std::string_view channel, std::string_view region) {
  const CountryLists* own = nullptr;
  auto it = geo.channels.find(std::string(channel));
  if (it != geo.channels.end()) own = &it->second;
  const auto& allowed = own != nullptr && !own->allowed.empty() ? own->allowed : geo.all.allowed;
  const auto& blocked = own != nullptr && !own->blocked.empty() ? own->blocked : geo.all.blocked;
  auto has = [&](const std::vector<std::string>& list) {
    return std::find(list.begin(), list.end(), region) != list.end();
  };
  if (!allowed.empty() && !has(allowed)) return false;
  return !has(blocked);
}

otp::Status ValidateRegions(const std::vector<std::string>& regions, std::string_view what) {
  static const std::set<std::string> kKnown = [] {
    std::set<std::string> out;
    i18n::phonenumbers::PhoneNumberUtil::GetInstance()->GetSupportedRegions(&out);
    return out;
  }();
  for (const std::string& r : regions) {
    if (!kKnown.contains(r)) {
      return otp::InvalidArgument(std::string(what) + ": '" + r +
                                  "' is not an ISO 3166 alpha-2 region libphonenumber knows");
    }
  }
  return otp::Status::Ok();
}

std::string NumberPrefix(std::string_view e164) {
  return std::string(e164.substr(0, e164.size() > 4 ? e164.size() - 4 : 0));
}

namespace {

bool Over(int starts, int approvals, int threshold, const FraudPolicy& policy) {
  return threshold > 0 && starts >= threshold &&
         std::int64_t{approvals} * 100 < std::int64_t{starts} * policy.min_conversion_pct;
}

}  // namespace

bool PumpingSuspected(int starts, int approvals, int threshold, const FraudPolicy& policy) {
  return Over(starts, approvals, threshold, policy);
}

PumpingVerdict JudgePumping(const std::vector<FraudBucket>& buckets, int threshold,
                            const FraudPolicy& policy, otp::TimePoint now) {
  PumpingVerdict v;
  const std::int64_t first = otp::ToUnixSeconds(now - seconds(policy.window_s)) / 60;
  for (const FraudBucket& b : buckets) {
    if (b.minute < first) continue;  // out of the window (a caller that read more)
    v.starts += b.starts;
    v.approvals += b.approvals;
  }
  v.suspected = Over(v.starts, v.approvals, threshold, policy);
  if (!v.suspected) return v;
  // Roll the oldest minutes off until the rest is no longer suspect: bucket m
  // leaves the window at (m + 1) * 60 + window_s.
  int starts = v.starts;
  int approvals = v.approvals;
  for (const FraudBucket& b : buckets) {
    if (b.minute < first) continue;
    starts -= b.starts;
    approvals -= b.approvals;
    if (!Over(starts, approvals, threshold, policy)) {
      v.retry_at = otp::TimePoint(seconds((b.minute + 1) * 60 + policy.window_s));
      break;
    }
  }
  return v;
}

int RequestLimiter::BatchSize(const AppSettings& s) {
  return std::clamp(s.request_rate / 10, 1, std::max(1, s.request_burst));
}

RequestLimiter::Local& RequestLimiter::For(const std::string& app_id) {
  std::lock_guard lock(mu_);
  auto& slot = apps_[app_id];
  if (!slot) slot = std::make_unique<Local>();
  return *slot;
}

int RequestLimiter::Admit(const App& app) {
  const AppSettings& s = app.settings;
  if (s.request_rate <= 0) return 0;
  Local& local = For(app.id);
  std::lock_guard lock(local.mu);
  const otp::TimePoint now = clock_.Now();
  if (local.lease_until <= now) local.tokens = 0;  // stranded tokens are dropped
  if (local.tokens > 0) {
    --local.tokens;
    return 0;
  }
  if (now < local.empty_until) {
    const auto wait = std::chrono::duration_cast<milliseconds>(local.empty_until - now);
    return std::max<int>(1, static_cast<int>((wait.count() + 999) / 1000));
  }
  auto grant = store_.TakeRequestTokens(app.id, s.request_rate, s.request_burst, BatchSize(s), now);
  if (!grant.ok()) return 0;
  if (grant->granted == 0) {
    local.empty_until = grant->next_at;
    const auto wait = std::chrono::duration_cast<milliseconds>(grant->next_at - now);
    return std::max<int>(1, static_cast<int>((wait.count() + 999) / 1000));
  }
  local.tokens = grant->granted - 1;
  local.lease_until = now + kLease;
  return 0;
}

}  // namespace otpd
