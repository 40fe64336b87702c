#include "store/factor_attempt.h"

#include <nlohmann/json.hpp>

namespace otpd {

std::string UserEventJson(std::string_view user_id, const std::string& extra_key, int extra_value) {
  nlohmann::json j = {{"user_id", user_id}};
  if (!extra_key.empty()) j[extra_key] = extra_value;
  return j.dump();
}

AuditEntry ChangeAudit(std::string_view app_id, std::string_view actor, std::string_view action,
                       std::string_view subject, std::string_view detail, TimePoint at) {
  return AuditEntry{0,
                    at,
                    std::string(app_id),
                    std::string(actor),
                    std::string(action),
                    std::string(subject),
                    "done",
                    std::string(detail)};
}

AuditEntry VerificationAudit(std::string_view app_id, std::string_view actor,
                             std::string_view action, std::string_view verification_id,
                             std::string_view result, std::string_view recipient, TimePoint at,
                             std::string_view detail) {
  std::string text = recipient.empty() ? std::string() : "to " + MaskRecipient(recipient);
  if (!detail.empty()) text += (text.empty() ? "" : ", ") + std::string(detail);
  return AuditEntry{0,
                    at,
                    std::string(app_id),
                    std::string(actor),
                    std::string(action),
                    std::string(verification_id),
                    std::string(result),
                    std::move(text)};
}

std::string CheckResult(const Transition& t) {
  if (t.status == kApproved) return "valid";
  if (t.status == kMaxChecksReached) return "invalid, max_checks_reached";
  return "invalid";
}

Factor FactorFromToken(const Factor& request, const HardwareToken& token) {
  Factor f;
  f.id = request.id;
  f.app_id = request.app_id;
  f.user_id = request.user_id;
  f.type = token.type;
  f.status = kFactorUnverified;
  f.secret_sealed = token.secret_sealed;
  f.algorithm = token.algorithm;
  f.digits = token.digits;
  f.period = token.period;
  f.counter = token.counter;
  f.label = request.label;
  f.issuer = request.issuer;
  f.serial = token.serial;
  f.created_at = request.created_at;
  return f;
}

FactorAttemptOutcome RunFactorAttempt(const FactorAttempt& a, FactorAttemptOps& ops) {
  FactorAttemptOutcome out;
  const std::string user_subject = "user:" + a.user_id;
  auto audit = [&](const std::string& action, const std::string& subject, const std::string& result,
                   const std::string& detail) {
    ops.AddAudit(AuditEntry{0, a.now, a.app_id, "api", action, subject, result, detail});
  };

  ThrottleState state = ops.LoadThrottle();
  out.failures = state.failures;
  if (state.locked) {
    out.refusal = FactorAttemptOutcome::Refusal::kLocked;
    audit(a.action, user_subject, "locked", "refused: the user is locked");
    return out;
  }
  if (state.blocked_until && a.now < *state.blocked_until) {
    out.refusal = FactorAttemptOutcome::Refusal::kThrottled;
    out.retry_at = *state.blocked_until;
    audit(a.action, user_subject, "throttled", "refused: delay after failures");
    return out;
  }

  for (const FactorCandidate& c : a.candidates) {
    if (c.kind == FactorCandidate::Kind::kFactor) {
      FactorAttemptOps::FactorTry t = ops.TryFactor(c, a.now);
      if (t.replay) {
        out.replay = true;
        const bool totp = t.factor.type == kFactorTotp;
        audit("factor.replay", c.factor_id, "refused",
              totp ? "time step " + std::to_string(c.first.value_or(c.matched)) +
                         " at or below the last accepted " + std::to_string(t.factor.last_step)
                   : "counter " + std::to_string(c.first.value_or(c.matched)) +
                         " below the next expected " + std::to_string(t.factor.counter));
      }
      if (!t.applied) continue;
      out.valid = true;
      out.matched = c;
      out.factor_type = t.factor.type;
      out.factor_status = t.factor.status;
      if (c.activate) ops.AddEvent("factor.activated", FactorEventJson(t.factor));
      audit(a.action, c.factor_id, "valid", "");
      break;
    }
    std::optional<int> remaining = ops.TryRecoveryCode(c.code_hash, a.now);
    if (!remaining) continue;
    out.valid = true;
    out.matched = c;
    ops.AddEvent("recovery_code.used", UserEventJson(a.user_id, "remaining", *remaining));
    audit(a.action, user_subject, "valid", "recovery code used");
    break;
  }

  if (out.valid) {
    if (state.failures != 0 || state.blocked_until) ops.SaveThrottle(ThrottleState{});
    out.failures = 0;
    return out;
  }
  ++state.failures;
  out.failures = state.failures;
  const auto delay = ThrottleDelay(a.policy, state.failures);
  state.blocked_until.reset();
  if (delay.count() > 0) state.blocked_until = a.now + delay;
  if (state.failures >= a.policy.lock_failures) {
    state.locked = true;
    out.locked_now = true;
    ops.AddEvent("factor.locked", UserEventJson(a.user_id, "failures", state.failures));
    audit("user.lock", user_subject, "locked",
          std::to_string(state.failures) + " consecutive failures");
  }
  ops.SaveThrottle(state);
  audit(a.action, user_subject, "invalid",
        "consecutive failures: " + std::to_string(state.failures));
  return out;
}

}  // namespace otpd
