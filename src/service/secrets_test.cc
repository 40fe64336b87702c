// Master key files, rotation, a keyring that follows another process's
// rotation, and re-wrapping the store's sealed values.
#include "service/secrets.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "otp/random.h"
#include "service/master_key.h"
#include "store/memory/memory_store.h"
#include "store/open_store.h"

namespace otpd {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

std::span<const std::uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
std::string Text(const std::vector<std::uint8_t>& b) { return {b.begin(), b.end()}; }

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> n{0};
    dir_ = fs::temp_directory_path() /
           ("otpd-secrets-test-" + std::to_string(getpid()) + "-" + std::to_string(++n));
    fs::remove_all(dir_);
    key_file_ = (dir_ / "keys" / "master.key").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  static int Mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return static_cast<int>(st.st_mode & 0777);
  }

  std::unique_ptr<Secrets> MustLoad(milliseconds interval = milliseconds(0)) {
    auto s = Secrets::Load(key_file_, interval);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  fs::path dir_;
  std::string key_file_;
  otp::Random& random_ = otp::SystemRandom();
};

TEST_F(SecretsTest, FirstLoadCreatesThePrimaryKey0600) {
  auto keys = LoadMasterKeys(key_file_, /*create=*/false);
  EXPECT_EQ(keys.status().code(), otp::StatusCode::kFailedPrecondition);
  keys = LoadMasterKeys(key_file_, /*create=*/true);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_EQ(Mode(key_file_), 0600);
  EXPECT_EQ(fs::file_size(key_file_), 32u);
  EXPECT_EQ(keys->keys.size(), 1u);
  EXPECT_EQ(keys->code_hash_key_id, keys->primary_id);
  EXPECT_EQ(keys->primary_id, MasterKeyId(keys->keys.begin()->second));
  EXPECT_EQ(keys->primary_id.size(), 9u);
  EXPECT_EQ(keys->primary_id[0], 'm');
  // The same key next time.
  EXPECT_EQ(LoadMasterKeys(key_file_, true)->primary_id, keys->primary_id);
}

TEST_F(SecretsTest, RotationKeepsOldKeysAndTheCodeHashKey) {
  const auto first = LoadMasterKeys(key_file_, true);
  ASSERT_TRUE(first.ok());
  auto r1 = RotateMasterKey(key_file_, random_);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->old_key_id, first->primary_id);
  EXPECT_NE(r1->new_key_id, r1->old_key_id);
  const std::string retired = RetiredKeyDir(key_file_) + "/" + r1->old_key_id + ".key";
  EXPECT_EQ(Mode(key_file_), 0600);
  EXPECT_EQ(Mode(retired), 0600);
  EXPECT_EQ(Mode(RetiredKeyDir(key_file_)), 0700);

  auto r2 = RotateMasterKey(key_file_, random_);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->old_key_id, r1->new_key_id);
  auto keys = LoadMasterKeys(key_file_, false);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_EQ(keys->primary_id, r2->new_key_id);
  EXPECT_EQ(keys->keys.size(), 3u);
  EXPECT_TRUE(keys->keys.contains(r1->old_key_id));
  EXPECT_TRUE(keys->keys.contains(r1->new_key_id));
  EXPECT_EQ(keys->keys.at(r1->old_key_id), first->keys.at(first->primary_id));
  // Code hashes are made with the first key, before and after both rotations.
  EXPECT_EQ(keys->code_hash_key_id, first->primary_id);
}

TEST_F(SecretsTest, CodeHashesSurviveRotation) {
  auto before = MustLoad();
  ASSERT_TRUE(before);
  const std::string hash = before->code_hasher.Hash("ver_1", "123456");
  // The same as a one-key Secrets over the original key (what otpd did before rotation existed).
  const MasterKey original = LoadMasterKeys(key_file_, false)->keys.begin()->second;
  EXPECT_EQ(Secrets(original).code_hasher.Hash("ver_1", "123456"), hash);
  ASSERT_TRUE(RotateMasterKey(key_file_, random_).ok());
  ASSERT_TRUE(RotateMasterKey(key_file_, random_).ok());
  auto after = MustLoad();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->code_hasher.Hash("ver_1", "123456"), hash);
  EXPECT_TRUE(after->code_hasher.Matches("ver_1", "123456", hash));
}

TEST_F(SecretsTest, BadKeyFilesAreRefused) {
  ASSERT_TRUE(RotateMasterKey(key_file_, random_).status().code() ==
              otp::StatusCode::kFailedPrecondition)
      << "nothing to rotate yet";
  ASSERT_TRUE(LoadMasterKeys(key_file_, true).ok());
  auto r = RotateMasterKey(key_file_, random_);
  ASSERT_TRUE(r.ok());
  const std::string dir = RetiredKeyDir(key_file_);
  const std::string retired = dir + "/" + r->old_key_id + ".key";

  // A retired key readable by others.
  ::chmod(retired.c_str(), 0644);
  auto keys = LoadMasterKeys(key_file_, false);
  EXPECT_EQ(keys.status().code(), otp::StatusCode::kFailedPrecondition);
  EXPECT_NE(keys.status().message().find("chmod 600"), std::string::npos);
  ::chmod(retired.c_str(), 0600);
  ASSERT_TRUE(LoadMasterKeys(key_file_, false).ok());

  // A retired key under another key's name.
  fs::rename(retired, dir + "/m00000000.key");
  keys = LoadMasterKeys(key_file_, false);
  EXPECT_EQ(keys.status().code(), otp::StatusCode::kFailedPrecondition);
  EXPECT_NE(keys.status().message().find("not the one its name says"), std::string::npos);

  // The code-hash key missing altogether.
  fs::remove(dir + "/m00000000.key");
  keys = LoadMasterKeys(key_file_, false);
  EXPECT_EQ(keys.status().code(), otp::StatusCode::kFailedPrecondition);
  EXPECT_NE(keys.status().message().find(r->old_key_id), std::string::npos);
  EXPECT_FALSE(Secrets::Load(key_file_).ok());

  // A primary readable by others.
  fs::remove(dir + "/code-hash-key");
  ASSERT_TRUE(LoadMasterKeys(key_file_, false).ok());
  ::chmod(key_file_.c_str(), 0640);
  EXPECT_EQ(LoadMasterKeys(key_file_, false).status().code(), otp::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RotateMasterKey(key_file_, random_).status().code(),
            otp::StatusCode::kFailedPrecondition);
}

TEST_F(SecretsTest, SealingRoundTripAcrossARotationByAnotherProcess) {
  auto running = MustLoad(milliseconds(0));  // otpd, checking the files at every use
  ASSERT_TRUE(running);
  const std::string old_id = running->keyring.primary_id();
  auto blob1 = running->keyring.Seal(Bytes("123456"), "ver_1", random_);
  ASSERT_TRUE(blob1.ok());
  EXPECT_EQ(otp::Keyring::KeyIdOf(*blob1), old_id);

  auto r = RotateMasterKey(key_file_, random_);  // otpctl
  ASSERT_TRUE(r.ok());
  auto rotator = MustLoad();
  ASSERT_TRUE(rotator);
  EXPECT_EQ(rotator->keyring.primary_id(), r->new_key_id);
  auto blob2 = rotator->keyring.Seal(Bytes("654321"), "ver_2", random_);
  ASSERT_TRUE(blob2.ok());
  EXPECT_EQ(otp::Keyring::KeyIdOf(*blob2), r->new_key_id);

  // The running process opens blobs of the new key (reloading on the unknown id)...
  auto opened = running->keyring.Open(*blob2, "ver_2");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(Text(*opened), "654321");
  // ... and still those of the old one, and seals with the new primary from now on.
  EXPECT_EQ(Text(*running->keyring.Open(*blob1, "ver_1")), "123456");
  EXPECT_EQ(Text(*rotator->keyring.Open(*blob1, "ver_1")), "123456");
  auto blob3 = running->keyring.Seal(Bytes("111111"), "ver_3", random_);
  EXPECT_EQ(otp::Keyring::KeyIdOf(*blob3), r->new_key_id);
  // Bound to its row: another associated data fails authentication.
  EXPECT_EQ(running->keyring.Open(*blob1, "ver_2").status().code(),
            otp::StatusCode::kPermissionDenied);
}

TEST_F(SecretsTest, TheFirstUnknownKeyIdReloadsAtOnce) {
  auto running = MustLoad(std::chrono::hours(1));
  ASSERT_TRUE(running);
  ASSERT_TRUE(RotateMasterKey(key_file_, random_).ok());
  auto blob = MustLoad()->keyring.Seal(Bytes("42"), "x", random_);
  ASSERT_TRUE(blob.ok());
  auto opened = running->keyring.Open(*blob, "x");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(Text(*opened), "42");
}

TEST_F(SecretsTest, ReloadsAreRateLimited) {
  auto running = MustLoad(std::chrono::hours(1));
  ASSERT_TRUE(running);
  const std::string old_id = running->keyring.primary_id();
  // The first unknown key id re-reads the files at once (and finds nothing here).
  auto stranger = Secrets(MasterKey{5}).keyring.Seal(Bytes("0"), "x", random_);
  EXPECT_EQ(running->keyring.Open(*stranger, "x").status().code(), otp::StatusCode::kNotFound);
  ASSERT_TRUE(RotateMasterKey(key_file_, random_).ok());
  auto blob = MustLoad()->keyring.Seal(Bytes("42"), "x", random_);
  ASSERT_TRUE(blob.ok());
  // Within the interval: neither another unknown key id nor Seal re-reads the files.
  EXPECT_EQ(running->keyring.Open(*blob, "x").status().code(), otp::StatusCode::kNotFound);
  EXPECT_EQ(otp::Keyring::KeyIdOf(*running->keyring.Seal(Bytes("1"), "y", random_)), old_id);
  ASSERT_TRUE(running->keyring.Reload().ok());
  EXPECT_EQ(Text(*running->keyring.Open(*blob, "x")), "42");
  EXPECT_NE(running->keyring.primary_id(), old_id);
}

TEST_F(SecretsTest, AFixedKeyringNeverReloads) {
  Secrets fixed(MasterKey{7});
  EXPECT_TRUE(fixed.keyring.Reload().ok());
  auto blob = fixed.keyring.Seal(Bytes("abc"), "ad", random_);
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(otp::Keyring::KeyIdOf(*blob), MasterKeyId(MasterKey{7}));
  EXPECT_EQ(Text(*fixed.keyring.Open(*blob, "ad")), "abc");
}

// --- re-wrapping (service/master_key.h)

Verification SealedVerification(const std::string& id, const Secrets& secrets,
                                const std::string& code) {
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  Verification v;
  v.id = id;
  v.app_id = "app_a";
  v.to = "+306912345678";
  v.channel = "sms";
  v.locale = "en";
  v.workflow = {{"sms", 60, ""}};
  v.code_hash = secrets.code_hasher.Hash(id, code);
  v.code_sealed = *secrets.keyring.Seal(Bytes(code), id, otp::SystemRandom());
  v.send_count = 1;
  v.created_at = v.updated_at = v.last_sent_at = now;
  v.expires_at = now + std::chrono::seconds(600);
  Delivery d;
  d.channel = "sms";
  d.to = v.to;
  d.created_at = d.updated_at = now;
  v.deliveries = {d};
  return v;
}

class RewrapTest : public SecretsTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    SecretsTest::SetUp();
    if (GetParam() == "memory") {
      store_ = NewMemoryStore();
    } else {
      fs::create_directories(dir_);
      auto s = OpenStore("sqlite://" + (dir_ / "otpd.db").string());
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      store_ = std::move(s).value();
    }
    App a;
    a.id = "app_a";
    a.name = "a";
    ASSERT_TRUE(store_->CreateApp(a).ok());
  }

  void AddVerification(const std::string& id, const Secrets& secrets) {
    Verification v = SealedVerification(id, secrets, "code-" + id);
    Job j;
    j.verification_id = v.id;
    j.due_at = v.created_at;
    ASSERT_TRUE(store_->CreateVerification(v, j, nullptr, {}).ok());
  }

  std::unique_ptr<Store> store_;
};

TEST_P(RewrapTest, RotateRewrapsEverySealedValue) {
  auto before = MustLoad();
  ASSERT_TRUE(before);
  const std::string old_id = before->keyring.primary_id();
  constexpr int kCount = 250;  // several batches
  for (int i = 0; i < kCount; ++i) AddVerification("ver_" + std::to_string(1000 + i), *before);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_1000", otp::FromUnixMillis(1'700'000'000'000)).ok());

  auto report = RotateAndRewrap(key_file_, *store_, random_, milliseconds(0));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->old_key_id, old_id);
  EXPECT_EQ(report->rewrapped, kCount - 1);
  using Counts = std::map<std::string, std::int64_t>;
  EXPECT_EQ(*store_->CountSealedByKeyId(), (Counts{{report->new_key_id, kCount - 1}}));

  auto after = MustLoad();
  for (int i : {1, 17, kCount - 1}) {
    const std::string id = "ver_" + std::to_string(1000 + i);
    auto v = store_->GetVerification("app_a", id);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(otp::Keyring::KeyIdOf(v->code_sealed), report->new_key_id);
    EXPECT_EQ(Text(*after->keyring.Open(v->code_sealed, id)), "code-" + id);
    // The hash made before the rotation still matches.
    EXPECT_TRUE(after->code_hasher.Matches(id, "code-" + id, v->code_hash));
  }
  // Nothing left to do: a second rotation re-wraps the same number again.
  auto again = RotateAndRewrap(key_file_, *store_, random_, milliseconds(0));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->rewrapped, kCount - 1);
  EXPECT_EQ(again->old_key_id, report->new_key_id);
}

TEST_P(RewrapTest, ABlobThatCannotBeOpenedStopsTheRewrapNamingIt) {
  auto secrets = MustLoad();
  ASSERT_TRUE(secrets);
  AddVerification("ver_1", *secrets);
  Verification bad = SealedVerification("ver_2", *secrets, "x");
  bad.code_sealed = *secrets->keyring.Seal(Bytes("x"), "another row", random_);
  Job j;
  j.verification_id = bad.id;
  ASSERT_TRUE(store_->CreateVerification(bad, j, nullptr, {}).ok());
  auto report = RotateAndRewrap(key_file_, *store_, random_, milliseconds(0));
  EXPECT_EQ(report.status().code(), otp::StatusCode::kFailedPrecondition);
  EXPECT_NE(report.status().message().find("ver_2"), std::string::npos);
}

TEST_P(RewrapTest, RotationWhileAnotherProcessKeepsSealing) {
  auto running = MustLoad(milliseconds(5));  // otpd
  ASSERT_TRUE(running);
  for (int i = 0; i < 50; ++i) AddVerification("ver_a" + std::to_string(100 + i), *running);
  std::atomic<bool> stop{false};
  std::atomic<int> added{0};
  std::thread writer([&] {
    while (!stop) {
      AddVerification("ver_b" + std::to_string(10000 + added++), *running);
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  auto report = RotateAndRewrap(key_file_, *store_, random_, milliseconds(50));
  stop = true;
  writer.join();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_GE(report->rewrapped, 50);
  EXPECT_GT(added.load(), 0);
  // Every value is under the new key, and opens to what was sealed.
  auto counts = store_->CountSealedByKeyId();
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ(counts->begin()->first, report->new_key_id);
  EXPECT_EQ(counts->begin()->second, 50 + added.load());
  auto v = store_->GetVerification("app_a", "ver_b10000");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(Text(*running->keyring.Open(v->code_sealed, v->id)), "code-ver_b10000");
}

TEST_P(RewrapTest, FactorAndHardwareTokenSecretsAreRewrappedToo) {
  auto secrets = MustLoad();
  ASSERT_TRUE(secrets);
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  Factor soft;
  soft.id = "fac_1";
  soft.app_id = "app_a";
  soft.user_id = "alice";
  soft.secret_sealed =
      *secrets->keyring.Seal(Bytes("soft-seed"), FactorSealingContext(soft.id), random_);
  soft.created_at = now;
  ASSERT_TRUE(store_->CreateFactor(soft).ok());
  HardwareToken token;
  token.serial = "SN1";
  token.type = "hotp";
  token.secret_sealed =
      *secrets->keyring.Seal(Bytes("hard-seed"), HardwareTokenSealingContext("SN1"), random_);
  token.imported_at = now;
  ASSERT_TRUE(store_->ImportHardwareTokens({token}).ok());
  Factor hard = soft;
  hard.id = "fac_2";
  hard.type = "hotp";
  ASSERT_TRUE(store_->BindHardwareToken(hard, "SN1").ok());

  auto report = RotateAndRewrap(key_file_, *store_, random_, milliseconds(0));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->rewrapped, 3);  // fac_1, fac_2 (the token's blob) and SN1
  auto after = MustLoad();
  auto f1 = store_->GetFactor("app_a", "alice", "fac_1");
  auto f2 = store_->GetFactor("app_a", "alice", "fac_2");
  ASSERT_TRUE(f1.ok() && f2.ok());
  EXPECT_EQ(otp::Keyring::KeyIdOf(f1->secret_sealed), report->new_key_id);
  EXPECT_EQ(Text(*after->keyring.Open(f1->secret_sealed, FactorSealingContext("fac_1"))),
            "soft-seed");
  EXPECT_EQ(Text(*after->keyring.Open(f2->secret_sealed, HardwareTokenSealingContext("SN1"))),
            "hard-seed");
  const auto tokens = store_->ListHardwareTokens(false);
  EXPECT_EQ(
      Text(*after->keyring.Open((*tokens)[0].secret_sealed, HardwareTokenSealingContext("SN1"))),
      "hard-seed");
  using Counts = std::map<std::string, std::int64_t>;
  EXPECT_EQ(*store_->CountSealedByKeyId(), (Counts{{report->new_key_id, 3}}));
}

INSTANTIATE_TEST_SUITE_P(Backends, RewrapTest, ::testing::Values("sqlite", "memory"));

}  // namespace
}  // namespace otpd
