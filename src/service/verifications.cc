#include "service/verifications.h"

#include <algorithm>
#include <chrono>
#include <future>

#include "service/limits.h"
#include "service/messages.h"
#include "service/recipients.h"

namespace otpd {

using std::chrono::seconds;

namespace {

int CeilSeconds(std::chrono::milliseconds ms) {
  return static_cast<int>((ms.count() + 999) / 1000);
}

// Retry-After for a limit that has room again at `at`: whole seconds, at least 1.
int RetryAfter(otp::TimePoint at, otp::TimePoint now) {
  return std::max(1, CeilSeconds(std::chrono::duration_cast<std::chrono::milliseconds>(at - now)));
}

}  // namespace

VerificationService::VerificationService(Store& store, ProviderSet& providers,
                                         const Secrets& secrets, otp::Clock& clock,
                                         otp::Random& random, JobsQueuedHook on_queued)
    : store_(store),
      providers_(providers),
      secrets_(secrets),
      clock_(clock),
      random_(random),
      on_queued_(std::move(on_queued)) {}

ApiError VerificationService::NotPending(const std::string& status) const {
  ApiError e = MakeError(ApiCode::kVerificationNotPending, "the verification is " + status);
  e.status = status;
  return e;
}

ApiResult<std::string> VerificationService::NormaliseRecipient(const std::string& to,
                                                               const std::string& channel,
                                                               std::string* region) const {
  if (IsPhoneChannel(channel)) {
    auto phone = ParsePhoneNumber(to);
    if (!phone.ok()) {
      return MakeError(ApiCode::kInvalidRecipient,
                       "channel " + channel + ": " + phone.status().message());
    }
    if (region != nullptr) *region = phone->region;
    return phone->e164;
  }
  if (channel == "email") {
    auto email = ParseEmail(to);
    if (!email.ok()) {
      return MakeError(ApiCode::kInvalidRecipient, "channel email: " + email.status().message());
    }
    return *email;
  }
  return to;  // push: an opaque device or user address
}

ApiResult<StoredAnswer> VerificationService::Start(const App& app, const StartRequest& req) {
  const otp::TimePoint now = clock_.Now();

  // Idempotent replay: the same key and body within 24 h return the first answer.
  if (!req.idempotency_key.empty()) {
    auto prior = store_.GetIdempotency(app.id, req.idempotency_key, now - std::chrono::hours(24));
    if (!prior.ok()) return FromStoreStatus(prior.status());
    if (prior->has_value()) {
      const IdempotencyRecord& r = **prior;
      if (r.body_hash != req.body_hash) {
        return MakeError(ApiCode::kIdempotencyKeyReused,
                         "this Idempotency-Key was used with a different body");
      }
      // A replay (rare): the id for Location is read back from the stored answer.
      const nlohmann::json stored = nlohmann::json::parse(r.response, nullptr, false);
      const std::string id = stored.is_object() ? stored.value("id", "") : "";
      return StoredAnswer{r.response_status, r.response, true, id, "", {}};
    }
  }

  // The workflow: one pinned channel, the request's, or the app's.
  std::vector<WorkflowStep> workflow;
  if (req.channel) {
    workflow = {{*req.channel, 60, ""}};
  } else if (req.workflow) {
    workflow = *req.workflow;
  } else {
    workflow = app.settings.workflow;
  }
  // The top-level recipient is a number or an address; each step needs one of its kind.
  const bool to_is_email = req.to.find('@') != std::string::npos;
  std::string region;
  auto to = NormaliseRecipient(req.to, to_is_email ? "email" : "sms", &region);
  if (!to.ok()) return to.error();
  std::vector<std::string> flags;
  // The phone number the pumping guard judges and counts: `to`, or else the
  // first phone step's own number.
  std::string guarded_number = to_is_email ? "" : *to;
  std::string guarded_region = to_is_email ? "" : region;
  for (WorkflowStep& step : workflow) {
    if (!providers_.Carries(step.channel)) {
      return MakeError(ApiCode::kChannelNotAllowed,
                       "no provider is configured for channel " + step.channel);
    }
    const bool wants_email = step.channel == "email";
    std::string step_region = region;
    if (!step.to.empty()) {
      auto own = NormaliseRecipient(step.to, step.channel, &step_region);
      if (!own.ok()) return own.error();
      step.to = *own;
      if (guarded_number.empty() && IsPhoneChannel(step.channel)) {
        guarded_number = step.to;
        guarded_region = step_region;
      }
    } else if ((wants_email && !to_is_email) || (IsPhoneChannel(step.channel) && to_is_email)) {
      return MakeError(ApiCode::kInvalidRecipient,
                       "channel " + step.channel + " needs " +
                           (wants_email ? "an email address" : "a phone number") +
                           ": give the step its own \"to\"");
    }
    ApiError refused = Permit(app, step.channel, step_region, &flags);
    if (!refused.ok()) return refused;
  }
  std::optional<std::string> ip;
  if (!req.ip.empty()) {
    ip = IpLimitKey(req.ip);
    if (!ip) {
      ApiError e = MakeError(ApiCode::kInvalidRequest, "ip: must be an IPv4 or IPv6 address");
      e.errors = {{"ip", "must be an IPv4 or IPv6 address"}};
      return e;
    }
  }

  Verification v;
  v.id = "ver_" + otp::RandomHex(random_, 12);
  v.app_id = app.id;
  v.to = *to;
  v.workflow = workflow;
  v.channel = workflow.front().channel;
  if (req.locale) {
    v.locale = SupportedLocale(*req.locale);
  } else {
    v.locale = LocaleForRegion(region);
  }
  const int length = req.code_length.value_or(app.settings.code_length);
  const std::string code = otp::RandomNumericCode(random_, length);
  v.code_hash = secrets_.code_hasher.Hash(v.id, code);
  auto sealed = secrets_.keyring.Seal(
      std::span(reinterpret_cast<const std::uint8_t*>(code.data()), code.size()), v.id, random_);
  if (!sealed.ok()) return MakeError(ApiCode::kInternal, "cannot seal the code");
  v.code_sealed = *sealed;
  v.send_count = 1;
  v.max_checks = app.settings.max_checks;
  v.max_sends = app.settings.max_sends;
  v.metadata_json = req.metadata_json;
  v.ip = ip.value_or("");
  v.created_at = v.updated_at = v.last_sent_at = now;
  if (!guarded_number.empty()) {
    ApiError refused = GuardPumping(app, guarded_number, guarded_region, now, &v);
    if (!refused.ok()) return refused;
  }
  for (const std::string& f : flags) {
    if (std::find(v.flags.begin(), v.flags.end(), f) == v.flags.end()) v.flags.push_back(f);
  }
  v.expires_at = now + seconds(req.ttl_s.value_or(app.settings.ttl_s));

  Delivery first;
  first.step = 0;
  first.channel = workflow.front().channel;
  first.to = workflow.front().to.empty() ? v.to : workflow.front().to;
  first.created_at = first.updated_at = now;
  v.deliveries = {first};
  Job job;
  job.verification_id = v.id;
  job.step = 0;
  job.advance = true;
  job.due_at = now;

  StoredAnswer answer{201, VerificationJson(v).dump(), false, v.id, v.channel, v.flags};
  IdempotencyRecord record;
  if (!req.idempotency_key.empty()) {
    record = {app.id, req.idempotency_key, req.body_hash, answer.body, 201, now};
  }
  // Starts per recipient and per end-user IP, counted in the store's
  // transaction (SECURITY.md 6, 10, 30); a sandbox app has neither.
  StartLimits limits;
  if (!app.settings.sandbox) {
    limits.max_per_recipient = app.settings.starts_per_recipient;
    limits.recipient_since = now - seconds(app.settings.starts_window_s);
    limits.max_per_ip = app.settings.starts_per_ip;
    limits.ip_since = now - seconds(app.settings.ip_window_s);
  }
  auto stored =
      store_.CreateVerification(v, job, req.idempotency_key.empty() ? nullptr : &record, limits);
  if (!stored.ok()) {
    if (stored.status().code() == otp::StatusCode::kAlreadyExists && !req.idempotency_key.empty()) {
      return Start(app, req);  // a concurrent twin stored the key first: replay its answer
    }
    return FromStoreStatus(stored.status());
  }
  if (stored->refusal != StartOutcome::Refusal::kNone) {
    const bool by_ip = stored->refusal == StartOutcome::Refusal::kIp;
    ApiError e =
        MakeError(ApiCode::kRateLimited, by_ip ? "too many verifications from this IP"
                                               : "too many verifications for this recipient");
    e.guard = by_ip ? "ip" : "recipient";
    e.retry_after_s = RetryAfter(stored->retry_at, now);
    return e;
  }
  if (on_queued_) on_queued_();
  return answer;
}

ApiError VerificationService::Permit(const App& app, const std::string& channel,
                                     const std::string& region,
                                     std::vector<std::string>* flags) const {
  if (app.settings.sandbox) {
    // A sandbox app reaches nobody: only `log` providers take its messages.
    const auto carriers = providers_.ForChannel(channel);
    if (std::none_of(carriers.begin(), carriers.end(),
                     [](const Provider* p) { return p->config.type == "log"; })) {
      return MakeError(ApiCode::kChannelNotAllowed,
                       "sandbox apps deliver only through log providers; none carries " + channel);
    }
  }
  if (!IsPhoneChannel(channel)) return ApiError{};
  if (RegionAllowed(app.settings.geo, channel, region)) return ApiError{};
  if (app.settings.geo.mode == "monitor") {
    flags->push_back(kFlagCountryBlocked);
    return ApiError{};
  }
  ApiError e = MakeError(ApiCode::kCountryBlocked,
                         "this app does not send " + channel + " to " +
                             (region.empty() ? std::string("numbers of no region") : region));
  e.guard = kFlagCountryBlocked;
  return e;
}

ApiError VerificationService::GuardPumping(const App& app, const std::string& e164,
                                           const std::string& region, otp::TimePoint now,
                                           Verification* v) {
  const FraudPolicy& policy = app.settings.fraud;
  if (app.settings.sandbox || policy.mode == "off") return ApiError{};
  const std::string prefix = NumberPrefix(e164);
  auto counts = store_.GetFraudCounts(app.id, prefix, region, e164, now - seconds(policy.window_s));
  if (!counts.ok()) return FromStoreStatus(counts.status());
  if (counts->safe_listed) return ApiError{};  // neither judged nor counted
  v->guard_prefix = prefix;
  v->guard_region = region;
  const PumpingVerdict by_prefix =
      JudgePumping(counts->prefix, policy.prefix_threshold, policy, now);
  const PumpingVerdict by_region =
      JudgePumping(counts->region, policy.region_threshold, policy, now);
  if (!by_prefix.suspected && !by_region.suspected) return ApiError{};
  if (policy.mode == "monitor") {
    v->flags.push_back(kFlagPumpingSuspected);
    return ApiError{};
  }
  ApiError e =
      MakeError(ApiCode::kRateLimited,
                std::string("too many unconfirmed verifications to numbers ") +
                    (by_prefix.suspected ? "like this one" : "of this region") +
                    " (SMS-pumping guard): starts are refused until more of them are confirmed");
  e.guard = kFlagPumpingSuspected;
  e.retry_after_s = RetryAfter(std::max(by_prefix.suspected ? by_prefix.retry_at : now,
                                        by_region.suspected ? by_region.retry_at : now),
                               now);
  return e;
}

ApiResult<Verification> VerificationService::Get(const App& app, const std::string& id) {
  auto v = store_.GetVerification(app.id, id);
  if (!v.ok()) return FromStoreStatus(v.status());
  const otp::TimePoint now = clock_.Now();
  if (v->status == kPending && v->expires_at <= now) {
    auto t = store_.ExpireIfDue(app.id, id, now);
    if (!t.ok()) return FromStoreStatus(t.status());
    v = store_.GetVerification(app.id, id);
    if (!v.ok()) return FromStoreStatus(v.status());
  }
  return std::move(v).value();
}

ApiResult<CheckAnswer> VerificationService::Check(const App& app, const std::string& id,
                                                  const std::string& code) {
  std::promise<ApiResult<CheckAnswer>> done;
  auto answer = done.get_future();
  CheckAsync(app, id, code, [&done](ApiResult<CheckAnswer> a) { done.set_value(std::move(a)); });
  return answer.get();
}

void VerificationService::CheckAsync(const App& app, const std::string& id, const std::string& code,
                                     std::function<void(ApiResult<CheckAnswer>)> done) {
  // The keyed hash is bound to this id, so another verification's code never
  // matches; the store compares it with the stored hash in constant time, in
  // the same transaction that spends the check.
  store_.RecordCheckAsync(
      app.id, id, secrets_.code_hasher.Hash(id, code), clock_.Now(),
      [this, id, done = std::move(done)](Result<Transition> t) {
        if (!t.ok()) return done(FromStoreStatus(t.status()));
        if (!t->applied) return done(NotPending(t->status));
        done(CheckAnswer{id, t->status, t->correct && t->status == kApproved,
                         std::max(0, t->max_checks - t->check_count), t->channel});
      });
}

ApiResult<CheckAnswer> VerificationService::CheckByRecipient(const App& app, const std::string& to,
                                                             const std::string& code) {
  auto normalised =
      NormaliseRecipient(to, to.find('@') != std::string::npos ? "email" : "sms", nullptr);
  if (!normalised.ok()) return normalised.error();
  auto v = store_.NewestPending(app.id, *normalised);
  if (!v.ok()) {
    if (v.status().code() == otp::StatusCode::kNotFound) {
      return MakeError(ApiCode::kNotFound, "no pending verification for this recipient");
    }
    return FromStoreStatus(v.status());
  }
  return Check(app, v->id, code);
}

ApiResult<Verification> VerificationService::Resend(const App& app, const std::string& id,
                                                    const std::optional<std::string>& channel) {
  auto v = store_.GetVerification(app.id, id);
  if (!v.ok()) return FromStoreStatus(v.status());
  const otp::TimePoint now = clock_.Now();
  const int step_index = std::min<int>(v->current_step, static_cast<int>(v->workflow.size()) - 1);
  const WorkflowStep& step = v->workflow[static_cast<std::size_t>(step_index)];

  Delivery d;
  d.step = step_index;
  d.channel = channel.value_or(step.channel);
  d.created_at = d.updated_at = now;
  if (!providers_.Carries(d.channel)) {
    return MakeError(ApiCode::kChannelNotAllowed,
                     "no provider is configured for channel " + d.channel);
  }
  if (d.channel == step.channel && !step.to.empty()) {
    d.to = step.to;
  } else {
    // Another channel: the verification's own recipient must suit it.
    for (const WorkflowStep& s : v->workflow) {
      if (s.channel == d.channel && !s.to.empty()) d.to = s.to;
    }
    if (d.to.empty()) {
      auto to = NormaliseRecipient(v->to, d.channel, nullptr);
      if (!to.ok()) return to.error();
      d.to = *to;
    }
  }
  Job job;
  job.verification_id = v->id;
  job.step = step_index;
  job.advance = false;  // a resend repeats the step; it does not move the workflow
  job.due_at = now;
  if (d.channel != step.channel || app.settings.sandbox) {
    // Another channel has its own geo permissions (monitor-mode flags are kept
    // only at start); a sandbox app's channel its log-only rule.
    auto phone = IsPhoneChannel(d.channel) ? ParsePhoneNumber(d.to) : PhoneNumber{};
    std::vector<std::string> flags;
    ApiError refused = Permit(app, d.channel, phone.ok() ? phone->region : "", &flags);
    if (!refused.ok()) return refused;
  }
  const int cooldown_s = app.settings.sandbox ? 0 : app.settings.resend_cooldown_s;
  auto t = store_.RecordResend(app.id, id, cooldown_s, d, job, now);
  if (!t.ok()) return FromStoreStatus(t.status());
  switch (t->refusal) {
    case Transition::Refusal::kNone:
      break;
    case Transition::Refusal::kNotPending:
      return NotPending(t->status);
    case Transition::Refusal::kMaxSends:
      return MakeError(ApiCode::kMaxSendsReached,
                       "this verification was sent " + std::to_string(t->send_count) + " times");
    case Transition::Refusal::kCooldown: {
      ApiError e = MakeError(ApiCode::kRateLimited, "wait before sending this code again");
      const auto wait = t->last_sent_at + seconds(cooldown_s) - now;
      e.retry_after_s =
          std::max(1, CeilSeconds(std::chrono::duration_cast<std::chrono::milliseconds>(wait)));
      return e;
    }
  }
  if (on_queued_) on_queued_();
  return Get(app, id);
}

ApiResult<Verification> VerificationService::Cancel(const App& app, const std::string& id) {
  auto t = store_.Cancel(app.id, id, clock_.Now());
  if (!t.ok()) return FromStoreStatus(t.status());
  if (!t->applied) return NotPending(t->status);
  return Get(app, id);
}

}  // namespace otpd
