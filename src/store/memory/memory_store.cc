#include "store/memory/memory_store.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "otp/crypto.h"
#include "otp/sealing.h"
#include "store/factor_attempt.h"

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

  Result<StartOutcome> CreateVerification(const Verification& v, const Job& first_job,
                                          const IdempotencyRecord* idem,
                                          const StartLimits& limits) override {
    std::lock_guard lock(mu_);
    // The same rule as the SQLite backend: room comes when the
    // (n - max + 1)-th oldest start in the window leaves it.
    auto full = [&](auto matches, int max, TimePoint since) -> std::optional<TimePoint> {
      std::vector<TimePoint> in_window;
      for (const auto& [id, o] : verifications_) {
        if (o.app_id == v.app_id && matches(o) && o.created_at >= since) {
          in_window.push_back(o.created_at);
        }
      }
      if (static_cast<int>(in_window.size()) < max) return std::nullopt;
      std::sort(in_window.begin(), in_window.end());
      return in_window[in_window.size() - static_cast<std::size_t>(max)] + (v.created_at - since);
    };
    if (limits.max_per_recipient > 0) {
      auto retry = full([&](const Verification& o) { return o.to == v.to; },
                        limits.max_per_recipient, limits.recipient_since);
      if (retry) return StartOutcome{StartOutcome::Refusal::kRecipient, *retry};
    }
    if (limits.max_per_ip > 0 && !v.ip.empty()) {
      auto retry = full([&](const Verification& o) { return o.ip == v.ip; }, limits.max_per_ip,
                        limits.ip_since);
      if (retry) return StartOutcome{StartOutcome::Refusal::kIp, *retry};
    }
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
    AddAudit(VerificationAudit(v.app_id, "api", "verification.start", v.id, "started", v.to,
                               v.created_at, "channel " + v.channel));
    CountFraud(v.app_id, kFraudScopePrefix, v.guard_prefix, v.created_at, 1, 0);
    CountFraud(v.app_id, kFraudScopeRegion, v.guard_region, v.created_at, 1, 0);
    return StartOutcome{};
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
    if (!PendingAt(*v, now)) {
      Transition t = Refusal(*v, now);
      AddAudit(VerificationAudit(app_id, "api", "verification.check", id, "refused: " + t.status,
                                 v->to, now));
      return t;
    }
    const bool correct = otp::ConstantTimeEqual(v->code_hash, code_hash);
    ++v->check_count;
    if (correct) {
      v->status = kApproved;
    } else if (v->check_count >= v->max_checks) {
      v->status = kMaxChecksReached;
    }
    v->updated_at = now;
    if (correct) {
      CountFraud(v->app_id, kFraudScopePrefix, v->guard_prefix, now, 0, 1);
      CountFraud(v->app_id, kFraudScopeRegion, v->guard_region, now, 0, 1);
    }
    Transition t = Applied(*v);
    t.correct = correct;
    t.channel = v->channel;
    AddAudit(
        VerificationAudit(app_id, "api", "verification.check", id, CheckResult(t), v->to, now));
    if (v->status != kPending) {
      LeavePending(*v, now);
      AddVerificationEvent(*v, "verification." + v->status, now);
    }
    return t;
  }

  Result<Transition> RecordResend(std::string_view app_id, std::string_view id, int cooldown_s,
                                  const Delivery& delivery, const Job& job,
                                  TimePoint now) override {
    std::lock_guard lock(mu_);
    Verification* v = Find(app_id, id);
    if (v == nullptr) return otp::NotFound("no such verification");
    auto refused = [&](const std::string& why) {
      AddAudit(VerificationAudit(app_id, "api", "verification.resend", id, "refused: " + why, v->to,
                                 now));
    };
    if (!PendingAt(*v, now)) {
      Transition t = Refusal(*v, now);
      refused(t.status);
      return t;
    }
    Transition t = Applied(*v);
    t.last_sent_at = v->last_sent_at;
    if (v->send_count >= v->max_sends) {
      t.applied = false;
      t.refusal = Transition::Refusal::kMaxSends;
      refused("max_sends");
      return t;
    }
    if (v->last_sent_at > now - std::chrono::seconds(cooldown_s)) {
      t.applied = false;
      t.refusal = Transition::Refusal::kCooldown;
      refused("cooldown");
      return t;
    }
    ++v->send_count;
    v->last_sent_at = now;
    v->channel = delivery.channel;
    v->updated_at = now;
    Job j = job;
    j.delivery_id = AddDelivery(v->id, delivery);
    AddJob(j);
    AddAudit(VerificationAudit(app_id, "api", "verification.resend", id, "queued", v->to, now,
                               "channel " + delivery.channel));
    t = Applied(*v);
    t.last_sent_at = now;
    return t;
  }

  Result<Transition> Cancel(std::string_view app_id, std::string_view id, TimePoint now) override {
    std::lock_guard lock(mu_);
    Verification* v = Find(app_id, id);
    if (v == nullptr) return otp::NotFound("no such verification");
    if (!PendingAt(*v, now)) {
      Transition t = Refusal(*v, now);
      AddAudit(VerificationAudit(app_id, "api", "verification.cancel", id, "refused: " + t.status,
                                 v->to, now));
      return t;
    }
    v->status = kCanceled;
    v->updated_at = now;
    LeavePending(*v, now);
    AddAudit(VerificationAudit(app_id, "api", "verification.cancel", id, kCanceled, v->to, now));
    AddVerificationEvent(*v, "verification.canceled", now);
    return Applied(*v);
  }

  Result<Transition> ExpireIfDue(std::string_view app_id, std::string_view id,
                                 TimePoint now) override {
    std::lock_guard lock(mu_);
    Verification* v = Find(app_id, id);
    if (v == nullptr) return otp::NotFound("no such verification");
    if (v->status == kPending && v->expires_at <= now) {
      ExpireNow(*v, now);
      return Applied(*v);
    }
    Transition t = Applied(*v);
    t.applied = false;
    if (v->status != kPending) t.refusal = Transition::Refusal::kNotPending;
    return t;
  }

  Result<TokenGrant> TakeRequestTokens(std::string_view app_id, int rate, int burst, int want,
                                       TimePoint now) override {
    std::lock_guard lock(mu_);
    auto it = buckets_.find(std::string(app_id));
    std::int64_t milli = std::int64_t{burst} * 1000;  // a new bucket starts full
    if (it != buckets_.end()) {
      milli = RefilledMilliTokens(it->second.first, it->second.second, rate, burst, now);
    }
    TokenGrant g;
    g.granted = static_cast<int>(std::min<std::int64_t>(want, milli / 1000));
    milli -= std::int64_t{g.granted} * 1000;
    if (g.granted == 0) g.next_at = NextTokenAt(milli, rate, now);
    buckets_[std::string(app_id)] = {milli, now};
    return g;
  }

  Result<FraudCounts> GetFraudCounts(std::string_view app_id, std::string_view prefix,
                                     std::string_view region, std::string_view number,
                                     TimePoint since) override {
    std::lock_guard lock(mu_);
    const std::int64_t from = otp::ToUnixSeconds(since) / 60;
    auto buckets = [&](std::string_view scope, std::string_view key) {
      std::vector<FraudBucket> out;
      if (key.empty()) return out;
      for (const auto& [k, b] : fraud_) {  // ordered by minute within a key
        if (std::get<0>(k) == app_id && std::get<1>(k) == scope && std::get<2>(k) == key &&
            b.minute >= from) {
          out.push_back(b);
        }
      }
      return out;
    };
    FraudCounts out;
    out.prefix = buckets(kFraudScopePrefix, prefix);
    out.region = buckets(kFraudScopeRegion, region);
    for (const auto& [k, e] : safelist_) {
      if (k.first == app_id && !number.empty() && number.starts_with(k.second)) {
        out.safe_listed = true;
      }
    }
    return out;
  }

  Result<std::vector<FraudTotals>> ListFraudTotals(std::string_view app_id,
                                                   TimePoint since) override {
    std::lock_guard lock(mu_);
    const std::int64_t from = otp::ToUnixSeconds(since) / 60;
    std::map<std::pair<std::string, std::string>, FraudTotals> sums;
    for (const auto& [k, b] : fraud_) {
      if (std::get<0>(k) != app_id || b.minute < from) continue;
      FraudTotals& t = sums[{std::get<1>(k), std::get<2>(k)}];
      t.app_id = std::get<0>(k);
      t.scope = std::get<1>(k);
      t.key = std::get<2>(k);
      t.starts += b.starts;
      t.approvals += b.approvals;
    }
    std::vector<FraudTotals> out;
    for (auto& [k, t] : sums) out.push_back(std::move(t));
    std::stable_sort(out.begin(), out.end(), [](const FraudTotals& a, const FraudTotals& b) {
      return a.starts > b.starts;
    });
    return out;
  }

  Status AddSafeListEntry(const SafeListEntry& e) override {
    std::lock_guard lock(mu_);
    safelist_.emplace(std::pair(e.app_id, e.entry), e);
    return Status::Ok();
  }

  Status RemoveSafeListEntry(std::string_view app_id, std::string_view entry) override {
    std::lock_guard lock(mu_);
    return safelist_.erase({std::string(app_id), std::string(entry)}) == 1
               ? Status::Ok()
               : otp::NotFound("not safe-listed");
  }

  Result<std::vector<SafeListEntry>> ListSafeList(std::string_view app_id) override {
    std::lock_guard lock(mu_);
    std::vector<SafeListEntry> out;
    for (const auto& [k, e] : safelist_) {
      if (app_id.empty() || k.first == app_id) out.push_back(e);
    }
    return out;
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
    if (o.delivery_status != kDeliveryCanceled) AddVerificationEvent(v, "delivery.updated", o.at);
    if (o.undeliverable && v.status == kPending) {
      v.status = kUndeliverable;
      v.updated_at = o.at;
      LeavePending(v, o.at);
      AddVerificationEvent(v, "verification.undeliverable", o.at);
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
    std::vector<SealedValue> out;
    auto collect = [&](const auto& rows, auto blob, auto associated_data) {
      for (auto it = rows.upper_bound(std::string(after_id));
           it != rows.end() && static_cast<int>(out.size()) < limit; ++it) {
        const std::string& sealed = blob(it->second);
        if (sealed.empty() || otp::Keyring::KeyIdOf(sealed) == except_key_id) continue;
        out.push_back(
            SealedValue{std::string(kind), it->first, associated_data(it->second), sealed});
      }
    };
    if (kind == kSealedVerificationCode) {
      collect(
          verifications_, [](const Verification& v) -> const std::string& { return v.code_sealed; },
          [](const Verification& v) { return v.id; });
    } else if (kind == kSealedFactorSecret) {
      collect(
          factors_, [](const Factor& f) -> const std::string& { return f.secret_sealed; },
          [](const Factor& f) {
            return f.serial.empty() ? FactorSealingContext(f.id)
                                    : HardwareTokenSealingContext(f.serial);
          });
    } else if (kind == kSealedHardwareTokenSecret) {
      collect(
          tokens_, [](const HardwareToken& t) -> const std::string& { return t.secret_sealed; },
          [](const HardwareToken& t) { return HardwareTokenSealingContext(t.serial); });
    } else {
      return otp::InvalidArgument("unknown kind of sealed value");
    }
    return out;
  }

  Result<int> ReplaceSealed(const std::vector<SealedReplacement>& replacements) override {
    std::lock_guard lock(mu_);
    for (const SealedReplacement& r : replacements) {
      if (!IsSealedKind(r.kind)) return otp::InvalidArgument("unknown kind of sealed value");
    }
    int applied = 0;
    for (const SealedReplacement& r : replacements) {
      std::string* slot = SealedSlot(r.kind, r.id);
      if (slot == nullptr || slot->empty() || *slot != r.old_sealed) continue;
      *slot = r.new_sealed;
      ++applied;
    }
    return applied;
  }

  Result<std::map<std::string, std::int64_t>> CountSealedByKeyId() override {
    std::lock_guard lock(mu_);
    std::map<std::string, std::int64_t> counts;
    auto count = [&](const std::string& sealed) {
      if (!sealed.empty()) ++counts[otp::Keyring::KeyIdOf(sealed)];
    };
    for (const auto& [id, v] : verifications_) count(v.code_sealed);
    for (const auto& [id, f] : factors_) count(f.secret_sealed);
    for (const auto& [serial, t] : tokens_) count(t.secret_sealed);
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

  Status CreateFactor(const Factor& factor) override {
    std::lock_guard lock(mu_);
    if (factors_.contains(factor.id)) return otp::AlreadyExists("factor id taken");
    factors_[factor.id] = factor;
    factor_order_[factor.id] = ++next_id_;
    AddEvent(factor.app_id, "factor.created", FactorEventJson(factor), factor.created_at);
    AddAudit(ChangeAudit(factor.app_id, "api", "factor.create", factor.id,
                         "user:" + factor.user_id + " " + factor.type + " " + factor.serial,
                         factor.created_at));
    return Status::Ok();
  }

  Result<Factor> GetFactor(std::string_view app_id, std::string_view user_id,
                           std::string_view factor_id) override {
    std::lock_guard lock(mu_);
    Factor* f = FindFactor(app_id, user_id, factor_id);
    if (f == nullptr) return otp::NotFound("no such factor");
    return *f;
  }

  Result<std::vector<Factor>> ListFactors(std::string_view app_id,
                                          std::string_view user_id) override {
    std::lock_guard lock(mu_);
    std::vector<Factor> out;
    for (const auto& [id, f] : factors_) {
      if (f.app_id == app_id && f.user_id == user_id) out.push_back(f);
    }
    std::sort(out.begin(), out.end(), [&](const Factor& a, const Factor& b) {
      return std::pair(a.created_at, factor_order_.at(a.id)) <
             std::pair(b.created_at, factor_order_.at(b.id));
    });
    return out;
  }

  Status DeleteFactor(std::string_view app_id, std::string_view user_id, std::string_view factor_id,
                      TimePoint now) override {
    std::lock_guard lock(mu_);
    Factor* f = FindFactor(app_id, user_id, factor_id);
    if (f == nullptr) return otp::NotFound("no such factor");
    RemoveFactor(*f, now, "api");
    return Status::Ok();
  }

  Result<Factor> BindHardwareToken(const Factor& factor, std::string_view serial) override {
    std::lock_guard lock(mu_);
    auto it = tokens_.find(std::string(serial));
    if (it == tokens_.end()) return otp::NotFound("no hardware token " + std::string(serial));
    HardwareToken& t = it->second;
    if (t.revoked_at) return otp::FailedPrecondition("hardware token " + t.serial + " is revoked");
    if (!t.factor_id.empty()) {
      return otp::FailedPrecondition("hardware token " + t.serial + " is bound already");
    }
    if (t.type != factor.type) {
      return otp::FailedPrecondition("hardware token " + t.serial + " is a " + t.type + " token");
    }
    if (factors_.contains(factor.id)) return otp::AlreadyExists("factor id taken");
    Factor f = FactorFromToken(factor, t);
    t.app_id = f.app_id;
    t.user_id = f.user_id;
    t.factor_id = f.id;
    factors_[f.id] = f;
    factor_order_[f.id] = ++next_id_;
    AddEvent(f.app_id, "factor.created", FactorEventJson(f), f.created_at);
    AddAudit(ChangeAudit(f.app_id, "api", "factor.create", f.id,
                         "user:" + f.user_id + " " + f.type + " " + f.serial, f.created_at));
    return f;
  }

  Result<FactorAttemptOutcome> RecordFactorAttempt(const FactorAttempt& attempt) override {
    std::lock_guard lock(mu_);
    AttemptOps ops(*this, attempt);
    return RunFactorAttempt(attempt, ops);
  }

  Status ReplaceRecoveryCodes(std::string_view app_id, std::string_view user_id,
                              const std::vector<std::string>& code_hashes, TimePoint now) override {
    std::lock_guard lock(mu_);
    std::vector<RecoveryCode>& codes = recovery_[{std::string(app_id), std::string(user_id)}];
    codes.clear();
    for (const std::string& h : code_hashes) codes.push_back(RecoveryCode{h, now, std::nullopt});
    AddAudit(ChangeAudit(app_id, "api", "recovery_codes.issue", "user:" + std::string(user_id),
                         std::to_string(code_hashes.size()) + " codes", now));
    AddEvent(std::string(app_id), "recovery_codes.issued",
             UserEventJson(user_id, "count", static_cast<int>(code_hashes.size())), now);
    return Status::Ok();
  }

  Result<std::vector<RecoveryCode>> ListRecoveryCodes(std::string_view app_id,
                                                      std::string_view user_id) override {
    std::lock_guard lock(mu_);
    auto it = recovery_.find({std::string(app_id), std::string(user_id)});
    if (it == recovery_.end()) return std::vector<RecoveryCode>();
    return it->second;
  }

  Result<ThrottleState> GetThrottle(std::string_view app_id, std::string_view user_id) override {
    std::lock_guard lock(mu_);
    auto it = throttles_.find({std::string(app_id), std::string(user_id)});
    return it == throttles_.end() ? ThrottleState{} : it->second;
  }

  Result<bool> UnlockUser(std::string_view app_id, std::string_view user_id, std::string_view actor,
                          TimePoint now) override {
    std::lock_guard lock(mu_);
    auto it = throttles_.find({std::string(app_id), std::string(user_id)});
    const bool was_locked = it != throttles_.end() && it->second.locked;
    if (it != throttles_.end()) throttles_.erase(it);
    audit_.push_back(AuditEntry{++next_id_, now, std::string(app_id), std::string(actor),
                                "user.unlock", "user:" + std::string(user_id),
                                was_locked ? "unlocked" : "not_locked", ""});
    return was_locked;
  }

  Result<std::vector<Event>> ListEvents(std::string_view app_id, std::int64_t after_id,
                                        int limit) override {
    std::lock_guard lock(mu_);
    std::vector<Event> out;
    for (const Event& e : events_) {
      if (e.id > after_id && (app_id.empty() || e.app_id == app_id) &&
          static_cast<int>(out.size()) < limit) {
        out.push_back(e);
      }
    }
    return out;
  }

  Result<std::vector<WebhookJob>> ClaimWebhookEvents(TimePoint now, TimePoint lease_until,
                                                     int limit) override {
    std::lock_guard lock(mu_);
    std::vector<std::size_t> due;
    for (std::size_t i = 0; i < events_.size(); ++i) {
      Event& e = events_[i];
      if (e.state != kEventPending || e.next_attempt_at > now || lease_until_[e.id] > now) continue;
      if (!WebhookEnabled(e.app_id)) {
        e.state = kEventSkipped;
        e.last_error = "the app has no enabled webhook";
        continue;
      }
      due.push_back(i);
    }
    std::stable_sort(due.begin(), due.end(), [&](std::size_t a, std::size_t b) {
      return events_[a].next_attempt_at < events_[b].next_attempt_at;
    });
    std::vector<WebhookJob> out;
    for (std::size_t i : due) {
      if (static_cast<int>(out.size()) >= limit) break;
      Event& e = events_[i];
      ++e.attempts;
      lease_until_[e.id] = lease_until;
      const App& app = apps_.at(e.app_id);
      out.push_back(WebhookJob{e, app.settings.webhook_url, app.webhook_secret});
    }
    return out;
  }

  Result<std::optional<TimePoint>> NextWebhookDue() override {
    std::lock_guard lock(mu_);
    std::optional<TimePoint> next;
    for (const Event& e : events_) {
      if (e.state != kEventPending) continue;
      const TimePoint t = std::max(e.next_attempt_at, lease_until_[e.id]);
      if (!next || t < *next) next = t;
    }
    return next;
  }

  Result<bool> FinishWebhookEvent(const WebhookOutcome& o) override {
    std::lock_guard lock(mu_);
    auto it = std::find_if(events_.begin(), events_.end(),
                           [&](const Event& e) { return e.id == o.event_id; });
    if (it == events_.end() || it->state != kEventPending || it->attempts != o.attempt ||
        lease_until_[it->id] == TimePoint()) {
      return false;
    }
    it->state = o.state;
    it->next_attempt_at = o.next_attempt_at;
    it->last_status = o.http_status;
    it->last_error = o.error;
    lease_until_[it->id] = TimePoint();
    if (o.disable_endpoint) {
      const std::string app_id = it->app_id;
      auto app = apps_.find(app_id);
      if (app != apps_.end() && !app->second.webhook_disabled_at) {
        app->second.webhook_disabled_at = o.at;
        app->second.webhook_disabled_reason = o.error;
      }
      for (Event& e : events_) {
        if (e.app_id == app_id && e.state == kEventPending) {
          e.state = kEventFailed;
          e.last_error = "the endpoint was disabled";
          lease_until_[e.id] = TimePoint();
        }
      }
    }
    return true;
  }

  Status EnableWebhook(std::string_view app_id) override {
    std::lock_guard lock(mu_);
    auto it = apps_.find(std::string(app_id));
    if (it == apps_.end()) return otp::NotFound("no such app");
    it->second.webhook_disabled_at.reset();
    it->second.webhook_disabled_reason.clear();
    return Status::Ok();
  }

  Result<int> ExpireOverdue(TimePoint since, TimePoint now, int limit) override {
    std::lock_guard lock(mu_);
    std::vector<Verification*> due;
    for (auto& [id, v] : verifications_) {
      if (v.status == kPending && v.expires_at > since && v.expires_at <= now) due.push_back(&v);
    }
    std::sort(due.begin(), due.end(), [](const Verification* a, const Verification* b) {
      return a->expires_at < b->expires_at;
    });
    int expired = 0;
    for (Verification* v : due) {
      if (expired >= limit) break;
      ExpireNow(*v, now);
      ++expired;
    }
    return expired;
  }

  Status AppendAudit(const AuditEntry& entry) override {
    std::lock_guard lock(mu_);
    AddAudit(entry);
    return Status::Ok();
  }

  Result<std::vector<AuditEntry>> ListAudit(std::string_view app_id, int limit) override {
    std::lock_guard lock(mu_);
    std::vector<AuditEntry> out;
    for (auto it = audit_.rbegin(); it != audit_.rend() && static_cast<int>(out.size()) < limit;
         ++it) {
      if (app_id.empty() || it->app_id == app_id) out.push_back(*it);
    }
    std::reverse(out.begin(), out.end());
    return out;
  }

  Status ImportHardwareTokens(const std::vector<HardwareToken>& tokens) override {
    std::lock_guard lock(mu_);
    std::set<std::string> seen;
    for (const HardwareToken& t : tokens) {
      if (tokens_.contains(t.serial) || !seen.insert(t.serial).second) {
        return otp::AlreadyExists("hardware token " + t.serial + " exists already");
      }
    }
    for (const HardwareToken& t : tokens) {
      HardwareToken stored = t;
      stored.app_id.clear();
      stored.user_id.clear();
      stored.factor_id.clear();
      stored.revoked_at.reset();
      tokens_[t.serial] = stored;
    }
    return Status::Ok();
  }

  Result<std::vector<HardwareToken>> ListHardwareTokens(bool unassigned_only) override {
    std::lock_guard lock(mu_);
    std::vector<HardwareToken> out;
    for (const auto& [serial, t] : tokens_) {
      if (!unassigned_only || (t.factor_id.empty() && !t.revoked_at)) out.push_back(t);
    }
    return out;
  }

  Status RevokeHardwareToken(std::string_view serial, TimePoint now) override {
    std::lock_guard lock(mu_);
    auto it = tokens_.find(std::string(serial));
    if (it == tokens_.end()) return otp::NotFound("no hardware token " + std::string(serial));
    if (!it->second.factor_id.empty()) {
      auto f = factors_.find(it->second.factor_id);
      if (f != factors_.end()) RemoveFactor(f->second, now, "otpctl");
    }
    if (!it->second.revoked_at) it->second.revoked_at = now;
    return Status::Ok();
  }

 private:
  // RecordFactorAttempt's reads and conditional updates, under mu_.
  class AttemptOps final : public FactorAttemptOps {
   public:
    AttemptOps(MemoryStore& store, const FactorAttempt& attempt)
        : s_(store), a_(attempt), key_(attempt.app_id, attempt.user_id) {}

    ThrottleState LoadThrottle() override {
      auto it = s_.throttles_.find(key_);
      return it == s_.throttles_.end() ? ThrottleState{} : it->second;
    }
    void SaveThrottle(const ThrottleState& state) override { s_.throttles_[key_] = state; }

    FactorTry TryFactor(const FactorCandidate& c, TimePoint now) override {
      FactorTry out;
      Factor* f = s_.FindFactor(a_.app_id, a_.user_id, c.factor_id);
      if (f == nullptr || f->status != (c.activate ? kFactorUnverified : kFactorActive)) {
        return out;
      }
      const std::int64_t first = c.first.value_or(c.matched);
      const bool totp = f->type == kFactorTotp;
      if (totp ? f->last_step >= first : f->counter > first) {
        out.replay = true;
        out.factor = *f;
        return out;
      }
      if (totp) {
        f->last_step = c.matched;
        if (c.drift) f->drift = *c.drift;
      } else {
        f->counter = c.matched + 1;
      }
      f->status = kFactorActive;
      if (!f->activated_at) f->activated_at = now;
      out.applied = true;
      out.factor = *f;
      return out;
    }

    std::optional<int> TryRecoveryCode(const std::string& code_hash, TimePoint now) override {
      auto it = s_.recovery_.find(key_);
      if (it == s_.recovery_.end()) return std::nullopt;
      bool used = false;
      int remaining = 0;
      for (RecoveryCode& rc : it->second) {
        if (!used && !rc.used_at && otp::ConstantTimeEqual(rc.code_hash, code_hash)) {
          rc.used_at = now;
          used = true;
        }
        if (!rc.used_at) ++remaining;
      }
      return used ? std::optional<int>(remaining) : std::nullopt;
    }

    void AddEvent(const std::string& type, const std::string& data) override {
      s_.AddEvent(a_.app_id, type, data, a_.now);
    }
    void AddAudit(const AuditEntry& entry) override { s_.AddAudit(entry); }

   private:
    MemoryStore& s_;
    const FactorAttempt& a_;
    std::pair<std::string, std::string> key_;
  };

  Factor* FindFactor(std::string_view app_id, std::string_view user_id,
                     std::string_view factor_id) {
    auto it = factors_.find(std::string(factor_id));
    if (it == factors_.end() || it->second.app_id != app_id || it->second.user_id != user_id) {
      return nullptr;
    }
    return &it->second;
  }

  // Deletes a factor, frees its hardware token (keeping the counter) and
  // writes factor.deleted.
  void RemoveFactor(const Factor& f, TimePoint now, std::string_view actor) {
    const Factor gone = f;
    if (!gone.serial.empty()) {
      auto t = tokens_.find(gone.serial);
      if (t != tokens_.end() && t->second.factor_id == gone.id) {
        t->second.app_id.clear();
        t->second.user_id.clear();
        t->second.factor_id.clear();
        t->second.counter = gone.counter;
      }
    }
    factors_.erase(gone.id);
    factor_order_.erase(gone.id);
    AddEvent(gone.app_id, "factor.deleted", FactorEventJson(gone), now);
    AddAudit(
        ChangeAudit(gone.app_id, actor, "factor.delete", gone.id, "user:" + gone.user_id, now));
  }

  void AddAudit(AuditEntry e) {
    e.id = ++next_id_;
    audit_.push_back(std::move(e));
  }

  // Pending when the app has an enabled webhook_url, else skipped (as SQLite).
  void AddEvent(const std::string& app_id, const std::string& type, const std::string& data,
                TimePoint at) {
    Event e;
    e.id = ++next_event_id_;
    e.app_id = app_id;
    e.type = type;
    e.data_json = data;
    e.created_at = at;
    e.next_attempt_at = at;
    e.state = WebhookEnabled(app_id) ? kEventPending : kEventSkipped;
    events_.push_back(std::move(e));
  }

  bool WebhookEnabled(const std::string& app_id) const {
    auto it = apps_.find(app_id);
    return it != apps_.end() && !it->second.settings.webhook_url.empty() &&
           !it->second.webhook_disabled_at;
  }

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
    if (v.status == kPending && v.expires_at <= now) ExpireNow(v, now);
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
    Verification& v = verifications_.at(out.verification_id);
    AddVerificationEvent(v, "delivery.updated", now);
    if (r.status == kDeliveryDelivered) return out;
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
      AddVerificationEvent(v, "verification.undeliverable", now);
      out.undeliverable = true;
    }
    return out;
  }

  // Pending → expired, with its audit row and event.
  void ExpireNow(Verification& v, TimePoint now) {
    v.status = kExpired;
    v.updated_at = now;
    LeavePending(v, now);
    AddAudit(VerificationAudit(v.app_id, "otpd", "verification.expire", v.id, kExpired, v.to, now));
    AddVerificationEvent(v, "verification.expired", now);
  }

  void AddVerificationEvent(const Verification& v, const std::string& type, TimePoint at) {
    AddEvent(v.app_id, type, VerificationEventJson(WithDeliveries(v)), at);
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

  // Adds to one pumping-guard bucket ("" key: nothing). Under mu_.
  void CountFraud(const std::string& app_id, std::string_view scope, const std::string& key,
                  TimePoint at, int starts, int approvals) {
    if (key.empty()) return;
    const std::int64_t minute = otp::ToUnixSeconds(at) / 60;
    FraudBucket& b = fraud_[{app_id, std::string(scope), key, minute}];
    b.minute = minute;
    b.starts += starts;
    b.approvals += approvals;
  }

  static bool IsSealedKind(std::string_view kind) {
    return std::find(std::begin(kSealedKinds), std::end(kSealedKinds), kind) !=
           std::end(kSealedKinds);
  }
  // The sealed blob of (kind, id); nullptr if there is no such row.
  std::string* SealedSlot(std::string_view kind, const std::string& id) {
    if (kind == kSealedVerificationCode) {
      auto it = verifications_.find(id);
      return it == verifications_.end() ? nullptr : &it->second.code_sealed;
    }
    if (kind == kSealedFactorSecret) {
      auto it = factors_.find(id);
      return it == factors_.end() ? nullptr : &it->second.secret_sealed;
    }
    if (kind == kSealedHardwareTokenSecret) {
      auto it = tokens_.find(id);
      return it == tokens_.end() ? nullptr : &it->second.secret_sealed;
    }
    return nullptr;
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
  std::map<std::string, Factor> factors_;
  std::map<std::string, std::int64_t> factor_order_;
  std::map<std::pair<std::string, std::string>, std::vector<RecoveryCode>> recovery_;
  std::map<std::pair<std::string, std::string>, ThrottleState> throttles_;
  std::vector<Event> events_;
  std::map<std::int64_t, TimePoint> lease_until_;  // by event id
  std::int64_t next_event_id_ = 0;
  std::vector<AuditEntry> audit_;
  std::map<std::string, HardwareToken> tokens_;
  std::map<std::string, std::pair<std::int64_t, TimePoint>> buckets_;  // milli-tokens, updated
  std::map<std::tuple<std::string, std::string, std::string, std::int64_t>, FraudBucket> fraud_;
  std::map<std::pair<std::string, std::string>, SafeListEntry> safelist_;
  std::int64_t next_id_ = 0;
};

}  // namespace

std::unique_ptr<Store> NewMemoryStore() { return std::make_unique<MemoryStore>(); }

}  // namespace otpd
