// The rules of Store::RecordFactorAttempt, written once for every backend.
//
// A backend runs RunFactorAttempt inside its own transaction (SQLite: on the
// writer thread; memory: under its mutex) and supplies the few reads and
// conditional updates it needs through FactorAttemptOps. Internal to the store.
#pragma once

#include <optional>
#include <string>

#include "store/store.h"

namespace otpd {

class FactorAttemptOps {
 public:
  virtual ~FactorAttemptOps() = default;

  virtual ThrottleState LoadThrottle() = 0;
  // Writes the state (creating the row if needed).
  virtual void SaveThrottle(const ThrottleState& state) = 0;

  struct FactorTry {
    bool applied = false;
    bool replay = false;  // the factor is there, but its step/counter is past `first`
    Factor factor;        // after the update (applied) or as found (replay)
  };
  // The conditional update of one factor candidate (see FactorAttempt).
  virtual FactorTry TryFactor(const FactorCandidate& candidate, TimePoint now) = 0;
  // Marks an unused recovery code used; the number still unused, or nullopt
  // when no unused code has this hash.
  virtual std::optional<int> TryRecoveryCode(const std::string& code_hash, TimePoint now) = 0;

  virtual void AddEvent(const std::string& type, const std::string& data_json) = 0;
  virtual void AddAudit(const AuditEntry& entry) = 0;
};

FactorAttemptOutcome RunFactorAttempt(const FactorAttempt& attempt, FactorAttemptOps& ops);

// The factor a hardware token becomes when bound: `request`'s id, app, user,
// label, issuer and created_at; the token's type, parameters, counter, serial
// and sealed secret (the token's blob is kept, see Factor).
Factor FactorFromToken(const Factor& request, const HardwareToken& token);

// The audit line of a factor state change made outside an attempt (create,
// bind, delete, recovery codes issued).
AuditEntry ChangeAudit(std::string_view app_id, std::string_view actor, std::string_view action,
                       std::string_view subject, std::string_view detail, TimePoint at);

// The audit line of a verification decision (start, check, resend, cancel,
// expiry): the recipient masked (MaskRecipient), never a code.
AuditEntry VerificationAudit(std::string_view app_id, std::string_view actor,
                             std::string_view action, std::string_view verification_id,
                             std::string_view result, std::string_view recipient, TimePoint at,
                             std::string_view detail = "");
// The audit result of an applied check: "valid", "invalid" or
// "invalid, max_checks_reached".
std::string CheckResult(const Transition& t);

// The JSON `data` of user-level events ({"user_id", ...extra}).
std::string UserEventJson(std::string_view user_id, const std::string& extra_key = "",
                          int extra_value = 0);

}  // namespace otpd
