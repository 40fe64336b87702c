// Store: everything otpd keeps, behind one interface.
//
// Backends: SQLite (src/store/sqlite, the embedded default), in-memory
// (src/store/memory, for unit tests), PostgreSQL later. Every state change is an
// atomic conditional update in the backend (never read-modify-write in the
// caller), so correctness does not rest on one writer process: two concurrent
// right codes approve once, two wrong codes spend two checks, a job is claimed
// by one worker at a time (with a lease, so a crashed worker's job comes back).
//
// All methods are thread-safe. Times are passed in by the caller (injected clock).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otp/status.h"
#include "store/model.h"

namespace otpd {

using otp::Result;
using otp::Status;

// Outcome of a conditional change to a verification.
struct Transition {
  enum class Refusal { kNone, kNotPending, kMaxSends, kCooldown };
  bool applied = false;
  Refusal refusal = Refusal::kNone;
  std::string status;  // the verification's status after the call
  int check_count = 0;
  int send_count = 0;
  TimePoint last_sent_at;  // for cooldown answers
  bool correct = false;    // RecordCheck: the submitted code matched
  int max_checks = 0;      // RecordCheck
  std::string channel{};   // RecordCheck: the verification's channel (for metrics)
};

// A provider that did not take a message, before the one that did (or the last).
struct FailedAttempt {
  std::string provider;
  std::string error;
  TimePoint at;
};

// What the dispatcher did with one claimed job, written in one transaction.
// Each provider tried is one delivery of the verification: the job's queued
// delivery records the first, later providers get deliveries of their own.
struct JobOutcome {
  Job job;
  std::vector<FailedAttempt> failed_first;  // providers that refused, in the order tried
  std::string provider;
  std::string delivery_status;  // kDeliverySent, kDeliveryFailed, kDeliveryCanceled, ...
  std::string provider_message_id;
  std::string error;
  TimePoint at;
  std::optional<Job> next;  // the next workflow step, with its queued delivery
  std::optional<Delivery> next_delivery;
  bool undeliverable = false;  // every step failed: pending → undeliverable
};

// What one delivery report changed.
struct ReportOutcome {
  bool matched = false;  // a delivery carries this provider message id (else the report is
                         // kept and applied when the send is recorded: reports can win the race)
  bool applied = false;  // the delivery's status changed (false for repeats and late words)
  std::string verification_id;
  std::string channel;
  TimePoint sent_at;             // when the provider took the message
  bool next_step_fired = false;  // an undelivered/failed report brought the next step forward
  bool undeliverable = false;    // ... or it was the last step and nothing got through
};

// A value sealed with otp::Keyring (otp/sealing.h) somewhere in the store: what
// master-key rotation re-wraps. Each kind is one column of one table.
inline constexpr std::string_view kSealedVerificationCode = "verification_code";
inline constexpr std::string_view kSealedFactorSecret = "factor_secret";
inline constexpr std::string_view kSealedHardwareTokenSecret = "hardware_token_secret";
// Every kind, in the order rotation re-wraps them.
inline constexpr std::string_view kSealedKinds[] = {kSealedVerificationCode, kSealedFactorSecret,
                                                    kSealedHardwareTokenSecret};

struct SealedValue {
  std::string kind;
  std::string id;  // the row's id (a hardware token's: its serial)
  // What the blob is bound to: a verification's id, FactorSealingContext(id) or,
  // for a factor bound to a hardware token and the token itself,
  // HardwareTokenSealingContext(serial).
  std::string associated_data;
  std::string sealed;
};

// Replace `old_sealed` by `new_sealed`, only if the row still holds `old_sealed`.
struct SealedReplacement {
  std::string kind;
  std::string id;
  std::string old_sealed;
  std::string new_sealed;
};

// One way a submitted token code could be right, found by the caller (which
// unseals the secrets and computes codes); the store applies it only if its
// conditional update still holds, so concurrent attempts with the same code
// succeed once.
struct FactorCandidate {
  enum class Kind { kFactor, kRecoveryCode };
  Kind kind = Kind::kFactor;
  std::string factor_id;  // kFactor
  // kFactor: the TOTP time step or HOTP counter the code matched. A resync
  // passes its second code's value here and its first code's in `first`.
  std::int64_t matched = 0;
  std::optional<std::int64_t> first;  // default: `matched`
  // kFactor: the factor must be unverified and becomes active (activation);
  // otherwise it must be active.
  bool activate = false;
  std::string code_hash;              // kRecoveryCode: keyed hash of the normalised code
  std::optional<std::int64_t> drift;  // kFactor, TOTP resync: the factor's new drift
};

// One attempt (activate, verify or resync) for a user.
//
// Applied in one transaction: refused without counting if the user is locked
// or blocked; else the candidates are tried in order, each a conditional update
// (TOTP: last_step < first, then last_step = matched; HOTP: counter <= first,
// then counter = matched + 1; recovery code: unused, then used). The first that
// applies wins and clears the failure count; if none applies, a failure is
// counted (delay and lock by `policy`). A TOTP candidate at or below the last
// accepted step is a replay: refused and audited.
struct FactorAttempt {
  std::string app_id;
  std::string user_id;
  std::string action;  // for the audit trail: "factor.verify", "factor.activate", "factor.resync"
  std::vector<FactorCandidate> candidates;
  ThrottlePolicy policy;
  TimePoint now{};
};

struct FactorAttemptOutcome {
  enum class Refusal { kNone, kThrottled, kLocked };
  Refusal refusal = Refusal::kNone;
  TimePoint retry_at{};  // kThrottled: when attempts are taken again
  bool valid = false;
  std::optional<FactorCandidate> matched;  // the candidate that applied
  std::string factor_type;                 // its factor's type ("totp"/"hotp"), if a factor
  std::string factor_status;               // its factor's status after the attempt
  bool replay = false;                     // a TOTP candidate was a replayed time step
  int failures = 0;                        // consecutive failures after the attempt
  bool locked_now = false;                 // this attempt locked the user
};

// Start limits checked and counted in CreateVerification's transaction, so that
// concurrent starts cannot all pass (SECURITY.md 6, 10, 30).
struct StartLimits {
  int max_per_recipient = 0;  // starts of the app to v.to at or after recipient_since; 0 = none
  TimePoint recipient_since{};
  int max_per_ip = 0;  // starts of the app from v.ip at or after ip_since; 0 (or no ip) = none
  TimePoint ip_since{};
};

struct StartOutcome {
  enum class Refusal { kNone, kRecipient, kIp };
  Refusal refusal = Refusal::kNone;  // kNone: stored
  TimePoint retry_at{};              // refused: when the window has room again
};

// Pumping-guard counters (SECURITY.md 30): one bucket per whole minute.
inline constexpr std::string_view kFraudScopePrefix = "prefix";
inline constexpr std::string_view kFraudScopeRegion = "region";

struct FraudBucket {
  std::int64_t minute = 0;  // unix seconds / 60
  int starts = 0;
  int approvals = 0;
};

// What the guard reads before a start.
struct FraudCounts {
  std::vector<FraudBucket> prefix;  // oldest first
  std::vector<FraudBucket> region;  // oldest first
  bool safe_listed = false;         // an operator safe-listed the number or a prefix of it
};

// One prefix or region of an app, summed over a window (`otpctl fraud status`).
struct FraudTotals {
  std::string app_id;
  std::string scope;  // kFraudScopePrefix | kFraudScopeRegion
  std::string key;    // "+3069123" or "GR"
  int starts = 0;
  int approvals = 0;
};

struct SafeListEntry {
  std::string app_id;
  std::string entry;  // a whole E.164 number or a prefix of one
  TimePoint created_at{};
};

struct TokenGrant {
  int granted = 0;      // tokens taken, 0..want
  TimePoint next_at{};  // granted == 0: when the next whole token is due
};

class Store {
 public:
  virtual ~Store() = default;

  // Creates or upgrades the schema. Idempotent.
  virtual Status Migrate() = 0;
  // OK when the store answers (readiness).
  virtual Status Ping() = 0;

  // --- apps and keys
  // AlreadyExists when the name is taken.
  virtual Status CreateApp(const App& app) = 0;
  virtual Status UpdateApp(const App& app) = 0;
  // By id or by name; NotFound otherwise.
  virtual Result<App> GetApp(std::string_view id_or_name) = 0;
  virtual Result<std::vector<App>> ListApps() = 0;
  virtual Status CreateKey(const ApiKey& key) = 0;
  // NotFound for an unknown key id.
  virtual Status RevokeKey(std::string_view key_id, TimePoint now) = 0;
  // The app owning the unrevoked key with this hash; NotFound otherwise.
  virtual Result<App> AppForKeyHash(std::string_view key_hash) = 0;

  // --- verifications
  // The record for (app, key) created at or after `not_before`, if any.
  virtual Result<std::optional<IdempotencyRecord>> GetIdempotency(std::string_view app_id,
                                                                  std::string_view key,
                                                                  TimePoint not_before) = 0;
  // Stores `v` with its first delivery (v.deliveries[0], queued) and the job
  // that sends it, plus `idempotency` if given, in one transaction, unless
  // `limits` refuse it (counted in that transaction: concurrent starts cannot
  // all pass). A stored start counts in the pumping-guard buckets of
  // v.guard_prefix and v.guard_region (when not empty) at v.created_at.
  // AlreadyExists if the idempotency key was stored meanwhile.
  virtual Result<StartOutcome> CreateVerification(const Verification& v, const Job& first_job,
                                                  const IdempotencyRecord* idempotency,
                                                  const StartLimits& limits) = 0;
  // With deliveries. An empty app_id matches any app (dispatcher use).
  virtual Result<Verification> GetVerification(std::string_view app_id, std::string_view id) = 0;
  // The newest pending verification of the app for `to`; NotFound if none.
  virtual Result<Verification> NewestPending(std::string_view app_id, std::string_view to) = 0;

  // One check, in one transaction: compares `code_hash` with the stored hash in
  // constant time and spends a check; a right code approves (and counts an
  // approval in the verification's pumping-guard buckets), the max_checks-th
  // wrong code moves to max_checks_reached. Refused (kNotPending) unless pending
  // and now < expires_at (an overdue verification is moved to expired).
  virtual Result<Transition> RecordCheck(std::string_view app_id, std::string_view id,
                                         std::string_view code_hash, TimePoint now) = 0;
  // RecordCheck answered through `done` (exactly once, on any thread, maybe
  // before this returns), so that no thread waits for the commit: the hot path
  // of the API. Backends with a writer thread call `done` from it, so `done`
  // must be quick and must not call the store. By default: RecordCheck, inline.
  virtual void RecordCheckAsync(std::string_view app_id, std::string_view id,
                                std::string_view code_hash, TimePoint now,
                                std::function<void(Result<Transition>)> done) {
    done(RecordCheck(app_id, id, code_hash, now));
  }
  // A resend: counts a send and queues `job` with `delivery`, if pending, under
  // max_sends and out of the cooldown; else refused with the reason.
  virtual Result<Transition> RecordResend(std::string_view app_id, std::string_view id,
                                          int cooldown_s, const Delivery& delivery, const Job& job,
                                          TimePoint now) = 0;
  virtual Result<Transition> Cancel(std::string_view app_id, std::string_view id,
                                    TimePoint now) = 0;
  // Moves a pending verification past expires_at to expired.
  virtual Result<Transition> ExpireIfDue(std::string_view app_id, std::string_view id,
                                         TimePoint now) = 0;

  // --- request rate and the pumping guard
  // Takes up to `want` whole tokens from the app's request bucket, refilled
  // at `rate` per second up to `burst` (full at first use), atomically across
  // every node sharing the store.
  virtual Result<TokenGrant> TakeRequestTokens(std::string_view app_id, int rate, int burst,
                                               int want, TimePoint now) = 0;
  // The app's buckets for `prefix` and `region` from the minute of `since` on
  // (either may be "": none read), and whether `number` is safe-listed.
  virtual Result<FraudCounts> GetFraudCounts(std::string_view app_id, std::string_view prefix,
                                             std::string_view region, std::string_view number,
                                             TimePoint since) = 0;
  // Every prefix and region of `app_id` with starts from the minute of
  // `since` on, summed; most starts first.
  virtual Result<std::vector<FraudTotals>> ListFraudTotals(std::string_view app_id,
                                                           TimePoint since) = 0;
  // Safe-lists a number or prefix for the app (idempotent).
  virtual Status AddSafeListEntry(const SafeListEntry& entry) = 0;
  // NotFound when the entry was not safe-listed.
  virtual Status RemoveSafeListEntry(std::string_view app_id, std::string_view entry) = 0;
  // The app's entries (empty app_id: every app's), by app and entry.
  virtual Result<std::vector<SafeListEntry>> ListSafeList(std::string_view app_id) = 0;

  // --- delivery jobs
  // Claims up to `limit` jobs due at `now`, leasing them until `lease_until`.
  virtual Result<std::vector<Job>> ClaimJobs(TimePoint now, TimePoint lease_until, int limit) = 0;
  // When the earliest job is due (nullopt if there is none).
  virtual Result<std::optional<TimePoint>> NextJobDue() = 0;
  // Records a job's outcome and removes the job, atomically. A delivery report
  // that arrived before the send was recorded is applied here.
  virtual Status FinishJob(const JobOutcome& outcome) = 0;
  // FinishJob answered through `done` (exactly once, maybe on another thread,
  // maybe before this returns; keep `done` quick), so that a dispatcher worker
  // moves on to its next send while the disk syncs. By default: inline.
  virtual void FinishJobAsync(const JobOutcome& outcome, std::function<void(const Status&)> done) {
    done(FinishJob(outcome));
  }
  // Queued delivery jobs (for /metrics).
  virtual Result<std::int64_t> CountJobs() = 0;

  // --- sealed values (master-key rotation, SPEC §6)
  // Up to `limit` values of `kind` whose blob is not sealed with `except_key_id`,
  // ordered by id, with id > `after_id`. InvalidArgument for an unknown kind.
  virtual Result<std::vector<SealedValue>> ListSealed(std::string_view kind,
                                                      std::string_view except_key_id,
                                                      std::string_view after_id, int limit) = 0;
  // Applies each replacement whose row still holds its old blob, in one
  // transaction; returns how many were applied (the others changed meanwhile).
  virtual Result<int> ReplaceSealed(const std::vector<SealedReplacement>& replacements) = 0;
  // How many sealed values (of every kind) each key id holds.
  virtual Result<std::map<std::string, std::int64_t>> CountSealedByKeyId() = 0;

  // --- delivery reports
  // Applies reports in one transaction. A report moves a `sent` delivery to its
  // status (later reports for the same delivery change nothing). An undelivered
  // or failed report on a pending verification brings its next workflow step
  // forward to `now`; on the last step with no other delivery sent or
  // delivered, the verification becomes undeliverable. One outcome per report.
  virtual Result<std::vector<ReportOutcome>> ApplyDeliveryReports(
      const std::vector<DeliveryReport>& reports, TimePoint now) = 0;
  // --- factors (SPEC §4.2)
  // Stores a new factor and writes its factor.created event. AlreadyExists for a taken id.
  virtual Status CreateFactor(const Factor& factor) = 0;
  // NotFound unless the factor exists for this app and user.
  virtual Result<Factor> GetFactor(std::string_view app_id, std::string_view user_id,
                                   std::string_view factor_id) = 0;
  // Oldest first.
  virtual Result<std::vector<Factor>> ListFactors(std::string_view app_id,
                                                  std::string_view user_id) = 0;
  // Deletes the factor (a bound hardware token is freed, keeping its counter)
  // and writes factor.deleted. NotFound unless it exists for this app and user.
  virtual Status DeleteFactor(std::string_view app_id, std::string_view user_id,
                              std::string_view factor_id, TimePoint now) = 0;
  // Binds the unassigned, unrevoked hardware token `serial` to a new factor,
  // atomically: the factor takes `factor`'s id, app, user, label, issuer and
  // created_at, and the token's type, parameters, counter and sealed secret
  // (the token's blob is kept). NotFound for an unknown serial;
  // FailedPrecondition if revoked, bound already, or not of `factor.type`.
  virtual Result<Factor> BindHardwareToken(const Factor& factor, std::string_view serial) = 0;

  // One attempt, atomically (see FactorAttempt).
  virtual Result<FactorAttemptOutcome> RecordFactorAttempt(const FactorAttempt& attempt) = 0;
  // RecordFactorAttempt answered through `done` (exactly once, on any thread,
  // maybe before this returns), so that no thread waits for the commit; the
  // same contract as RecordCheckAsync. By default: RecordFactorAttempt, inline.
  virtual void RecordFactorAttemptAsync(FactorAttempt attempt,
                                        std::function<void(Result<FactorAttemptOutcome>)> done) {
    done(RecordFactorAttempt(attempt));
  }
  // What a code matches among `factors` (the candidates, or an error that ends
  // the attempt with nothing written). Called once, on any thread.
  using FactorMatcher =
      std::function<Result<std::vector<FactorCandidate>>(const std::vector<Factor>& factors)>;
  // Reads the user's factors (oldest first), or only `factor_id` (NotFound
  // unless it is the user's), puts what `match` makes of them before
  // `attempt.candidates`, and records the attempt, answering like
  // RecordFactorAttemptAsync. By default a read, then RecordFactorAttemptAsync;
  // SQLite does both in one writer transaction, where the factor's pages are
  // cached and the match sees the state the update is made against.
  virtual void MatchFactorAttemptAsync(FactorAttempt attempt,
                                       const std::optional<std::string>& factor_id,
                                       const FactorMatcher& match,
                                       std::function<void(Result<FactorAttemptOutcome>)> done) {
    Result<std::vector<Factor>> factors = std::vector<Factor>{};
    if (!factor_id) {
      factors = ListFactors(attempt.app_id, attempt.user_id);
    } else if (Result<Factor> one = GetFactor(attempt.app_id, attempt.user_id, *factor_id);
               one.ok()) {
      factors->push_back(std::move(one).value());
    } else {
      factors = one.status();
    }
    if (!factors.ok()) return done(factors.status());
    Result<std::vector<FactorCandidate>> matched = match(*factors);
    if (!matched.ok()) return done(matched.status());
    attempt.candidates.insert(attempt.candidates.begin(), matched->begin(), matched->end());
    RecordFactorAttemptAsync(std::move(attempt), std::move(done));
  }

  // --- recovery codes
  // Replaces the user's set with `code_hashes` atomically; writes recovery_codes.issued.
  virtual Status ReplaceRecoveryCodes(std::string_view app_id, std::string_view user_id,
                                      const std::vector<std::string>& code_hashes,
                                      TimePoint now) = 0;
  virtual Result<std::vector<RecoveryCode>> ListRecoveryCodes(std::string_view app_id,
                                                              std::string_view user_id) = 0;

  // --- throttling
  // The user's state (all defaults when there is none).
  virtual Result<ThrottleState> GetThrottle(std::string_view app_id, std::string_view user_id) = 0;
  // Clears the lock, delay and failure count; audited with `actor`. Returns
  // whether the user was locked.
  virtual Result<bool> UnlockUser(std::string_view app_id, std::string_view user_id,
                                  std::string_view actor, TimePoint now) = 0;

  // --- webhook outbox (SPEC §5)
  // Claims up to `limit` pending events due at `now` whose app has a webhook_url
  // and is not disabled, oldest due first, leasing them until `lease_until` and
  // counting the try in `attempts` (so a crashed sender's events come back after
  // the lease). Due events of apps without an enabled webhook become skipped.
  virtual Result<std::vector<WebhookJob>> ClaimWebhookEvents(TimePoint now, TimePoint lease_until,
                                                             int limit) = 0;
  // When the earliest pending event is due or its lease ends (nullopt if none).
  virtual Result<std::optional<TimePoint>> NextWebhookDue() = 0;
  // Records one try, if the event is still pending at that try (returns false
  // for a stale outcome: the lease ended and another sender took the event).
  // `disable_endpoint` disables the app's webhook and gives up its other
  // pending events, in the same transaction.
  virtual Result<bool> FinishWebhookEvent(const WebhookOutcome& outcome) = 0;
  // Enables the app's webhook again after a 410; NotFound for an unknown app.
  virtual Status EnableWebhook(std::string_view app_id) = 0;

  // Moves up to `limit` pending verifications with since < expires_at <= now
  // to expired (with their verification.expired events and audit rows);
  // returns how many. Writes nothing when none is due.
  virtual Result<int> ExpireOverdue(TimePoint since, TimePoint now, int limit) = 0;

  // --- events and audit
  // Events of `app_id` (empty: every app) with id > after_id, oldest first.
  virtual Result<std::vector<Event>> ListEvents(std::string_view app_id, std::int64_t after_id,
                                                int limit) = 0;
  virtual Status AppendAudit(const AuditEntry& entry) = 0;
  // The newest `limit` audit entries of `app_id` (empty: every app), oldest first.
  virtual Result<std::vector<AuditEntry>> ListAudit(std::string_view app_id, int limit) = 0;

  // --- hardware tokens inventory
  // All or nothing: AlreadyExists (message names the serial) if any serial exists already.
  virtual Status ImportHardwareTokens(const std::vector<HardwareToken>& tokens) = 0;
  virtual Result<std::vector<HardwareToken>> ListHardwareTokens(bool unassigned_only) = 0;
  // NotFound for an unknown serial. A revoked token can no longer be bound; a bound one's factor is
  // deleted.
  virtual Status RevokeHardwareToken(std::string_view serial, TimePoint now) = 0;
};

}  // namespace otpd
