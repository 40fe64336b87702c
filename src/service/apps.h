// Apps (tenants) and their API keys (SPEC §3).
//
// Keys are 256 random bits, shown once; the store keeps only their SHA-256.
// Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "otp/clock.h"
#include "otp/random.h"
#include "store/store.h"

namespace otpd {

struct NewApp {
  App app;
  std::string key_id;
  std::string api_key;  // shown once
};

struct NewKey {
  std::string key_id;
  std::string api_key;  // shown once
};

class AppService {
 public:
  AppService(Store& store, otp::Clock& clock, otp::Random& random)
      : store_(store), clock_(clock), random_(random) {}

  // Validates `settings` (InvalidArgument names the field), creates the app and
  // its first key. AlreadyExists when the name is taken.
  Result<NewApp> Create(const std::string& name, const AppSettings& settings);
  Result<NewKey> CreateKey(const std::string& app_id);
  Status RevokeKey(const std::string& key_id);
  // The app of a bearer key; NotFound for an unknown or revoked key. Known
  // keys are remembered for kKeyCacheTtl, so that the hot path does not read
  // the store on every request: a key revoked by otpctl (another process) or
  // an app changed by it is seen within that time; RevokeKey here at once.
  // The app is shared with the cache (read-only): no copy per request.
  Result<std::shared_ptr<const App>> Authenticate(std::string_view api_key);

  static constexpr std::chrono::seconds kKeyCacheTtl{1};

 private:
  struct CachedApp {
    std::shared_ptr<const App> app;
    otp::TimePoint fetched_at;
  };

  Store& store_;
  otp::Clock& clock_;
  otp::Random& random_;
  std::mutex cache_mu_;
  std::unordered_map<std::string, CachedApp> by_key_hash_;
};

// 1..64 bytes of UTF-8 text without control characters.
Status ValidateAppName(std::string_view name);
// Checks ranges and channel names; InvalidArgument names the field.
Status ValidateAppSettings(const AppSettings& settings);
// Parses "sms:60,voice:60" (timeout optional, default 60).
Result<std::vector<WorkflowStep>> ParseWorkflowSpec(std::string_view spec);

}  // namespace otpd
