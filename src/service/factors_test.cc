// FactorService over the memory store (and SQLite for concurrency), with an
// injected clock: TOTP windows, drift, replays, HOTP look-ahead, resync,
// throttling and lockout, recovery codes, validation. Codes are computed with
// libotp from the secret the create answer shows (third-party cross-checks are
// in tests/integration/test_factors.py).
#include "service/factors.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "otp/base32.h"
#include "otp/otpauth_uri.h"
#include "otp/totp.h"
#include "service/apps.h"
#include "store/memory/memory_store.h"
#include "store/open_store.h"

namespace otpd {
namespace {

using std::chrono::seconds;

class FactorsTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(NewMemoryStore()); }

  void Open(std::unique_ptr<Store> store) {
    store_ = std::move(store);
    service_ = std::make_unique<FactorService>(*store_, secrets_, clock_, otp::SystemRandom());
    AppService apps(*store_, clock_, otp::SystemRandom());
    app_ = apps.Create("shop", AppSettings{})->app;
    other_ = apps.Create("other", AppSettings{})->app;
  }

  CreatedFactor Create(const std::string& type, const std::string& user = "alice",
                       std::optional<std::string> algorithm = {}, std::optional<int> digits = {}) {
    CreateFactorRequest req;
    req.type = type;
    req.algorithm = algorithm;
    req.digits = digits;
    auto r = service_->Create(app_, user, req);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
    return *r;
  }

  otp::HotpKey KeyOf(const CreatedFactor& f) {
    auto secret = otp::Base32Decode(f.secret_base32);
    return *otp::HotpKey::Create(*secret, *otp::ParseHashAlgorithm(f.factor.algorithm));
  }
  // The TOTP code `steps_off` steps from now.
  std::string Totp(const CreatedFactor& f, int steps_off = 0) {
    const std::int64_t t = otp::ToUnixSeconds(clock_.Now()) + steps_off * f.factor.period;
    return otp::TotpGenerate(KeyOf(f), t, otp::TotpParams{f.factor.digits, f.factor.period, 0});
  }
  std::string Hotp(const CreatedFactor& f, std::uint64_t counter) {
    return KeyOf(f).Generate(counter, f.factor.digits);
  }
  // A created and activated factor.
  CreatedFactor Active(const std::string& type, const std::string& user = "alice") {
    CreatedFactor f = Create(type, user);
    const std::string code = type == "totp" ? Totp(f) : Hotp(f, 0);
    auto a = service_->Activate(app_, user, f.factor.id, code);
    EXPECT_TRUE(a.ok() && a->valid);
    if (type == "totp") clock_.Advance(seconds(30));  // the next verify needs a new step
    return f;
  }
  bool Verify(const std::string& code, const std::string& user = "alice",
              std::optional<std::string> factor_id = {}) {
    auto r = service_->Verify(app_, user, code, factor_id);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
    return r.ok() && r->valid;
  }
  std::string Wrong(const std::string& code) {
    std::string w = code;
    w[0] = w[0] == '9' ? '0' : static_cast<char>(w[0] + 1);
    return w;
  }
  std::vector<std::string> EventTypes() {
    std::vector<std::string> out;
    const auto rows = store_->ListEvents(app_.id, 0, 1000).value();
    for (const Event& e : rows) out.push_back(e.type);
    return out;
  }

  otp::FakeClock clock_{1'700'000'010};
  Secrets secrets_{MasterKey{4, 5, 6}};
  std::unique_ptr<Store> store_;
  std::unique_ptr<FactorService> service_;
  App app_;
  App other_;
};

TEST_F(FactorsTest, CreateGeneratesASealedSecretOfTheAlgorithmsSize) {
  for (const auto& [alg, bytes] : std::vector<std::pair<std::string, std::size_t>>{
           {"SHA1", 20}, {"SHA256", 32}, {"SHA512", 64}}) {
    CreatedFactor f = Create("totp", "alice", alg, 8);
    EXPECT_EQ(otp::Base32Decode(f.secret_base32)->size(), bytes) << alg;
    EXPECT_EQ(f.factor.id.rfind("fac_", 0), 0u);
    EXPECT_EQ(f.factor.status, kFactorUnverified);
    Factor stored = *store_->GetFactor(app_.id, "alice", f.factor.id);
    EXPECT_EQ(stored.secret_sealed.find(f.secret_base32), std::string::npos);
    // Sealed under the factor id: the blob opens for its own row only.
    EXPECT_TRUE(secrets_.keyring.Open(stored.secret_sealed, FactorSealingContext(stored.id)).ok());
    EXPECT_FALSE(secrets_.keyring.Open(stored.secret_sealed, FactorSealingContext("fac_x")).ok());
    auto uri = otp::ParseOtpAuthUri(f.otpauth_uri);
    ASSERT_TRUE(uri.ok()) << f.otpauth_uri;
    EXPECT_EQ(otp::Base32Encode(uri->secret), f.secret_base32);
    EXPECT_EQ(uri->digits, 8);
    EXPECT_EQ(uri->issuer, "shop");  // the app's name by default
    EXPECT_EQ(uri->account, "alice");
    EXPECT_EQ(*service_->OtpAuthUri(stored), f.otpauth_uri);
  }
  CreatedFactor d = Create("totp");
  EXPECT_NE(d.otpauth_uri.find("algorithm=SHA1&digits=6&period=30"), std::string::npos);
  CreatedFactor h = Create("hotp");
  EXPECT_NE(h.otpauth_uri.find("otpauth://hotp/"), std::string::npos);
  EXPECT_NE(h.otpauth_uri.find("counter=0"), std::string::npos);
  EXPECT_EQ(EventTypes().front(), "factor.created");
}

TEST_F(FactorsTest, CreateValidates) {
  auto field = [&](CreateFactorRequest req, const std::string& user = "alice") {
    auto r = service_->Create(app_, user, req);
    if (r.ok()) return std::string("ok");
    return r.error().errors.empty() ? r.error().detail : r.error().errors[0].field;
  };
  CreateFactorRequest base;
  base.type = "totp";
  EXPECT_EQ(field(base), "ok");
  CreateFactorRequest r = base;
  r.type = "sms";
  EXPECT_EQ(field(r), "type");
  r = base;
  r.digits = 5;
  EXPECT_EQ(field(r), "digits");
  r.digits = 11;
  EXPECT_EQ(field(r), "digits");
  r = base;
  r.period = 14;
  EXPECT_EQ(field(r), "period");
  r.period = 121;
  EXPECT_EQ(field(r), "period");
  r.period = 120;
  EXPECT_EQ(field(r), "ok");
  r = base;
  r.algorithm = "MD5";
  EXPECT_EQ(field(r), "algorithm");
  r = base;
  r.issuer = "a:b";
  EXPECT_EQ(field(r), "issuer");
  r = base;
  r.serial = "NOPE";
  EXPECT_EQ(field(r), "serial");
  EXPECT_EQ(service_->Create(app_, "", base).error().code, ApiCode::kNotFound);
  EXPECT_EQ(service_->Create(app_, std::string(129, 'a'), base).error().code, ApiCode::kNotFound);
  EXPECT_EQ(service_->Create(app_, "a b", base).error().code, ApiCode::kNotFound);
  EXPECT_EQ(field(base, std::string(128, 'a')), "ok");
  EXPECT_EQ(field(base, "A-z0.9_@:-"), "ok");
}

TEST_F(FactorsTest, ActivationNeedsOneValidCodeBeforeTheFactorCounts) {
  CreatedFactor f = Create("totp");
  EXPECT_FALSE(Verify(Totp(f)));  // unverified factors do not verify
  auto bad = service_->Activate(app_, "alice", f.factor.id, Wrong(Totp(f)));
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad->valid);
  EXPECT_EQ(bad->status, kFactorUnverified);
  auto good = service_->Activate(app_, "alice", f.factor.id, Totp(f));
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(good->valid);
  EXPECT_EQ(good->status, kFactorActive);
  // Another app, another user: 404.
  EXPECT_EQ(service_->Activate(other_, "alice", f.factor.id, Totp(f)).error().code,
            ApiCode::kNotFound);
  EXPECT_EQ(service_->Activate(app_, "bob", f.factor.id, Totp(f)).error().code, ApiCode::kNotFound);
  const auto types = EventTypes();
  EXPECT_NE(std::find(types.begin(), types.end(), "factor.activated"), types.end());
}

TEST_F(FactorsTest, TotpWindowIsOneStepEitherSide) {
  CreatedFactor f = Active("totp");
  clock_.Advance(seconds(60));  // clear of the activation's step
  // Drift of the person's clock: ±1 step accepted, ±2 refused.
  EXPECT_FALSE(Verify(Totp(f, -2)));
  EXPECT_FALSE(Verify(Totp(f, 2)));
  EXPECT_TRUE(Verify(Totp(f, -1)));
  clock_.Advance(seconds(30));
  EXPECT_TRUE(Verify(Totp(f, 1)));
}

TEST_F(FactorsTest, TotpWindowIsAnAppSetting) {
  app_.settings.totp_window = 0;
  CreatedFactor f = Create("totp");
  ASSERT_TRUE(service_->Activate(app_, "alice", f.factor.id, Totp(f))->valid);
  clock_.Advance(seconds(90));
  EXPECT_FALSE(Verify(Totp(f, -1)));
  EXPECT_FALSE(Verify(Totp(f, 1)));
  EXPECT_TRUE(Verify(Totp(f)));
  app_.settings.totp_window = 2;
  clock_.Advance(seconds(30));
  EXPECT_TRUE(Verify(Totp(f, 2)));
}

TEST_F(FactorsTest, TotpNeverAcceptsTheSameOrAnEarlierStepTwice) {
  CreatedFactor f = Active("totp");
  const std::string now_code = Totp(f);
  EXPECT_TRUE(Verify(now_code));
  EXPECT_FALSE(Verify(now_code));     // same step
  EXPECT_FALSE(Verify(Totp(f, -1)));  // earlier step, inside the window
  clock_.Advance(seconds(10));        // same step still
  EXPECT_FALSE(Verify(now_code));
  EXPECT_TRUE(Verify(Totp(f, 1)));  // a later step
  int replays = 0;
  const auto rows = store_->ListAudit(app_.id, 100).value();
  for (const AuditEntry& e : rows) {
    if (e.action == "factor.replay") {
      ++replays;
      EXPECT_EQ(e.subject, f.factor.id);
      EXPECT_EQ(e.detail.find(now_code), std::string::npos);  // no code in the audit
    }
  }
  EXPECT_EQ(replays, 3);
}

TEST_F(FactorsTest, TotpWithEightDigitsAndSha512) {
  CreatedFactor f = Create("totp", "alice", "SHA512", 8);
  ASSERT_TRUE(service_->Activate(app_, "alice", f.factor.id, Totp(f))->valid);
  clock_.Advance(seconds(30));
  EXPECT_EQ(Totp(f).size(), 8u);
  EXPECT_FALSE(Verify(Totp(f).substr(0, 6)));
  EXPECT_TRUE(Verify(Totp(f)));
}

TEST_F(FactorsTest, HotpLooksAheadTenAndMovesPastTheAcceptedCounter) {
  CreatedFactor f = Active("hotp");   // counter 0 used: next is 1
  EXPECT_FALSE(Verify(Hotp(f, 12)));  // c + 11
  EXPECT_TRUE(Verify(Hotp(f, 11)));   // c + 10
  EXPECT_EQ(store_->GetFactor(app_.id, "alice", f.factor.id)->counter, 12);
  EXPECT_FALSE(Verify(Hotp(f, 11)));  // used
  EXPECT_FALSE(Verify(Hotp(f, 5)));   // behind
  EXPECT_TRUE(Verify(Hotp(f, 12)));
}

TEST_F(FactorsTest, ResyncHotpWithTwoConsecutiveCodes) {
  CreatedFactor f = Active("hotp");  // next: 1
  EXPECT_FALSE(Verify(Hotp(f, 60)));
  // Not consecutive: refused.
  EXPECT_FALSE(service_->Resync(app_, "alice", f.factor.id, Hotp(f, 60), Hotp(f, 62))->valid);
  // Past the 100-counter window: refused.
  EXPECT_FALSE(service_->Resync(app_, "alice", f.factor.id, Hotp(f, 102), Hotp(f, 103))->valid);
  auto r = service_->Resync(app_, "alice", f.factor.id, Hotp(f, 60), Hotp(f, 61));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->valid);
  EXPECT_EQ(store_->GetFactor(app_.id, "alice", f.factor.id)->counter, 62);
  EXPECT_FALSE(Verify(Hotp(f, 61)));
  EXPECT_TRUE(Verify(Hotp(f, 62)));
}

TEST_F(FactorsTest, ResyncTotpLearnsTheDrift) {
  CreatedFactor f = Active("totp");
  // The token's clock runs 20 steps (10 minutes) ahead.
  EXPECT_FALSE(Verify(Totp(f, 20)));
  EXPECT_FALSE(service_->Resync(app_, "alice", f.factor.id, Totp(f, 51), Totp(f, 52))->valid);
  auto r = service_->Resync(app_, "alice", f.factor.id, Totp(f, 20), Totp(f, 21));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->valid);
  EXPECT_EQ(store_->GetFactor(app_.id, "alice", f.factor.id)->drift, 21);
  clock_.Advance(seconds(60));
  EXPECT_TRUE(Verify(Totp(f, 20)));  // verified around the learned drift
  EXPECT_FALSE(Verify(Totp(f, 0)));
  // A resync backwards (clock behind) also works.
  auto back = service_->Resync(app_, "alice", f.factor.id, Totp(f, -30), Totp(f, -29));
  EXPECT_FALSE(back->valid);  // steps at or below the last accepted one are replays
}

TEST_F(FactorsTest, ThrottlingDelaysThenLocksAndUnlockClears) {
  CreatedFactor f = Active("totp");
  for (int i = 1; i <= 4; ++i) EXPECT_FALSE(Verify("000000"));
  EXPECT_TRUE(Verify(Totp(f)));  // a success clears the count
  clock_.Advance(seconds(30));
  for (int i = 1; i <= 5; ++i) EXPECT_FALSE(Verify("000000"));
  // Even a right code answers user_throttled for 30 s.
  auto r = service_->Verify(app_, "alice", Totp(f), std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ApiCode::kUserThrottled);
  EXPECT_EQ(r.error().retry_after_s, 30);
  clock_.Advance(std::chrono::milliseconds(29'500));
  r = service_->Verify(app_, "alice", Totp(f), std::nullopt);
  EXPECT_EQ(r.error().retry_after_s, 1);  // rounded up
  clock_.Advance(std::chrono::milliseconds(500));
  EXPECT_FALSE(Verify("000000"));  // 6th failure: 60 s
  r = service_->Verify(app_, "alice", Totp(f), std::nullopt);
  EXPECT_EQ(r.error().retry_after_s, 60);
  clock_.Advance(seconds(60));
  EXPECT_FALSE(Verify("000000"));  // 7th: 120 s
  EXPECT_EQ(service_->Verify(app_, "alice", "1", std::nullopt).error().retry_after_s, 120);
  // Activation and resync count and are refused alike.
  EXPECT_EQ(service_->Resync(app_, "alice", f.factor.id, "1", "2").error().code,
            ApiCode::kUserThrottled);
  // Up to the 99th failure the delay grows to its 1 h cap; the 100th locks.
  for (int i = 8; i <= 99; ++i) {
    clock_.Advance(seconds(3600));
    ASSERT_FALSE(Verify("000000")) << i;
  }
  EXPECT_EQ(service_->Verify(app_, "alice", "1", std::nullopt).error().retry_after_s, 3600);
  clock_.Advance(seconds(3600));
  EXPECT_FALSE(Verify("000000"));
  clock_.Advance(seconds(86400 * 30));
  r = service_->Verify(app_, "alice", Totp(f), std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ApiCode::kFactorLocked);
  EXPECT_EQ(Describe(r.error().code).http_status, 423);
  // Another user and another app are not affected.
  EXPECT_FALSE(Verify("000000", "bob"));
  EXPECT_TRUE(service_->Verify(other_, "alice", "000000", std::nullopt).ok());
  const auto types = EventTypes();
  EXPECT_EQ(std::count(types.begin(), types.end(), "factor.locked"), 1);

  EXPECT_TRUE(*store_->UnlockUser(app_.id, "alice", "otpctl", clock_.Now()));
  EXPECT_TRUE(Verify(Totp(f)));
}

TEST_F(FactorsTest, RecoveryCodesAreSingleUseAndReplacedAsASet) {
  auto codes = service_->IssueRecoveryCodes(app_, "alice");
  ASSERT_TRUE(codes.ok());
  ASSERT_EQ(codes->size(), 10u);
  std::set<std::string> distinct(codes->begin(), codes->end());
  EXPECT_EQ(distinct.size(), 10u);
  for (const std::string& c : *codes) {
    ASSERT_EQ(c.size(), 19u) << c;
    EXPECT_EQ(c[4], '-');
    EXPECT_EQ(NormaliseRecoveryCode(c).size(), 16u);  // 80 bits of base32
    for (char ch : c)
      EXPECT_TRUE(ch == '-' || (ch >= 'a' && ch <= 'z') || (ch >= '2' && ch <= '7'));
  }
  // Stored hashed only.
  const auto rows = store_->ListRecoveryCodes(app_.id, "alice").value();
  for (const RecoveryCode& rc : rows) {
    for (const std::string& c : *codes) {
      EXPECT_EQ(rc.code_hash.find(NormaliseRecoveryCode(c)), std::string::npos);
    }
  }
  // Typed in upper case without dashes: accepted once.
  std::string typed = NormaliseRecoveryCode((*codes)[0]);
  std::transform(typed.begin(), typed.end(), typed.begin(), ::toupper);
  auto r = service_->Verify(app_, "alice", typed, std::nullopt);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->valid);
  EXPECT_EQ(r->type, "recovery_code");
  EXPECT_TRUE(r->factor_id.empty());
  EXPECT_FALSE(Verify((*codes)[0]));
  // Not another user's, not another app's, not with a factor_id.
  EXPECT_FALSE(Verify((*codes)[1], "bob"));
  EXPECT_FALSE(service_->Verify(other_, "alice", (*codes)[1], std::nullopt)->valid);
  CreatedFactor f = Active("totp");
  EXPECT_FALSE(Verify((*codes)[1], "alice", f.factor.id));
  EXPECT_TRUE(Verify((*codes)[1]));
  // A new set replaces the old one.
  auto fresh = service_->IssueRecoveryCodes(app_, "alice");
  EXPECT_FALSE(Verify((*codes)[2]));
  EXPECT_TRUE(Verify((*fresh)[2]));
  const auto types = EventTypes();
  EXPECT_EQ(std::count(types.begin(), types.end(), "recovery_codes.issued"), 2);
  EXPECT_EQ(std::count(types.begin(), types.end(), "recovery_code.used"), 3);
}

TEST_F(FactorsTest, VerifyByFactorIdTriesThatFactorOnly) {
  CreatedFactor t = Active("totp");
  CreatedFactor h = Active("hotp");
  auto r = service_->Verify(app_, "alice", Hotp(h, 1), t.factor.id);
  EXPECT_FALSE(r->valid);
  r = service_->Verify(app_, "alice", Hotp(h, 1), std::nullopt);
  EXPECT_TRUE(r->valid);
  EXPECT_EQ(r->factor_id, h.factor.id);
  EXPECT_EQ(r->type, "hotp");
  EXPECT_EQ(service_->Verify(app_, "alice", "123456", "fac_nope").error().code, ApiCode::kNotFound);
  EXPECT_EQ(service_->Verify(other_, "alice", "123456", t.factor.id).error().code,
            ApiCode::kNotFound);
}

TEST_F(FactorsTest, DeleteTakesEffectAtOnce) {
  CreatedFactor f = Active("totp");
  EXPECT_TRUE(service_->Delete(other_, "alice", f.factor.id).code == ApiCode::kNotFound);
  EXPECT_TRUE(service_->Delete(app_, "alice", f.factor.id).ok());
  EXPECT_FALSE(Verify(Totp(f)));
  EXPECT_EQ(service_->Delete(app_, "alice", f.factor.id).code, ApiCode::kNotFound);
  EXPECT_TRUE(service_->List(app_, "alice")->empty());
  EXPECT_EQ(EventTypes().back(), "factor.deleted");
}

TEST_F(FactorsTest, HardwareTokenBindsActivatesAndFreesOnDelete) {
  const std::vector<std::uint8_t> seed(20, 0x42);
  HardwareToken t;
  t.serial = "HW-1";
  t.type = "hotp";
  t.secret_sealed =
      *secrets_.keyring.Seal(seed, HardwareTokenSealingContext("HW-1"), otp::SystemRandom());
  t.counter = 7;
  t.imported_at = clock_.Now();
  ASSERT_TRUE(store_->ImportHardwareTokens({t}).ok());
  CreateFactorRequest req;
  req.type = "hotp";
  req.serial = "HW-1";
  auto bound = service_->Create(app_, "alice", req);
  ASSERT_TRUE(bound.ok()) << bound.error().detail;
  EXPECT_TRUE(bound->secret_base32.empty());
  EXPECT_TRUE(bound->otpauth_uri.empty());
  EXPECT_EQ(bound->factor.serial, "HW-1");
  auto again = service_->Create(app_, "bob", req);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().errors.at(0).field, "serial");
  const otp::HotpKey key = *otp::HotpKey::Create(seed, otp::HashAlgorithm::kSha1);
  EXPECT_TRUE(service_->Activate(app_, "alice", bound->factor.id, key.Generate(7, 6))->valid);
  EXPECT_TRUE(Verify(key.Generate(8, 6)));
  ASSERT_TRUE(service_->Delete(app_, "alice", bound->factor.id).ok());
  EXPECT_EQ(store_->ListHardwareTokens(true)->at(0).counter, 9);
}

TEST(FactorsSqliteTest, ConcurrentSameCodeGivesExactlyOneSuccess) {
  auto dir =
      std::filesystem::temp_directory_path() / ("otpd_factors_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto store = OpenStore("sqlite://" + (dir / "otpd.db").string());
  ASSERT_TRUE(store.ok());
  otp::FakeClock clock{1'700'000'010};
  Secrets secrets{MasterKey{7}};
  FactorService service(**store, secrets, clock, otp::SystemRandom());
  AppService apps(**store, clock, otp::SystemRandom());
  const App app = apps.Create("shop", AppSettings{})->app;
  for (const std::string type : {"totp", "hotp"}) {
    const std::string user = "user-" + type;
    CreateFactorRequest req;
    req.type = type;
    CreatedFactor f = *service.Create(app, user, req);
    const otp::HotpKey key =
        *otp::HotpKey::Create(*otp::Base32Decode(f.secret_base32), otp::HashAlgorithm::kSha1);
    auto code = [&] {
      return type == "totp" ? otp::TotpGenerate(key, otp::ToUnixSeconds(clock.Now()), {})
                            : key.Generate(1, 6);
    };
    ASSERT_TRUE(
        service.Activate(app, user, f.factor.id, type == "totp" ? code() : key.Generate(0, 6))
            ->valid);
    clock.Advance(seconds(30));
    const std::string c = code();
    std::atomic<int> valid{0};
    std::atomic<int> answered{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&] {
        auto r = service.Verify(app, user, c, std::nullopt);
        if (r.ok()) ++answered;
        if (r.ok() && r->valid) ++valid;
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(answered.load(), 4) << type;
    EXPECT_EQ(valid.load(), 1) << type;
  }
  store->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace otpd
