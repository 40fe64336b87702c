// The Store contract, run against every backend: SQLite (on a temp file) and
// memory. SQLite-only cases (migrations, restart durability) follow.
#include "store/store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "store/memory/memory_store.h"
#include "store/open_store.h"
#include "store/sqlite/sqlite_store.h"

namespace otpd {
namespace {

using std::chrono::seconds;

std::string TempDbPath() {
  static std::atomic<int> n{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("otpd_store_test_" + std::to_string(::getpid()) + "_" + std::to_string(++n));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return (dir / "otpd.db").string();
}

App MakeApp(const std::string& id, TimePoint now) {
  App a;
  a.id = id;
  a.name = "name-" + id;
  a.webhook_secret = "whsec_x";
  a.created_at = a.updated_at = now;
  return a;
}

Verification MakeVerification(const std::string& id, const std::string& app_id, TimePoint now) {
  Verification v;
  v.id = id;
  v.app_id = app_id;
  v.to = "+306912345678";
  v.channel = "sms";
  v.locale = "en";
  v.workflow = {{"sms", 60, ""}, {"email", 60, "a@example.com"}};
  v.code_hash = "hash";
  v.code_sealed = "sealed";
  v.send_count = 1;
  v.created_at = v.updated_at = v.last_sent_at = now;
  v.expires_at = now + seconds(600);
  Delivery d;
  d.channel = "sms";
  d.to = v.to;
  d.created_at = d.updated_at = now;
  v.deliveries = {d};
  return v;
}

Job FirstJob(const Verification& v, TimePoint now) {
  Job j;
  j.verification_id = v.id;
  j.step = 0;
  j.due_at = now;
  return j;
}

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      store_ = NewMemoryStore();
    } else {
      auto s = OpenStore("sqlite://" + TempDbPath());
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      store_ = std::move(s).value();
    }
    ASSERT_TRUE(store_->CreateApp(MakeApp("app_a", now_)).ok());
    ASSERT_TRUE(store_->CreateApp(MakeApp("app_b", now_)).ok());
  }

  TimePoint now_ = otp::FromUnixMillis(1'700'000'000'000);
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, AppsAndKeys) {
  EXPECT_EQ(store_->CreateApp(MakeApp("app_a2", now_)).code(), otp::StatusCode::kOk);
  App dup = MakeApp("app_c", now_);
  dup.name = "name-app_a";
  EXPECT_EQ(store_->CreateApp(dup).code(), otp::StatusCode::kAlreadyExists);

  auto byname = store_->GetApp("name-app_b");
  ASSERT_TRUE(byname.ok());
  EXPECT_EQ(byname->id, "app_b");
  App changed = *byname;
  changed.settings.code_length = 8;
  changed.settings.workflow = {{"voice", 30, ""}};
  ASSERT_TRUE(store_->UpdateApp(changed).ok());
  EXPECT_EQ(store_->GetApp("app_b")->settings, changed.settings);
  EXPECT_EQ(store_->ListApps()->size(), 3u);

  ASSERT_TRUE(store_->CreateKey({"key_1", "app_a", "h1", now_, std::nullopt}).ok());
  EXPECT_EQ(store_->AppForKeyHash("h1")->id, "app_a");
  EXPECT_EQ(store_->AppForKeyHash("nope").status().code(), otp::StatusCode::kNotFound);
  ASSERT_TRUE(store_->RevokeKey("key_1", now_).ok());
  EXPECT_EQ(store_->AppForKeyHash("h1").status().code(), otp::StatusCode::kNotFound);
  EXPECT_EQ(store_->RevokeKey("key_x", now_).code(), otp::StatusCode::kNotFound);
}

TEST_P(StoreTest, VerificationIsScopedToItsApp) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  auto got = store_->GetVerification("app_a", "ver_1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->workflow, v.workflow);
  ASSERT_EQ(got->deliveries.size(), 1u);
  EXPECT_EQ(got->deliveries[0].status, kDeliveryQueued);
  EXPECT_EQ(store_->GetVerification("app_b", "ver_1").status().code(), otp::StatusCode::kNotFound);
  EXPECT_EQ(store_->RecordCheck("app_b", "ver_1", "hash", now_).status().code(),
            otp::StatusCode::kNotFound);
  EXPECT_EQ(store_->Cancel("app_b", "ver_1", now_).status().code(), otp::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetVerification("", "ver_1")->id, "ver_1");
}

TEST_P(StoreTest, ChecksCountAndApproveOnce) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  auto t = store_->RecordCheck("app_a", "ver_1", "wrong", now_);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->applied);
  EXPECT_EQ(t->status, kPending);
  EXPECT_EQ(t->check_count, 1);
  t = store_->RecordCheck("app_a", "ver_1", "hash", now_);
  EXPECT_TRUE(t->applied);
  EXPECT_EQ(t->status, kApproved);
  t = store_->RecordCheck("app_a", "ver_1", "hash", now_);
  EXPECT_FALSE(t->applied);
  EXPECT_EQ(t->status, kApproved);
  // Leaving pending wipes the sealed code, drops jobs and cancels queued deliveries.
  auto got = store_->GetVerification("app_a", "ver_1");
  EXPECT_TRUE(got->code_sealed.empty());
  EXPECT_EQ(got->deliveries[0].status, kDeliveryCanceled);
  EXPECT_FALSE(store_->NextJobDue()->has_value());
}

TEST_P(StoreTest, MaxChecksReached) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  for (int i = 1; i <= 5; ++i) {
    auto t = store_->RecordCheck("app_a", "ver_1", "wrong", now_);
    ASSERT_TRUE(t->applied);
    EXPECT_EQ(t->status, i < 5 ? kPending : kMaxChecksReached);
  }
  EXPECT_FALSE(store_->RecordCheck("app_a", "ver_1", "hash", now_)->applied);
}

TEST_P(StoreTest, ConcurrentChecksCountOneByOne) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  v.max_checks = 1000;
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  std::atomic<int> approved{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 10; ++k) {
        auto t = store_->RecordCheck("app_a", "ver_1", (i == 0 && k == 5) ? "hash" : "wrong", now_);
        if (t.ok() && t->applied && t->status == kApproved && i == 0 && k == 5) ++approved;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(approved.load(), 1);
  // Every check before the approval counted, none after.
  auto got = store_->GetVerification("app_a", "ver_1");
  EXPECT_EQ(got->status, kApproved);
  EXPECT_GE(got->check_count, 6);
  EXPECT_LE(got->check_count, 80);
}

TEST_P(StoreTest, ExpiryIsAppliedOnTheWay) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  auto t = store_->RecordCheck("app_a", "ver_1", "hash", v.expires_at);
  EXPECT_FALSE(t->applied);
  EXPECT_EQ(t->status, kExpired);
  EXPECT_EQ(store_->GetVerification("app_a", "ver_1")->status, kExpired);
}

TEST_P(StoreTest, ResendRespectsCooldownAndMaxSends) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  v.max_sends = 2;
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  Delivery d = v.deliveries[0];
  Job j = FirstJob(v, now_);
  j.advance = false;
  auto t = store_->RecordResend("app_a", "ver_1", 30, d, j, now_ + seconds(10));
  EXPECT_FALSE(t->applied);
  EXPECT_EQ(t->refusal, Transition::Refusal::kCooldown);
  t = store_->RecordResend("app_a", "ver_1", 30, d, j, now_ + seconds(30));
  EXPECT_TRUE(t->applied);
  EXPECT_EQ(t->send_count, 2);
  t = store_->RecordResend("app_a", "ver_1", 30, d, j, now_ + seconds(90));
  EXPECT_FALSE(t->applied);
  EXPECT_EQ(t->refusal, Transition::Refusal::kMaxSends);
  EXPECT_EQ(store_->GetVerification("app_a", "ver_1")->deliveries.size(), 2u);
}

TEST_P(StoreTest, JobsAreClaimedOnceWithALease) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  EXPECT_EQ(**store_->NextJobDue(), now_);
  auto jobs = store_->ClaimJobs(now_, now_ + seconds(60), 10);
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ(jobs->at(0).attempts, 1);
  EXPECT_TRUE(store_->ClaimJobs(now_ + seconds(1), now_ + seconds(61), 10)->empty());
  // A worker that died: the job comes back when its lease ends.
  auto again = store_->ClaimJobs(now_ + seconds(60), now_ + seconds(120), 10);
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ(again->at(0).attempts, 2);

  JobOutcome o;
  o.job = again->at(0);
  o.provider = "p";
  o.delivery_status = kDeliverySent;
  o.at = now_ + seconds(60);
  Job next;
  next.verification_id = "ver_1";
  next.step = 1;
  next.due_at = now_ + seconds(120);
  Delivery nd;
  nd.step = 1;
  nd.channel = "email";
  nd.to = "a@example.com";
  o.next = next;
  o.next_delivery = nd;
  ASSERT_TRUE(store_->FinishJob(o).ok());
  auto got = store_->GetVerification("app_a", "ver_1");
  ASSERT_EQ(got->deliveries.size(), 2u);
  EXPECT_EQ(got->deliveries[0].status, kDeliverySent);
  EXPECT_EQ(got->deliveries[0].provider, "p");
  EXPECT_EQ(got->deliveries[1].status, kDeliveryQueued);
  EXPECT_EQ(got->current_step, 1);
  EXPECT_TRUE(store_->ClaimJobs(now_ + seconds(119), now_ + seconds(200), 10)->empty());
  EXPECT_EQ(store_->ClaimJobs(now_ + seconds(120), now_ + seconds(200), 10)->size(), 1u);
}

// Sends step `step`'s claimed job through provider "p" as `message_id`, queuing
// the next step (if any) `timeout` later, as the dispatcher does.
void SendStep(Store& store, const Job& job, const std::string& message_id, TimePoint at,
              bool with_next) {
  JobOutcome o;
  o.job = job;
  o.provider = "p";
  o.delivery_status = kDeliverySent;
  o.provider_message_id = message_id;
  o.at = at;
  if (with_next) {
    Job next;
    next.verification_id = job.verification_id;
    next.step = job.step + 1;
    next.due_at = at + seconds(60);
    Delivery nd;
    nd.step = next.step;
    nd.channel = "email";
    nd.to = "a@example.com";
    o.next = next;
    o.next_delivery = nd;
  }
  ASSERT_TRUE(store.FinishJob(o).ok());
}

TEST_P(StoreTest, EachProviderTriedIsOneDelivery) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  auto jobs = store_->ClaimJobs(now_, now_ + seconds(60), 10);
  JobOutcome o;
  o.job = jobs->at(0);
  o.failed_first = {{"a", "refused", now_}, {"b", "timed out", now_ + seconds(1)}};
  o.provider = "c";
  o.delivery_status = kDeliverySent;
  o.provider_message_id = "m1";
  o.at = now_ + seconds(2);
  ASSERT_TRUE(store_->FinishJob(o).ok());
  auto got = store_->GetVerification("app_a", "ver_1");
  ASSERT_EQ(got->deliveries.size(), 3u);
  EXPECT_EQ(got->deliveries[0].provider, "a");
  EXPECT_EQ(got->deliveries[0].status, kDeliveryFailed);
  EXPECT_EQ(got->deliveries[0].error, "refused");
  EXPECT_EQ(got->deliveries[1].provider, "b");
  EXPECT_EQ(got->deliveries[1].status, kDeliveryFailed);
  EXPECT_EQ(got->deliveries[2].provider, "c");
  EXPECT_EQ(got->deliveries[2].status, kDeliverySent);
  EXPECT_EQ(got->deliveries[2].provider_message_id, "m1");
  for (const Delivery& d : got->deliveries) {
    EXPECT_EQ(d.step, 0);
    EXPECT_EQ(d.channel, "sms");
    EXPECT_EQ(d.to, "+306912345678");
  }
}

TEST_P(StoreTest, DeliveredReportMarksTheDeliveryOnce) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  SendStep(*store_, store_->ClaimJobs(now_, now_ + seconds(60), 10)->at(0), "m1", now_, true);
  const TimePoint later = now_ + seconds(5);
  auto out = store_->ApplyDeliveryReports({{"p", "m1", kDeliveryDelivered, "DELIVRD"}}, later);
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->size(), 1u);
  EXPECT_TRUE(out->at(0).matched);
  EXPECT_TRUE(out->at(0).applied);
  EXPECT_FALSE(out->at(0).next_step_fired);
  EXPECT_EQ(out->at(0).verification_id, "ver_1");
  EXPECT_EQ(out->at(0).channel, "sms");
  EXPECT_EQ(out->at(0).sent_at, now_);
  auto got = store_->GetVerification("app_a", "ver_1");
  EXPECT_EQ(got->deliveries[0].status, kDeliveryDelivered);
  EXPECT_EQ(got->status, kPending);
  // A repeat, or a later contrary word, changes nothing; nor does another provider's id.
  out = store_->ApplyDeliveryReports(
      {{"p", "m1", kDeliveryUndelivered, "UNDELIV"}, {"q", "m1", kDeliveryFailed, ""}}, later);
  EXPECT_FALSE(out->at(0).applied);
  EXPECT_FALSE(out->at(1).matched);
  got = store_->GetVerification("app_a", "ver_1");
  EXPECT_EQ(got->deliveries[0].status, kDeliveryDelivered);
  // The next step still waits for its timeout.
  EXPECT_TRUE(store_->ClaimJobs(later, later + seconds(60), 10)->empty());
}

TEST_P(StoreTest, UndeliveredReportBringsTheNextStepForward) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  SendStep(*store_, store_->ClaimJobs(now_, now_ + seconds(60), 10)->at(0), "m1", now_, true);
  const TimePoint later = now_ + seconds(5);
  EXPECT_TRUE(store_->ClaimJobs(later, later + seconds(60), 10)->empty());
  auto out = store_->ApplyDeliveryReports({{"p", "m1", kDeliveryUndelivered, "UNDELIV"}}, later);
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out->at(0).applied);
  EXPECT_TRUE(out->at(0).next_step_fired);
  EXPECT_FALSE(out->at(0).undeliverable);
  auto jobs = store_->ClaimJobs(later, later + seconds(60), 10);
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ(jobs->at(0).step, 1);
  // The last step fails too, by report: nothing got through, so undeliverable.
  SendStep(*store_, jobs->at(0), "m2", later, false);
  out = store_->ApplyDeliveryReports({{"p", "m2", kDeliveryFailed, "REJECTD"}}, later);
  EXPECT_TRUE(out->at(0).undeliverable);
  auto got = store_->GetVerification("app_a", "ver_1");
  EXPECT_EQ(got->status, kUndeliverable);
  EXPECT_TRUE(got->code_sealed.empty());
}

TEST_P(StoreTest, AFailedLastStepIsNotUndeliverableWhenAnEarlierOneGotThrough) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  SendStep(*store_, store_->ClaimJobs(now_, now_ + seconds(60), 10)->at(0), "m1", now_, true);
  const TimePoint due = now_ + seconds(60);
  SendStep(*store_, store_->ClaimJobs(due, due + seconds(60), 10)->at(0), "m2", due, false);
  auto out = store_->ApplyDeliveryReports({{"p", "m2", kDeliveryUndelivered, ""}}, due);
  EXPECT_TRUE(out->at(0).applied);
  EXPECT_FALSE(out->at(0).undeliverable);
  EXPECT_EQ(store_->GetVerification("app_a", "ver_1")->status, kPending);
}

TEST_P(StoreTest, AReportThatBeatsTheSendIsAppliedWhenTheSendIsRecorded) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  auto job = store_->ClaimJobs(now_, now_ + seconds(60), 10)->at(0);
  auto out = store_->ApplyDeliveryReports({{"p", "m1", kDeliveryUndelivered, "UNDELIV"}}, now_);
  EXPECT_FALSE(out->at(0).matched);
  SendStep(*store_, job, "m1", now_, true);
  auto got = store_->GetVerification("app_a", "ver_1");
  EXPECT_EQ(got->deliveries[0].status, kDeliveryUndelivered);
  // ... and it drove failover: the next step is due now, not after its timeout.
  EXPECT_EQ(store_->ClaimJobs(now_, now_ + seconds(60), 10)->size(), 1u);
}

TEST_P(StoreTest, ReportsAfterTheVerificationLeftPendingFireNothing) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  SendStep(*store_, store_->ClaimJobs(now_, now_ + seconds(60), 10)->at(0), "m1", now_, true);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_1", now_).ok());
  auto out = store_->ApplyDeliveryReports({{"p", "m1", kDeliveryFailed, ""}}, now_);
  EXPECT_TRUE(out->at(0).applied);  // the delivery's own status is still news
  EXPECT_FALSE(out->at(0).next_step_fired);
  EXPECT_EQ(store_->GetVerification("app_a", "ver_1")->status, kCanceled);
  EXPECT_EQ(*store_->CountJobs(), 0);
}

TEST_P(StoreTest, UndeliverableOnlyFromPending) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
  auto jobs = store_->ClaimJobs(now_, now_ + seconds(60), 10);
  JobOutcome o;
  o.job = jobs->at(0);
  o.delivery_status = kDeliveryFailed;
  o.at = now_;
  o.undeliverable = true;
  ASSERT_TRUE(store_->FinishJob(o).ok());
  auto got = store_->GetVerification("app_a", "ver_1");
  EXPECT_EQ(got->status, kUndeliverable);
  EXPECT_TRUE(got->code_sealed.empty());
}

TEST_P(StoreTest, IdempotencyRecords) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  IdempotencyRecord r{"app_a", "k1", "bodyhash", "{\"id\":\"ver_1\"}", 201, now_};
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), &r).ok());
  auto got = store_->GetIdempotency("app_a", "k1", now_ - std::chrono::hours(24));
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->response, r.response);
  EXPECT_FALSE(store_->GetIdempotency("app_b", "k1", now_ - std::chrono::hours(24))->has_value());
  Verification v2 = MakeVerification("ver_2", "app_a", now_);
  EXPECT_EQ(store_->CreateVerification(v2, FirstJob(v2, now_), &r).code(),
            otp::StatusCode::kAlreadyExists);
  // Nothing of the refused twin was stored.
  EXPECT_EQ(store_->GetVerification("app_a", "ver_2").status().code(), otp::StatusCode::kNotFound);
}

TEST_P(StoreTest, NewestPendingAndStartCounts) {
  Verification a = MakeVerification("ver_1", "app_a", now_);
  Verification b = MakeVerification("ver_2", "app_a", now_ + seconds(1));
  ASSERT_TRUE(store_->CreateVerification(a, FirstJob(a, now_), nullptr).ok());
  ASSERT_TRUE(store_->CreateVerification(b, FirstJob(b, now_), nullptr).ok());
  EXPECT_EQ(store_->NewestPending("app_a", a.to)->id, "ver_2");
  EXPECT_EQ(store_->NewestPending("app_b", a.to).status().code(), otp::StatusCode::kNotFound);
  EXPECT_EQ(*store_->CountStartsSince("app_a", a.to, now_), 2);
  EXPECT_EQ(*store_->CountStartsSince("app_a", a.to, now_ + seconds(1)), 1);
}

TEST_P(StoreTest, SealedValuesAreListedAndReplacedConditionally) {
  // Blobs as otp::Keyring writes them: "v1.<key_id>.<payload>".
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    Verification v = MakeVerification("ver_" + std::to_string(i), "app_a", now_);
    v.code_sealed = (i < 3 ? "v1.mold." : "v1.mnew.") + std::to_string(i);
    ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr).ok());
    ids.push_back(v.id);
  }
  // A verification that left pending holds no sealed code any more.
  ASSERT_TRUE(store_->Cancel("app_a", "ver_0", now_).ok());

  using Counts = std::map<std::string, std::int64_t>;
  EXPECT_EQ(*store_->CountSealedByKeyId(), (Counts{{"mold", 2}, {"mnew", 2}}));
  EXPECT_EQ(store_->ListSealed("nope", "mnew", "", 10).status().code(),
            otp::StatusCode::kInvalidArgument);

  // Pages in id order, after a cursor, skipping the key given.
  auto page = store_->ListSealed(kSealedVerificationCode, "mnew", "", 1);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].id, "ver_1");
  EXPECT_EQ((*page)[0].associated_data, "ver_1");
  EXPECT_EQ((*page)[0].sealed, "v1.mold.1");
  EXPECT_EQ((*page)[0].kind, kSealedVerificationCode);
  page = store_->ListSealed(kSealedVerificationCode, "mnew", "ver_1", 10);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].id, "ver_2");
  EXPECT_TRUE(store_->ListSealed(kSealedVerificationCode, "mnew", "ver_2", 10)->empty());
  // A key id that is a prefix of another does not match it.
  EXPECT_EQ(store_->ListSealed(kSealedVerificationCode, "mne", "", 10)->size(), 4u);

  // Only a row that still holds the blob read is replaced.
  auto applied = store_->ReplaceSealed({
      {std::string(kSealedVerificationCode), "ver_1", "v1.mold.1", "v1.mnew.1b"},
      {std::string(kSealedVerificationCode), "ver_2", "v1.mold.changed", "v1.mnew.2b"},
      {std::string(kSealedVerificationCode), "ver_0", "v1.mold.0", "v1.mnew.0b"},
      {std::string(kSealedVerificationCode), "ver_x", "v1.mold.9", "v1.mnew.9"},
  });
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(*applied, 1);
  EXPECT_EQ(store_->GetVerification("app_a", "ver_1")->code_sealed, "v1.mnew.1b");
  EXPECT_EQ(store_->GetVerification("app_a", "ver_2")->code_sealed, "v1.mold.2");
  EXPECT_EQ(store_->GetVerification("app_a", "ver_0")->code_sealed, "");
  EXPECT_EQ(*store_->CountSealedByKeyId(), (Counts{{"mold", 1}, {"mnew", 3}}));
  EXPECT_EQ(store_->ReplaceSealed({{"nope", "ver_1", "a", "b"}}).status().code(),
            otp::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values("sqlite", "memory"));

TEST(SqliteStoreTest, MigrationsAreIdempotentAndDataSurvivesReopen) {
  const std::string path = TempDbPath();
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  {
    auto s = OpenStore("sqlite://" + path);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->CreateApp(MakeApp("app_a", now)).ok());
    Verification v = MakeVerification("ver_1", "app_a", now);
    ASSERT_TRUE((*s)->CreateVerification(v, FirstJob(v, now), nullptr).ok());
    ASSERT_TRUE((*s)->RecordCheck("app_a", "ver_1", "wrong", now).ok());
    EXPECT_TRUE((*s)->Migrate().ok());  // a second run changes nothing
  }
  auto s = OpenStore("sqlite://" + path);
  ASSERT_TRUE(s.ok());
  auto v = (*s)->GetVerification("app_a", "ver_1");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->check_count, 1);
  EXPECT_EQ(v->code_sealed, "sealed");
  EXPECT_EQ((*s)->ClaimJobs(now, now + seconds(60), 10)->size(), 1u);  // the queue survived
}

TEST(SqliteStoreTest, TwoProcessesWorthOfConnectionsShareTheFile) {
  // Two store objects on one file stand in for otpd and otpctl (or two nodes):
  // a state change by one is seen, and honoured, by the other.
  const std::string path = TempDbPath();
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  auto a = OpenStore("sqlite://" + path);
  auto b = OpenStore("sqlite://" + path);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->CreateApp(MakeApp("app_a", now)).ok());
  Verification v = MakeVerification("ver_1", "app_a", now);
  ASSERT_TRUE((*a)->CreateVerification(v, FirstJob(v, now), nullptr).ok());
  EXPECT_TRUE((*b)->RecordCheck("app_a", "ver_1", "hash", now)->applied);
  EXPECT_FALSE((*a)->RecordCheck("app_a", "ver_1", "hash", now)->applied);
  EXPECT_EQ((*a)->ClaimJobs(now, now + seconds(60), 10)->size(), 0u);
}

TEST(OpenStoreTest, RefusesUnknownSchemes) {
  EXPECT_EQ(OpenStore("mysql://x").status().code(), otp::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenStore("postgresql://u@h/db").status().code(), otp::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace otpd
