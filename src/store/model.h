// The records otpd keeps: apps, API keys, verifications, deliveries, jobs,
// factors (TOTP/HOTP tokens), recovery codes, throttles, hardware tokens,
// events (the webhook outbox) and the audit trail.
// Plain values, copied freely; no behaviour beyond (de)serialisation helpers.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "otp/clock.h"

namespace otpd {

using otp::TimePoint;

// Every channel otpd knows (SPEC §2), in the order the docs list them.
inline constexpr std::array<std::string_view, 7> kChannelNames = {
    "sms", "voice", "email", "whatsapp", "viber", "push", "flashcall"};

// True for a name in kChannelNames.
inline bool IsKnownChannel(std::string_view channel) {
  return std::find(kChannelNames.begin(), kChannelNames.end(), channel) != kChannelNames.end();
}

// One step of a verification's delivery workflow.
struct WorkflowStep {
  std::string channel;  // one of kChannelNames
  int timeout_s = 60;   // wait this long for approval before the next step fires
  std::string to;       // this step's own recipient; empty = the verification's `to`

  bool operator==(const WorkflowStep&) const = default;
};

// ISO 3166 alpha-2 region lists of geo permissions (SPEC §6, SECURITY.md 29).
struct CountryLists {
  std::vector<std::string> allowed;  // non-empty: only these regions
  std::vector<std::string> blocked;  // never these regions

  bool operator==(const CountryLists&) const = default;
};

// Geo permissions of an app: the region libphonenumber gives a phone
// recipient is checked on every phone channel's step.
struct GeoPermissions {
  CountryLists all;  // every phone channel
  // A channel's own non-empty list replaces the matching list of `all` for it.
  std::map<std::string, CountryLists> channels;
  std::string mode = "block";  // "block": 403 country_blocked; "monitor": allowed and flagged

  bool operator==(const GeoPermissions&) const = default;
};

// The SMS-pumping guard of an app (SECURITY.md 30): starts and approvals per
// number prefix (the E.164 number without its last 4 digits) and per region,
// over a sliding window of whole minutes.
struct FraudPolicy {
  std::string mode = "block";   // "block" (429 rate_limited) | "monitor" (flagged) | "off"
  int prefix_threshold = 30;    // starts to one prefix in the window before its conversion counts
  int region_threshold = 0;     // the same per region; 0 = counted and shown, never judged
  int min_conversion_pct = 20;  // approved/started under this percentage blocks, 0..100
  int window_s = 3600;          // 60..86400, a whole number of minutes

  bool operator==(const FraudPolicy&) const = default;
};

// Per-app defaults and limits. Every field has a default, so an app created
// with no options works.
struct AppSettings {
  std::vector<WorkflowStep> workflow = {{"sms", 60, ""}};
  int code_length = 6;           // 4..10
  int ttl_s = 600;               // 60..86400
  int max_checks = 5;            // wrong codes before max_checks_reached
  int max_sends = 5;             // sends (first + resends) per verification
  int resend_cooldown_s = 30;    // between two sends of one verification
  int totp_window = 1;           // TOTP steps accepted either side of now, 0..10 (SPEC §4.2)
  int starts_per_recipient = 5;  // starts per recipient per window
  int starts_window_s = 600;
  int starts_per_ip = 10;  // starts per end-user IP (the start's "ip") per ip_window_s; 0 = off
  int ip_window_s = 600;
  // Per-app request rate: a token bucket shared by every node, refilled at
  // request_rate per second up to request_burst. 0 = off.
  int request_rate = 100;
  int request_burst = 200;
  // Test mode: messages go only through `log` providers; the per-recipient and
  // per-IP start limits, the resend cooldown and the pumping guard are relaxed
  // (README "Limits and fraud protection" lists what still holds).
  bool sandbox = false;
  GeoPermissions geo;
  FraudPolicy fraud;
  std::string webhook_url;  // empty = none
  // Message templates that replace the built-in ones, keyed "channel:locale"
  // (e.g. "sms:en"); mustache over the variables of SPEC §4.1.
  std::map<std::string, std::string> templates;

  bool operator==(const AppSettings&) const = default;
};

// "GR,CY" → {"GR", "CY"}: the items of a comma-separated list, empty ones skipped.
std::vector<std::string> SplitCommaList(std::string_view text);

// Serialises settings as a JSON object (the store keeps it as text).
std::string AppSettingsToJson(const AppSettings& settings);
// Missing keys keep their defaults; returns false on malformed JSON.
bool AppSettingsFromJson(const std::string& json, AppSettings* settings);
std::string WorkflowToJson(const std::vector<WorkflowStep>& workflow);
// The same as a JSON value: [{"channel","timeout_s","to"?}, ...] (the API's shape).
nlohmann::json WorkflowJson(const std::vector<WorkflowStep>& workflow);
bool WorkflowFromJson(const std::string& json, std::vector<WorkflowStep>* workflow);

struct App {
  std::string id;    // "app_…"
  std::string name;  // unique
  AppSettings settings;
  std::string webhook_secret;  // "whsec_…"
  TimePoint created_at;
  TimePoint updated_at;
  // Set when the endpoint answered 410 Gone (SPEC §5): no events are sent until
  // `otpctl app update --webhook-url` enables it again.
  std::optional<TimePoint> webhook_disabled_at;
  std::string webhook_disabled_reason;
};

struct ApiKey {
  std::string id;  // "key_…"
  std::string app_id;
  std::string key_hash;  // hex SHA-256 of the key
  TimePoint created_at;
  std::optional<TimePoint> revoked_at;
};

// Verification statuses (SPEC §4.1).
inline constexpr const char* kPending = "pending";
inline constexpr const char* kApproved = "approved";
inline constexpr const char* kCanceled = "canceled";
inline constexpr const char* kExpired = "expired";
inline constexpr const char* kMaxChecksReached = "max_checks_reached";
inline constexpr const char* kUndeliverable = "undeliverable";

// Delivery statuses (SPEC §4.1).
inline constexpr const char* kDeliveryQueued = "queued";
inline constexpr const char* kDeliverySent = "sent";
inline constexpr const char* kDeliveryDelivered = "delivered";
inline constexpr const char* kDeliveryUndelivered = "undelivered";
inline constexpr const char* kDeliveryFailed = "failed";
inline constexpr const char* kDeliveryCanceled = "canceled";

// Verification flags (the `flags` array of the verification object).
inline constexpr const char* kFlagCountryBlocked = "country_blocked";
inline constexpr const char* kFlagPumpingSuspected = "pumping_suspected";

struct Delivery {
  std::int64_t id = 0;
  int step = 0;  // workflow step index (resends repeat a step)
  std::string channel;
  std::string to;
  std::string provider;  // empty while queued
  std::string status = kDeliveryQueued;
  std::string provider_message_id;
  std::string error;  // provider's error text, never a code
  TimePoint created_at;
  TimePoint updated_at;
};

// A provider's word on a message it took (SPEC §4.1 delivery reports): an SMPP
// deliver_sm receipt, or a report POSTed to /v1/providers/{name}/dlr.
struct DeliveryReport {
  std::string provider;             // the provider's configured name
  std::string provider_message_id;  // as the provider answered the send
  std::string status;               // kDeliveryDelivered, kDeliveryUndelivered or kDeliveryFailed
  std::string detail;               // the provider's own word ("UNDELIV", ...), for logs
};

struct Verification {
  std::string id;  // "ver_…"
  std::string app_id;
  std::string to;  // E.164 or email
  std::string status = kPending;
  std::string channel;  // channel of the latest step fired (or resend queued)
  std::string locale;
  std::vector<WorkflowStep> workflow;
  std::string code_hash;    // keyed hash, bound to the id
  std::string code_sealed;  // AES-GCM sealed code for (re)sending; cleared once not pending
  int current_step = 0;
  int send_count = 0;
  int check_count = 0;
  int max_checks = 5;
  int max_sends = 5;
  std::string metadata_json = "{}";
  std::string ip;  // the end user's IP the start carried ("" = none)
  // What a guard in monitor mode let through: kFlagCountryBlocked, kFlagPumpingSuspected.
  std::vector<std::string> flags;
  // The pumping-guard counters this verification counts in ("" = not counted:
  // not a phone number, sandbox, guard off, or safe-listed).
  std::string guard_prefix;
  std::string guard_region;
  TimePoint expires_at;
  TimePoint created_at;
  TimePoint updated_at;
  TimePoint last_sent_at;
  std::vector<Delivery> deliveries;  // oldest first; filled by Get/Find
};

// A unit of delivery work: send step `step` of a verification. Jobs are claimed
// with a lease, so a crashed worker's job is taken again after the lease.
struct Job {
  std::int64_t id = 0;
  std::string verification_id;
  std::int64_t delivery_id = 0;  // the queued delivery this job fills in
  int step = 0;
  bool advance = true;  // after sending, schedule the next workflow step
  TimePoint due_at;
  int attempts = 0;
};

// What a conditional state change found, when it could not apply.
struct StateConflict {
  std::string status;  // the verification's current status
};

struct IdempotencyRecord {
  std::string app_id;
  std::string key;
  std::string body_hash;
  std::string response;  // the first answer's body
  int response_status = 201;
  TimePoint created_at;
};

// Factor types and statuses (SPEC §4.2).
inline constexpr const char* kFactorTotp = "totp";
inline constexpr const char* kFactorHotp = "hotp";
inline constexpr const char* kFactorUnverified = "unverified";
inline constexpr const char* kFactorActive = "active";

// A token a person holds: an authenticator app's TOTP/HOTP seed, or a bound
// hardware token. The secret is sealed with the app's otp::Keyring: for a
// generated secret the associated data is FactorSealingContext(id); a bound
// hardware token keeps the token's own blob (HardwareTokenSealingContext(serial)).
struct Factor {
  std::string id;  // "fac_…"
  std::string app_id;
  std::string user_id;
  std::string type = kFactorTotp;  // kFactorTotp | kFactorHotp
  std::string status = kFactorUnverified;
  std::string secret_sealed;
  std::string algorithm = "SHA1";  // SHA1 | SHA256 | SHA512
  int digits = 6;
  int period = 30;              // TOTP seconds per step
  std::int64_t counter = 0;     // HOTP: the next counter value expected
  std::int64_t last_step = -1;  // TOTP: the last accepted time step (-1: none yet)
  std::int64_t drift = 0;       // TOTP: steps the token's clock runs ahead (set by resync)
  std::string label;
  std::string issuer;
  std::string serial;  // the bound hardware token's serial; empty for a generated secret
  TimePoint created_at{};
  std::optional<TimePoint> activated_at;
};

// Associated data of a factor's sealed secret (binds the blob to its row).
inline std::string FactorSealingContext(std::string_view factor_id) {
  return "factor:" + std::string(factor_id);
}
inline std::string HardwareTokenSealingContext(std::string_view serial) {
  return "hwtoken:" + std::string(serial);
}

// One recovery code of a user: only its keyed hash (bound to app and user).
struct RecoveryCode {
  std::string code_hash;
  TimePoint created_at{};
  std::optional<TimePoint> used_at;
};

// Consecutive failed token checks of one (app, user) (SPEC §4.2, SECURITY.md 7-9).
struct ThrottleState {
  int failures = 0;
  std::optional<TimePoint> blocked_until;  // attempts before this answer user_throttled
  bool locked = false;                     // until `otpctl user unlock`
};

// How failures turn into delays and a lock. Defaults are SPEC §4.2's.
struct ThrottlePolicy {
  int free_failures = 5;    // the Nth consecutive failure starts the first delay
  int base_delay_s = 30;    // doubled with each further failure
  int max_delay_s = 3600;   // cap
  int lock_failures = 100;  // this many consecutive failures lock the user
};

// The delay that follows the `failures`-th consecutive failure (0 s before
// policy.free_failures).
std::chrono::seconds ThrottleDelay(const ThrottlePolicy& policy, int failures);

// Token-bucket arithmetic of Store::TakeRequestTokens, in thousandths of a
// token: the bucket `milli` last written at `updated_at`, refilled at `rate`
// tokens per second up to `burst` tokens by `now`.
std::int64_t RefilledMilliTokens(std::int64_t milli, TimePoint updated_at, int rate, int burst,
                                 TimePoint now);
// When a bucket holding `milli` at `now` holds a whole token (rate > 0).
TimePoint NextTokenAt(std::int64_t milli, int rate, TimePoint now);

// Where an event stands in the webhook outbox.
inline constexpr const char* kEventPending = "pending";      // to be sent (or retried)
inline constexpr const char* kEventDelivered = "delivered";  // a 2xx answered
inline constexpr const char* kEventFailed = "failed";        // given up (tries spent, or 410)
inline constexpr const char* kEventSkipped = "skipped";      // the app had no enabled webhook

// One webhook event (SPEC §5), written in the same transaction as the state
// change it reports; the webhook sender delivers it.
struct Event {
  std::int64_t id = 0;  // increasing
  std::string app_id;
  std::string type;  // "verification.approved", "factor.activated", ...
  std::string data_json = "{}";
  TimePoint created_at{};
  std::string state = kEventPending;
  int attempts = 0;             // sends tried (a claim counts one)
  TimePoint next_attempt_at{};  // when a pending event is due
  int last_status = 0;          // HTTP status of the last try (0: none, or no answer)
  std::string last_error;       // why the last try failed (never a response body)
};

// An event claimed for sending, with what the sender needs of its app.
struct WebhookJob {
  Event event;  // `attempts` counts this try
  std::string url;
  std::string secret;  // the app's "whsec_…"
};

// What one send of a claimed event came to (Store::FinishWebhookEvent).
struct WebhookOutcome {
  std::int64_t event_id = 0;
  int attempt = 0;                    // the claim's `attempts`: a stale worker's outcome is ignored
  std::string state = kEventPending;  // kEventDelivered, kEventFailed, or kEventPending (retry)
  TimePoint next_attempt_at{};        // kEventPending: when to try again
  int http_status = 0;
  std::string error;
  bool disable_endpoint = false;  // 410 Gone: disable the app's webhook (and give up)
  TimePoint at{};
};

// One line of the append-only audit trail. Never a secret or a code.
struct AuditEntry {
  std::int64_t id = 0;
  TimePoint at{};
  std::string app_id;
  std::string actor;    // "api", "otpctl"
  std::string action;   // "factor.verify", "factor.replay", "user.unlock", ...
  std::string subject;  // "user:<id>" or a factor id
  std::string result;   // "valid", "invalid", "refused", ...
  std::string detail;
};

// A hardware token imported from its vendor's seed file (PSKC or CSV).
struct HardwareToken {
  std::string serial;         // unique
  std::string type;           // "hotp" | "totp"
  std::string secret_sealed;  // Keyring blob, associated data "hwtoken:" + serial
  std::string algorithm = "SHA1";
  int digits = 6;
  int period = 30;           // totp
  std::int64_t counter = 0;  // hotp
  TimePoint imported_at{};
  std::string app_id, user_id, factor_id;  // empty while unassigned
  std::optional<TimePoint> revoked_at;
};

// The `data` of factor events: the factor without its secret.
std::string FactorEventJson(const Factor& factor);

// For logs, audit and webhooks: all but the last 4 digits of a number masked
// ("+*******5678"); an email keeps its first character and domain ("a***@example.com").
std::string MaskRecipient(std::string_view to);

// The verification object of SPEC §4.1 (never the code or its hash).
nlohmann::json VerificationJson(const Verification& v);
// The `data` of verification.* and delivery.updated events: VerificationJson
// with every recipient masked (SECURITY.md 31) and the metadata echoed.
std::string VerificationEventJson(const Verification& v);

}  // namespace otpd
