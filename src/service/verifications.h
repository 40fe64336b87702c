// Verifications (SPEC §4.1): start, check, get, resend, cancel.
//
// The service decides; the store changes state atomically; the dispatcher
// sends. Nothing here sends a message or sleeps. Thread-safe: it holds only
// references to thread-safe collaborators.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "otp/clock.h"
#include "otp/random.h"
#include "service/api_error.h"
#include "service/channel.h"
#include "service/secrets.h"
#include "store/store.h"

namespace otpd {

struct StartRequest {
  std::string to;
  std::optional<std::string> channel;
  std::optional<std::vector<WorkflowStep>> workflow;
  std::optional<std::string> locale;
  std::optional<int> code_length;
  std::optional<int> ttl_s;
  std::string metadata_json = "{}";
  std::string ip;               // the end user's IP as sent ("" = none); counted per IpLimitKey
  std::string idempotency_key;  // "" = none
  std::string body_hash;        // of the request body, for idempotency
};

// An answer the API sends as is: status and JSON body.
struct StoredAnswer {
  int http_status = 201;
  std::string body;
  bool replayed = false;           // an Idempotency-Key replay: nothing new was started
  std::string id;                  // the verification's id (for Location)
  std::string channel;             // its first channel (for metrics)
  std::vector<std::string> flags;  // what monitor-mode guards let through (for metrics)
};

struct CheckAnswer {
  std::string id;
  std::string status;
  bool valid = false;
  int remaining_checks = 0;
  std::string channel;  // the verification's channel (for metrics)
};

// Called after a verification is stored with a job due now (wakes the dispatcher).
using JobsQueuedHook = std::function<void()>;

class VerificationService {
 public:
  VerificationService(Store& store, ProviderSet& providers, const Secrets& secrets,
                      otp::Clock& clock, otp::Random& random, JobsQueuedHook on_queued = {});

  ApiResult<StoredAnswer> Start(const App& app, const StartRequest& request);
  ApiResult<CheckAnswer> Check(const App& app, const std::string& id, const std::string& code);
  // Check answered through `done` (exactly once, maybe on the store's writer
  // thread: keep `done` quick), so that no thread waits for the commit.
  void CheckAsync(const App& app, const std::string& id, const std::string& code,
                  std::function<void(ApiResult<CheckAnswer>)> done);
  ApiResult<CheckAnswer> CheckByRecipient(const App& app, const std::string& to,
                                          const std::string& code);
  ApiResult<Verification> Get(const App& app, const std::string& id);
  ApiResult<Verification> Resend(const App& app, const std::string& id,
                                 const std::optional<std::string>& channel);
  ApiResult<Verification> Cancel(const App& app, const std::string& id);

 private:
  ApiResult<std::string> NormaliseRecipient(const std::string& to, const std::string& channel,
                                            std::string* region) const;
  ApiError NotPending(const std::string& status) const;
  // Geo permissions and the sandbox's log-only rule for one step's recipient;
  // a monitored geo refusal adds its flag to `flags`.
  ApiError Permit(const App& app, const std::string& channel, const std::string& region,
                  std::vector<std::string>* flags) const;
  // The SMS-pumping guard for a start to `e164`: sets v's guard keys (what the
  // start counts in) and flags, or refuses.
  ApiError GuardPumping(const App& app, const std::string& e164, const std::string& region,
                        otp::TimePoint now, Verification* v);

  Store& store_;
  ProviderSet& providers_;
  const Secrets& secrets_;
  otp::Clock& clock_;
  otp::Random& random_;
  JobsQueuedHook on_queued_;
};

}  // namespace otpd
