// VerificationService and Dispatcher over the memory store, with an injected
// clock and scripted providers: every status and error path of SPEC §4.1 that
// this service covers, and failover decisions, without sockets or sleeping.
#include "service/verifications.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <utility>

#include "service/apps.h"
#include "service/dispatcher.h"
#include "service/messages.h"
#include "store/memory/memory_store.h"

namespace otpd {
namespace {

using std::chrono::seconds;

// A provider that records messages and fails while told to.
class ScriptedProvider : public ChannelProvider {
 public:
  otp::Result<SendReceipt> Send(const OutboundMessage& m) override {
    if (throws) throw std::runtime_error("scripted bug");
    if (fail) return otp::Unavailable("scripted failure");
    sent.push_back(m);
    return SendReceipt{"msg-" + std::to_string(sent.size())};
  }
  bool fail = false;
  bool throws = false;
  std::vector<OutboundMessage> sent;
};

ProviderConfig Cfg(std::string name, std::vector<std::string> channels) {
  return ProviderConfig{std::move(name), "scripted", std::move(channels), {}};
}

class VerificationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.Register("scripted", ScriptedFactory());
    UseProviders({Cfg("sms1", {"sms"}), Cfg("sms2", {"sms"}), Cfg("mail", {"email"}),
                  Cfg("voice", {"voice"})});
    AppService apps(*store_, clock_, otp::SystemRandom());
    app_ = apps.Create("shop", AppSettings{})->app;
    other_ = apps.Create("other", AppSettings{})->app;
  }

  // Makes ScriptedProviders, each reachable by its name in by_name_.
  ChannelFactory ScriptedFactory() {
    return [this](const ProviderConfig& c,
                  ProviderContext&) -> otp::Result<std::unique_ptr<ChannelProvider>> {
      auto p = std::make_unique<ScriptedProvider>();
      by_name_[c.name] = p.get();
      return std::unique_ptr<ChannelProvider>(std::move(p));
    };
  }
  // The service and dispatcher over these providers (replacing any before).
  void UseProviders(const std::vector<ProviderConfig>& configs) {
    auto set = ProviderSet::Create(configs, registry_, clock_);
    ASSERT_TRUE(set.ok());
    dispatcher_.reset();
    service_.reset();
    providers_ = std::make_unique<ProviderSet>(std::move(set).value());
    service_ = std::make_unique<VerificationService>(*store_, *providers_, secrets_, clock_,
                                                     otp::SystemRandom());
    dispatcher_ = std::make_unique<Dispatcher>(*store_, *providers_, secrets_, clock_);
  }

  std::string StartId(StartRequest req) {
    auto r = service_->Start(app_, req);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
    return nlohmann::json::parse(r->body)["id"];
  }
  StartRequest To(std::string to) {
    StartRequest r;
    r.to = std::move(to);
    return r;
  }
  // Sends what is due and returns the last code sent by `provider`.
  std::string Deliver(const std::string& provider = "sms1") {
    dispatcher_->RunOnce();
    const auto& sent = by_name_.at(provider)->sent;
    return sent.empty() ? "" : sent.back().code;
  }
  std::string WrongCode(const std::string& code) {
    std::string w = code;
    w[0] = w[0] == '9' ? '0' : static_cast<char>(w[0] + 1);
    return w;
  }

  otp::FakeClock clock_{1'700'000'000};
  std::unique_ptr<Store> store_ = NewMemoryStore();
  Secrets secrets_{MasterKey{1, 2, 3}};
  ChannelRegistry registry_;
  std::map<std::string, ScriptedProvider*> by_name_;
  std::unique_ptr<ProviderSet> providers_;
  std::unique_ptr<VerificationService> service_;
  std::unique_ptr<Dispatcher> dispatcher_;
  App app_;
  App other_;
};

TEST_F(VerificationsTest, StartStoresPendingAndQueuesTheFirstSend) {
  auto r = service_->Start(app_, To("+30 691 234 5678"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->http_status, 201);
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["to"], "+306912345678");
  EXPECT_EQ(j["status"], "pending");
  EXPECT_EQ(j["locale"], "el");  // from the number's region
  EXPECT_EQ(j["deliveries"][0]["status"], "queued");
  EXPECT_EQ(j.dump().find("code_hash"), std::string::npos);
  const std::string code = Deliver();
  ASSERT_EQ(code.size(), 6u);
  EXPECT_THAT(by_name_["sms1"]->sent.back().text, ::testing::HasSubstr(code));
  EXPECT_EQ(by_name_["sms1"]->sent.back().app_name, "shop");
  EXPECT_EQ(by_name_["sms1"]->sent.back().ttl_minutes, 10);
  auto v = service_->Get(app_, j["id"]);
  EXPECT_EQ(v->deliveries[0].status, kDeliverySent);
  EXPECT_EQ(v->deliveries[0].provider, "sms1");
  EXPECT_EQ(v->deliveries[0].provider_message_id, "msg-1");
  EXPECT_EQ(v->code_hash.find(code), std::string::npos);
}

TEST_F(VerificationsTest, RecipientsAreValidatedPerChannel) {
  EXPECT_EQ(service_->Start(app_, To("+1234")).error().code, ApiCode::kInvalidRecipient);
  EXPECT_EQ(service_->Start(app_, To("not-a-number")).error().code, ApiCode::kInvalidRecipient);
  StartRequest email = To("+306912345678");
  email.channel = "email";
  EXPECT_EQ(service_->Start(app_, email).error().code, ApiCode::kInvalidRecipient);
  email.to = "Someone@Example.COM";
  auto r = service_->Start(app_, email);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(nlohmann::json::parse(r->body)["to"], "Someone@example.com");
  StartRequest push = To("+306912345678");
  push.channel = "whatsapp";  // no provider carries it here
  EXPECT_EQ(service_->Start(app_, push).error().code, ApiCode::kChannelNotAllowed);
}

TEST_F(VerificationsTest, WrongThenRightThenReplay) {
  const std::string id = StartId(To("+306912345678"));
  const std::string code = Deliver();
  auto wrong = service_->Check(app_, id, WrongCode(code));
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(wrong->valid);
  EXPECT_EQ(wrong->remaining_checks, 4);
  auto right = service_->Check(app_, id, code);
  EXPECT_TRUE(right->valid);
  EXPECT_EQ(right->status, kApproved);
  auto replay = service_->Check(app_, id, code);
  ASSERT_FALSE(replay.ok());
  EXPECT_EQ(replay.error().code, ApiCode::kVerificationNotPending);
  EXPECT_EQ(replay.error().status, kApproved);
}

TEST_F(VerificationsTest, FiveWrongCodesEndIt) {
  const std::string id = StartId(To("+306912345678"));
  const std::string code = Deliver();
  for (int i = 1; i <= 5; ++i) {
    auto r = service_->Check(app_, id, WrongCode(code));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, i < 5 ? kPending : kMaxChecksReached);
  }
  EXPECT_EQ(service_->Check(app_, id, code).error().status, kMaxChecksReached);
}

TEST_F(VerificationsTest, Security2_ExpiresAtPlusOneSecondIsRefused) {
  const std::string id = StartId(To("+306912345678"));
  const std::string code = Deliver();
  auto v = service_->Get(app_, id);
  clock_.Set(otp::ToUnixSeconds(v->expires_at) + 1);
  auto r = service_->Check(app_, id, code);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ApiCode::kVerificationNotPending);
  EXPECT_EQ(r.error().status, kExpired);
  EXPECT_EQ(service_->Get(app_, id)->status, kExpired);
}

TEST_F(VerificationsTest, Security2_DefaultLifetimeIsTenMinutes) {
  const std::string id = StartId(To("+306912345678"));
  auto v = service_->Get(app_, id);
  EXPECT_EQ(v->expires_at - v->created_at, seconds(600));
}

TEST_F(VerificationsTest, Security3_ACodeOnlyWorksForItsOwnVerification) {
  const std::string a = StartId(To("+306912345678"));
  const std::string code_a = Deliver();
  const std::string b = StartId(To("+306912345679"));
  const std::string code_b = Deliver();
  if (code_a == code_b) GTEST_SKIP() << "the two random codes collided (1 in 10^6)";
  EXPECT_FALSE(service_->Check(app_, b, code_a)->valid);
  EXPECT_TRUE(service_->Check(app_, a, code_a)->valid);
}

TEST_F(VerificationsTest, Security23_AnotherAppsVerificationIsNotFound) {
  const std::string id = StartId(To("+306912345678"));
  const std::string code = Deliver();
  EXPECT_EQ(service_->Get(other_, id).error().code, ApiCode::kNotFound);
  EXPECT_EQ(service_->Check(other_, id, code).error().code, ApiCode::kNotFound);
  EXPECT_EQ(service_->Resend(other_, id, std::nullopt).error().code, ApiCode::kNotFound);
  EXPECT_EQ(service_->Cancel(other_, id).error().code, ApiCode::kNotFound);
  EXPECT_EQ(service_->CheckByRecipient(other_, "+306912345678", code).error().code,
            ApiCode::kNotFound);
  EXPECT_EQ(service_->Get(app_, id)->check_count, 0);  // nothing was spent
}

TEST_F(VerificationsTest, Security5_ResendKeepsTheCodeAndNeverResetsChecks) {
  const std::string id = StartId(To("+306912345678"));
  const std::string code = Deliver();
  ASSERT_TRUE(service_->Check(app_, id, WrongCode(code)).ok());
  auto early = service_->Resend(app_, id, std::nullopt);
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().code, ApiCode::kRateLimited);
  EXPECT_EQ(early.error().retry_after_s, 30);
  clock_.Advance(seconds(30));
  auto again = service_->Resend(app_, id, std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->send_count, 2);
  EXPECT_EQ(again->check_count, 1);
  EXPECT_EQ(Deliver(), code);
  // On another channel: voice carries the same code.
  clock_.Advance(seconds(30));
  ASSERT_TRUE(service_->Resend(app_, id, "voice").ok());
  EXPECT_EQ(Deliver("voice"), code);
  EXPECT_THAT(by_name_["voice"]->sent.back().text, ::testing::HasSubstr(SpokenCode(code)));
}

TEST_F(VerificationsTest, Security6_FiveSendsPerVerification) {
  const std::string id = StartId(To("+306912345678"));
  for (int i = 2; i <= 5; ++i) {
    clock_.Advance(seconds(30));
    ASSERT_TRUE(service_->Resend(app_, id, std::nullopt).ok()) << i;
  }
  clock_.Advance(seconds(30));
  EXPECT_EQ(service_->Resend(app_, id, std::nullopt).error().code, ApiCode::kMaxSendsReached);
}

TEST_F(VerificationsTest, Security6_FiveStartsPerRecipientPerTenMinutes) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(service_->Start(app_, To("+306912345678")).ok());
  auto sixth = service_->Start(app_, To("+306912345678"));
  ASSERT_FALSE(sixth.ok());
  EXPECT_EQ(sixth.error().code, ApiCode::kRateLimited);
  EXPECT_GT(sixth.error().retry_after_s, 0);
  EXPECT_TRUE(service_->Start(app_, To("+306912345679")).ok());    // another recipient
  EXPECT_TRUE(service_->Start(other_, To("+306912345678")).ok());  // another app
  clock_.Advance(seconds(601));
  EXPECT_TRUE(service_->Start(app_, To("+306912345678")).ok());
}

TEST_F(VerificationsTest, CancelDropsPendingSteps) {
  StartRequest req = To("+306912345678");
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"email", 60, "a@example.com"}};
  const std::string id = StartId(req);
  Deliver();
  auto c = service_->Cancel(app_, id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status, kCanceled);
  EXPECT_EQ(c->deliveries.back().status, kDeliveryCanceled);
  clock_.Advance(seconds(120));
  Deliver();
  EXPECT_TRUE(by_name_["mail"]->sent.empty());
  EXPECT_EQ(service_->Cancel(app_, id).error().status, kCanceled);
  EXPECT_EQ(service_->Resend(app_, id, std::nullopt).error().code,
            ApiCode::kVerificationNotPending);
}

TEST_F(VerificationsTest, ProviderFailoverWithinAChannel) {
  by_name_["sms1"]->fail = true;
  const std::string id = StartId(To("+306912345678"));
  const std::string code = Deliver("sms2");
  EXPECT_EQ(code.size(), 6u);
  auto v = service_->Get(app_, id);
  // Each provider tried is one delivery, in the order tried.
  ASSERT_EQ(v->deliveries.size(), 2u);
  EXPECT_EQ(v->deliveries[0].provider, "sms1");
  EXPECT_EQ(v->deliveries[0].status, kDeliveryFailed);
  EXPECT_EQ(v->deliveries[1].provider, "sms2");
  EXPECT_EQ(v->deliveries[1].status, kDeliverySent);
  EXPECT_EQ(v->deliveries[1].step, 0);
  EXPECT_EQ(v->deliveries[1].channel, "sms");
}

TEST_F(VerificationsTest, AProviderThatThrowsCountsAsAFailedSend) {
  by_name_["sms1"]->throws = true;
  const std::string id = StartId(To("+306912345678"));
  EXPECT_EQ(Deliver("sms2").size(), 6u);  // failover to the next provider
  auto v = service_->Get(app_, id);
  ASSERT_EQ(v->deliveries.size(), 2u);
  EXPECT_EQ(v->deliveries[0].status, kDeliveryFailed);
  EXPECT_NE(v->deliveries[0].error.find("provider threw"), std::string::npos);
  EXPECT_EQ(v->deliveries[1].provider, "sms2");
  EXPECT_EQ(v->deliveries[1].status, kDeliverySent);
}

TEST_F(VerificationsTest, ChannelFailoverWhenEveryProviderFails) {
  by_name_["sms1"]->fail = by_name_["sms2"]->fail = true;
  StartRequest req = To("+306912345678");
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"email", 60, "a@example.com"}};
  const std::string id = StartId(req);
  dispatcher_->RunOnce();  // sms fails on both providers; email is due at once
  const std::string code = Deliver("mail");
  ASSERT_EQ(code.size(), 6u);
  EXPECT_EQ(by_name_["mail"]->sent.back().to, "a@example.com");
  auto v = service_->Get(app_, id);
  ASSERT_EQ(v->deliveries.size(), 3u);  // sms1 and sms2 failed, then email
  EXPECT_EQ(v->deliveries[0].provider, "sms1");
  EXPECT_EQ(v->deliveries[0].status, kDeliveryFailed);
  EXPECT_EQ(v->deliveries[1].provider, "sms2");
  EXPECT_EQ(v->deliveries[1].status, kDeliveryFailed);
  EXPECT_EQ(v->deliveries[2].channel, "email");
  EXPECT_EQ(v->deliveries[2].status, kDeliverySent);
  EXPECT_TRUE(service_->Check(app_, id, code)->valid);
}

TEST_F(VerificationsTest, NextStepFiresOnTimeoutWithTheSameCode) {
  StartRequest req = To("+306912345678");
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"voice", 60, ""}};
  const std::string id = StartId(req);
  const std::string code = Deliver();
  clock_.Advance(seconds(59));
  Deliver();
  EXPECT_TRUE(by_name_["voice"]->sent.empty());
  clock_.Advance(seconds(1));
  EXPECT_EQ(Deliver("voice"), code);
  EXPECT_EQ(service_->Get(app_, id)->channel, "voice");  // the latest step fired
}

TEST_F(VerificationsTest, ApprovalBeforeTheTimeoutStopsTheWorkflow) {
  StartRequest req = To("+306912345678");
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"voice", 60, ""}};
  const std::string id = StartId(req);
  const std::string code = Deliver();
  ASSERT_TRUE(service_->Check(app_, id, code)->valid);
  clock_.Advance(seconds(120));
  Deliver();
  EXPECT_TRUE(by_name_["voice"]->sent.empty());
}

TEST_F(VerificationsTest, UndeliverableWhenEveryStepFails) {
  by_name_["sms1"]->fail = by_name_["sms2"]->fail = true;
  by_name_["mail"]->fail = true;
  StartRequest req = To("+306912345678");
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"email", 60, "a@example.com"}};
  const std::string id = StartId(req);
  dispatcher_->RunOnce();
  dispatcher_->RunOnce();
  auto v = service_->Get(app_, id);
  EXPECT_EQ(v->status, kUndeliverable);
  EXPECT_EQ(service_->Check(app_, id, "123456").error().status, kUndeliverable);
}

TEST_F(VerificationsTest, NotUndeliverableWhenAnEarlierStepGotThrough) {
  StartRequest req = To("+306912345678");
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"email", 60, "a@example.com"}};
  const std::string id = StartId(req);
  const std::string code = Deliver();  // the SMS went out
  by_name_["mail"]->fail = true;
  clock_.Advance(seconds(60));
  dispatcher_->RunOnce();  // the email step fails
  auto v = service_->Get(app_, id);
  EXPECT_EQ(v->status, kPending);
  EXPECT_EQ(v->deliveries.back().status, kDeliveryFailed);
  EXPECT_TRUE(service_->Check(app_, id, code)->valid);
}

TEST_F(VerificationsTest, NothingIsSentAfterExpiry) {
  StartRequest req = To("+306912345678");
  req.ttl_s = 60;
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"voice", 60, ""}};
  const std::string id = StartId(req);
  Deliver();
  clock_.Advance(seconds(61));  // the voice step is due, but the code has expired
  dispatcher_->RunOnce();
  EXPECT_TRUE(by_name_["voice"]->sent.empty());
  auto v = service_->Get(app_, id);
  EXPECT_EQ(v->status, kExpired);
  EXPECT_EQ(v->deliveries.back().status, kDeliveryCanceled);
}

TEST_F(VerificationsTest, IdempotentStart) {
  StartRequest req = To("+306912345678");
  req.idempotency_key = "k-1";
  req.body_hash = "h1";
  auto first = service_->Start(app_, req);
  auto second = service_->Start(app_, req);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->body, second->body);
  dispatcher_->RunOnce();
  EXPECT_EQ(by_name_["sms1"]->sent.size(), 1u);
  req.body_hash = "h2";
  EXPECT_EQ(service_->Start(app_, req).error().code, ApiCode::kIdempotencyKeyReused);
  // Keys are per app.
  EXPECT_TRUE(service_->Start(other_, req).ok());
  // And last 24 hours.
  clock_.Advance(std::chrono::hours(25));
  EXPECT_TRUE(service_->Start(app_, req).ok());
}

TEST_F(VerificationsTest, CheckByRecipientUsesTheNewestPending) {
  StartId(To("+306912345678"));
  Deliver();
  const std::string newer = StartId(To("+306912345678"));
  const std::string code = Deliver();
  auto r = service_->CheckByRecipient(app_, "+30 6912345678", code);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->id, newer);
  EXPECT_TRUE(r->valid);
  EXPECT_EQ(service_->CheckByRecipient(app_, "+306912345670", code).error().code,
            ApiCode::kNotFound);
}

TEST_F(VerificationsTest, CodeLengthAndLocaleFromTheRequest) {
  StartRequest req = To("+306912345678");
  req.code_length = 8;
  req.locale = "de-AT";
  const std::string id = StartId(req);
  EXPECT_EQ(Deliver().size(), 8u);
  EXPECT_EQ(service_->Get(app_, id)->locale, "de");
  EXPECT_THAT(by_name_["sms1"]->sent.back().text, ::testing::HasSubstr("Bestätigungscode"));
}

TEST_F(VerificationsTest, UndeliveredReportFiresTheNextStepAtOnce) {
  StartRequest req = To("+306912345678");
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"voice", 60, ""}};
  const std::string id = StartId(req);
  const std::string code = Deliver();
  bool recorded = false;
  dispatcher_->OnReport({"sms1", "msg-1", kDeliveryUndelivered, "UNDELIV"},
                        [&](bool r) { recorded = r; });
  EXPECT_EQ(dispatcher_->DrainReports(), 1);
  EXPECT_TRUE(recorded);
  EXPECT_EQ(Deliver("voice"), code);  // no clock advance: the report fired it
  auto v = service_->Get(app_, id);
  EXPECT_EQ(v->deliveries[0].status, kDeliveryUndelivered);
  EXPECT_EQ(v->deliveries[1].status, kDeliverySent);
}

TEST_F(VerificationsTest, DeliveredReportLeavesTheTimeoutInCharge) {
  StartRequest req = To("+306912345678");
  req.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"voice", 60, ""}};
  const std::string id = StartId(req);
  const std::string code = Deliver();
  auto applied = dispatcher_->ApplyReports({{"sms1", "msg-1", kDeliveryDelivered, "DELIVRD"}});
  ASSERT_TRUE(applied.ok());
  EXPECT_TRUE(applied->at(0).applied);
  Deliver();
  EXPECT_TRUE(by_name_["voice"]->sent.empty());
  EXPECT_EQ(service_->Get(app_, id)->deliveries[0].status, kDeliveryDelivered);
  clock_.Advance(seconds(60));
  EXPECT_EQ(Deliver("voice"), code);
}

TEST_F(VerificationsTest, FailedReportOnTheLastStepMakesItUndeliverable) {
  const std::string id = StartId(To("+306912345678"));  // one step
  Deliver();
  ASSERT_TRUE(dispatcher_->ApplyReports({{"sms1", "msg-1", kDeliveryFailed, "REJECTD"}}).ok());
  EXPECT_EQ(service_->Get(app_, id)->status, kUndeliverable);
}

// A provider that holds every send until `want` sends are in flight at once
// (or a deadline passes), recording the most it saw.
class GateProvider : public ChannelProvider {
 public:
  explicit GateProvider(int want) : want_(want) {}
  otp::Result<SendReceipt> Send(const OutboundMessage&) override {
    std::unique_lock lock(mu_);
    const int id = ++started_;
    max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return max_in_flight_ >= want_; });
    --in_flight_;
    ++done_;
    cv_.notify_all();
    return SendReceipt{"gate-" + std::to_string(id)};
  }
  bool WaitDone(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return done_ >= n; });
  }
  int max_in_flight() {
    std::lock_guard lock(mu_);
    return max_in_flight_;
  }

 private:
  const int want_;
  std::mutex mu_;
  std::condition_variable cv_;
  int started_ = 0;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  int done_ = 0;
};

TEST(DispatcherTest, SendsRunOnSeveralWorkersAtOnce) {
  otp::FakeClock clock{1'700'000'000};
  auto store = NewMemoryStore();
  Secrets secrets{MasterKey{1, 2, 3}};
  ChannelRegistry registry;
  GateProvider* gate = nullptr;
  registry.Register("gate",
                    [&](const ProviderConfig&,
                        ProviderContext&) -> otp::Result<std::unique_ptr<ChannelProvider>> {
                      auto p = std::make_unique<GateProvider>(4);
                      gate = p.get();
                      return std::unique_ptr<ChannelProvider>(std::move(p));
                    });
  auto providers = ProviderSet::Create({{"g", "gate", {"sms"}, {}}}, registry, clock);
  ASSERT_TRUE(providers.ok());
  VerificationService service(*store, *providers, secrets, clock, otp::SystemRandom());
  AppService apps(*store, clock, otp::SystemRandom());
  App app = apps.Create("shop", AppSettings{})->app;
  for (int i = 0; i < 8; ++i) {
    StartRequest r;
    r.to = "+30691234567" + std::to_string(i);
    ASSERT_TRUE(service.Start(app, r).ok());
  }
  Dispatcher dispatcher(*store, *providers, secrets, clock, nullptr, DispatcherOptions{4});
  dispatcher.Start();
  dispatcher.Notify();
  EXPECT_TRUE(gate->WaitDone(8));
  dispatcher.Stop();
  EXPECT_EQ(gate->max_in_flight(), 4);  // never more than the workers, and that many
  EXPECT_EQ(*store->CountJobs(), 0);
}

// One SMS sent through provider "r", which hands delivery reports to its sink:
// the setting of the dispatcher's report tests.
class DispatcherReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.Register(
        "reporting",
        [this](const ProviderConfig&,
               ProviderContext& context) -> otp::Result<std::unique_ptr<ChannelProvider>> {
          sink_ = &context.reports;
          return std::unique_ptr<ChannelProvider>(std::make_unique<ScriptedProvider>());
        });
    auto providers = ProviderSet::Create({{"r", "reporting", {"sms"}, {}}}, registry_, clock_);
    ASSERT_TRUE(providers.ok());
    providers_.emplace(std::move(providers).value());
    service_.emplace(*store_, *providers_, secrets_, clock_, otp::SystemRandom());
    AppService apps(*store_, clock_, otp::SystemRandom());
    app_ = apps.Create("shop", AppSettings{})->app;
    StartRequest r;
    r.to = "+306912345678";
    id_ = nlohmann::json::parse(service_->Start(app_, r)->body)["id"];
    dispatcher_.emplace(*store_, *providers_, secrets_, clock_);
    ASSERT_EQ(dispatcher_->RunOnce(), 1);
  }

  std::string DeliveryStatus() { return service_->Get(app_, id_)->deliveries[0].status; }

  otp::FakeClock clock_{1'700'000'000};
  std::unique_ptr<Store> store_ = NewMemoryStore();
  Secrets secrets_{MasterKey{1, 2, 3}};
  ChannelRegistry registry_;
  DeliveryReportSink* sink_ = nullptr;
  std::optional<ProviderSet> providers_;
  std::optional<VerificationService> service_;
  App app_;
  std::string id_;
  std::optional<Dispatcher> dispatcher_;
};

TEST_F(DispatcherReportTest, ProviderReportsReachTheStoreThroughTheSink) {
  dispatcher_->Start();  // becomes the providers' sink
  sink_->OnReport({"r", "msg-1", kDeliveryDelivered, "DELIVRD"}, nullptr);
  dispatcher_->Stop();  // applies what was received before stopping
  EXPECT_EQ(DeliveryStatus(), kDeliveryDelivered);
}

// A provider acknowledges a report to its sender (SMPP: deliver_sm_resp) only
// on this answer: given after the report is in the store, never before.
TEST_F(DispatcherReportTest, AReportIsAnsweredRecordedOnceItIsInTheStore) {
  dispatcher_->Start();
  std::promise<std::pair<bool, std::string>> answered;
  sink_->OnReport({"r", "msg-1", kDeliveryDelivered, "DELIVRD"}, [&](bool recorded) {
    answered.set_value({recorded, DeliveryStatus()});  // what the store holds at that moment
  });
  auto answer = answered.get_future();
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  const auto [recorded, status_then] = answer.get();
  EXPECT_TRUE(recorded);
  EXPECT_EQ(status_then, kDeliveryDelivered);
  dispatcher_->Stop();
}

// Once the dispatcher has stopped (otpd shutting down), reports are refused,
// so the sender keeps them and sends them again, rather than dropped as if
// taken; nothing changes in the store.
TEST_F(DispatcherReportTest, AReportAfterStopIsRefusedAndChangesNothing) {
  dispatcher_->Start();
  dispatcher_->Stop();
  std::optional<bool> recorded;
  sink_->OnReport({"r", "msg-1", kDeliveryDelivered, "DELIVRD"}, [&](bool r) { recorded = r; });
  EXPECT_EQ(recorded, std::optional<bool>(false));
  dispatcher_->OnReport({"r", "msg-1", kDeliveryDelivered, "DELIVRD"},
                        [&](bool r) { recorded = r; });  // straight to the stopped dispatcher
  EXPECT_EQ(recorded, std::optional<bool>(false));
  EXPECT_EQ(DeliveryStatus(), kDeliverySent);
}

TEST_F(DispatcherReportTest, AReportWithAStatusOfNoReportIsUnmatchedAndChangesNothing) {
  // Found by fuzz_api: a provider's raw status word ("deli\x8a\x99red", not
  // even UTF-8) reached the delivery row and made its event throw.
  for (const char* status : {"deli\x8a\x99red", "sent", "queued", ""}) {
    auto outcomes = dispatcher_->ApplyReports({{"r", "msg-1", status, ""}});
    ASSERT_TRUE(outcomes.ok()) << outcomes.status().ToString();
    ASSERT_EQ(outcomes->size(), 1u);
    EXPECT_FALSE((*outcomes)[0].matched) << status;
  }
  EXPECT_EQ(DeliveryStatus(), kDeliverySent);
  auto both = dispatcher_->ApplyReports(
      {{"r", "msg-1", "bogus", ""}, {"r", "msg-1", kDeliveryDelivered, ""}});
  ASSERT_TRUE(both.ok());
  EXPECT_FALSE((*both)[0].matched);
  EXPECT_TRUE((*both)[1].matched);
  EXPECT_EQ(DeliveryStatus(), kDeliveryDelivered);
}

// --- limits and fraud protection (SECURITY.md 6, 24, 29, 30)

class GuardsTest : public VerificationsTest {
 protected:
  App Update(std::function<void(AppSettings&)> change) {
    App a = app_;
    change(a.settings);
    EXPECT_TRUE(ValidateAppSettings(a.settings).ok());
    EXPECT_TRUE(store_->UpdateApp(a).ok());
    return a;
  }
  static std::vector<std::string> Flags(const StoredAnswer& a) {
    return nlohmann::json::parse(a.body)["flags"].get<std::vector<std::string>>();
  }
};
// Suites named after the SECURITY.md item they prove.
class Sec6_GuardsTest : public GuardsTest {};
class Sec29_GuardsTest : public GuardsTest {};
class Sec30_GuardsTest : public GuardsTest {};

TEST_F(Sec29_GuardsTest, GeoPermissionsBlockPerAppAndChannel) {
  App app = Update([](AppSettings& s) { s.geo.all.allowed = {"GR", "CY"}; });
  auto de = service_->Start(app, To("+4915123456789"));
  ASSERT_FALSE(de.ok());
  EXPECT_EQ(de.error().code, ApiCode::kCountryBlocked);
  EXPECT_EQ(de.error().guard, kFlagCountryBlocked);
  ASSERT_TRUE(service_->Start(app, To("+306912345678")).ok());
  // Voice may not call Greece: a workflow with a voice step to a Greek number is refused whole.
  app = Update([](AppSettings& s) {
    s.geo.all.allowed = {"GR", "CY"};
    s.geo.channels["voice"].blocked = {"GR"};
  });
  StartRequest both = To("+306912345679");
  both.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}, {"voice", 60, ""}};
  EXPECT_EQ(service_->Start(app, both).error().code, ApiCode::kCountryBlocked);
  both.workflow = std::vector<WorkflowStep>{{"sms", 60, ""}};
  ASSERT_TRUE(service_->Start(app, both).ok());
  // A resend on voice is refused too.
  const std::string id = StartId(To("+306912345670"));
  Deliver();
  clock_.Advance(seconds(31));
  EXPECT_EQ(service_->Resend(app, id, "voice").error().code, ApiCode::kCountryBlocked);
  EXPECT_TRUE(service_->Resend(app, id, "sms").ok());
}

TEST_F(Sec29_GuardsTest, MonitorModeLetsItThroughFlagged) {
  App app = Update([](AppSettings& s) {
    s.geo.all.blocked = {"DE"};
    s.geo.mode = "monitor";
  });
  auto de = service_->Start(app, To("+4915123456789"));
  ASSERT_TRUE(de.ok()) << de.error().detail;
  EXPECT_EQ(Flags(*de), std::vector<std::string>{kFlagCountryBlocked});
  EXPECT_EQ(de->flags, std::vector<std::string>{kFlagCountryBlocked});
  const std::string id = nlohmann::json::parse(de->body)["id"];
  EXPECT_EQ(service_->Get(app, id)->flags, std::vector<std::string>{kFlagCountryBlocked});
  auto gr = service_->Start(app, To("+306912345678"));
  ASSERT_TRUE(gr.ok());
  EXPECT_TRUE(Flags(*gr).empty());
}

TEST_F(Sec30_GuardsTest, StartsPerIpAcrossRecipients) {
  App app = Update([](AppSettings& s) { s.starts_per_ip = 3; });
  auto from = [&](const std::string& to, const std::string& ip) {
    StartRequest r = To(to);
    r.ip = ip;
    return service_->Start(app, r);
  };
  ASSERT_TRUE(from("+306912340001", "198.51.100.7").ok());
  ASSERT_TRUE(from("+306912340002", "198.51.100.7").ok());
  clock_.Advance(seconds(100));
  ASSERT_TRUE(from("+306912340003", "::ffff:198.51.100.7").ok());  // the same address
  auto fourth = from("+306912340004", "198.51.100.7");
  ASSERT_FALSE(fourth.ok());
  EXPECT_EQ(fourth.error().code, ApiCode::kRateLimited);
  EXPECT_EQ(fourth.error().guard, "ip");
  EXPECT_EQ(fourth.error().retry_after_s, 500);  // the first start leaves the 600 s window
  EXPECT_TRUE(from("+306912340004", "198.51.100.8").ok());
  EXPECT_TRUE(from("+306912340005", "").ok());
  EXPECT_EQ(from("+306912340006", "not-an-ip").error().code, ApiCode::kInvalidRequest);
  // IPv6 counts per /64.
  ASSERT_TRUE(from("+306912340007", "2001:db8:0:1::1").ok());
  ASSERT_TRUE(from("+306912340008", "2001:db8:0:1::2").ok());
  ASSERT_TRUE(from("+306912340009", "2001:db8:0:1:ffff::3").ok());
  EXPECT_EQ(from("+306912340010", "2001:db8:0:1::4").error().guard, "ip");
}

TEST_F(Sec6_GuardsTest, RetryAfterIsWhenTheOldestStartLeavesTheWindow) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(service_->Start(app_, To("+306912345678")).ok());
    clock_.Advance(seconds(10));
  }
  auto sixth = service_->Start(app_, To("+306912345678"));
  ASSERT_FALSE(sixth.ok());
  EXPECT_EQ(sixth.error().guard, "recipient");
  EXPECT_EQ(sixth.error().retry_after_s, 550);
}

TEST_F(Sec30_GuardsTest, PumpingGuardBlocksAPrefixWithinItsThreshold) {
  App app = Update([](AppSettings& s) {
    s.fraud.prefix_threshold = 5;
    s.fraud.min_conversion_pct = 20;
  });
  // An attack on +30691234xxxx: 5 starts pass, the 6th is refused.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(service_->Start(app, To("+30691234" + std::to_string(1000 + i))).ok());
  }
  auto sixth = service_->Start(app, To("+306912349999"));
  ASSERT_FALSE(sixth.ok());
  EXPECT_EQ(sixth.error().code, ApiCode::kRateLimited);
  EXPECT_EQ(sixth.error().guard, kFlagPumpingSuspected);
  EXPECT_THAT(sixth.error().detail, ::testing::HasSubstr("SMS-pumping guard"));
  // The starts were all in minute 0 of the window: clear when it leaves (≤ 1 h + 1 min).
  EXPECT_GT(sixth.error().retry_after_s, 3600 - 60);
  EXPECT_LE(sixth.error().retry_after_s, 3600 + 60);
  // Other prefixes flow; a safe-listed number in the prefix goes through, uncounted.
  EXPECT_TRUE(service_->Start(app, To("+306912350000")).ok());
  ASSERT_TRUE(store_->AddSafeListEntry({app.id, "+306912349999", clock_.Now()}).ok());
  auto safe = service_->Start(app, To("+306912349999"));
  ASSERT_TRUE(safe.ok());
  EXPECT_EQ(service_->Get(app, nlohmann::json::parse(safe->body)["id"])->guard_prefix, "");
  // Another app is not affected.
  EXPECT_TRUE(service_->Start(other_, To("+306912341999")).ok());
  // After the window, the prefix flows again.
  clock_.Advance(seconds(3600 + 60));
  EXPECT_TRUE(service_->Start(app, To("+306912349998")).ok());
}

TEST_F(Sec30_GuardsTest, ApprovalsKeepAPrefixOpen) {
  App app = Update([](AppSettings& s) {
    s.fraud.prefix_threshold = 5;
    s.fraud.min_conversion_pct = 20;
  });
  std::string first;
  for (int i = 0; i < 5; ++i) {
    auto r = service_->Start(app, To("+30691234" + std::to_string(1000 + i)));
    ASSERT_TRUE(r.ok());
    if (i == 0) first = nlohmann::json::parse(r->body)["id"];
  }
  // One of five approved (20 %): not under the floor.
  Deliver();
  std::string code;
  for (const OutboundMessage& m : by_name_["sms1"]->sent) {
    if (m.verification_id == first) code = m.code;
  }
  ASSERT_FALSE(code.empty());
  ASSERT_TRUE(service_->Check(app, first, code)->valid);
  EXPECT_TRUE(service_->Start(app, To("+306912342000")).ok());
  // Now 1 of 6 (16 %): the next is refused.
  EXPECT_EQ(service_->Start(app, To("+306912342001")).error().guard, kFlagPumpingSuspected);
}

TEST_F(Sec30_GuardsTest, MonitorModeFlagsAndOffCountsNothing) {
  App app = Update([](AppSettings& s) {
    s.fraud.prefix_threshold = 2;
    s.fraud.mode = "monitor";
  });
  ASSERT_TRUE(service_->Start(app, To("+306912341000")).ok());
  ASSERT_TRUE(service_->Start(app, To("+306912341001")).ok());
  auto third = service_->Start(app, To("+306912341002"));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(Flags(*third), std::vector<std::string>{kFlagPumpingSuspected});
  app = Update([](AppSettings& s) {
    s.fraud.prefix_threshold = 2;
    s.fraud.mode = "off";
  });
  auto off = service_->Start(app, To("+306912341003"));
  ASSERT_TRUE(off.ok());
  EXPECT_TRUE(Flags(*off).empty());
  EXPECT_EQ(service_->Get(app, nlohmann::json::parse(off->body)["id"])->guard_prefix, "");
}

TEST_F(Sec30_GuardsTest, RegionThresholdJudgesAWholeRegion) {
  App app = Update([](AppSettings& s) {
    s.fraud.prefix_threshold = 1000;
    s.fraud.region_threshold = 3;
  });
  ASSERT_TRUE(service_->Start(app, To("+306911110000")).ok());
  ASSERT_TRUE(service_->Start(app, To("+306922220000")).ok());
  ASSERT_TRUE(service_->Start(app, To("+306933330000")).ok());
  auto fourth = service_->Start(app, To("+306944440000"));
  ASSERT_FALSE(fourth.ok());
  EXPECT_THAT(fourth.error().detail, ::testing::HasSubstr("of this region"));
  EXPECT_TRUE(service_->Start(app, To("+35799123456")).ok());  // Cyprus
}

// A sandbox app: what it relaxes and what it still enforces.
class Sec30_SandboxTest : public VerificationsTest {
 protected:
  void SetUp() override {
    VerificationsTest::SetUp();
    registry_.Register("log", ScriptedFactory());  // stands in for the log provider
    UseProviders({{"carrier", "scripted", {"sms", "email"}, {}}, {"dev-log", "log", {"sms"}, {}}});
    AppSettings s;
    s.sandbox = true;
    s.fraud.prefix_threshold = 1;
    s.geo.all.blocked = {"DE"};
    app_ = AppService(*store_, clock_, otp::SystemRandom()).Create("sandbox", s)->app;
  }
};

TEST_F(Sec30_SandboxTest, DeliversOnlyThroughLogProviders) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(service_->Start(app_, To("+306912345678")).ok());
  dispatcher_->RunOnce();
  EXPECT_TRUE(by_name_["carrier"]->sent.empty());  // first in config order, skipped
  EXPECT_EQ(by_name_["dev-log"]->sent.size(), 3u);
  // Email has no log provider here: refused, not sent through the carrier.
  StartRequest email = To("a@example.com");
  email.channel = "email";
  EXPECT_EQ(service_->Start(app_, email).error().code, ApiCode::kChannelNotAllowed);
}

TEST_F(Sec30_SandboxTest, RelaxesStartLimitsCooldownAndThePumpingGuard) {
  // Per-recipient (5) and pumping threshold (1) do not apply...
  std::string id;
  for (int i = 0; i < 8; ++i) {
    auto r = service_->Start(app_, To("+306912345678"));
    ASSERT_TRUE(r.ok()) << r.error().detail;
    id = nlohmann::json::parse(r->body)["id"];
  }
  dispatcher_->RunOnce();
  // ... nor the resend cooldown, but max_sends does.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(service_->Resend(app_, id, std::nullopt).ok());
  EXPECT_EQ(service_->Resend(app_, id, std::nullopt).error().code, ApiCode::kMaxSendsReached);
}

TEST_F(Sec30_SandboxTest, StillEnforcesChecksGeoAndRecipients) {
  EXPECT_EQ(service_->Start(app_, To("+4915123456789")).error().code, ApiCode::kCountryBlocked);
  EXPECT_EQ(service_->Start(app_, To("+1234")).error().code, ApiCode::kInvalidRecipient);
  auto r = service_->Start(app_, To("+306912345678"));
  ASSERT_TRUE(r.ok());
  const std::string id = nlohmann::json::parse(r->body)["id"];
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(service_->Check(app_, id, "000000x").ok());
  EXPECT_EQ(service_->Get(app_, id)->status, kMaxChecksReached);
}

}  // namespace
}  // namespace otpd
