// The API handler as a plain function: routing, authentication, validation and
// problem+json answers, without sockets. Also checks docs/openapi.json against
// the routes the handler serves, so the two cannot drift apart.
#include "server/api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <set>

#include "otp/otpauth_uri.h"
#include "otp/percent.h"
#include "otp/totp.h"
#include "service/dispatcher.h"
#include "store/memory/memory_store.h"

namespace otpd {
namespace {

using nlohmann::json;

// Takes reports over HTTP as a form "id=…&status=…" with token "t0k".
class FormReportProvider : public ChannelProvider {
 public:
  otp::Result<SendReceipt> Send(const OutboundMessage&) override {
    return SendReceipt{"wamid-" + std::to_string(++sent_)};
  }
  otp::Result<std::vector<DeliveryReport>> ParseHttpReport(std::string_view token,
                                                           std::string_view body) override {
    if (token != "t0k") return otp::PermissionDenied("wrong token");
    auto form = otp::ParseForm(body);
    if (!form.ok()) return form.status();
    DeliveryReport r;
    for (const auto& [k, v] : *form) {
      if (k == "id") r.provider_message_id = v;
      if (k == "status") r.status = v;
    }
    if (r.provider_message_id.empty()) return otp::InvalidArgument("no id");
    if (r.status != kDeliveryDelivered && r.status != kDeliveryFailed) {
      return std::vector<DeliveryReport>{};
    }
    return std::vector<DeliveryReport>{r};
  }

 private:
  std::atomic<int> sent_{0};
};

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterBuiltinChannels(registry_);
    registry_.Register("form-reports",
                       [](const ProviderConfig&,
                          ProviderContext&) -> otp::Result<std::unique_ptr<ChannelProvider>> {
                         return std::unique_ptr<ChannelProvider>(new FormReportProvider());
                       });
    log_path_ = (std::filesystem::temp_directory_path() /
                 ("otpd_api_test_" + std::to_string(::getpid()) + ".jsonl"))
                    .string();
    std::filesystem::remove(log_path_);
    ProviderConfig log{"dev-log", "log", {"sms", "email"}, {{"path", log_path_}}};
    ProviderConfig wa{"wa", "form-reports", {"whatsapp"}, {}};
    auto set = ProviderSet::Create({log, wa}, registry_, clock_);
    ASSERT_TRUE(set.ok());
    providers_ = std::make_unique<ProviderSet>(std::move(set).value());
    verifications_ = std::make_unique<VerificationService>(*store_, *providers_, secrets_, clock_,
                                                           otp::SystemRandom());
    ApiOptions options;
    options.inbox_path = log_path_;
    options.log_requests = false;
    factors_ = std::make_unique<FactorService>(*store_, secrets_, clock_, otp::SystemRandom());
    api_ = std::make_unique<Api>(*store_, apps_, *verifications_, *factors_, metrics_, options);
    dispatcher_ = std::make_unique<Dispatcher>(*store_, *providers_, secrets_, clock_, &metrics_);
    api_->ServeDeliveryReports(*providers_, *dispatcher_);
    metrics_.AttachDeliveryState(store_.get(), providers_.get());
    key_a_ = apps_.Create("a", AppSettings{})->api_key;
    key_b_ = apps_.Create("b", AppSettings{})->api_key;
  }

  HttpResponse Call(const std::string& method, const std::string& path, const std::string& body,
                    const std::string& key,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    HttpRequest r;
    r.method = method;
    r.target = r.path = path;
    if (auto q = path.find('?'); q != std::string::npos) {
      r.path = path.substr(0, q);
      r.query = path.substr(q + 1);
    }
    r.body = body;
    if (!key.empty()) r.headers.emplace_back("authorization", "Bearer " + key);
    for (auto& h : headers) r.headers.push_back(h);
    return api_->Handle(r);
  }

  static json Body(const HttpResponse& r) { return json::parse(r.body); }

  static void ExpectProblem(const HttpResponse& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.content_type, "application/problem+json");
    json j = json::parse(r.body);
    EXPECT_EQ(j["code"], code) << r.body;
    EXPECT_TRUE(j.contains("type") && j.contains("title") && j.contains("detail")) << r.body;
  }

  otp::FakeClock clock_{1'700'000'000};
  std::unique_ptr<Store> store_ = NewMemoryStore();
  Secrets secrets_{MasterKey{9}};
  ChannelRegistry registry_;
  std::string log_path_;
  std::unique_ptr<ProviderSet> providers_;
  AppService apps_{*store_, clock_, otp::SystemRandom()};
  Metrics metrics_;
  std::unique_ptr<VerificationService> verifications_;
  std::unique_ptr<FactorService> factors_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::string key_a_, key_b_;
};

TEST_F(ApiTest, HealthReadyMetricsOpenApi) {
  EXPECT_EQ(Call("GET", "/healthz", "", "").status, 200);
  EXPECT_EQ(Call("GET", "/readyz", "", "").status, 200);
  Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", key_a_);
  HttpResponse m = Call("GET", "/metrics", "", "");
  EXPECT_EQ(m.status, 200);
  EXPECT_THAT(m.body, ::testing::HasSubstr("otpd_http_requests_total{method=\"POST\",route=\"/v1/"
                                           "verifications\",status=\"201\"} 1"));
  EXPECT_THAT(m.body, ::testing::HasSubstr("otpd_verifications_started_total{channel=\"sms\"} 1"));
  EXPECT_THAT(m.body, ::testing::HasSubstr("otpd_http_request_duration_seconds_bucket"));
  EXPECT_EQ(Body(Call("GET", "/openapi.json", "", ""))["openapi"], "3.1.0");
}

TEST_F(ApiTest, Security20_EveryApiCallNeedsAKey) {
  ExpectProblem(Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", ""), 401,
                "unauthorized");
  ExpectProblem(Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", "otpd_wrong"), 401,
                "unauthorized");
  HttpRequest basic;
  basic.method = "GET";
  basic.path = "/v1/verifications/ver_123456";
  basic.headers.emplace_back("authorization", "Basic " + key_a_);
  ExpectProblem(api_->Handle(basic), 401, "unauthorized");
}

TEST_F(ApiTest, UnknownRoutesAndMethods) {
  ExpectProblem(Call("GET", "/v2/nothing", "", key_a_), 404, "not_found");
  ExpectProblem(Call("DELETE", "/v1/verifications", "", key_a_), 405, "invalid_request");
  // Found by fuzz_api: a target without its leading '/' splits into a route's
  // segments but names no route (it was a 500 for the sync-dispatched ones).
  for (const char* path : {"v1/verifications/x/check", "2v1/verifications/x/check",
                           "v1/verifications/x", "v1/verifications/x/cancel", "healthz", ""}) {
    ExpectProblem(Call("POST", path, R"({"code":"1"})", key_a_), 404, "not_found");
    ExpectProblem(Call("GET", path, "", key_a_), 404, "not_found");
  }
}

TEST_F(ApiTest, Security25_ValidationAnswersWithTheFields) {
  ExpectProblem(Call("POST", "/v1/verifications", "{not json", key_a_), 400, "invalid_request");
  ExpectProblem(Call("POST", "/v1/verifications", "[1]", key_a_), 400, "invalid_request");
  HttpResponse r = Call("POST", "/v1/verifications",
                        R"({"code_length":3,"ttl_s":10,"channel":"fax","extra":1})", key_a_);
  ExpectProblem(r, 400, "invalid_request");
  std::set<std::string> fields;
  const json body = Body(r);
  for (const json& e : body["errors"]) fields.insert(e["field"]);
  EXPECT_EQ(fields, (std::set<std::string>{"to", "code_length", "ttl_s", "channel", "extra"}));
  ExpectProblem(Call("POST", "/v1/verifications", R"({"to":123})", key_a_), 400, "invalid_request");
  ExpectProblem(
      Call("POST", "/v1/verifications", R"({"to":"+306912345678","metadata":[]})", key_a_), 400,
      "invalid_request");
  ExpectProblem(
      Call("POST", "/v1/verifications",
           R"({"to":"+306912345678","metadata":{"a":")" + std::string(5000, 'x') + "\"}}", key_a_),
      400, "invalid_request");
  // JSON depth is bounded.
  ExpectProblem(
      Call("POST", "/v1/verifications", std::string(100, '[') + std::string(100, ']'), key_a_), 400,
      "invalid_request");
  ExpectProblem(
      Call("POST", "/v1/verifications",
           R"({"to":"+306912345678","workflow":[{"channel":"sms","timeout_s":0}]})", key_a_),
      400, "invalid_request");
  ExpectProblem(Call("POST", "/v1/verifications", R"({"to":"+1234"})", key_a_), 400,
                "invalid_recipient");
  // Nothing was stored by any of these.
  EXPECT_EQ(store_->NewestPending(store_->GetApp("a")->id, "+306912345678").status().code(),
            otp::StatusCode::kNotFound);
}

TEST_F(ApiTest, StartCheckAndNotPending) {
  HttpResponse r = Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", key_a_);
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = Body(r)["id"];
  HttpResponse check =
      Call("POST", "/v1/verifications/" + id + "/check", R"({"code":"0000000"})", key_a_);
  ASSERT_EQ(check.status, 200);
  EXPECT_EQ(Body(check)["valid"], false);
  EXPECT_EQ(Body(check)["remaining_checks"], 4);
  // The check answer is written by hand (the hot path): exactly what json would write.
  EXPECT_EQ(check.body,
            R"({"id":")" + id + R"(","remaining_checks":4,"status":"pending","valid":false})");
  EXPECT_EQ(check.body, Body(check).dump());
  HttpResponse cancel = Call("POST", "/v1/verifications/" + id + "/cancel", "", key_a_);
  ASSERT_EQ(cancel.status, 200);
  EXPECT_EQ(Body(cancel)["status"], "canceled");
  HttpResponse late =
      Call("POST", "/v1/verifications/" + id + "/check", R"({"code":"123456"})", key_a_);
  ExpectProblem(late, 409, "verification_not_pending");
  EXPECT_EQ(Body(late)["status"], "canceled");
  ExpectProblem(Call("POST", "/v1/verifications/" + id + "/resend", "{}", key_a_), 409,
                "verification_not_pending");
}

TEST_F(ApiTest, Security2_ARightCodeAtExpiresAtPlusOneSecondIsRefused) {
  Dispatcher dispatcher(*store_, *providers_, secrets_, clock_);
  const json started =
      Body(Call("POST", "/v1/verifications", R"({"to":"+306912345678","ttl_s":60})", key_a_));
  const std::string id = started["id"];
  dispatcher.RunOnce();
  auto v = store_->GetVerification("", id);
  ASSERT_TRUE(v.ok());
  auto code = secrets_.keyring.Open(v->code_sealed, id);
  ASSERT_TRUE(code.ok());
  clock_.Set(otp::ToUnixSeconds(v->expires_at) + 1);
  HttpResponse r = Call("POST", "/v1/verifications/" + id + "/check",
                        json{{"code", std::string(code->begin(), code->end())}}.dump(), key_a_);
  ExpectProblem(r, 409, "verification_not_pending");
  EXPECT_EQ(Body(r)["status"], "expired");
  EXPECT_EQ(Body(Call("GET", "/v1/verifications/" + id, "", key_a_))["status"], "expired");
}

TEST_F(ApiTest, ApprovalIsCountedByChannel) {
  Dispatcher dispatcher(*store_, *providers_, secrets_, clock_);
  const std::string id =
      Body(Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", key_a_))["id"];
  dispatcher.RunOnce();
  auto v = store_->GetVerification("", id);
  auto code = secrets_.keyring.Open(v->code_sealed, id);
  ASSERT_TRUE(code.ok());
  HttpResponse r = Call("POST", "/v1/verifications/" + id + "/check",
                        json{{"code", std::string(code->begin(), code->end())}}.dump(), key_a_);
  EXPECT_EQ(Body(r)["valid"], true);
  EXPECT_THAT(Call("GET", "/metrics", "", "").body,
              ::testing::HasSubstr("otpd_verifications_approved_total{channel=\"sms\"} 1"));
}

TEST_F(ApiTest, Security23_CrossAppIsNotFound) {
  const std::string id =
      Body(Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", key_a_))["id"];
  const HttpResponse unknown = Call("GET", "/v1/verifications/ver_000000000000", "", key_b_);
  const HttpResponse other = Call("GET", "/v1/verifications/" + id, "", key_b_);
  ExpectProblem(other, 404, "not_found");
  EXPECT_EQ(Body(other), Body(unknown));  // indistinguishable from an unknown id
  ExpectProblem(Call("POST", "/v1/verifications/" + id + "/check", R"({"code":"1"})", key_b_), 404,
                "not_found");
  ExpectProblem(Call("POST", "/v1/verifications/" + id + "/cancel", "", key_b_), 404, "not_found");
  ExpectProblem(Call("GET", "/v1/verifications/..%2f", "", key_b_), 404, "not_found");
}

TEST_F(ApiTest, RateLimitsCarryRetryAfter) {
  const std::string id =
      Body(Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", key_a_))["id"];
  HttpResponse r = Call("POST", "/v1/verifications/" + id + "/resend", "", key_a_);
  ExpectProblem(r, 429, "rate_limited");
  bool has_retry = false;
  for (const auto& [k, v] : r.headers) has_retry |= k == "Retry-After" && v == "30";
  EXPECT_TRUE(has_retry);
}

TEST_F(ApiTest, IdempotencyKeyHeader) {
  const std::vector<std::pair<std::string, std::string>> h = {{"idempotency-key", "abc"}};
  HttpResponse a = Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", key_a_, h);
  HttpResponse b = Call("POST", "/v1/verifications", R"( { "to" : "+306912345678" } )", key_a_, h);
  EXPECT_EQ(a.status, 201);
  EXPECT_EQ(b.status, 201);
  EXPECT_EQ(a.body, b.body);
  const std::string location = "/v1/verifications/" + Body(a)["id"].get<std::string>();
  for (const HttpResponse* r : {&a, &b}) {  // the first answer and its replay
    EXPECT_THAT(r->headers,
                ::testing::Contains(std::pair<std::string, std::string>("Location", location)));
  }
  // A replay is not a new start.
  EXPECT_THAT(Call("GET", "/metrics", "", "").body,
              ::testing::HasSubstr("otpd_verifications_started_total{channel=\"sms\"} 1"));
  ExpectProblem(Call("POST", "/v1/verifications", R"({"to":"+306912345679"})", key_a_, h), 422,
                "idempotency_key_reused");
}

TEST_F(ApiTest, DevInboxListsLoggedMessagesEscaped) {
  Dispatcher dispatcher(*store_, *providers_, secrets_, clock_);
  Call("POST", "/v1/verifications", R"({"to":"+306912345678","metadata":{"x":"<b>"}})", key_a_);
  dispatcher.RunOnce();
  HttpResponse r = Call("GET", "/dev/inbox", "", "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_THAT(r.body, ::testing::HasSubstr("+306912345678"));
  EXPECT_THAT(r.body, ::testing::Not(::testing::HasSubstr("<b>")));
}

TEST(ApiOpenApiTest, DocumentDescribesExactlyTheServedRoutes) {
  json doc = json::parse(OpenApiDocument());
  EXPECT_EQ(doc["openapi"], "3.1.0");
  std::set<std::string> documented;
  for (auto& [path, item] : doc["paths"].items()) {
    for (auto& [method, op] : item.items()) {
      if (method == "parameters") continue;
      std::string m = method;
      for (char& c : m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      documented.insert(m + " " + path);
    }
  }
  std::set<std::string> served;
  for (const RouteInfo& r : Api::Routes()) served.insert(std::string(r.method) + " " + r.path);
  EXPECT_EQ(documented, served);
}

}  // namespace
}  // namespace otpd

namespace otpd {
namespace {

TEST_F(ApiTest, DeliveryReportEndpoint) {
  auto start = Call("POST", "/v1/verifications",
                    R"({"to":"+306912345678","workflow":[{"channel":"whatsapp","timeout_s":60},)"
                    R"({"channel":"sms","timeout_s":60}]})",
                    key_a_);
  ASSERT_EQ(start.status, 201) << start.body;
  const std::string id = Body(start)["id"];
  ASSERT_EQ(dispatcher_->RunOnce(), 1);  // whatsapp via "wa": wamid-1

  // Wrong or missing token, unknown provider, a provider without reports: refused, nothing changes.
  ExpectProblem(Call("POST", "/v1/providers/wa/dlr?token=nope", "id=wamid-1&status=failed", ""),
                401, "unauthorized");
  ExpectProblem(Call("POST", "/v1/providers/wa/dlr", "id=wamid-1&status=failed", ""), 401,
                "unauthorized");
  ExpectProblem(Call("POST", "/v1/providers/nosuch/dlr?token=t0k", "id=x", ""), 404, "not_found");
  ExpectProblem(Call("POST", "/v1/providers/dev-log/dlr?token=t0k", "id=x", ""), 404, "not_found");
  ExpectProblem(Call("POST", "/v1/providers/wa/dlr?token=t0k", "status=failed", ""), 400,
                "invalid_request");
  ExpectProblem(Call("GET", "/v1/providers/wa/dlr?token=t0k", "", ""), 405, "invalid_request");
  EXPECT_EQ(Body(Call("GET", "/v1/verifications/" + id, "", key_a_))["deliveries"][0]["status"],
            "sent");

  // A status that drives nothing is accepted and changes nothing.
  auto read = Call("POST", "/v1/providers/wa/dlr?token=t0k", "id=wamid-1&status=read", "");
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(Body(read)["accepted"], 0);

  // A failed report: the delivery is failed and the sms step fires at once.
  auto ok = Call("POST", "/v1/providers/wa/dlr?token=t0k", "id=wamid-1&status=failed", "");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(Body(ok)["accepted"], 1);
  EXPECT_EQ(Body(ok)["matched"], 1);
  ASSERT_EQ(dispatcher_->RunOnce(), 1);
  auto v = Body(Call("GET", "/v1/verifications/" + id, "", key_a_));
  EXPECT_EQ(v["deliveries"][0]["status"], "failed");
  EXPECT_EQ(v["deliveries"][1]["channel"], "sms");
  EXPECT_EQ(v["deliveries"][1]["status"], "sent");

  const std::string metrics = Call("GET", "/metrics", "", "").body;
  EXPECT_NE(
      metrics.find(
          R"(otpd_delivery_reports_total{provider="wa",channel="whatsapp",status="failed"} 1)"),
      std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("otpd_delivery_report_seconds_count{provider=\"wa\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("otpd_delivery_send_seconds_count{provider=\"wa\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("otpd_delivery_queue_depth 0"), std::string::npos);  // nothing left
}

}  // namespace
}  // namespace otpd

namespace otpd {
namespace {

TEST_F(ApiTest, RevokedKeysStopWorkingWithinTheCacheTtl) {
  auto app = apps_.Create("c", AppSettings{});
  ASSERT_TRUE(app.ok());
  const std::string path = "/v1/verifications/ver_000000000000000000000000";
  ExpectProblem(Call("GET", path, "", app->api_key), 404, "not_found");  // known key: cached
  // Revoked behind this process's back (otpctl writes the store directly).
  ASSERT_TRUE(store_->RevokeKey(app->key_id, clock_.Now()).ok());
  ExpectProblem(Call("GET", path, "", app->api_key), 404, "not_found");  // still cached
  clock_.Advance(AppService::kKeyCacheTtl);
  ExpectProblem(Call("GET", path, "", app->api_key), 401, "unauthorized");

  // Revoked through the AppService of this process: at once.
  auto key = apps_.CreateKey(app->app.id);
  ASSERT_TRUE(key.ok());
  ExpectProblem(Call("GET", path, "", key->api_key), 404, "not_found");
  ASSERT_TRUE(apps_.RevokeKey(key->key_id).ok());
  ExpectProblem(Call("GET", path, "", key->api_key), 401, "unauthorized");
}

}  // namespace
}  // namespace otpd

namespace otpd {
namespace {

// The code of a TOTP factor from its create answer, `steps_off` steps from now.
using std::chrono::seconds;

std::string TotpFromAnswer(const json& created, const otp::Clock& clock, int steps_off = 0) {
  auto uri = otp::ParseOtpAuthUri(created["otpauth_uri"].get<std::string>());
  auto key = otp::HotpKey::Create(uri->secret, uri->algorithm);
  return otp::TotpGenerate(*key, otp::ToUnixSeconds(clock.Now()) + steps_off * uri->period,
                           otp::TotpParams{uri->digits, uri->period, 0});
}

TEST_F(ApiTest, FactorLifecycleShapes) {
  HttpResponse c = Call("POST", "/v1/users/alice%40example.com/factors",
                        R"({"type":"totp","issuer":"Shop","label":"alice@example.com"})", key_a_);
  ASSERT_EQ(c.status, 201) << c.body;
  json f = Body(c);
  EXPECT_EQ(f["status"], "unverified");
  EXPECT_EQ(f["type"], "totp");
  EXPECT_TRUE(f["id"].get<std::string>().starts_with("fac_"));
  EXPECT_EQ(f["secret"].get<std::string>().size(), 32u);  // 20 bytes of base32
  EXPECT_TRUE(f["otpauth_uri"].get<std::string>().starts_with("otpauth://totp/Shop:alice%40"));
  EXPECT_THAT(f["qr_svg"].get<std::string>(), ::testing::HasSubstr("<svg"));
  const std::string id = f["id"];
  const std::string base = "/v1/users/alice%40example.com/factors/" + id;

  // The PNG while unverified.
  HttpResponse png = Call("GET", base + "/qr.png", "", key_a_);
  EXPECT_EQ(png.status, 200);
  EXPECT_EQ(png.content_type, "image/png");
  EXPECT_EQ(png.body.substr(1, 3), "PNG");

  // The list never shows the secret.
  HttpResponse list = Call("GET", "/v1/users/alice%40example.com/factors", "", key_a_);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(Body(list)["factors"].size(), 1u);
  EXPECT_THAT(list.body, ::testing::Not(::testing::HasSubstr(f["secret"].get<std::string>())));
  EXPECT_FALSE(Body(list)["factors"][0].contains("secret"));

  std::string wrong = TotpFromAnswer(f, clock_);
  wrong[0] = wrong[0] == '9' ? '0' : static_cast<char>(wrong[0] + 1);
  json a = Body(Call("POST", base + "/activate", json({{"code", wrong}}).dump(), key_a_));
  EXPECT_EQ(a, json({{"valid", false}, {"status", "unverified"}}));
  a = Body(
      Call("POST", base + "/activate", json({{"code", TotpFromAnswer(f, clock_)}}).dump(), key_a_));
  EXPECT_EQ(a, json({{"valid", true}, {"status", "active"}}));
  ExpectProblem(Call("GET", base + "/qr.png", "", key_a_), 404, "not_found");

  clock_.Advance(seconds(30));
  const std::string code = TotpFromAnswer(f, clock_);
  json v = Body(
      Call("POST", "/v1/users/alice%40example.com/verify", json({{"code", code}}).dump(), key_a_));
  EXPECT_EQ(v, json({{"valid", true}, {"factor_id", id}, {"type", "totp"}}));
  v = Body(
      Call("POST", "/v1/users/alice%40example.com/verify", json({{"code", code}}).dump(), key_a_));
  EXPECT_EQ(v, json({{"valid", false}}));  // replay

  json r = Body(Call("POST", "/v1/users/alice%40example.com/recovery-codes", "", key_a_));
  ASSERT_EQ(r["codes"].size(), 10u);
  v = Body(Call("POST", "/v1/users/alice%40example.com/verify",
                json({{"code", r["codes"][0]}}).dump(), key_a_));
  EXPECT_EQ(v, json({{"valid", true}, {"type", "recovery_code"}}));

  json rs = Body(Call("POST", base + "/resync", R"({"code1":"123456","code2":"654321"})", key_a_));
  EXPECT_EQ(rs["valid"], false);
  EXPECT_EQ(rs["status"], "active");

  HttpResponse del = Call("DELETE", base, "", key_a_);
  EXPECT_EQ(del.status, 204);
  EXPECT_TRUE(del.body.empty());
  ExpectProblem(Call("DELETE", base, "", key_a_), 404, "not_found");
}

TEST_F(ApiTest, FactorsOfAnotherAppAnswer404) {
  json f = Body(Call("POST", "/v1/users/bob/factors", R"({"type":"hotp"})", key_a_));
  const std::string base = "/v1/users/bob/factors/" + f["id"].get<std::string>();
  ExpectProblem(Call("GET", base + "/qr.png", "", key_b_), 404, "not_found");
  ExpectProblem(Call("POST", base + "/activate", R"({"code":"123456"})", key_b_), 404, "not_found");
  ExpectProblem(Call("POST", base + "/resync", R"({"code1":"1","code2":"2"})", key_b_), 404,
                "not_found");
  ExpectProblem(Call("DELETE", base, "", key_b_), 404, "not_found");
  ExpectProblem(Call("POST", "/v1/users/bob/verify",
                     json({{"code", "123456"}, {"factor_id", f["id"]}}).dump(), key_b_),
                404, "not_found");
  EXPECT_TRUE(Body(Call("GET", "/v1/users/bob/factors", "", key_b_))["factors"].empty());
  EXPECT_EQ(Body(Call("GET", "/v1/users/bob/factors", "", key_a_))["factors"].size(), 1u);
  // Another user of the same app: 404 as well.
  ExpectProblem(Call("DELETE", "/v1/users/carol/factors/" + f["id"].get<std::string>(), "", key_a_),
                404, "not_found");
  ExpectProblem(Call("GET", "/v1/users/bob/factors", "", ""), 401, "unauthorized");
}

TEST_F(ApiTest, FactorRequestsAreValidated) {
  auto field_of = [&](const std::string& body) {
    HttpResponse r = Call("POST", "/v1/users/alice/factors", body, key_a_);
    EXPECT_EQ(r.status, 400) << body << " " << r.body;
    json j = json::parse(r.body);
    EXPECT_EQ(j["code"], "invalid_request");
    return j["errors"][0]["field"].get<std::string>();
  };
  auto field_of_path = [&](const std::string& path) {
    HttpResponse r = Call("POST", path, R"({"type":"totp"})", key_a_);
    EXPECT_EQ(r.status, 400) << path << " " << r.body;
    return json::parse(r.body)["errors"][0]["field"].get<std::string>();
  };
  EXPECT_EQ(field_of(R"({})"), "type");
  EXPECT_EQ(field_of(R"({"type":"sms"})"), "type");
  EXPECT_EQ(field_of(R"({"type":"totp","digits":5})"), "digits");
  EXPECT_EQ(field_of(R"({"type":"totp","digits":"6"})"), "digits");
  EXPECT_EQ(field_of(R"({"type":"totp","period":121})"), "period");
  EXPECT_EQ(field_of(R"({"type":"totp","period":14})"), "period");
  EXPECT_EQ(field_of(R"({"type":"totp","algorithm":"MD5"})"), "algorithm");
  EXPECT_EQ(field_of(R"({"type":"totp","secret":"AAAA"})"), "secret");  // unknown field
  EXPECT_EQ(field_of(R"({"type":"totp","label":""})"), "label");
  EXPECT_EQ(field_of(R"({"type":"hotp","serial":"NOPE"})"), "serial");
  ExpectProblem(Call("POST", "/v1/users/alice/factors", "{", key_a_), 400, "invalid_request");
  // A user id outside 1..128 of A-Za-z0-9._@:- is refused, naming the field.
  ExpectProblem(Call("POST", "/v1/users/a%20b/factors", R"({"type":"totp"})", key_a_), 400,
                "invalid_request");
  EXPECT_EQ(field_of_path("/v1/users/a%20b/factors"), "user");
  EXPECT_EQ(field_of_path("/v1/users/" + std::string(129, 'a') + "/factors"), "user");
  EXPECT_EQ(
      Call("POST", "/v1/users/" + std::string(128, 'a') + "/factors", R"({"type":"totp"})", key_a_)
          .status,
      201);
  ExpectProblem(Call("POST", "/v1/users/alice/verify", R"({})", key_a_), 400, "invalid_request");
  ExpectProblem(Call("POST", "/v1/users/alice/verify", R"({"code":"1","x":1})", key_a_), 400,
                "invalid_request");
  ExpectProblem(Call("POST", "/v1/users/alice/recovery-codes", R"({"n":3})", key_a_), 400,
                "invalid_request");
  ExpectProblem(Call("GET", "/v1/users/alice/factors/fac_123456", "", key_a_), 405,
                "invalid_request");
}

TEST_F(ApiTest, ThrottledThenLocked) {
  json f = Body(Call("POST", "/v1/users/eve/factors", R"({"type":"totp"})", key_a_));
  const std::string id = f["id"];
  ASSERT_EQ(Body(Call("POST", "/v1/users/eve/factors/" + id + "/activate",
                      json({{"code", TotpFromAnswer(f, clock_)}}).dump(), key_a_))["valid"],
            true);
  clock_.Advance(seconds(30));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Call("POST", "/v1/users/eve/verify", R"({"code":"abc"})", key_a_).status, 200);
  }
  HttpResponse r = Call("POST", "/v1/users/eve/verify",
                        json({{"code", TotpFromAnswer(f, clock_)}}).dump(), key_a_);
  ExpectProblem(r, 429, "user_throttled");
  EXPECT_THAT(r.headers,
              ::testing::Contains(std::pair<std::string, std::string>("Retry-After", "30")));
  for (int i = 6; i <= 100; ++i) {
    clock_.Advance(seconds(3600));
    ASSERT_EQ(Call("POST", "/v1/users/eve/verify", R"({"code":"abc"})", key_a_).status, 200) << i;
  }
  clock_.Advance(seconds(3600));
  ExpectProblem(Call("POST", "/v1/users/eve/verify",
                     json({{"code", TotpFromAnswer(f, clock_)}}).dump(), key_a_),
                423, "factor_locked");
  // Another app's user of the same name is not affected.
  EXPECT_EQ(Call("POST", "/v1/users/eve/verify", R"({"code":"abc"})", key_b_).status, 200);
}

// SECURITY.md 25: every string field of every request is bounded; an over-long
// one is refused naming the field, and nothing is stored or sent.
class Sec25FieldLimits : public ApiTest {};

TEST_F(Sec25FieldLimits, EveryStringFieldIsBoundedAndNamed) {
  const std::string phone = "+306912345678";
  const std::string ver = "/v1/verifications/ver_0123456789abcdef";
  const std::string fac = "/v1/users/alice/factors/fac_0123456789abcdef";
  struct Case {
    std::string path;
    json body;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"/v1/verifications", {{"to", "+30" + std::string(252, '1')}}, {}, "to"},
      {"/v1/verifications", {{"to", phone}, {"channel", std::string(17, 's')}}, {}, "channel"},
      {"/v1/verifications",
       {{"to", phone}, {"locale", "en-" + std::string(33, 'a')}},
       {},
       "locale"},
      {"/v1/verifications",
       {{"to", phone}, {"workflow", {{{"channel", "email"}, {"to", std::string(255, 'e')}}}}},
       {},
       "workflow[0].to"},
      {"/v1/verifications",
       {{"to", phone}, {"metadata", {{"a", std::string(4089, 'x')}}}},
       {},
       "metadata"},
      {"/v1/verifications",
       {{"to", phone}},
       {{"idempotency-key", std::string(256, 'k')}},
       "Idempotency-Key"},
      {"/v1/verifications/check", {{"to", std::string(255, '1')}, {"code", "123456"}}, {}, "to"},
      {ver + "/check", {{"code", std::string(65, '1')}}, {}, "code"},
      {ver + "/resend", {{"channel", std::string(17, 's')}}, {}, "channel"},
      {"/v1/users/alice/factors",
       {{"type", "totp"}, {"label", std::string(129, 'l')}},
       {},
       "label"},
      {"/v1/users/alice/factors",
       {{"type", "totp"}, {"issuer", std::string(129, 'i')}},
       {},
       "issuer"},
      {"/v1/users/alice/factors",
       {{"type", "totp"}, {"algorithm", std::string(17, 'S')}},
       {},
       "algorithm"},
      {"/v1/users/alice/factors",
       {{"type", "hotp"}, {"serial", std::string(65, 's')}},
       {},
       "serial"},
      {"/v1/users/alice/verify", {{"code", std::string(65, '1')}}, {}, "code"},
      {"/v1/users/alice/verify",
       {{"code", "123456"}, {"factor_id", std::string(65, 'f')}},
       {},
       "factor_id"},
      {fac + "/activate", {{"code", std::string(65, '1')}}, {}, "code"},
      {fac + "/resync", {{"code1", std::string(65, '1')}, {"code2", "123456"}}, {}, "code1"},
      {fac + "/resync", {{"code1", "123456"}, {"code2", std::string(65, '1')}}, {}, "code2"},
      {"/v1/users/" + std::string(129, 'u') + "/factors", {{"type", "totp"}}, {}, "user"},
      {"/v1/users/a%0Ab/verify", {{"code", "123456"}}, {}, "user"},
  };
  for (const Case& c : cases) {
    HttpResponse r = Call("POST", c.path, c.body.dump(), key_a_, c.headers);
    ExpectProblem(r, 400, "invalid_request");
    std::set<std::string> fields;
    const json body = Body(r);
    for (const json& e : body["errors"]) fields.insert(e["field"]);
    EXPECT_THAT(fields, ::testing::Contains(c.field)) << c.path << " " << r.body;
  }
  const App app = *store_->GetApp("a");
  EXPECT_EQ(store_->NewestPending(app.id, phone).status().code(), otp::StatusCode::kNotFound);
  EXPECT_TRUE(factors_->List(app, "alice")->empty());
  EXPECT_TRUE(!std::filesystem::exists(log_path_) || std::filesystem::is_empty(log_path_));
}

TEST_F(Sec25FieldLimits, MetadataOf4KiBIsAcceptedAndOneByteMoreIsNot) {
  // {"a":"x…"} serialized: 8 bytes around the string.
  const json at_limit = {{"to", "+306912345678"}, {"metadata", {{"a", std::string(4088, 'x')}}}};
  ASSERT_EQ(at_limit["metadata"].dump().size(), 4096u);
  json over = at_limit;
  over["metadata"]["a"] = std::string(4089, 'x');
  HttpResponse r = Call("POST", "/v1/verifications", over.dump(), key_a_);
  ExpectProblem(r, 400, "invalid_request");
  EXPECT_EQ(Body(r)["errors"][0]["field"], "metadata");
  r = Call("POST", "/v1/verifications", at_limit.dump(), key_a_);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(Body(r)["metadata"], at_limit["metadata"]);
}

// SECURITY.md 22: no route carries a code, seed or key in its URL; the query
// string is read only by the delivery-report route (its per-provider token).
TEST(Sec22NoSecretsInUrls, RoutesTakeOnlyIdsInTheirPaths) {
  for (const RouteInfo& route : Api::Routes()) {
    std::string_view path = route.path;
    for (std::size_t open = path.find('{'); open != std::string_view::npos;
         open = path.find('{', open + 1)) {
      const std::string_view name = path.substr(open + 1, path.find('}', open) - open - 1);
      EXPECT_TRUE(name == "id" || name == "user" || name == "name") << route.path;
    }
  }
}

TEST_F(ApiTest, Sec22ACodeOrKeyInTheQueryIsNeverRead) {
  HttpResponse started = Call("POST", "/v1/verifications", R"({"to":"+306912345678"})", key_a_);
  ASSERT_EQ(started.status, 201);
  const std::string id = Body(started)["id"];
  const std::string code = "123456";  // right or wrong: the query is not read
  HttpResponse r = Call("POST", "/v1/verifications/" + id + "/check?code=" + code, "{}", key_a_);
  ExpectProblem(r, 400, "invalid_request");
  EXPECT_EQ(Body(r)["errors"][0]["field"], "code");
  ExpectProblem(Call("GET", "/v1/verifications/" + id + "?api_key=" + key_a_, "", ""), 401,
                "unauthorized");
  EXPECT_EQ(Body(Call("GET", "/v1/verifications/" + id, "", key_a_))["status"], "pending");
}

// SECURITY.md 25: malformed input gets a problem+json answer. Found by
// fuzz_api: a method that is not UTF-8 was quoted into the 405 problem, and
// dumping it threw outside the handler's try, which ends the process.
class Sec25ApiInput : public ApiTest {};

TEST_F(Sec25ApiInput, BytesThatAreNotUtf8GetAProblemNotACrash) {
  const HttpResponse r = Call("GE\xd4", "/v1/verifications/ver_123456", "", key_a_);
  ExpectProblem(r, 405, "invalid_request");
  EXPECT_THAT(Body(r)["detail"].get<std::string>(), ::testing::HasSubstr("GE\xef\xbf\xbd"));
}

}  // namespace
}  // namespace otpd
