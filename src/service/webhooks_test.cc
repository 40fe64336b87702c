// Webhooks (SPEC §5, SECURITY.md 26-28, 32): signing against the Standard
// Webhooks example, the retry schedule with an injected clock and random, the
// sender over the memory store with a scripted transport, the address
// classifier, target checks with a scripted resolver, and the libcurl transport
// pinned to the checked address against a real loopback socket.
#include "service/webhooks.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/test_util.h"
#include "otp/crypto.h"
#include "service/apps.h"
#include "service/log_text.h"
#include "store/memory/memory_store.h"

namespace otpd {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

// --- SECURITY.md 26: Standard Webhooks headers and signature -------------------

// The known answer of the Standard Webhooks reference libraries: key, id,
// timestamp, payload and expected signature from test_sign_function in
// github.com/standard-webhooks/standard-webhooks,
// libraries/python/tests/test_webhooks.py.
TEST(Sec26, SignatureMatchesStandardWebhooksExample) {
  auto signature =
      SignWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                  1614265330, R"({"test": 2432232314})");
  ASSERT_TRUE(signature.ok()) << signature.status().ToString();
  EXPECT_EQ(*signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  // Any change of id, timestamp or body changes it.
  EXPECT_NE(*SignWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                         1614265331, R"({"test": 2432232314})"),
            *signature);
}

TEST(Sec26, SecretWithoutPrefixOrBase64IsRefused) {
  EXPECT_FALSE(SignWebhook("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id", 1, "{}").ok());
  EXPECT_FALSE(SignWebhook("whsec_***", "id", 1, "{}").ok());
  EXPECT_FALSE(SignWebhook("whsec_", "id", 1, "{}").ok());
}

TEST(Sec26, AppSecretsAreWhsecAndAtLeast24RandomBytes) {
  auto store = NewMemoryStore();
  otp::FakeClock clock;
  AppService apps(*store, clock, otp::SystemRandom());
  auto a = apps.Create("a", AppSettings{});
  auto b = apps.Create("b", AppSettings{});
  ASSERT_TRUE(a.ok() && b.ok());
  for (const std::string& secret : {a->app.webhook_secret, b->app.webhook_secret}) {
    ASSERT_EQ(secret.rfind("whsec_", 0), 0u) << secret;
    auto key = otp::Base64Decode(secret.substr(6));
    ASSERT_TRUE(key.has_value());
    EXPECT_GE(key->size(), 24u);
  }
  EXPECT_NE(a->app.webhook_secret, b->app.webhook_secret);
}

// --- SECURITY.md 27: retries with backoff and jitter ----------------------------

TEST(Sec27, RetryScheduleGrowsAndSpansMoreThanADay) {
  const WebhookConfig config;  // the defaults
  ASSERT_GE(config.max_attempts, 8);
  // Nominal gaps: 30 s, 2 min, 8 min, 32 min, ~2 h, ~8.5 h, then 16 h.
  milliseconds previous{0};
  milliseconds min_total{0};
  milliseconds max_total{0};
  for (int attempt = 1; attempt < config.max_attempts; ++attempt) {
    const milliseconds nominal = NominalRetryDelay(attempt, config);
    EXPECT_GE(nominal, previous) << "attempt " << attempt;
    if (nominal < kMaxRetryGap) {
      EXPECT_GT(nominal, previous);
    }
    EXPECT_LE(nominal, kMaxRetryGap);
    previous = nominal;
    min_total += nominal / 2;
    max_total += nominal;
  }
  EXPECT_EQ(NominalRetryDelay(1, config), seconds(30));
  EXPECT_EQ(NominalRetryDelay(2, config), seconds(120));
  EXPECT_EQ(NominalRetryDelay(9, config), kMaxRetryGap);
  // Even with the least jitter, the tries spread over more than a day.
  EXPECT_GE(min_total, hours(24));
  EXPECT_LE(max_total, hours(72));
}

TEST(Sec27, JitterStaysWithinHalfAndAllOfTheNominalGap) {
  const WebhookConfig config;
  otp::testing::SeededRandom random(7);
  for (int attempt = 1; attempt < config.max_attempts; ++attempt) {
    const milliseconds nominal = NominalRetryDelay(attempt, config);
    milliseconds lo = nominal;
    milliseconds hi{0};
    for (int i = 0; i < 500; ++i) {
      const milliseconds d = RetryDelay(attempt, config, random);
      ASSERT_GE(d, nominal / 2);
      ASSERT_LE(d, nominal);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    // The jitter really spreads: 500 draws cover most of the range.
    EXPECT_LT(lo, nominal / 2 + nominal / 10) << attempt;
    EXPECT_GT(hi, nominal - nominal / 10) << attempt;
  }
}

TEST(Sec27, GivesUpAfterMaxAttempts) {
  WebhookConfig config;
  otp::testing::SeededRandom random(1);
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  for (int attempt = 1; attempt < config.max_attempts; ++attempt) {
    EXPECT_TRUE(NextAttemptAt(attempt, now, config, random).has_value());
  }
  EXPECT_FALSE(NextAttemptAt(config.max_attempts, now, config, random).has_value());
}

// A transport that answers from a script and records what it was asked.
class ScriptedTransport : public WebhookTransport {
 public:
  Result<int> Post(const WebhookRequest& r) override {
    std::lock_guard lock(mu);
    requests.push_back(r);
    if (answers.empty()) return 204;
    const int status = answers.front();
    answers.erase(answers.begin());
    if (status == 0) return otp::Unavailable("connection refused");
    return status;
  }
  std::mutex mu;
  std::vector<int> answers;  // 0 = no answer
  std::vector<WebhookRequest> requests;
};

Resolver FixedResolver(std::map<std::string, std::vector<std::string>> table) {
  return [table](const std::string& host) -> Result<std::vector<std::string>> {
    auto it = table.find(host);
    if (it == table.end()) return otp::Unavailable("cannot resolve " + host);
    return it->second;
  };
}

std::string Header(const WebhookRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

// The memory store with one app whose webhook points at hooks.example.com,
// a fake clock, a seeded random and a scripted transport.
class SenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AppService apps(*store_, clock_, random_);
    AppSettings settings;
    settings.webhook_url = "https://hooks.example.com/otpd";
    app_ = apps.Create("shop", settings)->app;
  }

  // A verification of the app, canceled at once: one verification.canceled event.
  void CancelOne(const std::string& id) {
    Verification v;
    v.id = id;
    v.app_id = app_.id;
    v.to = "+306912345678";
    v.channel = "sms";
    v.workflow = {{"sms", 60, ""}};
    v.code_hash = "h";
    v.metadata_json = R"({"order":"A-17"})";
    v.created_at = v.updated_at = v.last_sent_at = clock_.Now();
    v.expires_at = clock_.Now() + seconds(600);
    Job j;
    j.verification_id = id;
    j.due_at = clock_.Now();
    ASSERT_TRUE(store_->CreateVerification(v, j, nullptr, {}).ok());
    ASSERT_TRUE(store_->Cancel(app_.id, id, clock_.Now())->applied);
  }

  Event OnlyEvent() {
    auto events = store_->ListEvents(app_.id, 0, 10);
    EXPECT_EQ(events->size(), 1u);
    return events->at(0);
  }

  std::unique_ptr<Store> store_ = NewMemoryStore();
  otp::FakeClock clock_;
  otp::testing::SeededRandom random_{42};
  ScriptedTransport transport_;
  WebhookConfig config_;
  Resolver resolve_ = FixedResolver({{"hooks.example.com", {"93.184.216.34"}}});
  WebhookSender sender_{*store_, config_, clock_, random_, transport_, resolve_};
  App app_;
};

using Sec26SenderTest = SenderTest;
using Sec27SenderTest = SenderTest;
using Sec28SenderTest = SenderTest;

TEST_F(Sec26SenderTest, PostsTheEventSignedWithStandardWebhooksHeaders) {
  CancelOne("ver_1");
  ASSERT_EQ(sender_.RunOnce(), 1);
  ASSERT_EQ(transport_.requests.size(), 1u);
  const WebhookRequest& r = transport_.requests[0];
  EXPECT_EQ(r.target.url, "https://hooks.example.com/otpd");
  EXPECT_EQ(r.target.address, "93.184.216.34");
  EXPECT_EQ(r.target.port, 443);
  const std::string id = Header(r, "webhook-id");
  const std::string ts = Header(r, "webhook-timestamp");
  EXPECT_EQ(id, "evt_1");
  EXPECT_EQ(ts, std::to_string(otp::ToUnixSeconds(clock_.Now())));
  EXPECT_EQ(Header(r, "Content-Type"), "application/json");
  // The signature, recomputed here from the spec's recipe with libotp's HMAC.
  auto key = otp::Base64Decode(app_.webhook_secret.substr(6));
  const std::string expected =
      "v1," + otp::Base64Encode(otp::HmacSha256(*key, id + "." + ts + "." + r.body));
  EXPECT_EQ(Header(r, "webhook-signature"), expected);
  const auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["type"], "verification.canceled");
  EXPECT_EQ(body["timestamp"], otp::FormatRfc3339(clock_.Now()));
  EXPECT_EQ(body["data"]["id"], "ver_1");
  EXPECT_EQ(body["data"]["to"], "+********5678");
  EXPECT_EQ(body["data"]["metadata"]["order"], "A-17");
  EXPECT_EQ(OnlyEvent().state, kEventDelivered);
}

TEST_F(Sec27SenderTest, OnlyA2xxCountsAndRetriesKeepTheIdWithGrowingGaps) {
  CancelOne("ver_1");
  // 500, a redirect, no answer, 404, then 200.
  transport_.answers = {500, 302, 0, 404, 200};
  std::vector<TimePoint> tries;
  for (int i = 0; i < 5; ++i) {
    const Event e = OnlyEvent();
    ASSERT_EQ(e.state, kEventPending) << i;
    clock_.Set(otp::ToUnixSeconds(std::max(e.next_attempt_at, clock_.Now())) + 1);
    // Nothing is sent before the event is due.
    if (i > 0) {
      otp::FakeClock early;
      early.Set(otp::ToUnixSeconds(e.next_attempt_at) - 2);
      WebhookSender too_soon(*store_, config_, early, random_, transport_, resolve_);
      EXPECT_EQ(too_soon.RunOnce(), 0);
    }
    tries.push_back(clock_.Now());
    ASSERT_EQ(sender_.RunOnce(), 1) << i;
  }
  ASSERT_EQ(transport_.requests.size(), 5u);
  for (const WebhookRequest& r : transport_.requests) {
    EXPECT_EQ(Header(r, "webhook-id"), "evt_1") << "stable across retries";
    EXPECT_EQ(r.body, transport_.requests[0].body);
  }
  for (std::size_t i = 1; i < tries.size(); ++i) {
    const auto gap = tries[i] - tries[i - 1];
    const auto nominal = NominalRetryDelay(static_cast<int>(i), config_);
    EXPECT_GE(gap, nominal / 2) << i;
    EXPECT_LE(gap, nominal + seconds(2)) << i;
    if (i >= 2) {
      EXPECT_GT(gap, tries[i - 1] - tries[i - 2] - seconds(2)) << "gaps grow";
    }
  }
  const Event e = OnlyEvent();
  EXPECT_EQ(e.state, kEventDelivered);
  EXPECT_EQ(e.attempts, 5);
  EXPECT_EQ(e.last_status, 200);
}

TEST_F(Sec27SenderTest, GivesUpAfterMaxAttemptsAndRecordsIt) {
  CancelOne("ver_1");
  transport_.answers.assign(static_cast<std::size_t>(config_.max_attempts), 503);
  const TimePoint start = clock_.Now();
  for (int i = 0; i < config_.max_attempts; ++i) {
    const Event e = OnlyEvent();
    ASSERT_EQ(e.state, kEventPending);
    clock_.Set(otp::ToUnixSeconds(std::max(e.next_attempt_at, clock_.Now())) + 1);
    ASSERT_EQ(sender_.RunOnce(), 1);
  }
  const Event e = OnlyEvent();
  EXPECT_EQ(e.state, kEventFailed);
  EXPECT_EQ(e.attempts, config_.max_attempts);
  EXPECT_EQ(e.last_status, 503);
  EXPECT_NE(e.last_error.find("gave up after 10 tries"), std::string::npos) << e.last_error;
  EXPECT_GE(clock_.Now() - start, hours(24));
  clock_.Advance(hours(100));
  EXPECT_EQ(sender_.RunOnce(), 0);
}

TEST_F(Sec27SenderTest, GoneDisablesTheEndpoint) {
  CancelOne("ver_1");
  CancelOne("ver_2");
  transport_.answers = {410};
  ASSERT_EQ(sender_.RunOnce(), 2);  // both claimed; the second try finds the endpoint disabled
  const App a = *store_->GetApp(app_.id);
  ASSERT_TRUE(a.webhook_disabled_at.has_value());
  EXPECT_NE(a.webhook_disabled_reason.find("410"), std::string::npos);
  const auto events = store_->ListEvents(app_.id, 0, 10);
  for (const Event& e : *events) EXPECT_EQ(e.state, kEventFailed);
  CancelOne("ver_3");
  clock_.Advance(hours(1));
  EXPECT_EQ(sender_.RunOnce(), 0);
  EXPECT_LE(transport_.requests.size(), 2u);
}

TEST_F(Sec28SenderTest, ARefusedTargetIsRecordedAndNothingIsSent) {
  App a = app_;
  a.settings.webhook_url = "http://internal.example.com/hook";
  ASSERT_TRUE(store_->UpdateApp(a).ok());
  resolve_ = FixedResolver({{"internal.example.com", {"93.184.216.34", "10.0.0.7"}}});
  WebhookSender sender(*store_, config_, clock_, random_, transport_, resolve_);
  CancelOne("ver_1");
  ASSERT_EQ(sender.RunOnce(), 1);
  EXPECT_TRUE(transport_.requests.empty());
  const Event e = OnlyEvent();
  EXPECT_EQ(e.state, kEventPending);  // retried later: DNS or the URL may change
  EXPECT_EQ(e.last_error,
            "refused: webhook target internal.example.com resolves to 10.0.0.7 (private)");
}

TEST_F(SenderTest, TheSweepExpiresOverdueVerificationsWithTheirEvent) {
  Verification v;
  v.id = "ver_old";
  v.app_id = app_.id;
  v.to = "+306912345678";
  v.channel = "sms";
  v.workflow = {{"sms", 60, ""}};
  v.created_at = v.updated_at = v.last_sent_at = clock_.Now();
  v.expires_at = clock_.Now() + seconds(600);
  Job j;
  j.verification_id = v.id;
  j.due_at = clock_.Now();
  ASSERT_TRUE(store_->CreateVerification(v, j, nullptr, {}).ok());
  EXPECT_EQ(sender_.SweepExpired(), 0);
  clock_.Advance(seconds(600));
  EXPECT_EQ(sender_.SweepExpired(), 1);
  EXPECT_EQ(sender_.SweepExpired(), 0);
  EXPECT_EQ(store_->GetVerification(app_.id, "ver_old")->status, kExpired);
  EXPECT_EQ(OnlyEvent().type, "verification.expired");
  ASSERT_EQ(sender_.RunOnce(), 1);
  EXPECT_EQ(nlohmann::json::parse(transport_.requests.at(0).body)["type"], "verification.expired");
}

// --- SECURITY.md 28: targets -------------------------------------------------------

TEST(Sec28, AddressClassifier) {
  const std::vector<std::pair<std::string, std::string>> table = {
      // IPv4
      {"93.184.216.34", ""},
      {"8.8.8.8", ""},
      {"127.0.0.1", "loopback"},
      {"127.255.255.254", "loopback"},
      {"10.1.2.3", "private"},
      {"172.16.0.1", "private"},
      {"172.31.255.255", "private"},
      {"172.32.0.1", ""},
      {"192.168.1.1", "private"},
      {"100.64.0.1", "cgnat"},
      {"100.127.255.255", "cgnat"},
      {"100.128.0.1", ""},
      {"169.254.1.1", "link-local"},
      {"169.254.169.254", "metadata"},
      {"0.0.0.0", "unspecified"},
      {"0.1.2.3", "unspecified"},
      {"224.0.0.1", "multicast"},
      {"239.255.255.250", "multicast"},
      {"255.255.255.255", "broadcast"},
      {"240.0.0.1", "reserved"},
      {"192.0.2.1", "reserved"},
      {"198.18.0.1", "reserved"},
      // IPv6
      {"2606:2800:220:1:248:1893:25c8:1946", ""},
      {"::", "unspecified"},
      {"::1", "loopback"},
      {"fc00::1", "private"},
      {"fd12:3456::1", "private"},
      {"fe80::1", "link-local"},
      {"febf::1", "link-local"},
      {"fec0::1", "private"},
      {"ff02::1", "multicast"},
      {"2001:db8::1", "reserved"},
      {"fd00:ec2::254", "metadata"},
      // IPv4 inside IPv6
      {"::ffff:127.0.0.1", "loopback"},
      {"::ffff:10.0.0.1", "private"},
      {"::ffff:169.254.169.254", "metadata"},
      {"::ffff:7f00:1", "loopback"},
      {"::ffff:93.184.216.34", ""},
      {"::127.0.0.1", "loopback"},
      {"64:ff9b::10.0.0.1", "private"},
      {"64:ff9b::93.184.216.34", ""},
      {"2002:7f00:1::1", "loopback"},
      {"2002:5db8:d822::1", ""},
      // Not addresses
      {"localhost", "invalid"},
      {"", "invalid"},
  };
  for (const auto& [ip, kind] : table) EXPECT_EQ(ForbiddenAddressKind(ip), kind) << ip;
}

TEST(Sec28, TargetIsRefusedWhenAnyAddressIsForbidden) {
  const Resolver resolve = FixedResolver({
      {"public.example", {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"}},
      {"mixed.example", {"93.184.216.34", "127.0.0.1"}},
      {"mapped.example", {"::ffff:192.168.0.10"}},
      {"localhost", {"127.0.0.1", "::1"}},
      {"127.0.0.1", {"127.0.0.1"}},
      {"::1", {"::1"}},
      {"169.254.169.254", {"169.254.169.254"}},
  });
  auto ok = CheckWebhookTarget("https://public.example:8443/x?y=1", false, resolve);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->host, "public.example");
  EXPECT_EQ(ok->port, 8443);
  EXPECT_EQ(ok->address, "93.184.216.34");
  EXPECT_EQ(CheckWebhookTarget("http://public.example/", false, resolve)->port, 80);

  auto code = [&](std::string_view url, bool allow) {
    return CheckWebhookTarget(url, allow, resolve).status().code();
  };
  using otp::StatusCode;
  EXPECT_EQ(code("https://mixed.example/", false), StatusCode::kPermissionDenied);
  EXPECT_EQ(code("https://mapped.example/", false), StatusCode::kPermissionDenied);
  EXPECT_EQ(code("http://localhost:8080/", false), StatusCode::kPermissionDenied);
  EXPECT_EQ(code("http://127.0.0.1/", false), StatusCode::kPermissionDenied);
  EXPECT_EQ(code("http://[::1]:9000/", false), StatusCode::kPermissionDenied);
  // Metadata services: refused even where private targets are allowed.
  EXPECT_EQ(code("http://169.254.169.254/latest/meta-data", true), StatusCode::kPermissionDenied);
  EXPECT_EQ(code("http://metadata.google.internal/", true), StatusCode::kPermissionDenied);
  EXPECT_EQ(code("http://METADATA.google.internal./", true), StatusCode::kPermissionDenied);
  // allow_private_targets (development, tests).
  EXPECT_EQ(code("http://localhost:8080/", true), StatusCode::kOk);
  EXPECT_EQ(code("http://[::1]:9000/", true), StatusCode::kOk);
  EXPECT_EQ(CheckWebhookTarget("http://[::1]:9000/", true, resolve)->address, "::1");
  // Not http(s), not a URL, no such name.
  EXPECT_EQ(code("ftp://public.example/", true), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("file:///etc/passwd", true), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("not a url", true), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("https://nowhere.example/", true), StatusCode::kUnavailable);
  auto why = CheckWebhookTarget("https://mixed.example/", false, resolve);
  EXPECT_EQ(why.status().message(),
            "webhook target mixed.example resolves to 127.0.0.1 (loopback)");
}

// A one-shot HTTP server on 127.0.0.1: answers each request with `status`,
// records the request heads.
class LoopbackHttp {
 public:
  explicit LoopbackHttp(int status) : status_(status) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 4);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~LoopbackHttp() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  int requests() const { return requests_; }
  std::string last() {
    std::lock_guard lock(mu_);
    return last_;
  }

 private:
  void Serve() {
    while (!stop_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string in;
      char buf[4096];
      while (in.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        in.append(buf, static_cast<std::size_t>(n));
      }
      {
        std::lock_guard lock(mu_);
        last_ = in;
      }
      ++requests_;
      const std::string out = "HTTP/1.1 " + std::to_string(status_) +
                              " X\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsecret!";
      (void)::write(c, out.data(), out.size());
      ::close(c);
    }
  }
  int status_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::string last_;
  std::thread thread_;
};

TEST(Sec28, CurlTransportConnectsToThePinnedAddressOnly) {
  LoopbackHttp server(204);
  // "rebind.invalid" resolves nowhere for real: the request can only reach the
  // server because the connection is pinned to the address that was checked.
  const Resolver resolve = FixedResolver({{"rebind.invalid", {"127.0.0.1"}}});
  WebhookConfig config;
  config.allow_private_targets = true;
  config.timeout_s = 5;
  auto transport = NewCurlWebhookTransport();
  const std::string url = "http://rebind.invalid:" + std::to_string(server.port()) + "/hook";
  const WebhookMessage message{url, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "evt_9",
                               R"({"a":1})"};
  const WebhookSendResult sent =
      SendWebhook(message, otp::FromUnixMillis(1'614'265'330'000), config, *transport, resolve);
  EXPECT_TRUE(sent.delivered) << sent.error;
  EXPECT_EQ(sent.http_status, 204);
  EXPECT_EQ(server.requests(), 1);
  const std::string head = server.last();
  EXPECT_NE(head.find("POST /hook HTTP/1.1"), std::string::npos) << head;
  EXPECT_NE(head.find("Host: rebind.invalid:"), std::string::npos) << head;
  EXPECT_NE(head.find("webhook-id: evt_9"), std::string::npos) << head;
  EXPECT_NE(head.find("webhook-timestamp: 1614265330"), std::string::npos) << head;

  // Without the flag the same target is refused before any connection.
  config.allow_private_targets = false;
  const WebhookSendResult refused =
      SendWebhook(message, otp::FromUnixMillis(1'614'265'330'000), config, *transport, resolve);
  EXPECT_FALSE(refused.delivered);
  EXPECT_TRUE(refused.refused);
  EXPECT_EQ(server.requests(), 1);
}

TEST(Sec27, CurlTransportFollowsNoRedirectAndKeepsNoBody) {
  LoopbackHttp server(307);
  const Resolver resolve = FixedResolver({{"127.0.0.1", {"127.0.0.1"}}});
  WebhookConfig config;
  config.allow_private_targets = true;
  auto transport = NewCurlWebhookTransport();
  const WebhookMessage message{"http://127.0.0.1:" + std::to_string(server.port()) + "/",
                               "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "evt_1", "{}"};
  const WebhookSendResult sent =
      SendWebhook(message, otp::FromUnixMillis(0), config, *transport, resolve);
  EXPECT_FALSE(sent.delivered);
  EXPECT_EQ(sent.http_status, 307);
  EXPECT_EQ(sent.error, "HTTP 307");  // the response body ("secret!") is not kept
  EXPECT_EQ(server.requests(), 1);
}

// --- SECURITY.md 32: log lines cannot be forged by input ------------------------

TEST(Sec32, LogTextEscapesLineBreaksAndQuotes) {
  const std::string forged = "x\"}\n{\"event\":\"approved\",\"x\":\"\r\x01";
  const std::string logged = LogText(forged);
  EXPECT_EQ(logged.find('\n'), std::string::npos);
  EXPECT_EQ(logged.find('\r'), std::string::npos);
  EXPECT_EQ(logged.find('\x01'), std::string::npos);
  EXPECT_EQ(logged, R"("x\"}\n{\"event\":\"approved\",\"x\":\"\r\u0001")");
  // It reads back as the one string it was.
  EXPECT_EQ(nlohmann::json::parse(logged).get<std::string>(), forged);
  // Invalid UTF-8 cannot break the line either.
  EXPECT_EQ(nlohmann::json::parse(LogText("a\xff\n")).get<std::string>(), "a\xEF\xBF\xBD\n");
}

}  // namespace
}  // namespace otpd
