#include "store/memory/memory_store.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "otp/crypto.h"
#include "otp/sealing.h"

namespace otpd {
namespace {

class MemoryStore final : public Store {
 public:
  Status Migrate() override { return Status::Ok(); }
  Status Ping() override { return Status::Ok(); }

  Status CreateApp(const App& app) override {
    std::lock_guard lock(mu_);
    for (const auto& [id, a] : apps_) {
      if (a.name == app.name) return otp::AlreadyExists("app name taken");
    }
    if (!apps_.emplace(app.id, app).second) return otp::AlreadyExists("app id taken");
    return Status::Ok();
  }

  Status UpdateApp(const App& app) override {
    std::lock_guard lock(mu_);
    auto it = apps_.find(app.id);
    if (it == apps_.end()) return otp::NotFound("no such app");
    it->second.name = app.name;
    it->second.settings = app.settings;
    it->second.updated_at = app.updated_at;
    return Status::Ok();
  }

  Result<App> GetApp(std::string_view id_or_name) override {
    std::lock_guard lock(mu_);
    for (const auto& [id, a] : apps_) {
      if (a.id == id_or_name || a.name == id_or_name) return a;
    }
    return otp::NotFound("no such app");
  }

  Result<std::vector<App>> ListApps() override {
    std::lock_guard lock(mu_);
    std::vector<App> out;
    for (const auto& [id, a] : apps_) out.push_back(a);
    std::sort(out.begin(), out.end(),
              [](const App& a, const App& b) { return a.created_at < b.created_at; });
    return out;
  }

  Status CreateKey(const ApiKey& key) override {
    std::lock_guard lock(mu_);
    if (!apps_.contains(key.app_id)) return otp::NotFound("no such app");
    keys_[key.id] = key;
    return Status::Ok();
  }

  Status RevokeKey(std::string_view key_id, TimePoint now) override {
    std::lock_guard lock(mu_);
    auto it = keys_.find(std::string(key_id));
    if (it == keys_.end()) return otp::NotFound("no such key");
    if (!it->second.revoked_at) it->second.revoked_at = now;
    return Status::Ok();
  }

  Result<App> AppForKeyHash(std::string_view key_hash) override {
    std::lock_guard lock(mu_);
    for (const auto& [id, k] : keys_) {
      if (k.key_hash == key_hash && !k.revoked_at) return apps_.at(k.app_id);
    }
    return otp::NotFound("unknown key");
  }

  Result<int> CountStartsSince(std::string_view app_id, std::string_view to,
                               TimePoint since) override {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& [id, v] : verifications_) {
      if (v.app_id == app_id && v.to == to && v.created_at >= since) ++n;
    }
    return n;
  }

  Result<std::optional<IdempotencyRecord>> GetIdempotency(std::string_view app_id,
                                                          std::string_view key,
                                                          TimePoint not_before) override {
    std::lock_guard lock(mu_);
    auto it = idempotency_.find({std::string(app_id), std::string(key)});
    if (it == idempotency_.end() || it->second.created_at < not_before) {
      return std::optional<IdempotencyRecord>();
    }
    return std::optional<IdempotencyRecord>(it->second);
  }

  Status CreateVerification(const Verification& v, const Job& first_job,
                            const IdempotencyRecord* idem) override {
    std::lock_guard lock(mu_);
    if (idem != nullptr) {
      auto k = std::make_pair(idem->app_id, idem->key);
      auto it = idempotency_.find(k);
      if (it != idempotency_.end() &&
          it->second.created_at >= idem->created_at - std::chrono::hours(24)) {
        return otp::AlreadyExists("idempotency key taken");
      }
      idempotency_[k] = *idem;
    }
    Verification stored = v;
    stored.deliveries.clear();
    verifications_[v.id] = stored;
    insertion_[v.id] = ++next_id_;
    for (const Delivery& d : v.deliveries) {
      Job job = first_job;
      job.delivery_id = AddDelivery(v.id, d);
      AddJob(job);
    }
    return Status::Ok();
  }

  Result<Verification> GetVerification(std::string_view app_id, std::string_view id) override {
    std::lock_guard lock(mu_);
    auto it = verifications_.find(std::string(id));
    if (it == verifications_.end() || (!app_id.empty() && it->second.app_id != app_id)) {
      return otp::NotFound("no such verification");
    }
    return WithDeliveries(it->second);
  }

  Result<Verification> NewestPending(std::string_view app_id, std::string_view to) override {
    std::lock_guard lock(mu_);
    // Newest by creation time, then by insertion (as SQLite's rowid).
    const Verification* best = nullptr;
    auto newer = [&](const Verification& a, const Verification& b) {
      return std::pair(a.created_at, insertion_.at(a.id)) >
             std::pair(b.created_at, insertion_.at(b.id));
    };
    for (const auto& [id, v] : verifications_) {
      if (v.app_id == app_id && v.to == to && v.status == kPending &&
          (best == nullptr || newer(v, *best))) {
        best = &v;
      }
    }
    if (best == nullptr) return otp::NotFound("no pending verification");
    return WithDeliveries(*best);
  }

  Result<Transition> RecordCheck(std::string_view app_id, std::string_view id,
                                 std::string_view code_hash, TimePoint now) override {
    std::lock_guard lock(mu_);
    Verification* v = Find(app_id, id);
    if (v == nullptr) return otp::NotFound("no such verification");
    if (!PendingAt(*v, now)) return Refusal(*v, now);
    const bool correct = otp::ConstantTimeEqual(v->code_hash, code_hash);
    ++v->check_count;
    if (correct) {
      v->status = kApproved;
    } else if (v->check_count >= v->max_checks) {
      v->status = kMaxChecksReached;
    }
    v->updated_at = now;
    if (v->status != kPending) LeavePending(*v, now);
    Transition t = Applied(*v);
    t.correct = correct;
    t.channel = v->channel;
    return t;
  }

  Result<Transition> RecordResend(std::string_view app_id, std::string_view id, int cooldown_s,
                                  const Delivery& delivery, const Job& job,
                                  TimePoint now) override {
    std::lock_guard lock(mu_);
    Verification* v = Find(app_id, id);
    if (v == nullptr) return otp::NotFound("no such verification");
    if (!PendingAt(*v, now)) return Refusal(*v, now);
    Transition t = Applied(*v);
    t.last_sent_at = v->last_sent_at;
    if (v->send_count >= v->max_sends) {
      t.applied = false;
      t.refusal = Transition::Refusal::kMaxSends;
      return t;
    }
    if (v->last_sent_at > now - std::chrono::seconds(cooldown_s)) {
      t.applied = false;
      t.refusal = Transition::Refusal::kCooldown;
      return t;
    }
    ++v->send_count;
    v->last_sent_at = now;
    v->channel = delivery.channel;
    v->updated_at = now;
    Job j = job;
    j.delivery_id = AddDelivery(v->id, delivery);
    AddJob(j);
    t = Applied(*v);
    t.last_sent_at = now;
    return t;
  }

  Result<Transition> Cancel(std::string_view app_id, std::string_view id, TimePoint now) override {
    std::lock_guard lock(mu_);
    Verification* v = Find(app_id, id);
    if (v == nullptr) return otp::NotFound("no such verification");
    if (!PendingAt(*v, now)) return Refusal(*v, now);
    v->status = kCanceled;
    v->updated_at = now;
    LeavePending(*v, now);
    return Applied(*v);
  }

  Result<Transition> ExpireIfDue(std::string_view app_id, std::string_view id,
                                 TimePoint now) override {
    std::lock_guard lock(mu_);
    Verification* v = Find(app_id, id);
    if (v == nullptr) return otp::NotFound("no such verification");
    if (v->status == kPending && v->expires_at <= now) {
      v->status = kExpired;
      v->updated_at = now;
      LeavePending(*v, now);
      return Applied(*v);
    }
    Transition t = Applied(*v);
    t.applied = false;
    if (v->status != kPending) t.refusal = Transition::Refusal::kNotPending;
    return t;
  }

  Result<std::vector<Job>> ClaimJobs(TimePoint now, TimePoint lease_until, int limit) override {
    std::lock_guard lock(mu_);
    std::vector<Job*> due;
    for (auto& [id, j] : jobs_) {
      if (j.job.due_at <= now && j.lease_until <= now) due.push_back(&j.job);
    }
    std::sort(due.begin(), due.end(), [](Job* a, Job* b) { return a->due_at < b->due_at; });
    std::vector<Job> out;
    for (Job* j : due) {
      if (static_cast<int>(out.size()) >= limit) break;
      jobs_[j->id].lease_until = lease_until;
      ++j->attempts;
      out.push_back(*j);
    }
    return out;
  }

  Result<std::optional<TimePoint>> NextJobDue() override {
    std::lock_guard lock(mu_);
    std::optional<TimePoint> next;
    for (const auto& [id, j] : jobs_) {
      TimePoint t = std::max(j.job.due_at, j.lease_until);
      if (!next || t < *next) next = t;
    }
    return next;
  }

  Status FinishJob(const JobOutcome& o) override {
    std::lock_guard lock(mu_);
    jobs_.erase(o.job.id);
    auto d = deliveries_.find(o.job.delivery_id);
    std::int64_t final_id = o.job.delivery_id;
    if (d != deliveries_.end()) {
      const Delivery queued = d->second;
      const std::string owner = delivery_owner_[d->first];
      auto record = [&](Delivery& row, const std::string& provider, const std::string& status,
                        const std::string& message_id, const std::string& error, TimePoint at) {
        row.provider = provider;
        row.status = status;
        row.provider_message_id = message_id;
        row.error = error;
        row.updated_at = at;
      };
      for (std::size_t i = 0; i < o.failed_first.size(); ++i) {
        const FailedAttempt& f = o.failed_first[i];
        if (i == 0) {
          record(d->second, f.provider, kDeliveryFailed, "", f.error, f.at);
        } else {
          Delivery row = queued;
          row.created_at = f.at;
          record(row, f.provider, kDeliveryFailed, "", f.error, f.at);
          AddDelivery(owner, row);
        }
      }
      if (o.failed_first.empty()) {
        record(d->second, o.provider, o.delivery_status, o.provider_message_id, o.error, o.at);
      } else {
        Delivery row = queued;
        row.created_at = o.at;
        record(row, o.provider, o.delivery_status, o.provider_message_id, o.error, o.at);
        final_id = AddDelivery(owner, row);
      }
    }
    auto vit = verifications_.find(o.job.verification_id);
    if (vit == verifications_.end()) return Status::Ok();
    Verification& v = vit->second;
    if (o.delivery_status != kDeliveryCanceled && v.status == kPending && d != deliveries_.end()) {
      v.channel = d->second.channel;  // the latest step fired
      v.updated_at = o.at;
    }
    if (o.next && o.next_delivery && v.status == kPending) {
      v.current_step = o.next->step;
      v.updated_at = o.at;
      Job j = *o.next;
      j.delivery_id = AddDelivery(v.id, *o.next_delivery);
      AddJob(j);
    }
    if (o.undeliverable && v.status == kPending) {
      v.status = kUndeliverable;
      v.updated_at = o.at;
      LeavePending(v, o.at);
    }
    // A report that arrived before the send was recorded.
    if (o.delivery_status == kDeliverySent && !o.provider_message_id.empty()) {
      auto early = early_reports_.find({o.provider, o.provider_message_id});
      if (early != early_reports_.end()) {
        const auto [report, at] = early->second;
        early_reports_.erase(early);
        ApplyReport(final_id, report, std::max(at, o.at));
      }
    }
    return Status::Ok();
  }

  Result<std::int64_t> CountJobs() override {
    std::lock_guard lock(mu_);
    return static_cast<std::int64_t>(jobs_.size());
  }

  Result<std::vector<SealedValue>> ListSealed(std::string_view kind, std::string_view except_key_id,
                                              std::string_view after_id, int limit) override {
    std::lock_guard lock(mu_);
    if (kind != kSealedVerificationCode) {
      return otp::InvalidArgument("unknown kind of sealed value");
    }
    std::vector<SealedValue> out;
    for (auto it = verifications_.upper_bound(std::string(after_id));
         it != verifications_.end() && static_cast<int>(out.size()) < limit; ++it) {
      const Verification& v = it->second;
      if (v.code_sealed.empty() || otp::Keyring::KeyIdOf(v.code_sealed) == except_key_id) continue;
      out.push_back(SealedValue{std::string(kind), v.id, v.id, v.code_sealed});
    }
    return out;
  }

  Result<int> ReplaceSealed(const std::vector<SealedReplacement>& replacements) override {
    std::lock_guard lock(mu_);
    for (const SealedReplacement& r : replacements) {
      if (r.kind != kSealedVerificationCode) {
        return otp::InvalidArgument("unknown kind of sealed value");
      }
    }
    int applied = 0;
    for (const SealedReplacement& r : replacements) {
      auto it = verifications_.find(r.id);
      if (it == verifications_.end() || it->second.code_sealed != r.old_sealed) continue;
      it->second.code_sealed = r.new_sealed;
      ++applied;
    }
    return applied;
  }

  Result<std::map<std::string, std::int64_t>> CountSealedByKeyId() override {
    std::lock_guard lock(mu_);
    std::map<std::string, std::int64_t> counts;
    for (const auto& [id, v] : verifications_) {
      if (!v.code_sealed.empty()) ++counts[otp::Keyring::KeyIdOf(v.code_sealed)];
    }
    return counts;
  }

  Result<std::vector<ReportOutcome>> ApplyDeliveryReports(
      const std::vector<DeliveryReport>& reports, TimePoint now) override {
    std::lock_guard lock(mu_);
    std::vector<ReportOutcome> out;
    for (const DeliveryReport& r : reports) {
      std::int64_t id = 0;
      for (const auto& [did, d] : deliveries_) {
        if (d.provider == r.provider && d.provider_message_id == r.provider_message_id &&
            !r.provider_message_id.empty()) {
          id = did;
        }
      }
      if (id == 0) {
        early_reports_.try_emplace({r.provider, r.provider_message_id}, r, now);
        out.emplace_back();
        continue;
      }
      out.push_back(ApplyReport(id, r, now));
    }
    return out;
  }

 private:
  struct StoredJob {
    Job job;
    TimePoint lease_until;
  };

  Verification* Find(std::string_view app_id, std::string_view id) {
    auto it = verifications_.find(std::string(id));
    if (it == verifications_.end() || it->second.app_id != app_id) return nullptr;
    return &it->second;
  }

  static bool PendingAt(const Verification& v, TimePoint now) {
    return v.status == kPending && now < v.expires_at;
  }

  static Transition Applied(const Verification& v) {
    Transition t{true,          Transition::Refusal::kNone, v.status, v.check_count, v.send_count,
                 v.last_sent_at};
    t.max_checks = v.max_checks;
    return t;
  }

  // Not pending (expiring an overdue one on the way).
  Transition Refusal(Verification& v, TimePoint now) {
    if (v.status == kPending && v.expires_at <= now) {
      v.status = kExpired;
      v.updated_at = now;
      LeavePending(v, now);
    }
    Transition t = Applied(v);
    t.applied = false;
    t.refusal = Transition::Refusal::kNotPending;
    return t;
  }

  // The rules of Store::ApplyDeliveryReports for delivery `id`.
  ReportOutcome ApplyReport(std::int64_t id, const DeliveryReport& r, TimePoint now) {
    ReportOutcome out;
    out.matched = true;
    Delivery& d = deliveries_.at(id);
    out.verification_id = delivery_owner_.at(id);
    out.channel = d.channel;
    out.sent_at = d.updated_at;
    if (d.status != kDeliverySent) return out;
    d.status = r.status;
    d.updated_at = now;
    out.applied = true;
    if (r.status == kDeliveryDelivered) return out;
    Verification& v = verifications_.at(out.verification_id);
    if (v.status != kPending) return out;
    bool moved = false;
    for (auto& [jid, sj] : jobs_) {
      if (sj.job.verification_id == v.id && sj.job.advance && sj.job.step == d.step + 1 &&
          sj.job.due_at > now) {
        sj.job.due_at = now;
        moved = true;
      }
    }
    out.next_step_fired = moved;
    const bool last = static_cast<std::size_t>(d.step) + 1 >= v.workflow.size();
    if (last && std::none_of(deliveries_.begin(), deliveries_.end(), [&](const auto& kv) {
          return delivery_owner_.at(kv.first) == v.id &&
                 (kv.second.status == kDeliverySent || kv.second.status == kDeliveryDelivered ||
                  kv.second.status == kDeliveryQueued);
        })) {
      v.status = kUndeliverable;
      v.updated_at = now;
      LeavePending(v, now);
      out.undeliverable = true;
    }
    return out;
  }

  void LeavePending(Verification& v, TimePoint now) {
    std::erase_if(jobs_, [&](const auto& kv) { return kv.second.job.verification_id == v.id; });
    for (auto& [id, d] : deliveries_) {
      if (delivery_owner_[id] == v.id && d.status == kDeliveryQueued) {
        d.status = kDeliveryCanceled;
        d.updated_at = now;
      }
    }
    v.code_sealed.clear();
  }

  std::int64_t AddDelivery(const std::string& verification_id, Delivery d) {
    d.id = ++next_id_;
    delivery_owner_[d.id] = verification_id;
    deliveries_[d.id] = d;
    return d.id;
  }

  void AddJob(Job j) {
    j.id = ++next_id_;
    jobs_[j.id] = StoredJob{j, TimePoint()};
  }

  Verification WithDeliveries(const Verification& v) const {
    Verification out = v;
    out.deliveries.clear();
    for (const auto& [id, d] : deliveries_) {
      if (delivery_owner_.at(id) == v.id) out.deliveries.push_back(d);
    }
    return out;
  }

  std::mutex mu_;
  std::map<std::string, App> apps_;
  std::map<std::string, ApiKey> keys_;
  std::map<std::pair<std::string, std::string>, IdempotencyRecord> idempotency_;
  std::map<std::string, Verification> verifications_;
  std::map<std::string, std::int64_t> insertion_;
  std::map<std::int64_t, Delivery> deliveries_;
  std::map<std::int64_t, std::string> delivery_owner_;
  std::map<std::int64_t, StoredJob> jobs_;
  std::map<std::pair<std::string, std::string>, std::pair<DeliveryReport, TimePoint>>
      early_reports_;
  std::int64_t next_id_ = 0;
};

}  // namespace

std::unique_ptr<Store> NewMemoryStore() { return std::make_unique<MemoryStore>(); }

}  // namespace otpd
