// Webhooks (SPEC §5, SECURITY.md 26-28): Standard Webhooks signing, the retry
// schedule, the SSRF guard on targets, and the sender that drains the store's
// event outbox.
//
// Events are rows written in the transaction of the change they report
// (src/store). WebhookSender claims due events of apps with an enabled
// webhook_url with a lease (a crashed or restarted node's events come back
// when the lease ends), POSTs `{"type","timestamp","data"}` signed with the
// app's whsec_ secret, and records the outcome: 2xx delivered; 410 disables the
// endpoint; anything else is retried on the schedule of RetryDelay until
// max_attempts, then given up. Every target is resolved and checked at send
// time and the connection pinned to the checked address.
//
// Thread-safety: the free functions are pure (SystemResolver does DNS);
// WebhookSender's methods may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "otp/clock.h"
#include "otp/random.h"
#include "service/config.h"
#include "store/store.h"

namespace otpd {

// --- signing (Standard Webhooks 1.0) ------------------------------------------

// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)), where the
// key is the base64 decoding of `secret` after its "whsec_" prefix.
// InvalidArgument when `secret` is not "whsec_" + base64.
Result<std::string> SignWebhook(std::string_view secret, std::string_view id,
                                std::int64_t timestamp, std::string_view body);

// The body POSTed for `event`: {"type","timestamp" (RFC 3339, when the event
// happened),"data"}. The same bytes on every try.
std::string WebhookBody(const Event& event);

// The webhook-id of `event`: stable across its tries.
std::string WebhookId(const Event& event);

// --- retry schedule -----------------------------------------------------------

// The nominal wait after the `attempt`-th failed try (1-based):
// first_retry_s × 4^(attempt-1), capped at kMaxRetryGap.
std::chrono::milliseconds NominalRetryDelay(int attempt, const WebhookConfig& config);
inline constexpr std::chrono::hours kMaxRetryGap{16};
// NominalRetryDelay with "equal jitter": uniform in [nominal/2, nominal], so
// that receivers coming back from an outage are not hit by every sender at once.
std::chrono::milliseconds RetryDelay(int attempt, const WebhookConfig& config, otp::Random& random);
// When to try again after the `attempt`-th failed try at `now`; nullopt once
// config.max_attempts tries are spent (give up).
std::optional<TimePoint> NextAttemptAt(int attempt, TimePoint now, const WebhookConfig& config,
                                       otp::Random& random);

// --- targets (SSRF guard, SECURITY.md 28) ---------------------------------------

// Why the numeric IPv4/IPv6 address `ip` must not be a webhook target:
// "loopback", "private", "cgnat", "link-local", "metadata", "unspecified",
// "multicast", "broadcast", "reserved" (documentation, benchmarking, ...), or
// "" when it is a public address. IPv4-mapped, IPv4-compatible, NAT64 and 6to4
// IPv6 forms are judged by the IPv4 address they carry. "invalid" for text
// that is no address.
std::string_view ForbiddenAddressKind(std::string_view ip);

// True for a cloud metadata service's host name (metadata.google.internal, ...).
bool IsMetadataHostName(std::string_view host);

// The numeric addresses `host` resolves to (getaddrinfo), or an error.
using Resolver = std::function<Result<std::vector<std::string>>(const std::string& host)>;
Resolver SystemResolver();

// A URL checked for sending: where to connect, pinned.
struct WebhookTarget {
  std::string url;
  std::string host;     // as in the URL (no brackets)
  int port = 0;         // explicit or the scheme's
  std::string address;  // the checked numeric address the connection must use
};

// Parses `url` (http or https only), resolves its host and refuses it
// (PermissionDenied, naming the address and its kind) when ANY address it
// resolves to is forbidden, unless `allow_private_targets`; metadata host names
// and addresses are refused even then. InvalidArgument for a bad URL,
// Unavailable when the name does not resolve.
Result<WebhookTarget> CheckWebhookTarget(std::string_view url, bool allow_private_targets,
                                         const Resolver& resolve);

// --- sending --------------------------------------------------------------------

struct WebhookRequest {
  WebhookTarget target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int timeout_s = 10;
};

// One HTTP POST. Implementations connect only to target.address, follow no
// redirect, verify certificates for https and never keep the response body.
class WebhookTransport {
 public:
  virtual ~WebhookTransport() = default;
  // The HTTP status, or Unavailable for a connection/timeout/TLS failure.
  virtual Result<int> Post(const WebhookRequest& request) = 0;
};

// libcurl, pinned with CURLOPT_CONNECT_TO, proxies ignored.
std::unique_ptr<WebhookTransport> NewCurlWebhookTransport();

// One message to one endpoint.
struct WebhookMessage {
  std::string url;
  std::string secret;  // whsec_…
  std::string id;      // webhook-id
  std::string body;
};

struct WebhookSendResult {
  bool delivered = false;  // a 2xx
  int http_status = 0;     // 0 when there was no answer
  bool refused = false;    // the target failed the SSRF guard (nothing was sent)
  std::string error;       // why it was not delivered (never a response body)
};

// Checks the target, signs and POSTs `message` now (the sender's tries and
// `otpctl webhook test` both come here).
WebhookSendResult SendWebhook(const WebhookMessage& message, TimePoint now,
                              const WebhookConfig& config, WebhookTransport& transport,
                              const Resolver& resolve);

// Counts what the sender did, for /metrics. Called from sender threads.
class WebhookObserver {
 public:
  virtual ~WebhookObserver() = default;
  // One per try: "delivered", "http_error", "network_error", "refused" or
  // "gone" (410); `gave_up` when it was the last try of its event.
  virtual void OnWebhook(const std::string& result, bool gave_up) = 0;
};

// The background worker that delivers the outbox; it also sweeps pending
// verifications past expires_at to expired, so that verification.expired goes
// out without anybody asking for the verification.
class WebhookSender {
 public:
  WebhookSender(Store& store, WebhookConfig config, otp::Clock& clock, otp::Random& random,
                WebhookTransport& transport, Resolver resolve, WebhookObserver* observer = nullptr);
  ~WebhookSender();

  void Start();
  // Lets sends in flight finish; claimed events not started come back after their lease.
  void Stop();
  // Claims the events due now and sends them in the calling thread (tests);
  // returns how many were sent.
  int RunOnce();
  // One expiry sweep now (tests); returns how many verifications expired.
  int SweepExpired();

  // How long a claim holds an event: the send timeout and a margin.
  std::chrono::seconds Lease() const;

 private:
  void Loop();
  void Work();
  void Process(const WebhookJob& job);

  Store& store_;
  const WebhookConfig config_;
  otp::Clock& clock_;
  otp::Random& random_;
  WebhookTransport& transport_;
  const Resolver resolve_;
  WebhookObserver* observer_;

  std::mutex mu_;
  std::condition_variable loop_cv_;
  std::condition_variable work_cv_;
  bool stopping_ = false;
  std::deque<WebhookJob> queue_;
  int busy_ = 0;  // claimed, not finished
  std::thread loop_;
  std::vector<std::thread> workers_;

  std::mutex sweep_mu_;
  std::optional<TimePoint> swept_until_;  // the expiry sweep's lower bound
};

}  // namespace otpd
