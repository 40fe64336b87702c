#include "service/webhooks.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>

#include "otp/crypto.h"
#include "service/log_text.h"

namespace otpd {

using std::chrono::milliseconds;

// --- signing -------------------------------------------------------------------

Result<std::string> SignWebhook(std::string_view secret, std::string_view id,
                                std::int64_t timestamp, std::string_view body) {
  constexpr std::string_view kPrefix = "whsec_";
  if (secret.substr(0, kPrefix.size()) != kPrefix) {
    return otp::InvalidArgument("webhook secret: no whsec_ prefix");
  }
  auto key = otp::Base64Decode(secret.substr(kPrefix.size()));
  if (!key || key->empty()) return otp::InvalidArgument("webhook secret: not base64");
  std::string content;
  content.reserve(id.size() + body.size() + 24);
  content.append(id).append(".").append(std::to_string(timestamp)).append(".").append(body);
  const otp::Sha256Digest mac = otp::HmacSha256(*key, content);
  return "v1," + otp::Base64Encode(mac);
}

std::string WebhookBody(const Event& event) {
  nlohmann::json data = nlohmann::json::parse(event.data_json, nullptr, false);
  if (data.is_discarded()) data = nlohmann::json::object();
  return nlohmann::json{{"type", event.type},
                        {"timestamp", otp::FormatRfc3339(event.created_at)},
                        {"data", std::move(data)}}
      .dump();
}

std::string WebhookId(const Event& event) { return "evt_" + std::to_string(event.id); }

// --- retry schedule ------------------------------------------------------------

milliseconds NominalRetryDelay(int attempt, const WebhookConfig& config) {
  const milliseconds cap = kMaxRetryGap;
  milliseconds delay = std::chrono::seconds(config.first_retry_s);
  for (int i = 1; i < attempt && delay < cap; ++i) delay *= 4;
  return std::min(delay, cap);
}

milliseconds RetryDelay(int attempt, const WebhookConfig& config, otp::Random& random) {
  const milliseconds nominal = NominalRetryDelay(attempt, config);
  const auto half = nominal.count() / 2;
  const auto jitter = static_cast<std::int64_t>(
      otp::RandomBelow(random, static_cast<std::uint64_t>(nominal.count() - half) + 1));
  return milliseconds(half + jitter);
}

std::optional<TimePoint> NextAttemptAt(int attempt, TimePoint now, const WebhookConfig& config,
                                       otp::Random& random) {
  if (attempt >= config.max_attempts) return std::nullopt;
  return now + RetryDelay(attempt, config, random);
}

// --- targets -------------------------------------------------------------------

namespace {

using V4 = std::array<std::uint8_t, 4>;

bool InV4(const V4& a, std::uint8_t b0, std::uint8_t b1, std::uint8_t b2, std::uint8_t b3,
          int prefix) {
  const std::uint32_t addr =
      (std::uint32_t{a[0]} << 24) | (std::uint32_t{a[1]} << 16) | (std::uint32_t{a[2]} << 8) | a[3];
  const std::uint32_t net =
      (std::uint32_t{b0} << 24) | (std::uint32_t{b1} << 16) | (std::uint32_t{b2} << 8) | b3;
  const std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
  return (addr & mask) == (net & mask);
}

std::string_view V4Kind(const V4& a) {
  if (InV4(a, 169, 254, 169, 254, 32)) return "metadata";
  if (InV4(a, 255, 255, 255, 255, 32)) return "broadcast";
  if (InV4(a, 0, 0, 0, 0, 8)) return "unspecified";
  if (InV4(a, 127, 0, 0, 0, 8)) return "loopback";
  if (InV4(a, 10, 0, 0, 0, 8) || InV4(a, 172, 16, 0, 0, 12) || InV4(a, 192, 168, 0, 0, 16)) {
    return "private";
  }
  if (InV4(a, 100, 64, 0, 0, 10)) return "cgnat";
  if (InV4(a, 169, 254, 0, 0, 16)) return "link-local";
  if (InV4(a, 224, 0, 0, 0, 4)) return "multicast";
  // IETF protocol assignments, documentation, benchmarking, 240/4.
  if (InV4(a, 192, 0, 0, 0, 24) || InV4(a, 192, 0, 2, 0, 24) || InV4(a, 198, 51, 100, 0, 24) ||
      InV4(a, 203, 0, 113, 0, 24) || InV4(a, 198, 18, 0, 0, 15) || InV4(a, 240, 0, 0, 0, 4)) {
    return "reserved";
  }
  return "";
}

std::string_view V6Kind(const std::array<std::uint8_t, 16>& a) {
  auto zero = [&](std::size_t from, std::size_t to) {
    return std::all_of(a.begin() + static_cast<std::ptrdiff_t>(from),
                       a.begin() + static_cast<std::ptrdiff_t>(to),
                       [](std::uint8_t b) { return b == 0; });
  };
  auto v4_at = [&](std::size_t i) { return V4{a[i], a[i + 1], a[i + 2], a[i + 3]}; };
  if (zero(0, 16)) return "unspecified";
  if (zero(0, 15) && a[15] == 1) return "loopback";
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible): the IPv4 address decides.
  if (zero(0, 10) && a[10] == 0xff && a[11] == 0xff) return V4Kind(v4_at(12));
  if (zero(0, 12)) return V4Kind(v4_at(12));
  // NAT64 64:ff9b::/96 and 6to4 2002::/16 carry an IPv4 address too.
  static constexpr std::uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::equal(std::begin(kNat64), std::end(kNat64), a.begin())) return V4Kind(v4_at(12));
  if (a[0] == 0x20 && a[1] == 0x02) {
    const std::string_view inner = V4Kind(v4_at(2));
    if (!inner.empty()) return inner;
  }
  // fd00:ec2::254, the AWS metadata service over IPv6.
  static constexpr std::uint8_t kAwsMetadata[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0,    0,
                                                    0,    0, 0,    0,    0, 0, 0x02, 0x54};
  if (std::equal(std::begin(kAwsMetadata), std::end(kAwsMetadata), a.begin())) return "metadata";
  if ((a[0] & 0xfe) == 0xfc) return "private";                     // fc00::/7 unique local
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return "link-local";  // fe80::/10
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return "private";     // fec0::/10 site-local
  if (a[0] == 0xff) return "multicast";
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return "reserved";  // doc
  if (a[0] == 0x01 && zero(1, 8)) return "reserved";  // 100::/64 discard
  return "";
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

void CurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string_view ForbiddenAddressKind(std::string_view ip) {
  const std::string text(ip);
  std::array<std::uint8_t, 16> v6{};
  if (inet_pton(AF_INET6, text.c_str(), v6.data()) == 1) return V6Kind(v6);
  V4 v4{};
  if (inet_pton(AF_INET, text.c_str(), v4.data()) == 1) return V4Kind(v4);
  return "invalid";
}

bool IsMetadataHostName(std::string_view host) {
  std::string h = Lower(host);
  while (!h.empty() && h.back() == '.') h.pop_back();
  static constexpr std::string_view kNames[] = {"metadata",
                                                "metadata.google.internal",
                                                "metadata.goog",
                                                "instance-data",
                                                "instance-data.ec2.internal",
                                                "metadata.azure.internal",
                                                "metadata.oraclecloud.com"};
  return std::find(std::begin(kNames), std::end(kNames), h) != std::end(kNames);
}

Resolver SystemResolver() {
  return [](const std::string& host) -> Result<std::vector<std::string>> {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &list);
    if (rc != 0) return otp::Unavailable("cannot resolve " + host + ": " + gai_strerror(rc));
    std::vector<std::string> out;
    for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      if (getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) ==
          0) {
        std::string addr(text);
        if (const auto pct = addr.find('%'); pct != std::string::npos) addr.resize(pct);
        if (std::find(out.begin(), out.end(), addr) == out.end()) out.push_back(addr);
      }
    }
    freeaddrinfo(list);
    if (out.empty()) return otp::Unavailable("cannot resolve " + host + ": no address");
    return out;
  };
}

Result<WebhookTarget> CheckWebhookTarget(std::string_view url, bool allow_private_targets,
                                         const Resolver& resolve) {
  CurlGlobalInit();
  std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
  const std::string text(url);
  if (u == nullptr || curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    return otp::InvalidArgument("webhook url: not a valid URL");
  }
  auto part = [&](CURLUPart which, unsigned flags) -> std::string {
    char* value = nullptr;
    if (curl_url_get(u.get(), which, &value, flags) != CURLUE_OK || value == nullptr) return "";
    std::string out(value);
    curl_free(value);
    return out;
  };
  const std::string scheme = Lower(part(CURLUPART_SCHEME, 0));
  if (scheme != "http" && scheme != "https") {
    return otp::InvalidArgument("webhook url: only http and https");
  }
  WebhookTarget target;
  target.url = text;
  target.host = part(CURLUPART_HOST, 0);
  if (target.host.size() >= 2 && target.host.front() == '[') {
    target.host = target.host.substr(1, target.host.size() - 2);
  }
  target.port = std::atoi(part(CURLUPART_PORT, CURLU_DEFAULT_PORT).c_str());
  if (target.host.empty() || target.port <= 0) return otp::InvalidArgument("webhook url: no host");
  if (IsMetadataHostName(target.host)) {
    return otp::PermissionDenied("webhook target " + target.host + " is a metadata service");
  }
  auto addresses = resolve(target.host);
  if (!addresses.ok()) return addresses.status();
  if (addresses->empty()) return otp::Unavailable("cannot resolve " + target.host);
  for (const std::string& address : *addresses) {
    const std::string_view kind = ForbiddenAddressKind(address);
    if (kind.empty()) continue;
    // Development setups may allow private targets; metadata services never.
    if (allow_private_targets && kind != "metadata" && kind != "invalid") continue;
    return otp::PermissionDenied("webhook target " + target.host + " resolves to " + address +
                                 " (" + std::string(kind) + ")");
  }
  target.address = addresses->front();
  return target;
}

// --- sending -------------------------------------------------------------------

namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// Response bodies are read and dropped: never kept, never logged.
std::size_t DiscardBody(char*, std::size_t size, std::size_t nmemb, void*) { return size * nmemb; }

class CurlWebhookTransport final : public WebhookTransport {
 public:
  Result<int> Post(const WebhookRequest& r) override {
    CurlGlobalInit();
    std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
    if (!curl) return otp::Internal("curl_easy_init failed");
    CURL* c = curl.get();
    std::unique_ptr<curl_slist, SlistDeleter> headers;
    for (const auto& [name, value] : r.headers) {
      const std::string line = name + ": " + value;
      curl_slist* next = curl_slist_append(headers.get(), line.c_str());
      if (next == nullptr) return otp::Internal("curl_slist_append failed");
      (void)headers.release();
      headers.reset(next);
    }
    // Connect to the checked address only, whatever the name resolves to now
    // (DNS rebinding); TLS still verifies the certificate against the URL's host.
    const bool v6 = r.target.address.find(':') != std::string::npos;
    const std::string pin = "::" + (v6 ? "[" + r.target.address + "]" : r.target.address) + ":" +
                            std::to_string(r.target.port);
    std::unique_ptr<curl_slist, SlistDeleter> connect_to(curl_slist_append(nullptr, pin.c_str()));
    const long timeout_ms = static_cast<long>(r.timeout_s) * 1000L;
    curl_easy_setopt(c, CURLOPT_URL, r.target.url.c_str());
    curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to.get());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 5000L));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "otpd-webhooks");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r.body.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, DiscardBody);
    const CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK && status == 0) return otp::Unavailable(curl_easy_strerror(rc));
    return static_cast<int>(status);
  }
};

}  // namespace

std::unique_ptr<WebhookTransport> NewCurlWebhookTransport() {
  return std::make_unique<CurlWebhookTransport>();
}

WebhookSendResult SendWebhook(const WebhookMessage& message, TimePoint now,
                              const WebhookConfig& config, WebhookTransport& transport,
                              const Resolver& resolve) {
  WebhookSendResult out;
  auto target = CheckWebhookTarget(message.url, config.allow_private_targets, resolve);
  if (!target.ok()) {
    out.refused = target.status().code() == otp::StatusCode::kPermissionDenied;
    out.error = (out.refused ? "refused: " : "") + target.status().message();
    return out;
  }
  const std::int64_t timestamp = otp::ToUnixSeconds(now);
  auto signature = SignWebhook(message.secret, message.id, timestamp, message.body);
  if (!signature.ok()) {
    out.error = signature.status().message();
    return out;
  }
  WebhookRequest request;
  request.target = std::move(*target);
  request.headers = {{"Content-Type", "application/json"},
                     {"webhook-id", message.id},
                     {"webhook-timestamp", std::to_string(timestamp)},
                     {"webhook-signature", *signature}};
  request.body = message.body;
  request.timeout_s = config.timeout_s;
  auto status = transport.Post(request);
  if (!status.ok()) {
    out.error = status.status().message();
    return out;
  }
  out.http_status = *status;
  out.delivered = *status >= 200 && *status < 300;
  if (!out.delivered) out.error = "HTTP " + std::to_string(*status);
  return out;
}

// --- the sender ----------------------------------------------------------------

namespace {
constexpr auto kIdlePoll = milliseconds(250);
constexpr auto kSweepEvery = std::chrono::seconds(1);
constexpr int kSweepBatch = 200;
// The first sweep after a start looks this far back; older overdue
// verifications are expired when somebody touches them.
constexpr auto kSweepLookBack = std::chrono::hours(24);
// Later sweeps overlap the last one by this much (clocks of several nodes).
constexpr auto kSweepOverlap = std::chrono::seconds(60);
}  // namespace

WebhookSender::WebhookSender(Store& store, WebhookConfig config, otp::Clock& clock,
                             otp::Random& random, WebhookTransport& transport, Resolver resolve,
                             WebhookObserver* observer)
    : store_(store),
      config_(config),
      clock_(clock),
      random_(random),
      transport_(transport),
      resolve_(std::move(resolve)),
      observer_(observer) {}

WebhookSender::~WebhookSender() { Stop(); }

std::chrono::seconds WebhookSender::Lease() const {
  return std::chrono::seconds(config_.timeout_s + 30);
}

void WebhookSender::Start() {
  for (int i = 0; i < std::max(1, config_.workers); ++i) {
    workers_.emplace_back([this] { Work(); });
  }
  loop_ = std::thread([this] { Loop(); });
}

void WebhookSender::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  work_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  workers_.clear();
}

int WebhookSender::SweepExpired() {
  std::lock_guard lock(sweep_mu_);
  const TimePoint now = clock_.Now();
  const TimePoint since = swept_until_.value_or(now - kSweepLookBack);
  auto expired = store_.ExpireOverdue(since, now, kSweepBatch);
  if (!expired.ok()) {
    spdlog::warn(R"("event":"expiry_sweep_failed","error":{})",
                 LogText(expired.status().message()));
    return 0;
  }
  // A full batch may have left more behind: start from the same point again.
  if (*expired < kSweepBatch) swept_until_ = now - kSweepOverlap;
  return *expired;
}

void WebhookSender::Loop() {
  auto last_sweep = std::chrono::steady_clock::now() - kSweepEvery;
  for (;;) {
    int capacity = 0;
    {
      std::unique_lock lock(mu_);
      if (stopping_) return;
      capacity = 2 * std::max(1, config_.workers) - busy_;
    }
    if (std::chrono::steady_clock::now() - last_sweep >= kSweepEvery) {
      SweepExpired();
      last_sweep = std::chrono::steady_clock::now();
    }
    int claimed = 0;
    auto next = store_.NextWebhookDue();
    const TimePoint now = clock_.Now();
    if (capacity > 0 && next.ok() && next->has_value() && **next <= now) {
      auto jobs = store_.ClaimWebhookEvents(now, now + Lease(), capacity);
      if (!jobs.ok()) {
        spdlog::warn(R"("event":"webhook_claim_failed","error":{})",
                     LogText(jobs.status().message()));
      } else if (!jobs->empty()) {
        claimed = static_cast<int>(jobs->size());
        std::lock_guard lock(mu_);
        busy_ += claimed;
        for (WebhookJob& j : *jobs) queue_.push_back(std::move(j));
      }
    }
    std::unique_lock lock(mu_);
    if (claimed > 0) {
      work_cv_.notify_all();
      continue;
    }
    auto wait = kIdlePoll;
    if (capacity > 0 && next.ok() && next->has_value()) {
      wait = std::clamp(std::chrono::duration_cast<milliseconds>(**next - now), milliseconds(1),
                        kIdlePoll);
    }
    loop_cv_.wait_for(lock, wait, [&] { return stopping_; });
  }
}

void WebhookSender::Work() {
  for (;;) {
    WebhookJob job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      // Stopping: claimed events not started come back after their lease.
      if (stopping_) {
        busy_ -= static_cast<int>(queue_.size());
        queue_.clear();
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Process(job);
    {
      std::lock_guard lock(mu_);
      --busy_;
    }
    loop_cv_.notify_all();
  }
}

int WebhookSender::RunOnce() {
  const TimePoint now = clock_.Now();
  auto jobs = store_.ClaimWebhookEvents(now, now + Lease(), 64);
  if (!jobs.ok()) return 0;
  for (const WebhookJob& job : *jobs) Process(job);
  return static_cast<int>(jobs->size());
}

void WebhookSender::Process(const WebhookJob& job) {
  const Event& e = job.event;
  const WebhookMessage message{job.url, job.secret, WebhookId(e), WebhookBody(e)};
  const WebhookSendResult sent = SendWebhook(message, clock_.Now(), config_, transport_, resolve_);

  WebhookOutcome out;
  out.event_id = e.id;
  out.attempt = e.attempts;
  out.http_status = sent.http_status;
  out.error = sent.error;
  out.at = clock_.Now();
  std::string result;
  bool gave_up = false;
  if (sent.delivered) {
    out.state = kEventDelivered;
    result = "delivered";
  } else if (sent.http_status == 410) {
    out.state = kEventFailed;
    out.disable_endpoint = true;
    out.error = "HTTP 410 Gone: the endpoint is disabled";
    result = "gone";
    gave_up = true;
  } else {
    result = sent.refused ? "refused" : sent.http_status != 0 ? "http_error" : "network_error";
    auto next = NextAttemptAt(e.attempts, out.at, config_, random_);
    if (next) {
      out.state = kEventPending;
      out.next_attempt_at = *next;
    } else {
      out.state = kEventFailed;
      out.error += " (gave up after " + std::to_string(e.attempts) + " tries)";
      gave_up = true;
    }
  }
  auto recorded = store_.FinishWebhookEvent(out);
  if (!recorded.ok()) {
    spdlog::error(R"("event":"webhook_finish_failed","event_id":{},"error":{})", e.id,
                  LogText(recorded.status().message()));
  }
  if (observer_ != nullptr) observer_->OnWebhook(result, gave_up);
  // Never the body, the secret or the signature.
  spdlog::info(
      R"("event":"webhook","event_id":{},"type":{},"app_id":{},"attempt":{},"result":"{}","http_status":{},"state":"{}","error":{},"next_attempt_at":{})",
      e.id, LogText(e.type), LogText(e.app_id), e.attempts, result, sent.http_status, out.state,
      LogText(out.error),
      LogText(out.state == kEventPending ? otp::FormatRfc3339(out.next_attempt_at) : ""));
}

}  // namespace otpd
