// The Store contract, run against every backend: SQLite (on a temp file) and
// memory. SQLite-only cases (migrations, restart durability) follow.
#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <future>
#include <thread>

#include "store/memory/memory_store.h"
#include "store/open_store.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/sqlite_store.h"
#include "store/sqlite/vfs.h"

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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
  auto t = store_->RecordCheck("app_a", "ver_1", "hash", v.expires_at);
  EXPECT_FALSE(t->applied);
  EXPECT_EQ(t->status, kExpired);
  EXPECT_EQ(store_->GetVerification("app_a", "ver_1")->status, kExpired);
}

TEST_P(StoreTest, ResendRespectsCooldownAndMaxSends) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  v.max_sends = 2;
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), &r, {}).ok());
  auto got = store_->GetIdempotency("app_a", "k1", now_ - std::chrono::hours(24));
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->response, r.response);
  EXPECT_FALSE(store_->GetIdempotency("app_b", "k1", now_ - std::chrono::hours(24))->has_value());
  Verification v2 = MakeVerification("ver_2", "app_a", now_);
  EXPECT_EQ(store_->CreateVerification(v2, FirstJob(v2, now_), &r, {}).status().code(),
            otp::StatusCode::kAlreadyExists);
  // Nothing of the refused twin was stored.
  EXPECT_EQ(store_->GetVerification("app_a", "ver_2").status().code(), otp::StatusCode::kNotFound);
}

TEST_P(StoreTest, NewestPendingAndStartCounts) {
  Verification a = MakeVerification("ver_1", "app_a", now_);
  Verification b = MakeVerification("ver_2", "app_a", now_ + seconds(1));
  ASSERT_TRUE(store_->CreateVerification(a, FirstJob(a, now_), nullptr, {}).ok());
  ASSERT_TRUE(store_->CreateVerification(b, FirstJob(b, now_), nullptr, {}).ok());
  EXPECT_EQ(store_->NewestPending("app_a", a.to)->id, "ver_2");
  EXPECT_EQ(store_->NewestPending("app_b", a.to).status().code(), otp::StatusCode::kNotFound);
}

// --- limits and the pumping guard (SECURITY.md 6, 10, 30): suites named after the item.
class Sec6_StoreTest : public StoreTest {};
class Sec10_StoreTest : public StoreTest {};
class Sec30_StoreTest : public StoreTest {};

TEST_P(Sec6_StoreTest, StartsPerRecipientAreCountedOverASlidingWindow) {
  StartLimits limits;
  limits.max_per_recipient = 2;
  auto start = [&](const std::string& id, const std::string& app, TimePoint at) {
    Verification v = MakeVerification(id, app, at);
    limits.recipient_since = at - seconds(600);
    return store_->CreateVerification(v, FirstJob(v, at), nullptr, limits);
  };
  ASSERT_EQ(start("ver_1", "app_a", now_)->refusal, StartOutcome::Refusal::kNone);
  ASSERT_EQ(start("ver_2", "app_a", now_ + seconds(100))->refusal, StartOutcome::Refusal::kNone);
  auto third = start("ver_3", "app_a", now_ + seconds(200));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->refusal, StartOutcome::Refusal::kRecipient);
  // Room comes when the oldest start leaves the 600 s window.
  EXPECT_EQ(third->retry_at, now_ + seconds(600));
  EXPECT_EQ(store_->GetVerification("app_a", "ver_3").status().code(), otp::StatusCode::kNotFound);
  // Another app has its own count.
  EXPECT_EQ(start("ver_4", "app_b", now_ + seconds(200))->refusal, StartOutcome::Refusal::kNone);
  // At the window's end the oldest no longer counts.
  EXPECT_EQ(start("ver_5", "app_a", now_ + seconds(601))->refusal, StartOutcome::Refusal::kNone);
}

TEST_P(Sec30_StoreTest, StartsPerIpAreCountedAcrossRecipients) {
  StartLimits limits;
  limits.max_per_ip = 2;
  limits.ip_since = now_ - seconds(600);
  auto start = [&](const std::string& id, const std::string& to, const std::string& ip) {
    Verification v = MakeVerification(id, "app_a", now_);
    v.to = to;
    v.ip = ip;
    return store_->CreateVerification(v, FirstJob(v, now_), nullptr, limits);
  };
  EXPECT_EQ(start("ver_1", "+306900000001", "192.0.2.1")->refusal, StartOutcome::Refusal::kNone);
  EXPECT_EQ(start("ver_2", "+306900000002", "192.0.2.1")->refusal, StartOutcome::Refusal::kNone);
  auto third = start("ver_3", "+306900000003", "192.0.2.1");
  EXPECT_EQ(third->refusal, StartOutcome::Refusal::kIp);
  EXPECT_EQ(third->retry_at, now_ + seconds(600));
  EXPECT_EQ(start("ver_4", "+306900000004", "192.0.2.2")->refusal, StartOutcome::Refusal::kNone);
  EXPECT_EQ(start("ver_5", "+306900000005", "")->refusal, StartOutcome::Refusal::kNone);
}

TEST_P(Sec10_StoreTest, ConcurrentStartsNeverPassTheRecipientLimit) {
  StartLimits limits;
  limits.max_per_recipient = 5;
  limits.recipient_since = now_ - seconds(600);
  std::atomic<int> stored{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      Verification v = MakeVerification("ver_" + std::to_string(i), "app_a", now_);
      auto r = store_->CreateVerification(v, FirstJob(v, now_), nullptr, limits);
      if (r.ok() && r->refusal == StartOutcome::Refusal::kNone) ++stored;
      if (r.ok() && r->refusal == StartOutcome::Refusal::kRecipient) ++refused;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(stored.load(), 5);
  EXPECT_EQ(refused.load(), 15);
}

TEST_P(StoreTest, RequestBucketStartsFullRefillsAndSaysWhenTheNextTokenIsDue) {
  // rate 10/s, burst 20.
  auto take = [&](int want, TimePoint at) {
    auto g = store_->TakeRequestTokens("app_a", 10, 20, want, at);
    EXPECT_TRUE(g.ok());
    return *g;
  };
  EXPECT_EQ(take(15, now_).granted, 15);
  EXPECT_EQ(take(15, now_).granted, 5);
  TokenGrant none = take(15, now_);
  EXPECT_EQ(none.granted, 0);
  EXPECT_EQ(none.next_at, now_ + std::chrono::milliseconds(100));
  EXPECT_EQ(take(15, now_ + std::chrono::milliseconds(350)).granted, 3);  // 3.5 refilled
  EXPECT_EQ(take(15, now_ + std::chrono::milliseconds(400)).granted, 1);  // the half + 0.5
  EXPECT_EQ(take(100, now_ + seconds(3600)).granted, 20);                 // capped at burst
  // Buckets are per app.
  EXPECT_EQ(store_->TakeRequestTokens("app_b", 10, 20, 20, now_)->granted, 20);
}

TEST_P(Sec30_StoreTest, PumpingCountersCountStartsAndOnlyApprovals) {
  auto start = [&](const std::string& id, const std::string& prefix, TimePoint at) {
    Verification v = MakeVerification(id, "app_a", at);
    v.guard_prefix = prefix;
    v.guard_region = prefix.empty() ? "" : "GR";
    ASSERT_EQ(store_->CreateVerification(v, FirstJob(v, at), nullptr, {})->refusal,
              StartOutcome::Refusal::kNone);
  };
  start("ver_1", "+30691234", now_);
  start("ver_2", "+30691234", now_ + seconds(61));
  start("ver_3", "+30691234", now_ + seconds(62));
  start("ver_4", "+30699999", now_);
  start("ver_5", "", now_);  // not counted (safe-listed, sandbox, guard off)
  ASSERT_TRUE(store_->RecordCheck("app_a", "ver_2", "wrong", now_ + seconds(70))->applied);
  ASSERT_TRUE(store_->RecordCheck("app_a", "ver_2", "hash", now_ + seconds(70))->applied);
  ASSERT_TRUE(store_->RecordCheck("app_a", "ver_5", "hash", now_ + seconds(70))->applied);

  auto counts = store_->GetFraudCounts("app_a", "+30691234", "GR", "+306912340000", now_);
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  const std::int64_t m0 = otp::ToUnixSeconds(now_) / 60;
  ASSERT_EQ(counts->prefix.size(), 2u);
  EXPECT_EQ(counts->prefix[0].minute, m0);
  EXPECT_EQ(counts->prefix[0].starts, 1);
  EXPECT_EQ(counts->prefix[0].approvals, 0);
  EXPECT_EQ(counts->prefix[1].minute, m0 + 1);
  EXPECT_EQ(counts->prefix[1].starts, 2);
  EXPECT_EQ(counts->prefix[1].approvals, 1);  // the wrong code wrote no approval
  int region_starts = 0;
  for (const FraudBucket& b : counts->region) region_starts += b.starts;
  EXPECT_EQ(region_starts, 4);
  EXPECT_FALSE(counts->safe_listed);
  // From a later minute on, the first minute is left out.
  EXPECT_EQ(store_->GetFraudCounts("app_a", "+30691234", "", "", now_ + seconds(60))->prefix.size(),
            1u);
  EXPECT_TRUE(store_->GetFraudCounts("app_b", "+30691234", "GR", "", now_)->prefix.empty());

  auto totals = store_->ListFraudTotals("app_a", now_);
  ASSERT_TRUE(totals.ok());
  ASSERT_EQ(totals->size(), 3u);  // the prefix, the region and the other prefix
  EXPECT_EQ((*totals)[0].scope, kFraudScopeRegion);
  EXPECT_EQ((*totals)[0].starts, 4);
  EXPECT_EQ((*totals)[1].key, "+30691234");
  EXPECT_EQ((*totals)[1].starts, 3);
  EXPECT_EQ((*totals)[1].approvals, 1);
}

TEST_P(Sec30_StoreTest, SafeListMatchesNumbersAndPrefixesPerApp) {
  ASSERT_TRUE(store_->AddSafeListEntry({"app_a", "+3069123", now_}).ok());
  ASSERT_TRUE(store_->AddSafeListEntry({"app_a", "+3069123", now_}).ok());  // idempotent
  ASSERT_TRUE(store_->AddSafeListEntry({"app_a", "+306999999999", now_}).ok());
  auto safe = [&](const std::string& app, const std::string& number) {
    return store_->GetFraudCounts(app, "", "", number, now_)->safe_listed;
  };
  EXPECT_TRUE(safe("app_a", "+306912345678"));
  EXPECT_TRUE(safe("app_a", "+306999999999"));
  EXPECT_FALSE(safe("app_a", "+306999999998"));
  EXPECT_FALSE(safe("app_a", "+3069124"));
  EXPECT_FALSE(safe("app_b", "+306912345678"));
  EXPECT_EQ(store_->ListSafeList("app_a")->size(), 2u);
  EXPECT_EQ(store_->ListSafeList("")->size(), 2u);
  ASSERT_TRUE(store_->RemoveSafeListEntry("app_a", "+3069123").ok());
  EXPECT_EQ(store_->RemoveSafeListEntry("app_a", "+3069123").code(), otp::StatusCode::kNotFound);
  EXPECT_FALSE(safe("app_a", "+306912345678"));
}

TEST_P(StoreTest, IpAndFlagsAreStoredWithTheVerification) {
  Verification v = MakeVerification("ver_1", "app_a", now_);
  v.ip = "192.0.2.7";
  v.flags = {kFlagCountryBlocked, kFlagPumpingSuspected};
  v.guard_prefix = "+30691234";
  v.guard_region = "GR";
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
  auto got = store_->GetVerification("app_a", "ver_1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->ip, v.ip);
  EXPECT_EQ(got->flags, v.flags);
  EXPECT_EQ(got->guard_prefix, v.guard_prefix);
  EXPECT_EQ(got->guard_region, v.guard_region);
}

TEST_P(StoreTest, SealedValuesAreListedAndReplacedConditionally) {
  // Blobs as otp::Keyring writes them: "v1.<key_id>.<payload>".
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    Verification v = MakeVerification("ver_" + std::to_string(i), "app_a", now_);
    v.code_sealed = (i < 3 ? "v1.mold." : "v1.mnew.") + std::to_string(i);
    ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
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

// --- factors, recovery codes, throttles, events, audit, hardware tokens

Factor MakeFactor(const std::string& id, const std::string& app_id, const std::string& user,
                  const std::string& type, TimePoint now) {
  Factor f;
  f.id = id;
  f.app_id = app_id;
  f.user_id = user;
  f.type = type;
  f.secret_sealed = "v1.k.sealed-" + id;
  f.label = "alice@example.com";
  f.issuer = "Example";
  f.created_at = now;
  return f;
}

FactorAttempt Attempt(const std::string& user, std::vector<FactorCandidate> candidates,
                      TimePoint now, const std::string& app = "app_a") {
  FactorAttempt a;
  a.app_id = app;
  a.user_id = user;
  a.action = "factor.verify";
  a.candidates = std::move(candidates);
  a.now = now;
  return a;
}

FactorCandidate FactorAt(const std::string& id, std::int64_t matched, bool activate = false) {
  FactorCandidate c;
  c.factor_id = id;
  c.matched = matched;
  c.activate = activate;
  return c;
}

FactorCandidate RecoveryHash(const std::string& hash) {
  FactorCandidate c;
  c.kind = FactorCandidate::Kind::kRecoveryCode;
  c.code_hash = hash;
  return c;
}

std::vector<std::string> EventTypes(Store& store, const std::string& app) {
  std::vector<std::string> out;
  const auto rows = store.ListEvents(app, 0, 1000).value();
  for (const Event& e : rows) out.push_back(e.type);
  return out;
}

TEST_P(StoreTest, FactorsAreScopedToAppAndUser) {
  ASSERT_TRUE(store_->CreateFactor(MakeFactor("fac_1", "app_a", "alice", "totp", now_)).ok());
  ASSERT_TRUE(store_->CreateFactor(MakeFactor("fac_2", "app_a", "alice", "hotp", now_)).ok());
  ASSERT_TRUE(store_->CreateFactor(MakeFactor("fac_3", "app_a", "bob", "totp", now_)).ok());
  EXPECT_EQ(store_->CreateFactor(MakeFactor("fac_1", "app_a", "x", "totp", now_)).code(),
            otp::StatusCode::kAlreadyExists);
  auto got = store_->GetFactor("app_a", "alice", "fac_1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->secret_sealed, "v1.k.sealed-fac_1");
  EXPECT_EQ(got->status, kFactorUnverified);
  EXPECT_EQ(got->last_step, -1);
  EXPECT_EQ(got->created_at, now_);
  EXPECT_FALSE(got->activated_at.has_value());
  EXPECT_EQ(store_->GetFactor("app_b", "alice", "fac_1").status().code(),
            otp::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetFactor("app_a", "bob", "fac_1").status().code(), otp::StatusCode::kNotFound);
  auto list = store_->ListFactors("app_a", "alice");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "fac_1");
  EXPECT_EQ((*list)[1].type, "hotp");
  EXPECT_TRUE(store_->ListFactors("app_b", "alice")->empty());

  EXPECT_EQ(store_->DeleteFactor("app_b", "alice", "fac_1", now_).code(),
            otp::StatusCode::kNotFound);
  ASSERT_TRUE(store_->DeleteFactor("app_a", "alice", "fac_1", now_).ok());
  EXPECT_EQ(store_->DeleteFactor("app_a", "alice", "fac_1", now_).code(),
            otp::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListFactors("app_a", "alice")->size(), 1u);
  EXPECT_EQ(EventTypes(*store_, "app_a"),
            (std::vector<std::string>{"factor.created", "factor.created", "factor.created",
                                      "factor.deleted"}));
  EXPECT_TRUE(EventTypes(*store_, "app_b").empty());
  std::vector<std::string> actions;
  const auto audit = store_->ListAudit("app_a", 100).value();
  for (const AuditEntry& e : audit) actions.push_back(e.action + " " + e.subject);
  EXPECT_EQ(actions, (std::vector<std::string>{"factor.create fac_1", "factor.create fac_2",
                                               "factor.create fac_3", "factor.delete fac_1"}));
}

TEST_P(StoreTest, ActivationThenTotpStepsOnlyMoveForward) {
  ASSERT_TRUE(store_->CreateFactor(MakeFactor("fac_t", "app_a", "alice", "totp", now_)).ok());
  // An unverified factor does not verify; it activates.
  auto r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 100)}, now_));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->valid);
  r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 100, true)}, now_));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->valid);
  EXPECT_EQ(r->factor_status, kFactorActive);
  EXPECT_EQ(r->failures, 0);
  auto f = store_->GetFactor("app_a", "alice", "fac_t");
  EXPECT_EQ(f->status, kFactorActive);
  EXPECT_EQ(f->last_step, 100);
  EXPECT_EQ(f->activated_at, now_);
  // Activating twice does nothing.
  EXPECT_FALSE(
      store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 101, true)}, now_))->valid);

  // The same step again, and an earlier one: replays, refused and audited.
  r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 100)}, now_));
  EXPECT_FALSE(r->valid);
  EXPECT_TRUE(r->replay);
  r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 99)}, now_));
  EXPECT_FALSE(r->valid);
  EXPECT_TRUE(r->replay);
  r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 101)}, now_));
  EXPECT_TRUE(r->valid);
  EXPECT_FALSE(r->replay);
  EXPECT_EQ(r->factor_type, "totp");
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_t")->last_step, 101);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_t")->drift, 0);
  // A resync moves the drift with the step.
  FactorCandidate resync = FactorAt("fac_t", 141);
  resync.first = 140;
  resync.drift = 40;
  EXPECT_TRUE(store_->RecordFactorAttempt(Attempt("alice", {resync}, now_))->valid);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_t")->drift, 40);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_t")->last_step, 141);

  int replays = 0;
  const auto rows = store_->ListAudit("app_a", 100).value();
  for (const AuditEntry& e : rows) {
    if (e.action == "factor.replay") {
      ++replays;
      EXPECT_EQ(e.subject, "fac_t");
      EXPECT_EQ(e.result, "refused");
    }
  }
  EXPECT_EQ(replays, 2);  // steps 100 and 99 (the activation of an active factor is no replay)
}

TEST_P(StoreTest, HotpCounterMovesPastTheAcceptedValue) {
  Factor h = MakeFactor("fac_h", "app_a", "alice", "hotp", now_);
  h.status = kFactorActive;
  h.counter = 5;
  ASSERT_TRUE(store_->CreateFactor(h).ok());
  EXPECT_TRUE(store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_h", 8)}, now_))->valid);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_h")->counter, 9);
  auto r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_h", 8)}, now_));
  EXPECT_FALSE(r->valid);
  EXPECT_TRUE(r->replay);
  // Resync: second code's counter, first code's counter as the condition.
  FactorCandidate resync = FactorAt("fac_h", 51);
  resync.first = 50;
  EXPECT_TRUE(store_->RecordFactorAttempt(Attempt("alice", {resync}, now_))->valid);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_h")->counter, 52);
}

TEST_P(StoreTest, CandidatesAreTriedInOrderAndTheFirstThatAppliesWins) {
  Factor t = MakeFactor("fac_t", "app_a", "alice", "totp", now_);
  t.status = kFactorActive;
  t.last_step = 10;
  ASSERT_TRUE(store_->CreateFactor(t).ok());
  ASSERT_TRUE(store_->ReplaceRecoveryCodes("app_a", "alice", {"h1", "h2"}, now_).ok());
  auto r = store_->RecordFactorAttempt(
      Attempt("alice", {FactorAt("fac_t", 9), RecoveryHash("h2"), RecoveryHash("h1")}, now_));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->valid);
  EXPECT_TRUE(r->replay);
  ASSERT_TRUE(r->matched.has_value());
  EXPECT_EQ(r->matched->kind, FactorCandidate::Kind::kRecoveryCode);
  EXPECT_EQ(r->matched->code_hash, "h2");
  auto codes = store_->ListRecoveryCodes("app_a", "alice");
  ASSERT_EQ(codes->size(), 2u);
  EXPECT_FALSE((*codes)[0].used_at.has_value());
  EXPECT_EQ((*codes)[1].used_at, now_);
}

TEST_P(StoreTest, RecoveryCodesAreSingleUseAndReplacedAsASet) {
  ASSERT_TRUE(store_->ReplaceRecoveryCodes("app_a", "alice", {"h1", "h2"}, now_).ok());
  EXPECT_TRUE(store_->RecordFactorAttempt(Attempt("alice", {RecoveryHash("h1")}, now_))->valid);
  EXPECT_FALSE(store_->RecordFactorAttempt(Attempt("alice", {RecoveryHash("h1")}, now_))->valid);
  // Another user or app cannot use alice's codes.
  EXPECT_FALSE(store_->RecordFactorAttempt(Attempt("bob", {RecoveryHash("h2")}, now_))->valid);
  EXPECT_FALSE(
      store_->RecordFactorAttempt(Attempt("alice", {RecoveryHash("h2")}, now_, "app_b"))->valid);
  ASSERT_TRUE(store_->ReplaceRecoveryCodes("app_a", "alice", {"h3"}, now_).ok());
  EXPECT_FALSE(store_->RecordFactorAttempt(Attempt("alice", {RecoveryHash("h2")}, now_))->valid);
  EXPECT_TRUE(store_->RecordFactorAttempt(Attempt("alice", {RecoveryHash("h3")}, now_))->valid);
  EXPECT_EQ(store_->ListRecoveryCodes("app_a", "alice")->size(), 1u);
  const auto events = *store_->ListEvents("app_a", 0, 100);
  std::vector<std::string> types;
  for (const Event& e : events) types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<std::string>{"recovery_codes.issued", "recovery_code.used",
                                             "recovery_codes.issued", "recovery_code.used"}));
  EXPECT_EQ(events[1].data_json, R"({"remaining":1,"user_id":"alice"})");
  EXPECT_EQ(events[0].data_json, R"({"count":2,"user_id":"alice"})");
  // after_id pages through.
  EXPECT_EQ(store_->ListEvents("app_a", events[1].id, 100)->size(), 2u);
  EXPECT_EQ(store_->ListEvents("", 0, 1)->size(), 1u);
}

TEST_P(StoreTest, FailuresDelayThenLockAndASuccessClearsTheCount) {
  Factor t = MakeFactor("fac_t", "app_a", "alice", "totp", now_);
  t.status = kFactorActive;
  ASSERT_TRUE(store_->CreateFactor(t).ok());
  TimePoint at = now_;
  for (int i = 1; i <= 4; ++i) {
    auto r = store_->RecordFactorAttempt(Attempt("alice", {}, at));
    EXPECT_EQ(r->failures, i);
    EXPECT_EQ(r->refusal, FactorAttemptOutcome::Refusal::kNone);
  }
  EXPECT_FALSE(store_->GetThrottle("app_a", "alice")->blocked_until.has_value());
  // A success clears the count.
  EXPECT_TRUE(store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 1)}, at))->valid);
  EXPECT_EQ(store_->GetThrottle("app_a", "alice")->failures, 0);

  for (int i = 1; i <= 5; ++i) (void)store_->RecordFactorAttempt(Attempt("alice", {}, at));
  ThrottleState s = *store_->GetThrottle("app_a", "alice");
  EXPECT_EQ(s.failures, 5);
  ASSERT_TRUE(s.blocked_until.has_value());
  EXPECT_EQ(*s.blocked_until, at + seconds(30));
  // Blocked: even a right code is refused, and nothing is counted.
  auto r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 2)}, at + seconds(29)));
  EXPECT_EQ(r->refusal, FactorAttemptOutcome::Refusal::kThrottled);
  EXPECT_EQ(r->retry_at, at + seconds(30));
  EXPECT_FALSE(r->valid);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_t")->last_step, 1);
  EXPECT_EQ(store_->GetThrottle("app_a", "alice")->failures, 5);
  // The 6th failure: 60 s.
  at += seconds(30);
  r = store_->RecordFactorAttempt(Attempt("alice", {}, at));
  EXPECT_EQ(r->refusal, FactorAttemptOutcome::Refusal::kNone);
  EXPECT_EQ(*store_->GetThrottle("app_a", "alice")->blocked_until, at + seconds(60));
  // Up to 99 failures (the delay is capped at 1 h), then the 100th locks.
  for (int i = 7; i <= 99; ++i) {
    at += seconds(3600);
    r = store_->RecordFactorAttempt(Attempt("alice", {}, at));
    ASSERT_EQ(r->refusal, FactorAttemptOutcome::Refusal::kNone) << i;
  }
  EXPECT_EQ(*store_->GetThrottle("app_a", "alice")->blocked_until, at + seconds(3600));
  EXPECT_FALSE(store_->GetThrottle("app_a", "alice")->locked);
  at += seconds(3600);
  r = store_->RecordFactorAttempt(Attempt("alice", {}, at));
  EXPECT_TRUE(r->locked_now);
  EXPECT_EQ(r->failures, 100);
  EXPECT_TRUE(store_->GetThrottle("app_a", "alice")->locked);
  at += seconds(86400);
  r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 5)}, at));
  EXPECT_EQ(r->refusal, FactorAttemptOutcome::Refusal::kLocked);
  EXPECT_FALSE(r->valid);
  // Another user of the app is not affected.
  EXPECT_EQ(store_->RecordFactorAttempt(Attempt("bob", {}, at))->refusal,
            FactorAttemptOutcome::Refusal::kNone);

  EXPECT_TRUE(*store_->UnlockUser("app_a", "alice", "otpctl", at));
  EXPECT_FALSE(*store_->UnlockUser("app_a", "alice", "otpctl", at));
  EXPECT_EQ(store_->GetThrottle("app_a", "alice")->failures, 0);
  EXPECT_TRUE(store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 5)}, at))->valid);
  const auto types = EventTypes(*store_, "app_a");
  EXPECT_EQ(std::count(types.begin(), types.end(), "factor.locked"), 1);
  bool unlock_audited = false;
  const auto rows = store_->ListAudit("app_a", 10).value();
  for (const AuditEntry& e : rows) {
    unlock_audited |= e.action == "user.unlock" && e.actor == "otpctl" && e.result == "unlocked";
  }
  EXPECT_TRUE(unlock_audited);
}

TEST_P(StoreTest, ConcurrentAttemptsWithTheSameCodeSucceedOnce) {
  Factor t = MakeFactor("fac_t", "app_a", "alice", "totp", now_);
  t.status = kFactorActive;
  ASSERT_TRUE(store_->CreateFactor(t).ok());
  std::atomic<int> valid{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto r = store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_t", 7)}, now_));
      if (r.ok() && r->valid) ++valid;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(valid.load(), 1);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_t")->last_step, 7);
}

// MatchFactorAttemptAsync, answered on whatever thread the backend uses.
Result<FactorAttemptOutcome> MatchAttempt(Store& store, FactorAttempt a,
                                          const std::optional<std::string>& factor_id,
                                          const Store::FactorMatcher& match) {
  std::promise<Result<FactorAttemptOutcome>> done;
  auto answer = done.get_future();
  store.MatchFactorAttemptAsync(std::move(a), factor_id, match,
                                [&done](Result<FactorAttemptOutcome> r) { done.set_value(r); });
  return answer.get();
}

TEST_P(StoreTest, MatchFactorAttemptSeesTheUsersFactorsAndRecordsTheMatch) {
  Factor t = MakeFactor("fac_t", "app_a", "alice", "totp", now_);
  t.status = kFactorActive;
  ASSERT_TRUE(store_->CreateFactor(t).ok());
  ASSERT_TRUE(store_->CreateFactor(MakeFactor("fac_h", "app_a", "alice", "hotp", now_)).ok());
  ASSERT_TRUE(store_->CreateFactor(MakeFactor("fac_b", "app_a", "bob", "totp", now_)).ok());
  ASSERT_TRUE(store_->ReplaceRecoveryCodes("app_a", "alice", {"rc-hash"}, now_).ok());

  // Every factor of the user, oldest first; the match comes before the
  // candidates already in the attempt.
  std::vector<std::string> seen;
  auto r = MatchAttempt(*store_, Attempt("alice", {RecoveryHash("rc-hash")}, now_), std::nullopt,
                        [&](const std::vector<Factor>& factors) {
                          for (const Factor& f : factors) seen.push_back(f.id);
                          return Result<std::vector<FactorCandidate>>(
                              std::vector<FactorCandidate>{FactorAt("fac_t", 42)});
                        });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"fac_t", "fac_h"}));
  EXPECT_TRUE(r->valid);
  ASSERT_TRUE(r->matched.has_value());
  EXPECT_EQ(r->matched->factor_id, "fac_t");
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_t")->last_step, 42);
  EXPECT_EQ(store_->ListRecoveryCodes("app_a", "alice")->at(0).used_at, std::nullopt);

  // One factor by id: only that one, and only if it is the user's.
  seen.clear();
  auto collect = [&](const std::vector<Factor>& factors) {
    for (const Factor& f : factors) seen.push_back(f.id);
    return Result<std::vector<FactorCandidate>>(std::vector<FactorCandidate>{});
  };
  r = MatchAttempt(*store_, Attempt("alice", {}, now_), std::string("fac_h"), collect);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->valid);
  EXPECT_EQ(r->failures, 1);
  EXPECT_EQ(seen, (std::vector<std::string>{"fac_h"}));
  seen.clear();
  r = MatchAttempt(*store_, Attempt("alice", {}, now_), std::string("fac_b"), collect);
  EXPECT_EQ(r.status().code(), otp::StatusCode::kNotFound);
  EXPECT_TRUE(seen.empty());

  // A matcher error ends the attempt with nothing written: no failure counted,
  // no audit row.
  const std::size_t audited = store_->ListAudit("app_a", 1000)->size();
  r = MatchAttempt(*store_, Attempt("alice", {}, now_), std::nullopt,
                   [](const std::vector<Factor>&) -> Result<std::vector<FactorCandidate>> {
                     return otp::Internal("cannot open the secret");
                   });
  EXPECT_EQ(r.status().code(), otp::StatusCode::kInternal);
  EXPECT_EQ(store_->ListAudit("app_a", 1000)->size(), audited);
  r = MatchAttempt(*store_, Attempt("alice", {}, now_), std::nullopt, collect);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->failures, 2);  // the matcher error counted none
}

TEST_P(StoreTest, AuditIsNewestLimitedOldestFirst) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_
                    ->AppendAudit(AuditEntry{0, now_ + seconds(i), "app_a", "otpctl", "x", "s",
                                             "ok", std::to_string(i)})
                    .ok());
  }
  auto a = store_->ListAudit("app_a", 2);
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].detail, "3");
  EXPECT_EQ((*a)[1].detail, "4");
  EXPECT_LT((*a)[0].id, (*a)[1].id);
  EXPECT_EQ((*a)[1].at, now_ + seconds(4));
  EXPECT_TRUE(store_->ListAudit("app_b", 10)->empty());
}

HardwareToken MakeToken(const std::string& serial, const std::string& type, TimePoint now) {
  HardwareToken t;
  t.serial = serial;
  t.type = type;
  t.secret_sealed = "v1.k.token-" + serial;
  t.digits = 8;
  t.counter = 3;
  t.imported_at = now;
  return t;
}

TEST_P(StoreTest, HardwareTokensImportAllOrNothing) {
  ASSERT_TRUE(
      store_->ImportHardwareTokens({MakeToken("S1", "hotp", now_), MakeToken("S2", "totp", now_)})
          .ok());
  Status dup =
      store_->ImportHardwareTokens({MakeToken("S3", "hotp", now_), MakeToken("S2", "hotp", now_)});
  EXPECT_EQ(dup.code(), otp::StatusCode::kAlreadyExists);
  EXPECT_NE(dup.message().find("S2"), std::string::npos);
  auto all = store_->ListHardwareTokens(false);
  ASSERT_EQ(all->size(), 2u);  // S3 was not imported either
  EXPECT_EQ((*all)[0].serial, "S1");
  EXPECT_EQ((*all)[0].digits, 8);
  EXPECT_EQ((*all)[0].counter, 3);
  EXPECT_EQ((*all)[0].secret_sealed, "v1.k.token-S1");
  EXPECT_EQ((*all)[0].imported_at, now_);
  EXPECT_EQ((*all)[1].type, "totp");
  EXPECT_EQ(store_->RevokeHardwareToken("nope", now_).code(), otp::StatusCode::kNotFound);
}

TEST_P(StoreTest, HardwareTokenBindsToOneUserAndDeletingFreesIt) {
  ASSERT_TRUE(store_->ImportHardwareTokens({MakeToken("S1", "hotp", now_)}).ok());
  Factor req = MakeFactor("fac_h", "app_a", "alice", "hotp", now_);
  req.secret_sealed.clear();
  EXPECT_EQ(store_->BindHardwareToken(req, "S9").status().code(), otp::StatusCode::kNotFound);
  Factor wrong_type = req;
  wrong_type.type = "totp";
  EXPECT_EQ(store_->BindHardwareToken(wrong_type, "S1").status().code(),
            otp::StatusCode::kFailedPrecondition);
  auto bound = store_->BindHardwareToken(req, "S1");
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  EXPECT_EQ(bound->serial, "S1");
  EXPECT_EQ(bound->secret_sealed, "v1.k.token-S1");  // the token's blob is kept
  EXPECT_EQ(bound->digits, 8);
  EXPECT_EQ(bound->counter, 3);
  EXPECT_EQ(bound->status, kFactorUnverified);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_h")->serial, "S1");
  EXPECT_TRUE(store_->ListHardwareTokens(true)->empty());
  EXPECT_EQ(store_->ListHardwareTokens(false)->at(0).factor_id, "fac_h");
  EXPECT_EQ(store_->ListHardwareTokens(false)->at(0).user_id, "alice");
  // One user at a time.
  Factor other = MakeFactor("fac_b", "app_b", "bob", "hotp", now_);
  EXPECT_EQ(store_->BindHardwareToken(other, "S1").status().code(),
            otp::StatusCode::kFailedPrecondition);

  // Use it (counter moves), then delete the factor: the token is free, keeping its counter.
  EXPECT_TRUE(
      store_->RecordFactorAttempt(Attempt("alice", {FactorAt("fac_h", 4, true)}, now_))->valid);
  ASSERT_TRUE(store_->DeleteFactor("app_a", "alice", "fac_h", now_).ok());
  auto free = store_->ListHardwareTokens(true);
  ASSERT_EQ(free->size(), 1u);
  EXPECT_EQ((*free)[0].counter, 5);
  EXPECT_TRUE((*free)[0].factor_id.empty());
  ASSERT_TRUE(store_->BindHardwareToken(other, "S1").ok());

  // Revoking a bound token deletes its factor; a revoked token binds no more.
  ASSERT_TRUE(store_->RevokeHardwareToken("S1", now_ + seconds(5)).ok());
  EXPECT_EQ(store_->GetFactor("app_b", "bob", "fac_b").status().code(), otp::StatusCode::kNotFound);
  auto revoked = store_->ListHardwareTokens(false);
  EXPECT_EQ(revoked->at(0).revoked_at, now_ + seconds(5));
  EXPECT_TRUE(store_->ListHardwareTokens(true)->empty());
  Factor again = MakeFactor("fac_c", "app_a", "carol", "hotp", now_);
  EXPECT_EQ(store_->BindHardwareToken(again, "S1").status().code(),
            otp::StatusCode::kFailedPrecondition);
  EXPECT_EQ(EventTypes(*store_, "app_b"),
            (std::vector<std::string>{"factor.created", "factor.deleted"}));
}

TEST_P(StoreTest, FactorAndHardwareTokenSecretsAreSealedValues) {
  Factor soft = MakeFactor("fac_1", "app_a", "alice", "totp", now_);
  soft.secret_sealed = "v1.mold.soft";
  ASSERT_TRUE(store_->CreateFactor(soft).ok());
  HardwareToken t1 = MakeToken("S1", "hotp", now_);
  t1.secret_sealed = "v1.mold.t1";
  HardwareToken t2 = MakeToken("S2", "hotp", now_);
  t2.secret_sealed = "v1.mnew.t2";
  ASSERT_TRUE(store_->ImportHardwareTokens({t1, t2}).ok());
  auto bound = store_->BindHardwareToken(MakeFactor("fac_2", "app_a", "bob", "hotp", now_), "S1");
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();

  using Counts = std::map<std::string, std::int64_t>;
  // fac_2 holds the token's blob: S1 and fac_2 count apart.
  EXPECT_EQ(*store_->CountSealedByKeyId(), (Counts{{"mold", 3}, {"mnew", 1}}));

  auto factors = store_->ListSealed(kSealedFactorSecret, "mnew", "", 10);
  ASSERT_TRUE(factors.ok()) << factors.status().ToString();
  ASSERT_EQ(factors->size(), 2u);
  EXPECT_EQ((*factors)[0].id, "fac_1");
  EXPECT_EQ((*factors)[0].associated_data, FactorSealingContext("fac_1"));
  EXPECT_EQ((*factors)[0].sealed, "v1.mold.soft");
  EXPECT_EQ((*factors)[1].id, "fac_2");
  EXPECT_EQ((*factors)[1].associated_data, HardwareTokenSealingContext("S1"));
  auto tokens = store_->ListSealed(kSealedHardwareTokenSecret, "mnew", "", 10);
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ((*tokens)[0].id, "S1");
  EXPECT_EQ((*tokens)[0].associated_data, HardwareTokenSealingContext("S1"));
  EXPECT_EQ(store_->ListSealed(kSealedHardwareTokenSecret, "mnew", "S1", 10)->size(), 0u);

  auto applied = store_->ReplaceSealed({
      {std::string(kSealedFactorSecret), "fac_1", "v1.mold.soft", "v1.mnew.soft2"},
      {std::string(kSealedFactorSecret), "fac_2", "v1.mold.stale", "v1.mnew.x"},
      {std::string(kSealedHardwareTokenSecret), "S1", "v1.mold.t1", "v1.mnew.t1b"},
  });
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(*applied, 2);
  EXPECT_EQ(store_->GetFactor("app_a", "alice", "fac_1")->secret_sealed, "v1.mnew.soft2");
  EXPECT_EQ(store_->GetFactor("app_a", "bob", "fac_2")->secret_sealed, "v1.mold.t1");
  EXPECT_EQ((*store_->ListHardwareTokens(false))[0].secret_sealed, "v1.mnew.t1b");
  EXPECT_EQ(*store_->CountSealedByKeyId(), (Counts{{"mold", 1}, {"mnew", 3}}));
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values("sqlite", "memory"));
INSTANTIATE_TEST_SUITE_P(Backends, Sec6_StoreTest, ::testing::Values("sqlite", "memory"));
INSTANTIATE_TEST_SUITE_P(Backends, Sec10_StoreTest, ::testing::Values("sqlite", "memory"));
INSTANTIATE_TEST_SUITE_P(Backends, Sec30_StoreTest, ::testing::Values("sqlite", "memory"));

// --- webhook outbox, verification events, audit (issue 5) ----------------------

// The StoreTest fixture with app_a given a webhook_url (app_b has none).
class WebhookStoreTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    App a = *store_->GetApp("app_a");
    a.settings.webhook_url = "https://hooks.example.com/otpd";
    ASSERT_TRUE(store_->UpdateApp(a).ok());
  }

  // The events of `app` of one type.
  std::vector<Event> EventsOf(const std::string& app, const std::string& type) {
    std::vector<Event> out;
    const auto events = store_->ListEvents(app, 0, 1000);
    for (const Event& e : *events) {
      if (e.type == type) out.push_back(e);
    }
    return out;
  }

  // A verification of app_a stored with its first job.
  Verification Start(const std::string& id, TimePoint at) {
    Verification v = MakeVerification(id, "app_a", at);
    v.metadata_json = R"({"order":"A-17"})";
    EXPECT_TRUE(store_->CreateVerification(v, FirstJob(v, at), nullptr, {}).ok());
    return v;
  }
};

using Sec31StoreTest = WebhookStoreTest;
using Sec27StoreTest = WebhookStoreTest;
using Sec32StoreTest = WebhookStoreTest;

TEST_P(Sec31StoreTest, VerificationEventsCarryTheObjectWithRecipientsMasked) {
  Start("ver_1", now_);
  ASSERT_TRUE(store_->RecordCheck("app_a", "ver_1", "wrong", now_)->applied);
  EXPECT_TRUE(store_->ListEvents("app_a", 0, 100)->empty())
      << "an ordinary wrong code writes no event";
  ASSERT_EQ(store_->RecordCheck("app_a", "ver_1", "hash", now_)->status, kApproved);
  auto approved = EventsOf("app_a", "verification.approved");
  ASSERT_EQ(approved.size(), 1u);
  const Event& e = approved[0];
  EXPECT_EQ(e.state, kEventPending);
  EXPECT_EQ(e.created_at, now_);
  const auto data = nlohmann::json::parse(e.data_json);
  EXPECT_EQ(data["id"], "ver_1");
  EXPECT_EQ(data["status"], "approved");
  EXPECT_EQ(data["to"], "+********5678");
  EXPECT_EQ(data["workflow"][1]["to"], "a***@example.com");
  EXPECT_EQ(data["metadata"]["order"], "A-17");
  EXPECT_EQ(data["check_count"], 2);
  for (const char* leak : {"306912345678", "hash", "sealed", "a@example.com"}) {
    EXPECT_EQ(e.data_json.find(leak), std::string::npos) << leak << " in " << e.data_json;
  }
}

TEST_P(WebhookStoreTest, EachWayOutOfPendingWritesItsEvent) {
  Start("ver_c", now_);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_c", now_)->applied);
  EXPECT_FALSE(store_->Cancel("app_a", "ver_c", now_)->applied);
  EXPECT_EQ(EventsOf("app_a", "verification.canceled").size(), 1u);

  Verification m = Start("ver_m", now_);
  for (int i = 0; i < m.max_checks; ++i) (void)store_->RecordCheck("app_a", "ver_m", "x", now_);
  EXPECT_EQ(EventsOf("app_a", "verification.max_checks_reached").size(), 1u);

  // Expiry: on the way of a check, by ExpireIfDue, and by the sweep.
  Verification e1 = Start("ver_e1", now_);
  EXPECT_FALSE(store_->RecordCheck("app_a", "ver_e1", "hash", e1.expires_at)->applied);
  Start("ver_e2", now_);
  ASSERT_TRUE(store_->ExpireIfDue("app_a", "ver_e2", e1.expires_at)->applied);
  Start("ver_e3", now_);
  Start("ver_e4", now_ + seconds(100));
  EXPECT_EQ(*store_->ExpireOverdue(now_, e1.expires_at, 10), 1);  // e3; e4 is not due
  EXPECT_EQ(*store_->ExpireOverdue(now_, e1.expires_at, 10), 0);
  EXPECT_EQ(store_->GetVerification("app_a", "ver_e3")->status, kExpired);
  EXPECT_EQ(store_->GetVerification("app_a", "ver_e4")->status, kPending);
  auto expired = EventsOf("app_a", "verification.expired");
  ASSERT_EQ(expired.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(expired[2].data_json)["id"], "ver_e3");

  // Delivery results: delivery.updated per recorded send; the last step failing
  // with nothing sent is verification.undeliverable.
  Start("ver_u", now_);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_e4", now_).ok());  // drop its job
  auto jobs = store_->ClaimJobs(now_, now_ + seconds(60), 10);
  ASSERT_EQ(jobs->size(), 1u);
  JobOutcome o;
  o.job = jobs->at(0);
  o.provider = "p";
  o.delivery_status = kDeliveryFailed;
  o.error = "refused";
  o.at = now_;
  o.undeliverable = true;
  ASSERT_TRUE(store_->FinishJob(o).ok());
  auto updated = EventsOf("app_a", "delivery.updated");
  ASSERT_EQ(updated.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(updated[0].data_json)["deliveries"][0]["status"], "failed");
  EXPECT_EQ(EventsOf("app_a", "verification.undeliverable").size(), 1u);
}

TEST_P(WebhookStoreTest, EventsOfAppsWithoutAnEnabledWebhookAreSkipped) {
  Verification v = MakeVerification("ver_b", "app_b", now_);
  ASSERT_TRUE(store_->CreateVerification(v, FirstJob(v, now_), nullptr, {}).ok());
  ASSERT_TRUE(store_->Cancel("app_b", "ver_b", now_)->applied);
  auto events = store_->ListEvents("app_b", 0, 10);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].state, kEventSkipped);
  // An event written while the URL was set, due after it was removed: skipped at the claim.
  Start("ver_a", now_);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_a", now_)->applied);
  App a = *store_->GetApp("app_a");
  a.settings.webhook_url.clear();
  ASSERT_TRUE(store_->UpdateApp(a).ok());
  EXPECT_TRUE(store_->ClaimWebhookEvents(now_, now_ + seconds(60), 10)->empty());
  EXPECT_EQ(EventsOf("app_a", "verification.canceled")[0].state, kEventSkipped);
  EXPECT_FALSE(store_->NextWebhookDue()->has_value());
}

TEST_P(Sec27StoreTest, OutboxClaimIsLeasedRetriedAndFinishedOnce) {
  Start("ver_1", now_);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_1", now_)->applied);
  EXPECT_EQ(*store_->NextWebhookDue(), now_);
  auto claimed = store_->ClaimWebhookEvents(now_, now_ + seconds(60), 10);
  ASSERT_EQ(claimed->size(), 1u);
  const WebhookJob job = claimed->at(0);
  EXPECT_EQ(job.url, "https://hooks.example.com/otpd");
  EXPECT_EQ(job.secret, "whsec_x");
  EXPECT_EQ(job.event.type, "verification.canceled");
  EXPECT_EQ(job.event.attempts, 1);
  // Leased: nobody else takes it until the lease ends (a crashed sender's comes back).
  EXPECT_TRUE(store_->ClaimWebhookEvents(now_ + seconds(59), now_ + seconds(119), 10)->empty());
  EXPECT_EQ(*store_->NextWebhookDue(), now_ + seconds(60));
  auto again = store_->ClaimWebhookEvents(now_ + seconds(60), now_ + seconds(120), 10);
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ(again->at(0).event.attempts, 2);

  // The first sender's late outcome is ignored; the current one's counts.
  WebhookOutcome stale{job.event.id, 1, kEventDelivered, {}, 200, "", false, now_ + seconds(61)};
  EXPECT_FALSE(*store_->FinishWebhookEvent(stale));
  WebhookOutcome retry{job.event.id, 2,          kEventPending, now_ + seconds(300),
                       500,          "HTTP 500", false,         now_ + seconds(61)};
  EXPECT_TRUE(*store_->FinishWebhookEvent(retry));
  EXPECT_FALSE(*store_->FinishWebhookEvent(retry)) << "a try is finished once";
  auto e = EventsOf("app_a", "verification.canceled")[0];
  EXPECT_EQ(e.state, kEventPending);
  EXPECT_EQ(e.last_status, 500);
  EXPECT_EQ(e.last_error, "HTTP 500");
  EXPECT_TRUE(store_->ClaimWebhookEvents(now_ + seconds(299), now_ + seconds(400), 10)->empty());
  auto third = store_->ClaimWebhookEvents(now_ + seconds(300), now_ + seconds(360), 10);
  ASSERT_EQ(third->size(), 1u);
  EXPECT_EQ(third->at(0).event.attempts, 3);
  WebhookOutcome ok{job.event.id, 3, kEventDelivered, {}, 204, "", false, now_ + seconds(301)};
  EXPECT_TRUE(*store_->FinishWebhookEvent(ok));
  EXPECT_EQ(EventsOf("app_a", "verification.canceled")[0].state, kEventDelivered);
  EXPECT_TRUE(store_->ClaimWebhookEvents(now_ + seconds(9999), now_ + seconds(99999), 10)->empty());
  EXPECT_FALSE(store_->NextWebhookDue()->has_value());
}

TEST_P(Sec27StoreTest, GivingUpIsRecorded) {
  Start("ver_1", now_);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_1", now_)->applied);
  auto claimed = store_->ClaimWebhookEvents(now_, now_ + seconds(60), 10);
  ASSERT_EQ(claimed->size(), 1u);
  WebhookOutcome gave_up{
      claimed->at(0).event.id, 1, kEventFailed, {}, 503, "HTTP 503", false, now_};
  EXPECT_TRUE(*store_->FinishWebhookEvent(gave_up));
  auto e = EventsOf("app_a", "verification.canceled")[0];
  EXPECT_EQ(e.state, kEventFailed);
  EXPECT_EQ(e.last_status, 503);
  EXPECT_TRUE(
      store_->ClaimWebhookEvents(now_ + seconds(99999), now_ + seconds(999999), 10)->empty());
}

TEST_P(Sec27StoreTest, GoneDisablesTheEndpointUntilEnabledAgain) {
  Start("ver_1", now_);
  Start("ver_2", now_);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_1", now_)->applied);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_2", now_ + seconds(1))->applied);
  auto claimed = store_->ClaimWebhookEvents(now_, now_ + seconds(60), 1);
  ASSERT_EQ(claimed->size(), 1u);
  WebhookOutcome gone{claimed->at(0).event.id, 1,    kEventFailed,     {}, 410,
                      "HTTP 410 Gone",         true, now_ + seconds(2)};
  EXPECT_TRUE(*store_->FinishWebhookEvent(gone));
  App a = *store_->GetApp("app_a");
  ASSERT_TRUE(a.webhook_disabled_at.has_value());
  EXPECT_EQ(*a.webhook_disabled_at, now_ + seconds(2));
  EXPECT_EQ(a.webhook_disabled_reason, "HTTP 410 Gone");
  // The other pending event is given up, new ones are not queued.
  for (const Event& e : EventsOf("app_a", "verification.canceled"))
    EXPECT_EQ(e.state, kEventFailed);
  Start("ver_3", now_);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_3", now_ + seconds(3))->applied);
  EXPECT_EQ(EventsOf("app_a", "verification.canceled").back().state, kEventSkipped);
  EXPECT_TRUE(store_->ClaimWebhookEvents(now_ + seconds(9), now_ + seconds(60), 10)->empty());
  // An update of the app (UpdateApp) does not enable it; EnableWebhook does.
  ASSERT_TRUE(store_->UpdateApp(a).ok());
  EXPECT_TRUE(store_->GetApp("app_a")->webhook_disabled_at.has_value());
  ASSERT_TRUE(store_->EnableWebhook("app_a").ok());
  EXPECT_FALSE(store_->GetApp("app_a")->webhook_disabled_at.has_value());
  EXPECT_EQ(store_->EnableWebhook("app_nope").code(), otp::StatusCode::kNotFound);
  Start("ver_4", now_);
  ASSERT_TRUE(store_->Cancel("app_a", "ver_4", now_ + seconds(4))->applied);
  EXPECT_EQ(store_->ClaimWebhookEvents(now_ + seconds(9), now_ + seconds(60), 10)->size(), 1u);
}

TEST_P(Sec32StoreTest, EveryVerificationDecisionIsAuditedWithTheRecipientMasked) {
  Verification v = Start("ver_1", now_);
  Delivery d = v.deliveries[0];
  Job j = FirstJob(v, now_);
  j.advance = false;
  (void)store_->RecordResend("app_a", "ver_1", 30, d, j, now_ + seconds(1));   // cooldown
  (void)store_->RecordResend("app_a", "ver_1", 30, d, j, now_ + seconds(31));  // queued
  (void)store_->RecordCheck("app_a", "ver_1", "wrong", now_ + seconds(32));
  (void)store_->RecordCheck("app_a", "ver_1", "hash", now_ + seconds(33));
  (void)store_->RecordCheck("app_a", "ver_1", "hash", now_ + seconds(34));  // not pending
  (void)store_->Cancel("app_a", "ver_1", now_ + seconds(35));
  Start("ver_2", now_);
  (void)store_->Cancel("app_a", "ver_2", now_ + seconds(36));
  Start("ver_3", now_);
  (void)store_->ExpireOverdue(now_, v.expires_at, 10);

  std::vector<std::string> seen;
  const auto audit = store_->ListAudit("app_a", 100);
  for (const AuditEntry& a : *audit) {
    seen.push_back(a.action + " " + a.subject + " " + a.result + " | " + a.actor + " | " +
                   a.detail);
    EXPECT_EQ(a.detail.find("306912345678"), std::string::npos) << a.detail;
    EXPECT_EQ(a.detail.find("hash"), std::string::npos) << a.detail;
  }
  const std::string to = "to +********5678";
  const std::vector<std::string> want = {
      "verification.start ver_1 started | api | " + to + ", channel sms",
      "verification.resend ver_1 refused: cooldown | api | " + to,
      "verification.resend ver_1 queued | api | " + to + ", channel sms",
      "verification.check ver_1 invalid | api | " + to,
      "verification.check ver_1 valid | api | " + to,
      "verification.check ver_1 refused: approved | api | " + to,
      "verification.cancel ver_1 refused: approved | api | " + to,
      "verification.start ver_2 started | api | " + to + ", channel sms",
      "verification.cancel ver_2 canceled | api | " + to,
      "verification.start ver_3 started | api | " + to + ", channel sms",
      "verification.expire ver_3 expired | otpd | " + to,
  };
  EXPECT_EQ(seen, want);
  // A check of an unknown id changes nothing and writes nothing.
  auto t = store_->RecordCheck("app_a", "ver_nope", "hash", now_);
  EXPECT_EQ(t.status().code(), otp::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListAudit("app_a", 100)->size(), want.size());
}

INSTANTIATE_TEST_SUITE_P(Backends, WebhookStoreTest, ::testing::Values("sqlite", "memory"));
INSTANTIATE_TEST_SUITE_P(Backends, Sec27StoreTest, ::testing::Values("sqlite", "memory"));
INSTANTIATE_TEST_SUITE_P(Backends, Sec31StoreTest, ::testing::Values("sqlite", "memory"));
INSTANTIATE_TEST_SUITE_P(Backends, Sec32StoreTest, ::testing::Values("sqlite", "memory"));

TEST(SqliteStoreTest, MigrationsAreIdempotentAndDataSurvivesReopen) {
  const std::string path = TempDbPath();
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  {
    auto s = OpenStore("sqlite://" + path);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->CreateApp(MakeApp("app_a", now)).ok());
    Verification v = MakeVerification("ver_1", "app_a", now);
    ASSERT_TRUE((*s)->CreateVerification(v, FirstJob(v, now), nullptr, {}).ok());
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

// Runs `sql` on the database file directly (not through the store); `value`,
// if given, receives the first column of the last row it returned.
int RawSql(const std::string& path, const std::string& sql, std::string* value = nullptr) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open(path.c_str(), &db);
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(
        db, sql.c_str(),
        [](void* out, int, char** values, char**) {
          if (out != nullptr)
            *static_cast<std::string*>(out) = values[0] != nullptr ? values[0] : "";
          return 0;
        },
        value, nullptr);
  }
  sqlite3_close(db);
  return rc;
}

// Migration 6 rebuilds the audit table without AUTOINCREMENT: a database
// still at 5 keeps every row and id, new ids follow the old ones, and the
// table stays append-only.
TEST(SqliteStoreTest, Migration6KeepsTheAuditRowsAndTheirOrder) {
  const std::string path = TempDbPath();
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  { ASSERT_TRUE(OpenStore("sqlite://" + path).ok()); }
  // Back to schema 5's audit table, with two rows and a gap in the ids.
  ASSERT_EQ(RawSql(path,
                   "DROP TABLE audit; DELETE FROM schema_migrations WHERE version = 6;"
                   "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT "
                   "NULL, app_id TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, "
                   "subject TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL);"
                   "INSERT INTO audit VALUES (7, 1, 'app_a', 'otpctl', 'app.create', 'app_a', "
                   "'ok', 'first'), (9, 2, 'app_a', 'api', 'verification.check', 'ver_1', "
                   "'wrong_code', 'second');"),
            SQLITE_OK);
  auto s = OpenStore("sqlite://" + path);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(
      (*s)->AppendAudit(AuditEntry{0, now, "app_a", "otpctl", "x", "s", "ok", "third"}).ok());
  auto rows = (*s)->ListAudit("app_a", 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].id, 7);
  EXPECT_EQ((*rows)[0].detail, "first");
  EXPECT_EQ((*rows)[1].id, 9);
  EXPECT_EQ((*rows)[1].result, "wrong_code");
  EXPECT_GT((*rows)[2].id, 9);
  EXPECT_EQ((*rows)[2].detail, "third");
  EXPECT_NE(RawSql(path, "DELETE FROM audit"), SQLITE_OK);
  EXPECT_NE(RawSql(path, "UPDATE audit SET detail = ''"), SQLITE_OK);
  std::string schema;
  ASSERT_EQ(RawSql(path, "SELECT sql FROM sqlite_master WHERE name = 'audit'", &schema), SQLITE_OK);
  EXPECT_NE(schema.find("id INTEGER PRIMARY KEY,"), std::string::npos) << schema;
  EXPECT_EQ(schema.find("AUTOINCREMENT"), std::string::npos) << schema;
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
  ASSERT_TRUE((*a)->CreateVerification(v, FirstJob(v, now), nullptr, {}).ok());
  EXPECT_TRUE((*b)->RecordCheck("app_a", "ver_1", "hash", now)->applied);
  EXPECT_FALSE((*a)->RecordCheck("app_a", "ver_1", "hash", now)->applied);
  EXPECT_EQ((*a)->ClaimJobs(now, now + seconds(60), 10)->size(), 0u);
}

TEST(SqliteStoreTest, ABatchOfChecksWithOneFailingAppliesEveryOtherCheckOnce) {
  // The writer runs a row of checks under one savepoint (RunGroup). When one
  // of them fails (here: an unknown id), the row is rolled back and run again
  // one savepoint each: the others must then count once, not twice, and the
  // failed one must leave nothing behind.
  const std::string path = TempDbPath();
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  auto s = OpenStore("sqlite://" + path);
  ASSERT_TRUE(s.ok());
  Store& store = **s;
  ASSERT_TRUE(store.CreateApp(MakeApp("app_a", now)).ok());
  for (int i = 0; i < 3; ++i) {
    Verification v = MakeVerification("ver_" + std::to_string(i), "app_a", now);
    v.to = "+30691" + std::to_string(1000000 + i);
    ASSERT_TRUE(store.CreateVerification(v, FirstJob(v, now), nullptr, {}).ok());
  }
  // Another connection holds the write lock: the writer takes the first check
  // and waits for the lock, and the next three queue up behind it. Whichever
  // way they split into (at most two) batches, the unknown id shares a row
  // with at least one other check.
  sqlite::Db blocker(path, false);
  blocker.Run("BEGIN IMMEDIATE");
  const std::vector<std::string> ids = {"ver_0", "ver_1", "ver_missing", "ver_2"};
  std::vector<std::promise<Result<Transition>>> answers(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    store.RecordCheckAsync("app_a", ids[i], "wrong", now,
                           [&answers, i](Result<Transition> t) { answers[i].set_value(t); });
    if (i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  blocker.Run("ROLLBACK");
  for (std::size_t i = 0; i < ids.size(); ++i) {
    Result<Transition> t = answers[i].get_future().get();
    if (ids[i] == "ver_missing") {
      EXPECT_EQ(t.status().code(), otp::StatusCode::kNotFound);
      continue;
    }
    ASSERT_TRUE(t.ok()) << ids[i] << ": " << t.status().ToString();
    EXPECT_TRUE(t->applied);
    EXPECT_FALSE(t->correct);
    EXPECT_EQ(t->check_count, 1) << ids[i];
    EXPECT_EQ(store.GetVerification("app_a", ids[i])->check_count, 1) << ids[i];
  }
  auto audit = store.ListAudit("app_a", 100);
  ASSERT_TRUE(audit.ok());
  std::vector<std::string> checked;
  for (const AuditEntry& e : *audit) {
    if (e.action == "verification.check") checked.push_back(e.subject);
  }
  std::sort(checked.begin(), checked.end());
  EXPECT_EQ(checked, (std::vector<std::string>{"ver_0", "ver_1", "ver_2"}));
}

TEST(SqliteStoreTest, SqliteRunsWithOtpdsLibraryOptions) {
  // Set before SQLite initializes, or refused: no memory statistics (a global
  // mutex on every allocation) and statement journals in memory up to 4 MiB
  // (RunGroup's savepoint would otherwise write a temp file past 64 KiB).
  auto s = OpenStore("sqlite://" + TempDbPath());
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(sqlite::ConfigureLibrary());
  sqlite3_int64 used = -1, highwater = -1;
  ASSERT_EQ(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &used, &highwater, 0), SQLITE_OK);
  EXPECT_EQ(used, 0) << "SQLite keeps memory statistics";
}

TEST(SqliteStoreTest, CheckpointsMoveTheWalIntoTheDatabaseFile) {
  // The writer leaves checkpoints to a thread of their own, woken once the WAL
  // holds 64000 pages. They must really copy pages into the database file (a
  // checkpoint through a connection that has not read yet does nothing, and the
  // WAL then grows without bound).
  const std::string path = TempDbPath();
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  auto s = OpenStore("sqlite://" + path);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->CreateApp(MakeApp("app_a", now)).ok());
  const auto db_size = [&] { return std::filesystem::file_size(path); };
  const auto before = db_size();
  // With 40 KB of metadata a creation's commit writes about 23 WAL pages:
  // 3000 of them, one commit each, about 69000.
  const std::string metadata = R"({"pad":")" + std::string(40'000, 'x') + R"("})";
  for (int i = 0; i < 3000; ++i) {
    Verification v = MakeVerification("ver_" + std::to_string(i), "app_a", now);
    v.to = "+30691" + std::to_string(1000000 + i);
    v.metadata_json = metadata;
    ASSERT_TRUE((*s)->CreateVerification(v, FirstJob(v, now), nullptr, {}).ok());
  }
  for (int i = 0; i < 100 && db_size() <= before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(db_size(), before + 100'000) << "no checkpoint reached the database file";
}

TEST(SqliteStoreTest, TheWalStartsOverWhileTheWriterNeverIdles) {
  // SQLite rewinds the WAL only when the writer begins a transaction with every
  // frame already in the database file. With a queue that never empties, the
  // checkpointer's copies always trail the writer's appends, so the writer
  // copies the last frames itself between two batches (CheckpointLoop);
  // without that the WAL grows by every frame written. A checkpoint here
  // starts at 200 pages; the checks write about 20 times that.
  const std::string path = TempDbPath();
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  SqliteStoreOptions options;
  options.checkpoint_pages = 200;
  auto s = OpenSqliteStore(path, options);
  ASSERT_TRUE(s.ok());
  Store& store = **s;
  ASSERT_TRUE(store.Migrate().ok());
  ASSERT_TRUE(store.CreateApp(MakeApp("app_a", now)).ok());
  constexpr int kVerifications = 300;
  for (int i = 0; i < kVerifications; ++i) {
    Verification v = MakeVerification("ver_" + std::to_string(i), "app_a", now);
    v.to = "+30691" + std::to_string(1000000 + i);
    v.max_checks = 1000;
    ASSERT_TRUE(store.CreateVerification(v, FirstJob(v, now), nullptr, {}).ok());
  }
  const std::string wal = path + "-wal";
  const auto wal_frames = [&] {
    return static_cast<long>(std::filesystem::file_size(wal) / (4096 + 24));
  };
  const long wal_before = wal_frames();  // the creations': one commit each

  // Queued all at once: the writer runs batch after batch without a pause.
  constexpr int kChecks = 30'000;
  std::atomic<int> left{kChecks}, failed{0};
  std::promise<void> all_done;
  for (int i = 0; i < kChecks; ++i) {
    store.RecordCheckAsync("app_a", "ver_" + std::to_string(i % kVerifications), "wrong", now,
                           [&](Result<Transition> t) {
                             if (!t.ok() || !t->applied) failed.fetch_add(1);
                             if (left.fetch_sub(1) == 1) all_done.set_value();
                           });
  }
  all_done.get_future().wait();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(store.GetVerification("app_a", "ver_0")->check_count, kChecks / kVerifications);

  // With the writer's part of the checkpoint disabled, the WAL reached 3,874-
  // 4,289 frames (2026-11-28); it must have started over from its beginning
  // and stayed within a few checkpoints' worth (272-310 frames).
  EXPECT_LT(wal_frames(), 8L * options.checkpoint_pages)
      << "the WAL never started over (" << wal_before << " frames before the checks)";
}

// The rows and bytes of table t as `db` sees them: "count:sum(length(v))".
std::string CountAndBytes(sqlite::Db& db) {
  sqlite::Stmt s = db.Prepare("SELECT count(*), coalesce(sum(length(v)), 0) FROM t");
  if (!s.Step()) return "no row";
  return std::to_string(s.Int(0)) + ":" + std::to_string(s.Int(1));
}

// otpd's VFS buffers the WAL frames of a commit and writes them in one piece
// when SQLite publishes the commit: another connection (the default VFS, as
// otpd's readers and otpctl use) must find every frame of every commit it can
// see, for commits of one page, of several, and of more than the buffer.
TEST(SqliteVfsTest, AnotherConnectionFindsEveryCommitInTheWalFile) {
  const std::string path = TempDbPath();
  sqlite::Db writer(path, false, sqlite::OtpdVfsName());
  writer.Exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; "
      "CREATE TABLE t (i INTEGER PRIMARY KEY, v BLOB);");
  sqlite::Db reader(path, false);
  std::int64_t bytes = 0;
  for (int i = 1; i <= 300; ++i) {
    // 10 B to 3 MB: one frame, a few, and (every 50th) more than the 1 MiB
    // buffer and more than one 128 KiB write.
    const int size = i % 50 == 0 ? 3'000'000 : 10 + (i % 7) * 3'000;
    writer.Prepare("INSERT INTO t VALUES (?1, randomblob(?2))").BindAll(i, size).Exec();
    bytes += size;
    ASSERT_EQ(CountAndBytes(reader), std::to_string(i) + ":" + std::to_string(bytes))
        << "after commit " << i;
  }
  std::string check;
  ASSERT_EQ(RawSql(path, "PRAGMA integrity_check", &check), SQLITE_OK);
  EXPECT_EQ(check, "ok");
}

// The same with the reader in another thread, reading while commits are
// published: a commit becomes visible (SQLite's xShmBarrier, inside the
// commit) before the writer lets go of its locks, and its frames must be in
// the file from that moment, not from the end of the commit.
TEST(SqliteVfsTest, AConcurrentReaderFindsEveryCommitItSees) {
  const std::string path = TempDbPath();
  sqlite::Db writer(path, false, sqlite::OtpdVfsName());
  writer.Exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA wal_autocheckpoint=0; "
      "CREATE TABLE t (i INTEGER PRIMARY KEY, v BLOB);");
  constexpr int kCommits = 5000;
  const auto size = [](std::int64_t i) { return 10 + (i % 5) * 2'000; };
  std::atomic<bool> done{false};
  std::atomic<bool> failed{false};
  std::string failure;  // the reader's, read after the join
  int reads = 0;
  std::thread reader([&] {
    try {
      sqlite::Db db(path, false);
      while (!done.load()) {
        // The newest row: its pages are in the newest commit's frames.
        sqlite::Stmt s = db.Prepare("SELECT i, length(v) FROM t ORDER BY i DESC LIMIT 1");
        if (s.Step() && s.Int(1) != size(s.Int(0))) {
          failure = "row " + std::to_string(s.Int(0)) + " has " + std::to_string(s.Int(1)) +
                    " bytes, not " + std::to_string(size(s.Int(0)));
          break;
        }
        ++reads;
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
    failed = !failure.empty();
  });
  for (int i = 1; i <= kCommits && !failed.load(); ++i) {
    writer.Prepare("INSERT INTO t VALUES (?1, randomblob(?2))").BindAll(i, size(i)).Exec();
  }
  done = true;
  reader.join();
  EXPECT_EQ(failure, "");
  EXPECT_GT(reads, 100);
}

// A transaction too big for the page cache writes frames to the WAL before its
// commit; rolled back, they were never published, and the next writer (here
// another connection) writes over them. Nothing of the rolled-back
// transaction may reach the file after that.
TEST(SqliteVfsTest, FramesOfARolledBackTransactionNeverOverwriteTheNextWriters) {
  const std::string path = TempDbPath();
  sqlite::Db ours(path, false, sqlite::OtpdVfsName());
  ours.Exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; "
      "PRAGMA cache_size=10; CREATE TABLE t (i INTEGER PRIMARY KEY, v BLOB); "
      "INSERT INTO t VALUES (1, randomblob(100));");
  const auto wal_size = [&] { return std::filesystem::file_size(path + "-wal"); };
  const auto before = wal_size();
  ours.Exec(
      "BEGIN; WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 400) "
      "INSERT INTO t SELECT i, randomblob(1000) FROM n;");
  ours.Exec("ROLLBACK;");
  EXPECT_GT(wal_size(), before + 100'000) << "the transaction did not spill into the WAL";
  sqlite::Db other(path, false);
  other.Exec(
      "INSERT INTO t VALUES (2, randomblob(2000)); INSERT INTO t VALUES (3, randomblob(3000));");
  ours.Exec("INSERT INTO t VALUES (4, randomblob(4000));");
  other.Exec("INSERT INTO t VALUES (5, randomblob(5000));");
  EXPECT_EQ(CountAndBytes(ours), "5:14100");
  EXPECT_EQ(CountAndBytes(other), "5:14100");
  std::string check;
  ASSERT_EQ(RawSql(path, "PRAGMA integrity_check", &check), SQLITE_OK);
  EXPECT_EQ(check, "ok");
}

// Releasing a WAL lock lets another connection write the WAL, so the VFS
// writes out whatever it still buffers first (xShmLock). SQLite itself leaves
// nothing buffered there in any case found (commits are written at their
// xShmBarrier; rollbacks of spilled transactions read the file first), so
// this drives the file methods directly: an append past the last frame, then
// a lock taken and released.
TEST(SqliteVfsTest, ReleasingAWalLockWritesWhatIsBuffered) {
  const std::string path = TempDbPath();
  sqlite::Db db(path, false, sqlite::OtpdVfsName());
  db.Exec(
      "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; "
      "CREATE TABLE t (i INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);");
  sqlite3_file* main_file = nullptr;
  sqlite3_file* wal = nullptr;
  ASSERT_EQ(sqlite3_file_control(db.raw(), "main", SQLITE_FCNTL_FILE_POINTER, &main_file),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_file_control(db.raw(), "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal), SQLITE_OK);
  ASSERT_TRUE(main_file != nullptr && main_file->pMethods != nullptr);
  ASSERT_TRUE(wal != nullptr && wal->pMethods != nullptr);
  const auto wal_size = [&] { return std::filesystem::file_size(path + "-wal"); };
  const auto before = wal_size();

  // Past the last frame: no reader looks there, and the next commit overwrites it.
  const std::string bytes(100, 'x');
  ASSERT_EQ(wal->pMethods->xWrite(wal, bytes.data(), 100, static_cast<sqlite3_int64>(before)),
            SQLITE_OK);
  EXPECT_EQ(wal_size(), before) << "the append was not buffered";
  constexpr int kReadMark = 3;  // a reader's lock slot: shared, harmless to take
  ASSERT_EQ(
      main_file->pMethods->xShmLock(main_file, kReadMark, 1, SQLITE_SHM_LOCK | SQLITE_SHM_SHARED),
      SQLITE_OK);
  EXPECT_EQ(wal_size(), before) << "taking a lock wrote the buffer";
  ASSERT_EQ(
      main_file->pMethods->xShmLock(main_file, kReadMark, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_SHARED),
      SQLITE_OK);
  EXPECT_EQ(wal_size(), before + 100) << "releasing the lock left the buffer unwritten";

  db.Exec("INSERT INTO t VALUES (2);");
  std::string count;
  std::string check;
  ASSERT_EQ(RawSql(path, "SELECT count(*) FROM t", &count), SQLITE_OK);
  EXPECT_EQ(count, "2");
  ASSERT_EQ(RawSql(path, "PRAGMA integrity_check", &check), SQLITE_OK);
  EXPECT_EQ(check, "ok");
}

TEST(SqliteVfsTest, ACheckpointThroughItCopiesEveryPage) {
  // Through otpd's VFS the database file's pages go to the disk every 1 MiB
  // a checkpoint writes; the checkpoint must still copy every page, in place.
  const std::string path = TempDbPath();
  sqlite::Db writer(path, false);  // open throughout: its close would checkpoint
  writer.Exec(
      "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; "
      "CREATE TABLE t (i INTEGER PRIMARY KEY, v BLOB); "
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
      "INSERT INTO t SELECT i, randomblob(1000) FROM n;");
  const auto db_size_before = std::filesystem::file_size(path);
  EXPECT_GT(std::filesystem::file_size(path + "-wal"), 3'000'000u);
  {
    sqlite::Db db(path, false, sqlite::OtpdVfsName());
    db.Exec("SELECT 1 FROM sqlite_master LIMIT 1;");  // opens the WAL (see CheckpointLoop)
    int log = -1;
    int copied = -1;
    ASSERT_EQ(
        sqlite3_wal_checkpoint_v2(db.raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log, &copied),
        SQLITE_OK);
    EXPECT_EQ(log, 0);  // TRUNCATE: everything copied, the WAL emptied
  }
  EXPECT_EQ(std::filesystem::file_size(path + "-wal"), 0u);
  EXPECT_GT(std::filesystem::file_size(path), db_size_before + 3'000'000);
  std::string check;
  std::string sum;
  ASSERT_EQ(RawSql(path, "PRAGMA integrity_check", &check), SQLITE_OK);
  EXPECT_EQ(check, "ok");
  ASSERT_EQ(RawSql(path, "SELECT sum(length(v)) || ':' || count(*) FROM t", &sum), SQLITE_OK);
  EXPECT_EQ(sum, "3000000:3000");
}

TEST(Sec8_SqliteStoreTest, OneRequestBucketIsSharedByTwoNodes) {
  // Two store objects on one file stand in for two otpd nodes: the bucket is
  // one, so together they are granted no more than it holds.
  const std::string path = TempDbPath();
  const TimePoint now = otp::FromUnixMillis(1'700'000'000'000);
  auto a = OpenStore("sqlite://" + path);
  auto b = OpenStore("sqlite://" + path);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->CreateApp(MakeApp("app_a", now)).ok());
  int granted = 0;
  for (int i = 0; i < 10; ++i) {
    granted += (*a)->TakeRequestTokens("app_a", 1, 25, 4, now)->granted;
    granted += (*b)->TakeRequestTokens("app_a", 1, 25, 4, now)->granted;
  }
  EXPECT_EQ(granted, 25);
}

TEST(OpenStoreTest, RefusesUnknownSchemes) {
  EXPECT_EQ(OpenStore("mysql://x").status().code(), otp::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenStore("postgresql://u@h/db").status().code(), otp::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace otpd
