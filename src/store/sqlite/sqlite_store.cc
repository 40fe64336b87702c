#include "store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "otp/crypto.h"
#include "store/factor_attempt.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/vfs.h"

namespace otpd {
namespace {

using sqlite::Db;
using sqlite::OtpdVfsName;
using sqlite::SqliteError;
using sqlite::Stmt;

std::int64_t Ms(TimePoint t) { return otp::ToUnixMillis(t); }
TimePoint At(std::int64_t ms) { return otp::FromUnixMillis(ms); }

// Where each kind of sealed value lives (Store::ListSealed and friends).
struct SealedColumn {
  std::string_view kind;
  const char* table;
  const char* id;               // the row's key
  const char* column;           // the blob; NULL or '' when there is none
  const char* associated_data;  // SQL for what the blob is bound to (see model.h)
};
constexpr SealedColumn kSealedColumns[] = {
    {kSealedVerificationCode, "verifications", "id", "code_sealed", "id"},
    {kSealedFactorSecret, "factors", "id", "secret_sealed",
     "CASE WHEN serial <> '' THEN 'hwtoken:' || serial ELSE 'factor:' || id END"},
    {kSealedHardwareTokenSecret, "hardware_tokens", "serial", "secret_sealed",
     "'hwtoken:' || serial"},
};

const SealedColumn* FindSealedColumn(std::string_view kind) {
  for (const SealedColumn& c : kSealedColumns) {
    if (c.kind == kind) return &c;
  }
  return nullptr;
}

// "v1.<key_id>.": how every blob sealed with `key_id` starts (otp/sealing.h).
std::string SealedPrefix(std::string_view key_id) { return "v1." + std::string(key_id) + "."; }

// Schema versions, applied in order; each runs once, in one transaction.
const char* const kMigrations[] = {
    // 1: apps, keys, verifications, deliveries, jobs, idempotency.
    R"sql(
CREATE TABLE apps (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  settings TEXT NOT NULL,
  webhook_secret TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL REFERENCES apps(id),
  key_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE TABLE verifications (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL REFERENCES apps(id),
  recipient TEXT NOT NULL,
  status TEXT NOT NULL,
  channel TEXT NOT NULL,
  locale TEXT NOT NULL,
  workflow TEXT NOT NULL,
  code_hash TEXT NOT NULL,
  code_sealed TEXT,
  current_step INTEGER NOT NULL,
  send_count INTEGER NOT NULL,
  check_count INTEGER NOT NULL,
  max_checks INTEGER NOT NULL,
  max_sends INTEGER NOT NULL,
  metadata TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  last_sent_at INTEGER NOT NULL
);
CREATE INDEX verifications_by_recipient ON verifications(app_id, recipient, created_at);
CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY,
  verification_id TEXT NOT NULL REFERENCES verifications(id),
  step INTEGER NOT NULL,
  channel TEXT NOT NULL,
  recipient TEXT NOT NULL,
  provider TEXT NOT NULL,
  status TEXT NOT NULL,
  provider_message_id TEXT NOT NULL,
  error TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX deliveries_by_verification ON deliveries(verification_id);
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  verification_id TEXT NOT NULL REFERENCES verifications(id),
  delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
  step INTEGER NOT NULL,
  advance INTEGER NOT NULL,
  due_at INTEGER NOT NULL,
  lease_until INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_due ON jobs(due_at);
CREATE INDEX jobs_by_verification ON jobs(verification_id);
CREATE TABLE idempotency_keys (
  app_id TEXT NOT NULL,
  key TEXT NOT NULL,
  body_hash TEXT NOT NULL,
  response TEXT NOT NULL,
  response_status INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (app_id, key)
);
)sql",
    // 2: delivery reports matched by provider message id; reports that beat the
    // send's record wait in early_delivery_reports.
    R"sql(
CREATE INDEX deliveries_by_provider_message ON deliveries(provider, provider_message_id)
  WHERE provider_message_id <> '';
CREATE TABLE early_delivery_reports (
  provider TEXT NOT NULL,
  provider_message_id TEXT NOT NULL,
  status TEXT NOT NULL,
  detail TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (provider, provider_message_id)
);
)sql",
    // 3: factors (TOTP/HOTP), recovery codes, per-user throttles, hardware
    // tokens, the events outbox and the append-only audit trail.
    R"sql(
CREATE TABLE factors (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL REFERENCES apps(id),
  user_id TEXT NOT NULL,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  secret_sealed TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  digits INTEGER NOT NULL,
  period INTEGER NOT NULL,
  counter INTEGER NOT NULL,
  last_step INTEGER NOT NULL,
  drift INTEGER NOT NULL,
  label TEXT NOT NULL,
  issuer TEXT NOT NULL,
  serial TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  activated_at INTEGER
);
CREATE INDEX factors_by_user ON factors(app_id, user_id, created_at);
CREATE TABLE recovery_codes (
  app_id TEXT NOT NULL REFERENCES apps(id),
  user_id TEXT NOT NULL,
  code_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  used_at INTEGER,
  PRIMARY KEY (app_id, user_id, code_hash)
);
CREATE TABLE user_throttles (
  app_id TEXT NOT NULL REFERENCES apps(id),
  user_id TEXT NOT NULL,
  failures INTEGER NOT NULL,
  blocked_until INTEGER,
  locked INTEGER NOT NULL,
  PRIMARY KEY (app_id, user_id)
);
CREATE TABLE hardware_tokens (
  serial TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  secret_sealed TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  digits INTEGER NOT NULL,
  period INTEGER NOT NULL,
  counter INTEGER NOT NULL,
  imported_at INTEGER NOT NULL,
  app_id TEXT NOT NULL DEFAULT '',
  user_id TEXT NOT NULL DEFAULT '',
  factor_id TEXT NOT NULL DEFAULT '',
  revoked_at INTEGER
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  app_id TEXT NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX events_by_app ON events(app_id, id);
CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  app_id TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  result TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX audit_by_app ON audit(app_id, id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
)sql",
    // 4: the webhook outbox (state, tries, lease, last answer), endpoints
    // disabled by a 410, and the expiry sweep's index.
    R"sql(
ALTER TABLE events ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN next_attempt_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN last_status INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
CREATE INDEX events_due ON events(next_attempt_at) WHERE state = 'pending';
ALTER TABLE apps ADD COLUMN webhook_disabled_at INTEGER;
ALTER TABLE apps ADD COLUMN webhook_disabled_reason TEXT NOT NULL DEFAULT '';
CREATE INDEX verifications_by_expiry ON verifications(expires_at);
)sql",
    // 5 (after the webhooks' 4): limits and the pumping guard. The end user's
    // IP, monitor-mode flags and pumping-guard keys of each verification;
    // per-app request buckets; per-minute start/approval counters per number
    // prefix and region; the operators' safe-list.
    R"sql(
ALTER TABLE verifications ADD COLUMN ip TEXT NOT NULL DEFAULT '';
ALTER TABLE verifications ADD COLUMN flags TEXT NOT NULL DEFAULT '';
ALTER TABLE verifications ADD COLUMN guard_prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE verifications ADD COLUMN guard_region TEXT NOT NULL DEFAULT '';
CREATE INDEX verifications_by_ip ON verifications(app_id, ip, created_at) WHERE ip <> '';
CREATE TABLE request_buckets (
  app_id TEXT PRIMARY KEY,
  milli_tokens INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE fraud_counters (
  app_id TEXT NOT NULL,
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  minute INTEGER NOT NULL,
  starts INTEGER NOT NULL,
  approvals INTEGER NOT NULL,
  PRIMARY KEY (app_id, scope, key, minute)
);
CREATE INDEX fraud_counters_by_minute ON fraud_counters(minute);
CREATE TABLE fraud_safelist (
  app_id TEXT NOT NULL,
  entry TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (app_id, entry)
);
)sql",
    // 6: the audit table without AUTOINCREMENT. Every check appends an audit
    // row, and AUTOINCREMENT made each of those inserts read and rewrite
    // sqlite_sequence too (a page more in every commit). Rows are never deleted
    // (the triggers refuse it), so a plain rowid, max + 1, still only grows.
    R"sql(
CREATE TABLE audit_v6 (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  app_id TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  result TEXT NOT NULL,
  detail TEXT NOT NULL
);
INSERT INTO audit_v6 (id, at, app_id, actor, action, subject, result, detail)
  SELECT id, at, app_id, actor, action, subject, result, detail FROM audit ORDER BY id;
DROP TABLE audit;
ALTER TABLE audit_v6 RENAME TO audit;
CREATE INDEX audit_by_app ON audit(app_id, id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
)sql",
};

constexpr const char* kEventColumns =
    "id, app_id, type, data, created_at, state, attempts, next_attempt_at, last_status, "
    "last_error";

Event ReadEvent(Stmt& s) {
  Event e;
  e.id = s.Int(0);
  e.app_id = s.Text(1);
  e.type = s.Text(2);
  e.data_json = s.Text(3);
  e.created_at = At(s.Int(4));
  e.state = s.Text(5);
  e.attempts = static_cast<int>(s.Int(6));
  e.next_attempt_at = At(s.Int(7));
  e.last_status = static_cast<int>(s.Int(8));
  e.last_error = s.Text(9);
  return e;
}

// Counters older than the longest window (FraudPolicy::window_s ≤ 1 day) are
// dropped a few rows at a time as starts come in.
constexpr std::int64_t kFraudKeepMinutes = 24 * 60;

std::int64_t MinuteOf(TimePoint t) { return otp::ToUnixSeconds(t) / 60; }

constexpr const char* kFactorColumns =
    "id, app_id, user_id, type, status, secret_sealed, algorithm, digits, period, counter, "
    "last_step, drift, label, issuer, serial, created_at, activated_at";

constexpr const char* kTokenColumns =
    "serial, type, secret_sealed, algorithm, digits, period, counter, imported_at, app_id, "
    "user_id, factor_id, revoked_at";

Factor ReadFactor(Stmt& s) {
  Factor f;
  f.id = s.Text(0);
  f.app_id = s.Text(1);
  f.user_id = s.Text(2);
  f.type = s.Text(3);
  f.status = s.Text(4);
  f.secret_sealed = s.Text(5);
  f.algorithm = s.Text(6);
  f.digits = static_cast<int>(s.Int(7));
  f.period = static_cast<int>(s.Int(8));
  f.counter = s.Int(9);
  f.last_step = s.Int(10);
  f.drift = s.Int(11);
  f.label = s.Text(12);
  f.issuer = s.Text(13);
  f.serial = s.Text(14);
  f.created_at = At(s.Int(15));
  if (!s.IsNull(16)) f.activated_at = At(s.Int(16));
  return f;
}

HardwareToken ReadToken(Stmt& s) {
  HardwareToken t;
  t.serial = s.Text(0);
  t.type = s.Text(1);
  t.secret_sealed = s.Text(2);
  t.algorithm = s.Text(3);
  t.digits = static_cast<int>(s.Int(4));
  t.period = static_cast<int>(s.Int(5));
  t.counter = s.Int(6);
  t.imported_at = At(s.Int(7));
  t.app_id = s.Text(8);
  t.user_id = s.Text(9);
  t.factor_id = s.Text(10);
  if (!s.IsNull(11)) t.revoked_at = At(s.Int(11));
  return t;
}

// Runs a statement to its end (so a RETURNING statement's changes are all made).
void Drain(Stmt& s) {
  while (s.Step()) {
  }
}

constexpr const char* kVerificationColumns =
    "id, app_id, recipient, status, channel, locale, workflow, code_hash, "
    "COALESCE(code_sealed, ''), current_step, send_count, check_count, max_checks, max_sends, "
    "metadata, expires_at, created_at, updated_at, last_sent_at, ip, flags, guard_prefix, "
    "guard_region";

// Flags are otpd's own identifiers: stored comma-joined (read back with SplitCommaList).
std::string JoinFlags(const std::vector<std::string>& flags) {
  std::string out;
  for (const std::string& f : flags) out += (out.empty() ? "" : ",") + f;
  return out;
}

// The columns ReadApp reads, in its order.
#define OTPD_APP_COLUMNS(t)                                                                   \
  t "id, " t "name, " t "settings, " t "webhook_secret, " t "created_at, " t "updated_at, " t \
    "webhook_disabled_at, " t "webhook_disabled_reason"

Verification ReadVerification(Stmt& s) {
  Verification v;
  v.id = s.Text(0);
  v.app_id = s.Text(1);
  v.to = s.Text(2);
  v.status = s.Text(3);
  v.channel = s.Text(4);
  v.locale = s.Text(5);
  WorkflowFromJson(s.Text(6), &v.workflow);
  v.code_hash = s.Text(7);
  v.code_sealed = s.Text(8);
  v.current_step = static_cast<int>(s.Int(9));
  v.send_count = static_cast<int>(s.Int(10));
  v.check_count = static_cast<int>(s.Int(11));
  v.max_checks = static_cast<int>(s.Int(12));
  v.max_sends = static_cast<int>(s.Int(13));
  v.metadata_json = s.Text(14);
  v.expires_at = At(s.Int(15));
  v.created_at = At(s.Int(16));
  v.updated_at = At(s.Int(17));
  v.last_sent_at = At(s.Int(18));
  v.ip = s.Text(19);
  v.flags = SplitCommaList(s.Text(20));
  v.guard_prefix = s.Text(21);
  v.guard_region = s.Text(22);
  return v;
}

// An applied transition from a "RETURNING status, check_count, send_count, ..." row;
// the statement is run to its end.
Transition AppliedFromRow(Stmt& s) {
  Transition t{true,
               Transition::Refusal::kNone,
               s.Text(0),
               static_cast<int>(s.Int(1)),
               static_cast<int>(s.Int(2)),
               {}};
  while (s.Step()) {
  }
  return t;
}

App ReadApp(Stmt& s) {
  App a;
  a.id = s.Text(0);
  a.name = s.Text(1);
  AppSettingsFromJson(s.Text(2), &a.settings);
  a.webhook_secret = s.Text(3);
  a.created_at = At(s.Int(4));
  a.updated_at = At(s.Int(5));
  if (!s.IsNull(6)) a.webhook_disabled_at = At(s.Int(6));
  a.webhook_disabled_reason = s.Text(7);
  return a;
}

Status FromException(const SqliteError& e) {
  if (e.busy()) return otp::Unavailable(e.what());
  if (e.constraint()) return otp::AlreadyExists(e.what());
  return otp::Internal(e.what());
}

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, const SqliteStoreOptions& options)
      : path_(std::move(path)),
        writer_db_(path_, false, OtpdVfsName()),
        checkpoint_pages_(options.checkpoint_pages) {
    // Checkpoints run on their own thread and connection (PASSIVE: they never
    // block the writer), not inside whichever commit crosses the threshold:
    // a checkpoint writes and fsyncs the database file, and every request of
    // that batch would wait for it. Only the last few frames of each are
    // copied by the writer, between two batches (see CheckpointLoop).
    //
    // Durability: the writer commits with synchronous=NORMAL (no fsync inside
    // COMMIT) and hands the batch to the syncer thread, which fdatasyncs the
    // WAL file and only then answers the batch's callers. So no answer goes
    // out before its write is on disk (what synchronous=FULL gives), but the
    // writer builds and commits the next batch while the disk syncs the last
    // one: the fsync wait is overlapped instead of repeated per batch.
    //
    // The writer and the checkpointer open the file through otpd's VFS
    // (vfs.h): the writer's commits reach the WAL file in one write each,
    // and the checkpointer's copies reach the disk in paced steps.
    //
    // The writer keeps up to 128 MiB of pages in its cache: SQLite's default,
    // 2 MiB, made every check of a large table read its page back from the
    // file. A pending verification takes about 350 bytes of table and id index,
    // so 64 MiB (the size until 2026-11-28) held about 190,000 of them, and a
    // check outside those paid a read: the writer's CPU per check was 2.5-3.3
    // us higher with 200,000 pending (docs/benchmarks.md). The cache grows as
    // pages are touched; a small database never uses all of it.
    // (Memory-mapped reads were tried and dropped: each time a checkpoint grew
    // the file, every connection remapped it, and TOTP verify got slower.)
    writer_db_.Exec(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
        "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-131072;");
    sqlite3_wal_hook(writer_db_.raw(), &SqliteStore::OnWalCommit, this);
    writer_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "otpd-writer");
      WriterLoop();
    });
    for (int i = 0; i < kSyncers; ++i) {
      syncers_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "otpd-sync");
        SyncLoop();
      });
    }
    checkpointer_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "otpd-checkpoint");
      CheckpointLoop();
    });
  }

  ~SqliteStore() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    writer_.join();
    {
      std::lock_guard lock(sync_mu_);
      sync_stopping_ = true;
    }
    sync_cv_.notify_all();
    for (std::thread& t : syncers_) t.join();
    {
      std::lock_guard lock(checkpoint_mu_);
      checkpoint_stopping_ = true;
    }
    checkpoint_cv_.notify_all();
    checkpointer_.join();
  }

  Status Migrate() override {
    return Write([](Db& db) -> Status {
      db.Exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
          "applied_at INTEGER NOT NULL)");
      std::int64_t current = 0;
      {
        Stmt s = db.Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
        if (s.Step()) current = s.Int(0);
      }
      const std::int64_t count = std::size(kMigrations);
      for (std::int64_t v = current + 1; v <= count; ++v) {
        db.Exec(kMigrations[v - 1]);
        db.Prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
            .BindAll(v, Ms(otp::SystemClock().Now()))
            .Exec();
      }
      return Status::Ok();
    });
  }

  Status Ping() override {
    return Read<int>([](Db& db) -> Result<int> {
             Stmt s = db.Prepare("SELECT 1");
             s.Step();
             return static_cast<int>(s.Int(0));
           })
        .status();
  }

  Status CreateApp(const App& app) override {
    return Write([&](Db& db) -> Status {
      db.Prepare(
            "INSERT INTO apps (id, name, settings, webhook_secret, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)")
          .BindAll(app.id, app.name, AppSettingsToJson(app.settings), app.webhook_secret,
                   Ms(app.created_at), Ms(app.updated_at))
          .Exec();
      return Status::Ok();
    });
  }

  Status UpdateApp(const App& app) override {
    return Write([&](Db& db) -> Status {
      const int n =
          db.Prepare("UPDATE apps SET name = ?, settings = ?, updated_at = ? WHERE id = ?")
              .BindAll(app.name, AppSettingsToJson(app.settings), Ms(app.updated_at), app.id)
              .Exec();
      return n == 1 ? Status::Ok() : otp::NotFound("no such app");
    });
  }

  Result<App> GetApp(std::string_view id_or_name) override {
    return Read<App>([&](Db& db) -> Result<App> {
      Stmt s = db.Prepare("SELECT " OTPD_APP_COLUMNS("") " FROM apps WHERE id = ?1 OR name = ?1");
      s.Bind(1, id_or_name);
      if (!s.Step()) return otp::NotFound("no such app");
      return ReadApp(s);
    });
  }

  Result<std::vector<App>> ListApps() override {
    return Read<std::vector<App>>([&](Db& db) -> Result<std::vector<App>> {
      Stmt s = db.Prepare("SELECT " OTPD_APP_COLUMNS("") " FROM apps ORDER BY created_at, id");
      std::vector<App> apps;
      while (s.Step()) apps.push_back(ReadApp(s));
      return apps;
    });
  }

  Status CreateKey(const ApiKey& key) override {
    return Write([&](Db& db) -> Status {
      db.Prepare("INSERT INTO api_keys (id, app_id, key_hash, created_at) VALUES (?, ?, ?, ?)")
          .BindAll(key.id, key.app_id, key.key_hash, Ms(key.created_at))
          .Exec();
      return Status::Ok();
    });
  }

  Status RevokeKey(std::string_view key_id, TimePoint now) override {
    return Write([&](Db& db) -> Status {
      const int n =
          db.Prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
              .BindAll(Ms(now), key_id)
              .Exec();
      return n == 1 ? Status::Ok() : otp::NotFound("no such key");
    });
  }

  Result<App> AppForKeyHash(std::string_view key_hash) override {
    return Read<App>([&](Db& db) -> Result<App> {
      Stmt s = db.Prepare("SELECT " OTPD_APP_COLUMNS(
          "a.") " FROM api_keys k JOIN apps a ON a.id = k.app_id "
                "WHERE k.key_hash = ? AND k.revoked_at IS NULL");
      s.Bind(1, key_hash);
      if (!s.Step()) return otp::NotFound("unknown key");
      return ReadApp(s);
    });
  }

  Result<std::optional<IdempotencyRecord>> GetIdempotency(std::string_view app_id,
                                                          std::string_view key,
                                                          TimePoint not_before) override {
    using R = std::optional<IdempotencyRecord>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare(
          "SELECT body_hash, response, response_status, created_at FROM idempotency_keys "
          "WHERE app_id = ? AND key = ? AND created_at >= ?");
      s.BindAll(app_id, key, Ms(not_before));
      if (!s.Step()) return R();
      IdempotencyRecord r;
      r.app_id = std::string(app_id);
      r.key = std::string(key);
      r.body_hash = s.Text(0);
      r.response = s.Text(1);
      r.response_status = static_cast<int>(s.Int(2));
      r.created_at = At(s.Int(3));
      return R(std::move(r));
    });
  }

  Result<StartOutcome> CreateVerification(const Verification& v, const Job& first_job,
                                          const IdempotencyRecord* idem,
                                          const StartLimits& limits) override {
    return WriteResult<StartOutcome>([&](Db& db) -> Result<StartOutcome> {
      // Counted in this transaction (the writer's): concurrent starts queue behind it.
      if (limits.max_per_recipient > 0) {
        auto oldest = WindowFull(db, "recipient", v.app_id, v.to, limits.recipient_since,
                                 limits.max_per_recipient);
        if (oldest) {
          return StartOutcome{StartOutcome::Refusal::kRecipient,
                              *oldest + (v.created_at - limits.recipient_since)};
        }
      }
      if (limits.max_per_ip > 0 && !v.ip.empty()) {
        auto oldest = WindowFull(db, "ip", v.app_id, v.ip, limits.ip_since, limits.max_per_ip);
        if (oldest) {
          return StartOutcome{StartOutcome::Refusal::kIp,
                              *oldest + (v.created_at - limits.ip_since)};
        }
      }
      if (idem != nullptr) {
        // An expired record (older than the replay window) gives way to the new one.
        db.Prepare("DELETE FROM idempotency_keys WHERE app_id = ? AND key = ? AND created_at < ?")
            .BindAll(idem->app_id, idem->key, Ms(idem->created_at) - 24LL * 3600 * 1000)
            .Exec();
        db.Prepare(
              "INSERT INTO idempotency_keys (app_id, key, body_hash, response, response_status, "
              "created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .BindAll(idem->app_id, idem->key, idem->body_hash, idem->response,
                     idem->response_status, Ms(idem->created_at))
            .Exec();
      }
      db.Prepare(
            "INSERT INTO verifications (id, app_id, recipient, status, channel, locale, workflow, "
            "code_hash, code_sealed, current_step, send_count, check_count, max_checks, "
            "max_sends, metadata, expires_at, created_at, updated_at, last_sent_at, ip, flags, "
            "guard_prefix, guard_region) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
          .BindAll(v.id, v.app_id, v.to, v.status, v.channel, v.locale, WorkflowToJson(v.workflow),
                   v.code_hash, v.code_sealed, v.current_step, v.send_count, v.check_count,
                   v.max_checks, v.max_sends, v.metadata_json, Ms(v.expires_at), Ms(v.created_at),
                   Ms(v.updated_at), Ms(v.last_sent_at), v.ip, JoinFlags(v.flags), v.guard_prefix,
                   v.guard_region)
          .Exec();
      for (const Delivery& d : v.deliveries) {
        const std::int64_t delivery_id = InsertDelivery(db, v.id, d);
        Job job = first_job;
        job.delivery_id = delivery_id;
        InsertJob(db, job);
      }
      InsertAudit(db, VerificationAudit(v.app_id, "api", "verification.start", v.id, "started",
                                        v.to, v.created_at, "channel " + v.channel));
      const std::int64_t minute = MinuteOf(v.created_at);
      CountFraud(db, v.app_id, kFraudScopePrefix, v.guard_prefix, minute, 1, 0);
      CountFraud(db, v.app_id, kFraudScopeRegion, v.guard_region, minute, 1, 0);
      if (!v.guard_prefix.empty() || !v.guard_region.empty()) {
        db.Prepare(
              "DELETE FROM fraud_counters WHERE rowid IN ("
              "  SELECT rowid FROM fraud_counters WHERE minute < ? LIMIT 16)")
            .Bind(1, minute - kFraudKeepMinutes)
            .Exec();
      }
      return StartOutcome{};
    });
  }

  Result<TokenGrant> TakeRequestTokens(std::string_view app_id, int rate, int burst, int want,
                                       TimePoint now) override {
    return WriteResult<TokenGrant>([&](Db& db) -> Result<TokenGrant> {
      std::int64_t milli = std::int64_t{burst} * 1000;  // a new bucket starts full
      Stmt s = db.Prepare("SELECT milli_tokens, updated_at FROM request_buckets WHERE app_id = ?");
      s.Bind(1, app_id);
      if (s.Step()) milli = RefilledMilliTokens(s.Int(0), At(s.Int(1)), rate, burst, now);
      Drain(s);
      TokenGrant g;
      g.granted = static_cast<int>(std::min<std::int64_t>(want, milli / 1000));
      milli -= std::int64_t{g.granted} * 1000;
      if (g.granted == 0) g.next_at = NextTokenAt(milli, rate, now);
      db.Prepare(
            "INSERT INTO request_buckets (app_id, milli_tokens, updated_at) VALUES (?1, ?2, ?3) "
            "ON CONFLICT (app_id) DO UPDATE SET milli_tokens = ?2, updated_at = ?3")
          .BindAll(app_id, milli, Ms(now))
          .Exec();
      return g;
    });
  }

  Result<FraudCounts> GetFraudCounts(std::string_view app_id, std::string_view prefix,
                                     std::string_view region, std::string_view number,
                                     TimePoint since) override {
    return Read<FraudCounts>([&](Db& db) -> Result<FraudCounts> {
      ReadTxn txn(db);
      FraudCounts out;
      auto buckets = [&](std::string_view scope, std::string_view key) {
        std::vector<FraudBucket> b;
        if (key.empty()) return b;
        Stmt s = db.Prepare(
            "SELECT minute, starts, approvals FROM fraud_counters WHERE app_id = ? AND scope = ? "
            "AND key = ? AND minute >= ? ORDER BY minute");
        s.BindAll(app_id, scope, key, MinuteOf(since));
        while (s.Step()) {
          b.push_back({s.Int(0), static_cast<int>(s.Int(1)), static_cast<int>(s.Int(2))});
        }
        return b;
      };
      out.prefix = buckets(kFraudScopePrefix, prefix);
      out.region = buckets(kFraudScopeRegion, region);
      if (!number.empty()) {
        Stmt s = db.Prepare(
            "SELECT 1 FROM fraud_safelist WHERE app_id = ?1 AND "
            "substr(?2, 1, length(entry)) = entry LIMIT 1");
        s.BindAll(app_id, number);
        out.safe_listed = s.Step();
        Drain(s);
      }
      return out;
    });
  }

  Result<std::vector<FraudTotals>> ListFraudTotals(std::string_view app_id,
                                                   TimePoint since) override {
    using R = std::vector<FraudTotals>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare(
          "SELECT app_id, scope, key, SUM(starts) AS n, SUM(approvals) FROM fraud_counters "
          "WHERE app_id = ? AND minute >= ? GROUP BY app_id, scope, key "
          "ORDER BY n DESC, scope, key");
      s.BindAll(app_id, MinuteOf(since));
      R out;
      while (s.Step()) {
        out.push_back({s.Text(0), s.Text(1), s.Text(2), static_cast<int>(s.Int(3)),
                       static_cast<int>(s.Int(4))});
      }
      return out;
    });
  }

  Status AddSafeListEntry(const SafeListEntry& e) override {
    return Write([&](Db& db) -> Status {
      db.Prepare(
            "INSERT INTO fraud_safelist (app_id, entry, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (app_id, entry) DO NOTHING")
          .BindAll(e.app_id, e.entry, Ms(e.created_at))
          .Exec();
      return Status::Ok();
    });
  }

  Status RemoveSafeListEntry(std::string_view app_id, std::string_view entry) override {
    return Write([&](Db& db) -> Status {
      const int n = db.Prepare("DELETE FROM fraud_safelist WHERE app_id = ? AND entry = ?")
                        .BindAll(app_id, entry)
                        .Exec();
      return n == 1 ? Status::Ok() : otp::NotFound("not safe-listed");
    });
  }

  Result<std::vector<SafeListEntry>> ListSafeList(std::string_view app_id) override {
    using R = std::vector<SafeListEntry>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare(
          "SELECT app_id, entry, created_at FROM fraud_safelist WHERE ?1 = '' OR app_id = ?1 "
          "ORDER BY app_id, entry");
      s.Bind(1, app_id);
      R out;
      while (s.Step()) out.push_back({s.Text(0), s.Text(1), At(s.Int(2))});
      return out;
    });
  }

  Result<Verification> GetVerification(std::string_view app_id, std::string_view id) override {
    return Read<Verification>([&](Db& db) -> Result<Verification> {
      ReadTxn txn(db);
      Stmt s = db.Prepare(std::string("SELECT ") + kVerificationColumns +
                          " FROM verifications WHERE id = ?1 AND (?2 = '' OR app_id = ?2)");
      s.BindAll(id, app_id);
      if (!s.Step()) return otp::NotFound("no such verification");
      Verification v = ReadVerification(s);
      LoadDeliveries(db, &v);
      return v;
    });
  }

  Result<Verification> NewestPending(std::string_view app_id, std::string_view to) override {
    return Read<Verification>([&](Db& db) -> Result<Verification> {
      ReadTxn txn(db);
      Stmt s = db.Prepare(std::string("SELECT ") + kVerificationColumns +
                          " FROM verifications WHERE app_id = ? AND recipient = ? AND "
                          "status = 'pending' ORDER BY created_at DESC, rowid DESC LIMIT 1");
      s.BindAll(app_id, to);
      if (!s.Step()) return otp::NotFound("no pending verification");
      Verification v = ReadVerification(s);
      LoadDeliveries(db, &v);
      return v;
    });
  }

  Result<Transition> RecordCheck(std::string_view app_id, std::string_view id,
                                 std::string_view code_hash, TimePoint now) override {
    std::promise<Result<Transition>> done;
    auto answer = done.get_future();
    RecordCheckAsync(app_id, id, code_hash, now,
                     [&done](Result<Transition> t) { done.set_value(std::move(t)); });
    return answer.get();
  }

  // No thread waits: the writer answers `done` after the batch's commit.
  void RecordCheckAsync(std::string_view app_id, std::string_view id, std::string_view code_hash,
                        TimePoint now, std::function<void(Result<Transition>)> done) override {
    auto out = std::make_shared<std::optional<Result<Transition>>>();
    WriteAsync(
        [out, app = std::string(app_id), vid = std::string(id), hash = std::string(code_hash),
         now](Db& db) -> Status {
          out->emplace(CheckTx(db, app, vid, hash, now));
          return KeepRefusals(**out);
        },
        [out, done = std::move(done)](const Status& s) {
          if (!s.ok()) return done(s);
          done(std::move(**out));
        },
        /*rerunnable=*/true);
  }

  Result<Transition> RecordResend(std::string_view app_id, std::string_view id, int cooldown_s,
                                  const Delivery& delivery, const Job& job,
                                  TimePoint now) override {
    return WriteResult<Transition>([&](Db& db) -> Result<Transition> {
      Stmt s = db.Prepare(
          "UPDATE verifications SET send_count = send_count + 1, last_sent_at = ?1, "
          "channel = ?2, updated_at = ?1 "
          "WHERE id = ?3 AND app_id = ?4 AND status = 'pending' AND expires_at > ?1 "
          "AND send_count < max_sends AND last_sent_at <= ?5 "
          "RETURNING status, check_count, send_count, last_sent_at, recipient");
      s.BindAll(Ms(now), delivery.channel, id, app_id, Ms(now) - cooldown_s * 1000LL);
      if (s.Step()) {
        const TimePoint sent_at = At(s.Int(3));
        const std::string recipient = s.Text(4);
        Transition t = AppliedFromRow(s);
        t.last_sent_at = sent_at;
        Job j = job;
        j.delivery_id = InsertDelivery(db, id, delivery);
        InsertJob(db, j);
        InsertAudit(db, VerificationAudit(app_id, "api", "verification.resend", id, "queued",
                                          recipient, now, "channel " + delivery.channel));
        return t;
      }
      Result<Transition> r = Refused(db, app_id, id, now);
      if (r.ok() && r->refusal != Transition::Refusal::kNone) {
        AuditRefusal(db, app_id, id, "verification.resend", r->status, now);
      }
      if (!r.ok() || r->refusal != Transition::Refusal::kNone) return r;
      Stmt c =
          db.Prepare("SELECT send_count, max_sends, last_sent_at FROM verifications WHERE id = ?");
      c.Bind(1, id);
      c.Step();
      Transition t = *r;
      t.last_sent_at = At(c.Int(2));
      t.refusal =
          c.Int(0) >= c.Int(1) ? Transition::Refusal::kMaxSends : Transition::Refusal::kCooldown;
      Drain(c);
      AuditRefusal(db, app_id, id, "verification.resend",
                   t.refusal == Transition::Refusal::kMaxSends ? "max_sends" : "cooldown", now);
      return t;
    });
  }

  Result<Transition> Cancel(std::string_view app_id, std::string_view id, TimePoint now) override {
    return SetStatusIf(app_id, id, now, kCanceled, "expires_at > ?2", "api", "verification.cancel");
  }

  Result<Transition> ExpireIfDue(std::string_view app_id, std::string_view id,
                                 TimePoint now) override {
    return SetStatusIf(app_id, id, now, kExpired, "expires_at <= ?2", "otpd",
                       "verification.expire");
  }

  Result<std::vector<Job>> ClaimJobs(TimePoint now, TimePoint lease_until, int limit) override {
    return WriteResult<std::vector<Job>>([&](Db& db) -> Result<std::vector<Job>> {
      Stmt s = db.Prepare(
          "UPDATE jobs SET lease_until = ?1, attempts = attempts + 1 WHERE id IN ("
          "  SELECT id FROM jobs WHERE due_at <= ?2 AND lease_until <= ?2 "
          "  ORDER BY due_at LIMIT ?3) "
          "RETURNING id, verification_id, delivery_id, step, advance, due_at, attempts");
      s.BindAll(Ms(lease_until), Ms(now), limit);
      std::vector<Job> jobs;
      while (s.Step()) {
        Job j;
        j.id = s.Int(0);
        j.verification_id = s.Text(1);
        j.delivery_id = s.Int(2);
        j.step = static_cast<int>(s.Int(3));
        j.advance = s.Int(4) != 0;
        j.due_at = At(s.Int(5));
        j.attempts = static_cast<int>(s.Int(6));
        jobs.push_back(std::move(j));
      }
      return jobs;
    });
  }

  Result<std::optional<TimePoint>> NextJobDue() override {
    using R = std::optional<TimePoint>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare("SELECT MIN(MAX(due_at, lease_until)) FROM jobs");
      if (!s.Step() || s.IsNull(0)) return R();
      return R(At(s.Int(0)));
    });
  }

  Status FinishJob(const JobOutcome& outcome) override {
    std::promise<Status> done;
    auto answer = done.get_future();
    FinishJobAsync(outcome, [&done](const Status& s) { done.set_value(s); });
    return answer.get();
  }

  // No dispatcher worker waits for the commit: `done` runs after it.
  void FinishJobAsync(const JobOutcome& outcome, std::function<void(const Status&)> done) override {
    WriteAsync([o = outcome](Db& db) -> Status { return FinishJobTx(db, o); }, std::move(done));
  }

  // Store::FinishJob inside the writer's transaction.
  static Status FinishJobTx(Db& db, const JobOutcome& o) {
    {
      db.Prepare("DELETE FROM jobs WHERE id = ?").Bind(1, o.job.id).Exec();
      auto record = [&](std::int64_t id, const std::string& provider, const std::string& status,
                        const std::string& message_id, const std::string& error, TimePoint at) {
        db.Prepare(
              "UPDATE deliveries SET provider = ?, status = ?, provider_message_id = ?, "
              "error = ?, updated_at = ? WHERE id = ?")
            .BindAll(provider, status, message_id, error, Ms(at), id)
            .Exec();
      };
      // Later providers of the step get deliveries of their own, copied from the queued one.
      auto copy = [&](TimePoint at) {
        db.Prepare(
              "INSERT INTO deliveries (verification_id, step, channel, recipient, provider, "
              "status, provider_message_id, error, created_at, updated_at) "
              "SELECT verification_id, step, channel, recipient, '', 'queued', '', '', ?1, ?1 "
              "FROM deliveries WHERE id = ?2")
            .BindAll(Ms(at), o.job.delivery_id)
            .Exec();
        return db.LastInsertId();
      };
      std::int64_t final_id = o.job.delivery_id;
      for (std::size_t i = 0; i < o.failed_first.size(); ++i) {
        const FailedAttempt& f = o.failed_first[i];
        record(i == 0 ? o.job.delivery_id : copy(f.at), f.provider, kDeliveryFailed, "", f.error,
               f.at);
      }
      if (!o.failed_first.empty()) final_id = copy(o.at);
      record(final_id, o.provider, o.delivery_status, o.provider_message_id, o.error, o.at);
      if (o.delivery_status != kDeliveryCanceled) {
        // The verification's channel is that of the latest step fired.
        db.Prepare(
              "UPDATE verifications SET channel = (SELECT channel FROM deliveries WHERE id = ?1), "
              "updated_at = ?2 WHERE id = ?3 AND status = 'pending'")
            .BindAll(o.job.delivery_id, Ms(o.at), o.job.verification_id)
            .Exec();
      }
      if (o.next && o.next_delivery) {
        // Only while still pending: a verification that left pending fires nothing more.
        Stmt s = db.Prepare(
            "UPDATE verifications SET current_step = ?1, updated_at = ?2 "
            "WHERE id = ?3 AND status = 'pending' RETURNING id");
        s.BindAll(o.next->step, Ms(o.at), o.job.verification_id);
        const bool pending = s.Step();
        while (s.Step()) {
        }
        if (pending) {
          Job j = *o.next;
          j.delivery_id = InsertDelivery(db, o.job.verification_id, *o.next_delivery);
          InsertJob(db, j);
        }
      }
      if (o.delivery_status != kDeliveryCanceled) {
        InsertVerificationEvent(db, o.job.verification_id, "delivery.updated", o.at);
      }
      if (o.undeliverable) {
        const int n = db.Prepare(
                            "UPDATE verifications SET status = 'undeliverable', updated_at = ?1 "
                            "WHERE id = ?2 AND status = 'pending'")
                          .BindAll(Ms(o.at), o.job.verification_id)
                          .Exec();
        if (n == 1) {
          LeavePending(db, o.job.verification_id, o.at);
          InsertVerificationEvent(db, o.job.verification_id, "verification.undeliverable", o.at);
        }
      }
      if (o.delivery_status == kDeliverySent && !o.provider_message_id.empty()) {
        // A report that arrived before this send was recorded.
        Stmt early = db.Prepare(
            "DELETE FROM early_delivery_reports WHERE provider = ? AND provider_message_id = ? "
            "RETURNING status, detail, received_at");
        early.BindAll(o.provider, o.provider_message_id);
        if (early.Step()) {
          DeliveryReport r{o.provider, o.provider_message_id, early.Text(0), early.Text(1)};
          const TimePoint at = std::max(At(early.Int(2)), o.at);
          while (early.Step()) {
          }
          ApplyReport(db, final_id, r, at);
        }
      }
      return Status::Ok();
    }
  }

  Result<std::int64_t> CountJobs() override {
    return Read<std::int64_t>([](Db& db) -> Result<std::int64_t> {
      Stmt s = db.Prepare("SELECT COUNT(*) FROM jobs");
      s.Step();
      return s.Int(0);
    });
  }

  Result<std::vector<SealedValue>> ListSealed(std::string_view kind, std::string_view except_key_id,
                                              std::string_view after_id, int limit) override {
    const SealedColumn* c = FindSealedColumn(kind);
    if (c == nullptr) return otp::InvalidArgument("unknown kind of sealed value");
    const std::string id = c->id;
    const std::string sql = "SELECT " + id + ", " + c->associated_data + ", " + c->column +
                            " FROM " + c->table + " WHERE " + c->column + " IS NOT NULL AND " +
                            c->column + " <> '' AND substr(" + c->column + ", 1, ?1) <> ?2 " +
                            "AND " + id + " > ?3 ORDER BY " + id + " LIMIT ?4";
    return Read<std::vector<SealedValue>>([&](Db& db) -> Result<std::vector<SealedValue>> {
      const std::string prefix = SealedPrefix(except_key_id);
      Stmt s = db.Prepare(sql);
      s.BindAll(static_cast<std::int64_t>(prefix.size()), prefix, after_id, limit);
      std::vector<SealedValue> out;
      while (s.Step())
        out.push_back(SealedValue{std::string(kind), s.Text(0), s.Text(1), s.Text(2)});
      return out;
    });
  }

  Result<int> ReplaceSealed(const std::vector<SealedReplacement>& replacements) override {
    for (const SealedReplacement& r : replacements) {
      if (FindSealedColumn(r.kind) == nullptr) {
        return otp::InvalidArgument("unknown kind of sealed value");
      }
    }
    return WriteResult<int>([&](Db& db) -> Result<int> {
      int applied = 0;
      for (const SealedReplacement& r : replacements) {
        const SealedColumn* c = FindSealedColumn(r.kind);
        applied += db.Prepare(std::string("UPDATE ") + c->table + " SET " + c->column +
                              " = ?1 WHERE " + c->id + " = ?2 AND " + c->column + " = ?3")
                       .BindAll(r.new_sealed, r.id, r.old_sealed)
                       .Exec();
      }
      return applied;
    });
  }

  Result<std::map<std::string, std::int64_t>> CountSealedByKeyId() override {
    using Counts = std::map<std::string, std::int64_t>;
    return Read<Counts>([&](Db& db) -> Result<Counts> {
      ReadTxn txn(db);
      Counts counts;
      for (const SealedColumn& c : kSealedColumns) {
        // The key id sits between "v1." and the next '.' ('' for a malformed blob).
        const std::string col = c.column;
        const std::string dot = "instr(substr(" + col + ", 4), '.')";
        Stmt s = db.Prepare("SELECT CASE WHEN substr(" + col + ", 1, 3) = 'v1.' AND " + dot +
                            " > 1 THEN substr(" + col + ", 4, " + dot +
                            " - 1) ELSE '' END AS key_id, COUNT(*) FROM " + c.table + " WHERE " +
                            col + " IS NOT NULL AND " + col + " <> '' GROUP BY key_id");
        while (s.Step()) counts[s.Text(0)] += s.Int(1);
      }
      return counts;
    });
  }

  Result<std::vector<ReportOutcome>> ApplyDeliveryReports(
      const std::vector<DeliveryReport>& reports, TimePoint now) override {
    return WriteResult<std::vector<ReportOutcome>>(
        [&](Db& db) -> Result<std::vector<ReportOutcome>> {
          std::vector<ReportOutcome> out;
          for (const DeliveryReport& r : reports) {
            Stmt find = db.Prepare(
                "SELECT id FROM deliveries WHERE provider = ? AND provider_message_id = ? "
                "AND provider_message_id <> '' ORDER BY id DESC LIMIT 1");
            find.BindAll(r.provider, r.provider_message_id);
            if (!find.Step()) {
              db.Prepare(
                    "INSERT OR IGNORE INTO early_delivery_reports (provider, provider_message_id, "
                    "status, detail, received_at) VALUES (?, ?, ?, ?, ?)")
                  .BindAll(r.provider, r.provider_message_id, r.status, r.detail, Ms(now))
                  .Exec();
              out.emplace_back();
              continue;
            }
            const std::int64_t id = find.Int(0);
            while (find.Step()) {
            }
            out.push_back(ApplyReport(db, id, r, now));
          }
          // Reports nobody claimed within a day are not coming for anyone.
          db.Prepare("DELETE FROM early_delivery_reports WHERE received_at < ?")
              .Bind(1, Ms(now - std::chrono::hours(24)))
              .Exec();
          return out;
        });
  }

  Status CreateFactor(const Factor& f) override {
    return Write([&](Db& db) -> Status {
      InsertFactor(db, f);
      InsertEvent(db, f.app_id, "factor.created", FactorEventJson(f), f.created_at);
      InsertAudit(db,
                  ChangeAudit(f.app_id, "api", "factor.create", f.id,
                              "user:" + f.user_id + " " + f.type + " " + f.serial, f.created_at));
      return Status::Ok();
    });
  }

  Result<Factor> GetFactor(std::string_view app_id, std::string_view user_id,
                           std::string_view factor_id) override {
    return Read<Factor>(
        [&](Db& db) -> Result<Factor> { return FindFactor(db, app_id, user_id, factor_id); });
  }

  Result<std::vector<Factor>> ListFactors(std::string_view app_id,
                                          std::string_view user_id) override {
    return Read<std::vector<Factor>>(
        [&](Db& db) -> Result<std::vector<Factor>> { return SelectFactors(db, app_id, user_id); });
  }

  static std::vector<Factor> SelectFactors(Db& db, std::string_view app_id,
                                           std::string_view user_id) {
    Stmt s = db.Prepare(std::string("SELECT ") + kFactorColumns +
                        " FROM factors WHERE app_id = ? AND user_id = ? "
                        "ORDER BY created_at, rowid");
    s.BindAll(app_id, user_id);
    std::vector<Factor> out;
    while (s.Step()) out.push_back(ReadFactor(s));
    return out;
  }

  Status DeleteFactor(std::string_view app_id, std::string_view user_id, std::string_view factor_id,
                      TimePoint now) override {
    return Write([&](Db& db) -> Status {
      Result<Factor> f = FindFactor(db, app_id, user_id, factor_id);
      if (!f.ok()) return f.status();
      RemoveFactor(db, *f, now, "api");
      return Status::Ok();
    });
  }

  Result<Factor> BindHardwareToken(const Factor& request, std::string_view serial) override {
    return WriteResult<Factor>([&](Db& db) -> Result<Factor> {
      Stmt s = db.Prepare(std::string("SELECT ") + kTokenColumns +
                          " FROM hardware_tokens WHERE serial = ?");
      s.Bind(1, serial);
      if (!s.Step()) return otp::NotFound("no hardware token " + std::string(serial));
      const HardwareToken t = ReadToken(s);
      Drain(s);
      if (t.revoked_at)
        return otp::FailedPrecondition("hardware token " + t.serial + " is revoked");
      if (!t.factor_id.empty()) {
        return otp::FailedPrecondition("hardware token " + t.serial + " is bound already");
      }
      if (t.type != request.type) {
        return otp::FailedPrecondition("hardware token " + t.serial + " is a " + t.type + " token");
      }
      const Factor f = FactorFromToken(request, t);
      // Conditional, so that two binds of one token cannot both win.
      const int n = db.Prepare(
                          "UPDATE hardware_tokens SET app_id = ?, user_id = ?, factor_id = ? "
                          "WHERE serial = ? AND factor_id = '' AND revoked_at IS NULL")
                        .BindAll(f.app_id, f.user_id, f.id, t.serial)
                        .Exec();
      if (n != 1) return otp::FailedPrecondition("hardware token " + t.serial + " is taken");
      InsertFactor(db, f);
      InsertEvent(db, f.app_id, "factor.created", FactorEventJson(f), f.created_at);
      InsertAudit(db,
                  ChangeAudit(f.app_id, "api", "factor.create", f.id,
                              "user:" + f.user_id + " " + f.type + " " + f.serial, f.created_at));
      return f;
    });
  }

  Result<FactorAttemptOutcome> RecordFactorAttempt(const FactorAttempt& attempt) override {
    std::promise<Result<FactorAttemptOutcome>> done;
    auto answer = done.get_future();
    RecordFactorAttemptAsync(
        attempt, [&done](Result<FactorAttemptOutcome> out) { done.set_value(std::move(out)); });
    return answer.get();
  }

  // No thread waits: the writer answers `done` after the batch's commit.
  void RecordFactorAttemptAsync(FactorAttempt attempt,
                                std::function<void(Result<FactorAttemptOutcome>)> done) override {
    AttemptAsync(std::move(attempt), nullptr, std::move(done));
  }

  // The read, the match and the attempt in one op of the writer's batch: the
  // writer's page cache holds the factor (a pooled reader starts cold after
  // every commit), and no state changes between the match and the update.
  void MatchFactorAttemptAsync(FactorAttempt attempt, const std::optional<std::string>& factor_id,
                               const FactorMatcher& match,
                               std::function<void(Result<FactorAttemptOutcome>)> done) override {
    auto prepare = [factor_id, match](Db& db, FactorAttempt& a) -> Status {
      std::vector<Factor> factors;
      if (!factor_id) {
        factors = SelectFactors(db, a.app_id, a.user_id);
      } else if (Result<Factor> one = FindFactor(db, a.app_id, a.user_id, *factor_id); one.ok()) {
        factors.push_back(std::move(one).value());
      } else {
        return one.status();
      }
      Result<std::vector<FactorCandidate>> matched = match(factors);
      if (!matched.ok()) return matched.status();
      a.candidates.insert(a.candidates.begin(), matched->begin(), matched->end());
      return Status::Ok();
    };
    AttemptAsync(std::move(attempt), prepare, std::move(done));
  }

  // Runs `attempt` as one op of the writer's batch, after `prepare` (if any),
  // which may add candidates; its error ends the op with nothing written.
  void AttemptAsync(FactorAttempt attempt, std::function<Status(Db&, FactorAttempt&)> prepare,
                    std::function<void(Result<FactorAttemptOutcome>)> done) {
    auto out = std::make_shared<std::optional<Result<FactorAttemptOutcome>>>();
    WriteAsync(
        [out, a = std::move(attempt), prepare = std::move(prepare)](Db& db) mutable -> Status {
          if (prepare) {
            if (Status s = prepare(db, a); !s.ok()) return s;
          }
          AttemptOps ops(db, a);
          out->emplace(RunFactorAttempt(a, ops));
          return KeepRefusals(**out);
        },
        [out, done = std::move(done)](const Status& s) {
          if (!s.ok()) return done(s);
          done(std::move(**out));
        });
  }

  Status ReplaceRecoveryCodes(std::string_view app_id, std::string_view user_id,
                              const std::vector<std::string>& code_hashes, TimePoint now) override {
    return Write([&](Db& db) -> Status {
      db.Prepare("DELETE FROM recovery_codes WHERE app_id = ? AND user_id = ?")
          .BindAll(app_id, user_id)
          .Exec();
      for (const std::string& h : code_hashes) {
        db.Prepare(
              "INSERT INTO recovery_codes (app_id, user_id, code_hash, created_at) "
              "VALUES (?, ?, ?, ?)")
            .BindAll(app_id, user_id, h, Ms(now))
            .Exec();
      }
      InsertAudit(db,
                  ChangeAudit(app_id, "api", "recovery_codes.issue", "user:" + std::string(user_id),
                              std::to_string(code_hashes.size()) + " codes", now));
      InsertEvent(db, app_id, "recovery_codes.issued",
                  UserEventJson(user_id, "count", static_cast<int>(code_hashes.size())), now);
      return Status::Ok();
    });
  }

  Result<std::vector<RecoveryCode>> ListRecoveryCodes(std::string_view app_id,
                                                      std::string_view user_id) override {
    using R = std::vector<RecoveryCode>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare(
          "SELECT code_hash, created_at, used_at FROM recovery_codes "
          "WHERE app_id = ? AND user_id = ? ORDER BY rowid");
      s.BindAll(app_id, user_id);
      R out;
      while (s.Step()) {
        RecoveryCode rc{s.Text(0), At(s.Int(1)), std::nullopt};
        if (!s.IsNull(2)) rc.used_at = At(s.Int(2));
        out.push_back(std::move(rc));
      }
      return out;
    });
  }

  Result<ThrottleState> GetThrottle(std::string_view app_id, std::string_view user_id) override {
    return Read<ThrottleState>(
        [&](Db& db) -> Result<ThrottleState> { return LoadThrottle(db, app_id, user_id); });
  }

  Result<bool> UnlockUser(std::string_view app_id, std::string_view user_id, std::string_view actor,
                          TimePoint now) override {
    return WriteResult<bool>([&](Db& db) -> Result<bool> {
      Stmt s = db.Prepare(
          "DELETE FROM user_throttles WHERE app_id = ? AND user_id = ? RETURNING locked");
      s.BindAll(app_id, user_id);
      const bool was_locked = s.Step() && s.Int(0) != 0;
      Drain(s);
      InsertAudit(db, AuditEntry{0, now, std::string(app_id), std::string(actor), "user.unlock",
                                 "user:" + std::string(user_id),
                                 was_locked ? "unlocked" : "not_locked", ""});
      return was_locked;
    });
  }

  Result<std::vector<Event>> ListEvents(std::string_view app_id, std::int64_t after_id,
                                        int limit) override {
    using R = std::vector<Event>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare(std::string("SELECT ") + kEventColumns +
                          " FROM events WHERE id > ?1 AND (?2 = '' OR app_id = ?2) "
                          "ORDER BY id LIMIT ?3");
      s.BindAll(after_id, app_id, limit);
      R out;
      while (s.Step()) out.push_back(ReadEvent(s));
      return out;
    });
  }

  Result<std::vector<WebhookJob>> ClaimWebhookEvents(TimePoint now, TimePoint lease_until,
                                                     int limit) override {
    using R = std::vector<WebhookJob>;
    return WriteResult<R>([&](Db& db) -> Result<R> {
      // Due events whose app has no enabled webhook (any more) are not sent.
      db.Prepare(
            "UPDATE events SET state = 'skipped', last_error = 'the app has no enabled webhook' "
            "WHERE id IN (SELECT e.id FROM events e LEFT JOIN apps a ON a.id = e.app_id "
            "  WHERE e.state = 'pending' AND e.next_attempt_at <= ?1 AND e.lease_until <= ?1 "
            "  AND (a.id IS NULL OR a.webhook_disabled_at IS NOT NULL OR "
            "       COALESCE(json_extract(a.settings, '$.webhook_url'), '') = '') LIMIT 1000)")
          .Bind(1, Ms(now))
          .Exec();
      Stmt s = db.Prepare(std::string("UPDATE events SET lease_until = ?1, attempts = attempts + 1 "
                                      "WHERE id IN (SELECT id FROM events WHERE state = 'pending' "
                                      "  AND next_attempt_at <= ?2 AND lease_until <= ?2 "
                                      "  ORDER BY next_attempt_at LIMIT ?3) RETURNING ") +
                          kEventColumns);
      s.BindAll(Ms(lease_until), Ms(now), limit);
      R out;
      while (s.Step()) out.push_back(WebhookJob{ReadEvent(s), "", ""});
      for (WebhookJob& job : out) {
        Stmt a = db.Prepare(
            "SELECT COALESCE(json_extract(settings, '$.webhook_url'), ''), webhook_secret "
            "FROM apps WHERE id = ?");
        a.Bind(1, job.event.app_id);
        if (a.Step()) {
          job.url = a.Text(0);
          job.secret = a.Text(1);
        }
        Drain(a);
      }
      return out;
    });
  }

  Result<std::optional<TimePoint>> NextWebhookDue() override {
    using R = std::optional<TimePoint>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare(
          "SELECT MIN(MAX(next_attempt_at, lease_until)) FROM events WHERE state = 'pending'");
      if (!s.Step() || s.IsNull(0)) return R();
      return R(At(s.Int(0)));
    });
  }

  Result<bool> FinishWebhookEvent(const WebhookOutcome& o) override {
    return WriteResult<bool>([&](Db& db) -> Result<bool> {
      const int n = db.Prepare(
                          "UPDATE events SET state = ?1, next_attempt_at = ?2, lease_until = 0, "
                          "last_status = ?3, last_error = ?4 "
                          "WHERE id = ?5 AND attempts = ?6 AND state = 'pending' "
                          "AND lease_until <> 0")
                        .BindAll(o.state, Ms(o.next_attempt_at), o.http_status, o.error, o.event_id,
                                 o.attempt)
                        .Exec();
      if (n == 0) return false;
      if (o.disable_endpoint) {
        Stmt s = db.Prepare("SELECT app_id FROM events WHERE id = ?");
        s.Bind(1, o.event_id);
        s.Step();
        const std::string app_id = s.Text(0);
        Drain(s);
        db.Prepare(
              "UPDATE apps SET webhook_disabled_at = ?1, webhook_disabled_reason = ?2 "
              "WHERE id = ?3 AND webhook_disabled_at IS NULL")
            .BindAll(Ms(o.at), o.error, app_id)
            .Exec();
        db.Prepare(
              "UPDATE events SET state = 'failed', lease_until = 0, "
              "last_error = 'the endpoint was disabled' WHERE app_id = ? AND state = 'pending'")
            .Bind(1, app_id)
            .Exec();
      }
      return true;
    });
  }

  Status EnableWebhook(std::string_view app_id) override {
    return Write([&](Db& db) -> Status {
      const int n =
          db.Prepare(
                "UPDATE apps SET webhook_disabled_at = NULL, webhook_disabled_reason = '' "
                "WHERE id = ?")
              .Bind(1, app_id)
              .Exec();
      return n == 1 ? Status::Ok() : otp::NotFound("no such app");
    });
  }

  Result<int> ExpireOverdue(TimePoint since, TimePoint now, int limit) override {
    // A read first, so that a sweep with nothing to do writes (and syncs) nothing.
    auto due = Read<std::vector<std::string>>([&](Db& db) -> Result<std::vector<std::string>> {
      Stmt s = db.Prepare(
          "SELECT id FROM verifications WHERE expires_at > ?1 AND expires_at <= ?2 "
          "AND status = 'pending' ORDER BY expires_at LIMIT ?3");
      s.BindAll(Ms(since), Ms(now), limit);
      std::vector<std::string> ids;
      while (s.Step()) ids.push_back(s.Text(0));
      return ids;
    });
    if (!due.ok()) return due.status();
    if (due->empty()) return 0;
    return WriteResult<int>([&](Db& db) -> Result<int> {
      int expired = 0;
      for (const std::string& id : *due) {
        Stmt s = db.Prepare(
            "UPDATE verifications SET status = 'expired', updated_at = ?1 "
            "WHERE id = ?2 AND status = 'pending' AND expires_at <= ?1 RETURNING app_id");
        s.BindAll(Ms(now), id);
        if (!s.Step()) continue;
        const std::string app_id = s.Text(0);
        Drain(s);
        LeavePending(db, id, now);
        ExpiredOnTheWay(db, app_id, id, now);
        ++expired;
      }
      return expired;
    });
  }

  Status AppendAudit(const AuditEntry& entry) override {
    return Write([&](Db& db) -> Status {
      InsertAudit(db, entry);
      return Status::Ok();
    });
  }

  Result<std::vector<AuditEntry>> ListAudit(std::string_view app_id, int limit) override {
    using R = std::vector<AuditEntry>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare(
          "SELECT id, at, app_id, actor, action, subject, result, detail FROM ("
          "  SELECT * FROM audit WHERE (?1 = '' OR app_id = ?1) ORDER BY id DESC LIMIT ?2"
          ") ORDER BY id");
      s.BindAll(app_id, limit);
      R out;
      while (s.Step()) {
        out.push_back(AuditEntry{s.Int(0), At(s.Int(1)), s.Text(2), s.Text(3), s.Text(4), s.Text(5),
                                 s.Text(6), s.Text(7)});
      }
      return out;
    });
  }

  Status ImportHardwareTokens(const std::vector<HardwareToken>& tokens) override {
    return Write([&](Db& db) -> Status {
      for (const HardwareToken& t : tokens) {
        Stmt s = db.Prepare(
            "INSERT INTO hardware_tokens (serial, type, secret_sealed, algorithm, digits, "
            "period, counter, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (serial) DO NOTHING RETURNING serial");
        s.BindAll(t.serial, t.type, t.secret_sealed, t.algorithm, t.digits, t.period, t.counter,
                  Ms(t.imported_at));
        const bool inserted = s.Step();
        Drain(s);
        // A failed write is rolled back whole (the writer's savepoint): all or nothing.
        if (!inserted) return otp::AlreadyExists("hardware token " + t.serial + " exists already");
      }
      return Status::Ok();
    });
  }

  Result<std::vector<HardwareToken>> ListHardwareTokens(bool unassigned_only) override {
    using R = std::vector<HardwareToken>;
    return Read<R>([&](Db& db) -> Result<R> {
      Stmt s = db.Prepare(std::string("SELECT ") + kTokenColumns +
                          " FROM hardware_tokens WHERE NOT ?1 OR "
                          "(factor_id = '' AND revoked_at IS NULL) ORDER BY serial");
      s.Bind(1, unassigned_only);
      R out;
      while (s.Step()) out.push_back(ReadToken(s));
      return out;
    });
  }

  Status RevokeHardwareToken(std::string_view serial, TimePoint now) override {
    return Write([&](Db& db) -> Status {
      Stmt s = db.Prepare("SELECT factor_id FROM hardware_tokens WHERE serial = ?");
      s.Bind(1, serial);
      if (!s.Step()) return otp::NotFound("no hardware token " + std::string(serial));
      const std::string factor_id = s.Text(0);
      Drain(s);
      if (!factor_id.empty()) {
        Stmt f = db.Prepare(std::string("SELECT ") + kFactorColumns + " FROM factors WHERE id = ?");
        f.Bind(1, factor_id);
        if (f.Step()) {
          const Factor bound = ReadFactor(f);
          Drain(f);
          RemoveFactor(db, bound, now, "otpctl");
        }
      }
      db.Prepare("UPDATE hardware_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE serial = ?")
          .BindAll(Ms(now), serial)
          .Exec();
      return Status::Ok();
    });
  }

 private:
  // RecordFactorAttempt's reads and conditional updates, in the writer's transaction.
  class AttemptOps final : public FactorAttemptOps {
   public:
    AttemptOps(Db& db, const FactorAttempt& attempt) : db_(db), a_(attempt) {}

    ThrottleState LoadThrottle() override {
      return SqliteStore::LoadThrottle(db_, a_.app_id, a_.user_id);
    }

    void SaveThrottle(const ThrottleState& state) override {
      Stmt s = db_.Prepare(
          "INSERT INTO user_throttles (app_id, user_id, failures, blocked_until, locked) "
          "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (app_id, user_id) DO UPDATE SET "
          "failures = ?3, blocked_until = ?4, locked = ?5");
      s.BindAll(a_.app_id, a_.user_id, state.failures);
      if (state.blocked_until) {
        s.Bind(4, Ms(*state.blocked_until));
      } else {
        s.BindNull(4);
      }
      s.Bind(5, state.locked);
      s.Exec();
    }

    FactorTry TryFactor(const FactorCandidate& c, TimePoint now) override {
      FactorTry out;
      const std::int64_t first = c.first.value_or(c.matched);
      const char* status = c.activate ? kFactorUnverified : kFactorActive;
      // No RETURNING (SQLite builds an ephemeral table for it): the factor is
      // read back by key, whole only for an activation (its event carries it).
      Stmt s = db_.Prepare(
          "UPDATE factors SET "
          "last_step = CASE WHEN type = 'totp' THEN ?1 ELSE last_step END, "
          "counter = CASE WHEN type = 'hotp' THEN ?1 + 1 ELSE counter END, "
          "drift = COALESCE(?8, drift), "
          "status = 'active', activated_at = COALESCE(activated_at, ?2) "
          "WHERE id = ?3 AND app_id = ?4 AND user_id = ?5 AND status = ?6 "
          "AND ((type = 'totp' AND last_step < ?7) OR "
          "     (type = 'hotp' AND counter <= ?7))");
      s.BindAll(c.matched, Ms(now), c.factor_id, a_.app_id, a_.user_id, status, first);
      if (c.drift) {
        s.Bind(8, *c.drift);
      } else {
        s.BindNull(8);
      }
      if (s.Exec() == 1) {
        out.applied = true;
        if (c.activate) {
          Result<Factor> f = FindFactor(db_, a_.app_id, a_.user_id, c.factor_id);
          if (!f.ok()) throw SqliteError("an updated factor vanished", SQLITE_INTERNAL);
          out.factor = std::move(f).value();
        } else {
          Stmt t = db_.Prepare("SELECT type, status FROM factors WHERE id = ?");
          t.Bind(1, c.factor_id);
          if (!t.Step()) throw SqliteError("an updated factor vanished", SQLITE_INTERNAL);
          out.factor.id = c.factor_id;
          out.factor.type = t.Text(0);
          out.factor.status = t.Text(1);
          Drain(t);
        }
        return out;
      }
      Result<Factor> f = FindFactor(db_, a_.app_id, a_.user_id, c.factor_id);
      if (f.ok() && f->status == status) {
        out.replay = true;
        out.factor = *f;
      }
      return out;
    }

    std::optional<int> TryRecoveryCode(const std::string& code_hash, TimePoint now) override {
      const int n = db_.Prepare(
                           "UPDATE recovery_codes SET used_at = ? WHERE app_id = ? AND user_id = ? "
                           "AND code_hash = ? AND used_at IS NULL")
                        .BindAll(Ms(now), a_.app_id, a_.user_id, code_hash)
                        .Exec();
      if (n != 1) return std::nullopt;
      Stmt s = db_.Prepare(
          "SELECT COUNT(*) FROM recovery_codes WHERE app_id = ? AND user_id = ? "
          "AND used_at IS NULL");
      s.BindAll(a_.app_id, a_.user_id);
      s.Step();
      const int remaining = static_cast<int>(s.Int(0));
      Drain(s);
      return remaining;
    }

    void AddEvent(const std::string& type, const std::string& data) override {
      InsertEvent(db_, a_.app_id, type, data, a_.now);
    }
    void AddAudit(const AuditEntry& entry) override { InsertAudit(db_, entry); }

   private:
    Db& db_;
    const FactorAttempt& a_;
  };

  static Result<Factor> FindFactor(Db& db, std::string_view app_id, std::string_view user_id,
                                   std::string_view factor_id) {
    Stmt s = db.Prepare(std::string("SELECT ") + kFactorColumns +
                        " FROM factors WHERE id = ? AND app_id = ? AND user_id = ?");
    s.BindAll(factor_id, app_id, user_id);
    if (!s.Step()) return otp::NotFound("no such factor");
    Factor f = ReadFactor(s);
    Drain(s);
    return f;
  }

  static ThrottleState LoadThrottle(Db& db, std::string_view app_id, std::string_view user_id) {
    Stmt s = db.Prepare(
        "SELECT failures, blocked_until, locked FROM user_throttles "
        "WHERE app_id = ? AND user_id = ?");
    s.BindAll(app_id, user_id);
    ThrottleState t;
    if (s.Step()) {
      t.failures = static_cast<int>(s.Int(0));
      if (!s.IsNull(1)) t.blocked_until = At(s.Int(1));
      t.locked = s.Int(2) != 0;
    }
    Drain(s);
    return t;
  }

  static void InsertFactor(Db& db, const Factor& f) {
    Stmt s = db.Prepare(
        "INSERT INTO factors (id, app_id, user_id, type, status, secret_sealed, algorithm, "
        "digits, period, counter, last_step, drift, label, issuer, serial, created_at, "
        "activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.BindAll(f.id, f.app_id, f.user_id, f.type, f.status, f.secret_sealed, f.algorithm, f.digits,
              f.period, f.counter, f.last_step, f.drift, f.label, f.issuer, f.serial,
              Ms(f.created_at));
    if (f.activated_at) {
      s.Bind(17, Ms(*f.activated_at));
    } else {
      s.BindNull(17);
    }
    s.Exec();
  }

  // Deletes a factor, frees its hardware token (keeping the counter) and
  // writes factor.deleted.
  static void RemoveFactor(Db& db, const Factor& f, TimePoint now, std::string_view actor) {
    db.Prepare("DELETE FROM factors WHERE id = ?").Bind(1, f.id).Exec();
    if (!f.serial.empty()) {
      db.Prepare(
            "UPDATE hardware_tokens SET app_id = '', user_id = '', factor_id = '', counter = ? "
            "WHERE serial = ? AND factor_id = ?")
          .BindAll(f.counter, f.serial, f.id)
          .Exec();
    }
    InsertEvent(db, f.app_id, "factor.deleted", FactorEventJson(f), now);
    InsertAudit(db, ChangeAudit(f.app_id, actor, "factor.delete", f.id, "user:" + f.user_id, now));
  }

  // An event is pending (for the webhook sender) when its app has an enabled
  // webhook_url, else skipped from the start.
  static void InsertEvent(Db& db, std::string_view app_id, std::string_view type,
                          const std::string& data, TimePoint at) {
    db.Prepare(
          "INSERT INTO events (app_id, type, data, created_at, state, next_attempt_at) "
          "SELECT ?1, ?2, ?3, ?4, CASE WHEN COALESCE(json_extract(a.settings, '$.webhook_url'), "
          "'') <> '' AND a.webhook_disabled_at IS NULL THEN 'pending' ELSE 'skipped' END, ?4 "
          "FROM (SELECT 1) LEFT JOIN apps a ON a.id = ?1")
        .BindAll(app_id, type, data, Ms(at))
        .Exec();
  }

  // A verification.* or delivery.updated event: the verification as it is now
  // in this transaction, recipients masked.
  static void InsertVerificationEvent(Db& db, std::string_view id, const std::string& type,
                                      TimePoint at) {
    Stmt s = db.Prepare(std::string("SELECT ") + kVerificationColumns +
                        " FROM verifications WHERE id = ?");
    s.Bind(1, id);
    if (!s.Step()) return;
    Verification v = ReadVerification(s);
    Drain(s);
    LoadDeliveries(db, &v);
    InsertEvent(db, v.app_id, type, VerificationEventJson(v), at);
  }

  // A refused decision on a verification (check, resend, cancel), audited with
  // its recipient when there is one.
  static void AuditRefusal(Db& db, std::string_view app_id, std::string_view id, const char* action,
                           const std::string& why, TimePoint now) {
    std::string recipient;
    {
      Stmt s = db.Prepare("SELECT recipient FROM verifications WHERE id = ? AND app_id = ?");
      s.BindAll(id, app_id);
      if (s.Step()) recipient = s.Text(0);
      Drain(s);
    }
    InsertAudit(db,
                VerificationAudit(app_id, "api", action, id, "refused: " + why, recipient, now));
  }

  // A pending verification found overdue on the way of another change.
  static void ExpiredOnTheWay(Db& db, std::string_view app_id, std::string_view id, TimePoint now) {
    std::string recipient;
    {
      Stmt s = db.Prepare("SELECT recipient FROM verifications WHERE id = ?");
      s.Bind(1, id);
      if (s.Step()) recipient = s.Text(0);
      Drain(s);
    }
    InsertAudit(
        db, VerificationAudit(app_id, "otpd", "verification.expire", id, kExpired, recipient, now));
    InsertVerificationEvent(db, id, "verification.expired", now);
  }

  static void InsertAudit(Db& db, const AuditEntry& e) {
    db.Prepare(
          "INSERT INTO audit (at, app_id, actor, action, subject, result, detail) "
          "VALUES (?, ?, ?, ?, ?, ?, ?)")
        .BindAllBorrowed(Ms(e.at), e.app_id, e.actor, e.action, e.subject, e.result, e.detail)
        .Exec();
  }

  struct WriteOp {
    std::function<Status(Db&)> fn;
    std::function<void(const Status&)> done;  // called on the writer thread after the commit
    // `fn` may run again after its changes were rolled back, with the same
    // outcome: it reads and changes only the database, and overwrites (never
    // appends to or moves from) what it captured. The batch then runs a row of
    // such ops under one savepoint instead of one each (see RunBatch).
    bool rerunnable = false;
  };

  // A read transaction, so that multi-statement reads see one snapshot.
  class ReadTxn {
   public:
    explicit ReadTxn(Db& db) : db_(db) { db_.Run("BEGIN"); }
    ~ReadTxn() {
      try {
        db_.Run("COMMIT");
      } catch (const SqliteError&) {
      }
    }
    ReadTxn(const ReadTxn&) = delete;
    ReadTxn& operator=(const ReadTxn&) = delete;

   private:
    Db& db_;
  };

  // One check (Store::RecordCheck) inside the writer's transaction: a SELECT by
  // key reads the verification (and its rowid), the hash is compared in
  // constant time here, and an UPDATE by rowid spends the check and moves the
  // status. Atomic because the writer's batch is one BEGIN IMMEDIATE
  // transaction (no other writer, in this process or another, runs between
  // the two statements), and one key lookup cheaper than an UPDATE by id
  // followed by a SELECT of the outcome. (Not UPDATE ... RETURNING: SQLite
  // builds an ephemeral table for RETURNING, which costs more than the update
  // itself.) A refusal or a verification leaving pending costs more.
  static Result<Transition> CheckTx(Db& db, std::string_view app_id, std::string_view id,
                                    std::string_view code_hash, TimePoint now) {
    Stmt s = db.Prepare(
        "SELECT rowid, status, check_count, send_count, max_checks, channel, recipient, "
        "code_hash, expires_at FROM verifications WHERE id = ?1 AND app_id = ?2");
    s.BindAllBorrowed(id, app_id);
    if (!s.Step() || s.View(1) != kPending || s.Int(8) <= Ms(now)) {
      Drain(s);
      Result<Transition> r = Refused(db, app_id, id, now);
      if (r.ok()) AuditRefusal(db, app_id, id, "verification.check", r->status, now);
      return r;
    }
    const std::int64_t rowid = s.Int(0);
    Transition t{true,
                 Transition::Refusal::kNone,
                 kPending,
                 static_cast<int>(s.Int(2)) + 1,
                 static_cast<int>(s.Int(3)),
                 {}};
    t.max_checks = static_cast<int>(s.Int(4));
    t.channel = s.Text(5);
    const std::string recipient = s.Text(6);
    t.correct = otp::ConstantTimeEqual(s.View(7), code_hash);
    Drain(s);
    if (t.correct) {
      t.status = kApproved;
    } else if (t.check_count >= t.max_checks) {
      t.status = kMaxChecksReached;
    }
    db.Prepare(
          "UPDATE verifications SET check_count = ?1, status = ?2, updated_at = ?3 "
          "WHERE rowid = ?4")
        .BindAllBorrowed(t.check_count, t.status, Ms(now), rowid)
        .Exec();
    // Every check is audited (one INSERT, a cached statement); an event only
    // when the verification leaves pending.
    InsertAudit(db, VerificationAudit(app_id, "api", "verification.check", id, CheckResult(t),
                                      recipient, now));
    if (t.status != kPending) {
      LeavePending(db, id, now);
      InsertVerificationEvent(db, id, "verification." + t.status, now);
      if (t.status == kApproved) CountApproval(db, id, now);
    }
    return t;
  }

  // An approval counts in the pumping-guard buckets the verification's start
  // counted in (only on approval: a wrong code writes nothing more).
  static void CountApproval(Db& db, std::string_view id, TimePoint now) {
    Stmt s =
        db.Prepare("SELECT app_id, guard_prefix, guard_region FROM verifications WHERE id = ?");
    s.Bind(1, id);
    if (!s.Step()) return;
    const std::string app_id = s.Text(0), prefix = s.Text(1), region = s.Text(2);
    Drain(s);
    CountFraud(db, app_id, kFraudScopePrefix, prefix, MinuteOf(now), 0, 1);
    CountFraud(db, app_id, kFraudScopeRegion, region, MinuteOf(now), 0, 1);
  }

  // Adds to one pumping-guard bucket ("" key: nothing).
  static void CountFraud(Db& db, std::string_view app_id, std::string_view scope,
                         std::string_view key, std::int64_t minute, int starts, int approvals) {
    if (key.empty()) return;
    db.Prepare(
          "INSERT INTO fraud_counters (app_id, scope, key, minute, starts, approvals) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (app_id, scope, key, minute) DO UPDATE "
          "SET starts = starts + ?5, approvals = approvals + ?6")
        .BindAll(app_id, scope, key, minute, starts, approvals)
        .Exec();
  }

  // nullopt when fewer than `max` starts of the app have `column` = `value`
  // from `since` on; else the creation time of the start whose leaving the
  // window makes room. `column` is "recipient" or "ip".
  static std::optional<TimePoint> WindowFull(Db& db, const char* column, std::string_view app_id,
                                             std::string_view value, TimePoint since, int max) {
    // "<> ''" lets SQLite use the partial index verifications_by_ip.
    const std::string where = std::string(" FROM verifications WHERE app_id = ?1 AND ") + column +
                              " = ?2 AND " + column + " <> '' AND created_at >= ?3";
    Stmt count = db.Prepare("SELECT COUNT(*)" + where);
    count.BindAll(app_id, value, Ms(since));
    count.Step();
    const std::int64_t n = count.Int(0);
    Drain(count);
    if (n < max) return std::nullopt;
    // Room comes when the (n - max + 1)-th oldest start leaves the window.
    Stmt oldest =
        db.Prepare("SELECT created_at" + where + " ORDER BY created_at LIMIT 1 OFFSET ?4");
    oldest.BindAll(app_id, value, Ms(since), n - max);
    oldest.Step();
    const TimePoint leaves = At(oldest.Int(0));
    Drain(oldest);
    return leaves;
  }

  static std::int64_t InsertDelivery(Db& db, std::string_view verification_id, const Delivery& d) {
    db.Prepare(
          "INSERT INTO deliveries (verification_id, step, channel, recipient, provider, status, "
          "provider_message_id, error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
          "?)")
        .BindAll(verification_id, d.step, d.channel, d.to, d.provider, d.status,
                 d.provider_message_id, d.error, Ms(d.created_at), Ms(d.updated_at))
        .Exec();
    return db.LastInsertId();
  }

  static void InsertJob(Db& db, const Job& j) {
    db.Prepare(
          "INSERT INTO jobs (verification_id, delivery_id, step, advance, due_at) "
          "VALUES (?, ?, ?, ?, ?)")
        .BindAll(j.verification_id, j.delivery_id, j.step, j.advance, Ms(j.due_at))
        .Exec();
  }

  // The rules of Store::ApplyDeliveryReports for delivery `id`.
  static ReportOutcome ApplyReport(Db& db, std::int64_t id, const DeliveryReport& r,
                                   TimePoint now) {
    ReportOutcome out;
    out.matched = true;
    Stmt d = db.Prepare(
        "SELECT d.verification_id, d.channel, d.updated_at, d.step, v.status, "
        "json_array_length(v.workflow) "
        "FROM deliveries d JOIN verifications v ON v.id = d.verification_id WHERE d.id = ?");
    d.Bind(1, id);
    if (!d.Step()) return out;
    out.verification_id = d.Text(0);
    out.channel = d.Text(1);
    out.sent_at = At(d.Int(2));
    const std::int64_t step = d.Int(3);
    const bool pending = d.Text(4) == kPending;
    const bool last = step + 1 >= d.Int(5);
    while (d.Step()) {
    }
    out.applied = db.Prepare(
                        "UPDATE deliveries SET status = ?, updated_at = ? "
                        "WHERE id = ? AND status = 'sent'")
                      .BindAll(r.status, Ms(now), id)
                      .Exec() == 1;
    if (out.applied) InsertVerificationEvent(db, out.verification_id, "delivery.updated", now);
    if (!out.applied || r.status == kDeliveryDelivered || !pending) return out;
    out.next_step_fired =
        db.Prepare(
              "UPDATE jobs SET due_at = ?1 WHERE verification_id = ?2 AND step = ?3 "
              "AND advance = 1 AND due_at > ?1")
            .BindAll(Ms(now), out.verification_id, step + 1)
            .Exec() > 0;
    if (last) {
      const int n = db.Prepare(
                          "UPDATE verifications SET status = 'undeliverable', updated_at = ?1 "
                          "WHERE id = ?2 AND status = 'pending' AND NOT EXISTS ("
                          "  SELECT 1 FROM deliveries WHERE verification_id = ?2 "
                          "  AND status IN ('sent', 'delivered', 'queued'))")
                        .BindAll(Ms(now), out.verification_id)
                        .Exec();
      if (n == 1) {
        LeavePending(db, out.verification_id, now);
        InsertVerificationEvent(db, out.verification_id, "verification.undeliverable", now);
        out.undeliverable = true;
      }
    }
    return out;
  }

  // A verification has just left pending: nothing more is sent and the sealed
  // code is wiped; only the keyed hash remains.
  static void LeavePending(Db& db, std::string_view id, TimePoint now) {
    db.Prepare("DELETE FROM jobs WHERE verification_id = ?").Bind(1, id).Exec();
    db.Prepare(
          "UPDATE deliveries SET status = 'canceled', updated_at = ? "
          "WHERE verification_id = ? AND status = 'queued'")
        .BindAll(Ms(now), id)
        .Exec();
    db.Prepare("UPDATE verifications SET code_sealed = NULL WHERE id = ?").Bind(1, id).Exec();
  }

  // Why a conditional change did not apply: NotFound, or the current status
  // (expiring an overdue pending verification on the way).
  static Result<Transition> Refused(Db& db, std::string_view app_id, std::string_view id,
                                    TimePoint now) {
    Stmt s = db.Prepare(
        "SELECT status, check_count, send_count, expires_at, last_sent_at, max_checks "
        "FROM verifications WHERE id = ? AND app_id = ?");
    s.BindAll(id, app_id);
    if (!s.Step()) return otp::NotFound("no such verification");
    Transition t{false,
                 Transition::Refusal::kNotPending,
                 s.Text(0),
                 static_cast<int>(s.Int(1)),
                 static_cast<int>(s.Int(2)),
                 At(s.Int(4))};
    t.max_checks = static_cast<int>(s.Int(5));
    const bool overdue = t.status == kPending && s.Int(3) <= Ms(now);
    while (s.Step()) {
    }
    if (overdue) {
      db.Prepare("UPDATE verifications SET status = 'expired', updated_at = ? WHERE id = ?")
          .BindAll(Ms(now), id)
          .Exec();
      LeavePending(db, id, now);
      t.status = kExpired;
      ExpiredOnTheWay(db, app_id, id, now);
    }
    if (t.status == kPending) t.refusal = Transition::Refusal::kNone;
    return t;
  }

  // A conditional move out of pending (cancel, expiry), with its event and
  // audit row; a cancel that does not apply is audited as refused.
  Result<Transition> SetStatusIf(std::string_view app_id, std::string_view id, TimePoint now,
                                 const char* status, const char* condition, const char* actor,
                                 const char* action) {
    return WriteResult<Transition>([&](Db& db) -> Result<Transition> {
      Stmt s = db.Prepare(std::string("UPDATE verifications SET status = ?1, updated_at = ?2 "
                                      "WHERE id = ?3 AND app_id = ?4 AND status = 'pending' AND ") +
                          condition + " RETURNING status, check_count, send_count, recipient");
      s.BindAll(status, Ms(now), id, app_id);
      if (s.Step()) {
        const std::string recipient = s.Text(3);
        Transition t = AppliedFromRow(s);
        LeavePending(db, id, now);
        InsertAudit(db, VerificationAudit(app_id, actor, action, id, status, recipient, now));
        InsertVerificationEvent(db, id, std::string("verification.") + status, now);
        return t;
      }
      Result<Transition> r = Refused(db, app_id, id, now);
      if (r.ok() && r->refusal != Transition::Refusal::kNone && std::string_view(actor) == "api") {
        AuditRefusal(db, app_id, id, action, r->status, now);
      }
      return r;
    });
  }

  // Runs `fn` on the writer thread inside the current batch's transaction and
  // returns once the batch is committed.
  Status Write(std::function<Status(Db&)> fn) {
    std::promise<Status> done;
    std::future<Status> answer = done.get_future();
    WriteAsync(std::move(fn), [&done](const Status& s) { done.set_value(s); });
    return answer.get();
  }

  // Queues `fn` for the writer and returns at once; `done` runs on the writer
  // thread once the batch is committed (or failed), so it must be quick.
  void WriteAsync(std::function<Status(Db&)> fn, std::function<void(const Status&)> done,
                  bool rerunnable = false) {
    auto op = std::make_shared<WriteOp>();
    op->fn = std::move(fn);
    op->done = std::move(done);
    op->rerunnable = rerunnable;
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(op));
    }
    cv_.notify_one();
  }

  // A refused change writes nothing of its own, but may have expired the
  // verification on the way: keep that (commit), answering the refusal.
  template <typename T>
  static Status KeepRefusals(const Result<T>& r) {
    return r.ok() ? Status::Ok() : r.status();
  }

  template <typename T>
  Result<T> WriteResult(std::function<Result<T>(Db&)> fn) {
    std::optional<Result<T>> out;
    Status s = Write([&](Db& db) -> Status {
      out.emplace(fn(db));
      return KeepRefusals(*out);
    });
    if (!s.ok()) return s;
    return std::move(*out);
  }

  void WriterLoop() {
    constexpr std::size_t kMaxBatch = 256;
    for (;;) {
      std::vector<std::shared_ptr<WriteOp>> batch;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and everything was written
        while (!queue_.empty() && batch.size() < kMaxBatch) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      if (tail_due_.load(std::memory_order_acquire)) FinishCheckpoint();
      RunBatch(batch);
    }
  }

  // After each commit on the writer connection: wakes the checkpointer once
  // the WAL holds enough pages, unless a checkpoint is already under way.
  static int OnWalCommit(void* self, sqlite3*, const char*, int wal_pages) {
    auto* store = static_cast<SqliteStore*>(self);
    if (wal_pages >= store->checkpoint_pages_) {
      {
        std::lock_guard lock(store->checkpoint_mu_);
        if (store->checkpoint_busy_) return SQLITE_OK;
        store->checkpoint_busy_ = true;
        store->checkpoint_due_ = true;
      }
      store->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
  }

  // Answers committed batches once an fdatasync of the WAL that started after
  // their commit has returned (one fsync covers every batch committed before it).
  // kSyncers threads run this: a batch committed while one fsync is under way
  // starts the next at once instead of waiting for it to return (about half an
  // fsync of latency saved per request; each answer still waits for a sync
  // that began after its commit).
  void SyncLoop() {
    WalFile wal(path_ + "-wal");
    for (;;) {
      std::vector<Committed> ready;
      {
        std::unique_lock lock(sync_mu_);
        sync_cv_.wait(lock, [&] { return sync_stopping_ || !committed_.empty(); });
        if (committed_.empty()) return;  // stopping, and everything was answered
        ready.swap(committed_);
      }
      const Status synced = SyncWal(wal);
      for (Committed& c : ready) {
        for (std::size_t i = 0; i < c.ops.size(); ++i) {
          c.ops[i]->done(synced.ok() ? c.results[i] : synced);
        }
      }
    }
  }

  // A syncer thread's own descriptor of the WAL file at `path`.
  struct WalFile {
    const std::string path;
    int fd = -1;
    std::uint64_t ino = 0;
    explicit WalFile(std::string wal_path) : path(std::move(wal_path)) {}
    WalFile(const WalFile&) = delete;
    WalFile& operator=(const WalFile&) = delete;
    ~WalFile() {
      if (fd >= 0) ::close(fd);
    }
  };

  // fdatasync of the WAL file, through `wal` (reopened if the file was replaced).
  //
  // The replacement check asks for the inode number only. With a stat(2) or
  // fstat(2) between two syncs, every fdatasync also wrote the inode, one
  // more device round trip (Linux 6.18, ext4: 160-207 against 231-288 us for
  // an 80 KiB write and its fdatasync; docs/benchmarks.md). Most likely the
  // kernel's fine-grained timestamps: a stat that returns the times marks
  // the ctime as seen, and the next write must then change it.
  Status SyncWal(WalFile& file) {
    const std::string& wal = file.path;
    struct statx now {};
    if (::statx(AT_FDCWD, wal.c_str(), 0, STATX_INO, &now) != 0) {
      return otp::Unavailable("cannot stat " + wal + ": " + std::strerror(errno));
    }
    if (file.fd < 0 || now.stx_ino != file.ino) {
      if (file.fd >= 0) ::close(file.fd);
      file.fd = ::open(wal.c_str(), O_RDWR | O_CLOEXEC);
      if (file.fd < 0) return otp::Unavailable("cannot open " + wal + ": " + std::strerror(errno));
      file.ino = now.stx_ino;
    }
    if (::fdatasync(file.fd) != 0) {
      return otp::Unavailable("fdatasync " + wal + ": " + std::strerror(errno));
    }
    return Status::Ok();
  }

  // A checkpoint in two parts, so that the WAL starts over from its beginning.
  //
  // SQLite rewinds the WAL only when the writer begins a transaction with
  // every frame already copied into the database file. A checkpoint on
  // another thread copies the frames committed before it began, while the
  // writer appends more, so under steady load that moment seldom came: the
  // WAL stayed past the threshold, every commit woke the checkpointer again,
  // and each of those small checkpoints copied the pages of a batch or two
  // with fsyncs of its own: 0.2-0.7 page copied per wrong-code check, and up
  // to 180 of the checkpointer's fdatasyncs a second, against about 0.1 page
  // and a few fdatasyncs a second since (docs/benchmarks.md).
  //
  // So this thread copies the bulk, in passes while each leaves fewer frames
  // behind, and then hands the rest (at most kTailFrames) to the writer,
  // which copies it between two batches (FinishCheckpoint): nothing is
  // appended meanwhile, the copy completes, and the writer's next transaction
  // rewinds the WAL. The writer pauses for a few milliseconds once per
  // checkpoint instead of never; no commit waits for the bulk.
  void CheckpointLoop() {
    constexpr int kMaxPasses = 8;
    std::unique_ptr<Db> db;
    for (;;) {
      {
        std::unique_lock lock(checkpoint_mu_);
        checkpoint_cv_.wait(lock, [&] { return checkpoint_stopping_ || checkpoint_due_; });
        if (checkpoint_stopping_) return;
        checkpoint_due_ = false;
      }
      bool hand_over = false;
      try {
        if (!db) {
          db = std::make_unique<Db>(path_, false, OtpdVfsName());
          // A connection opens the WAL with its first read: until then it takes
          // the database for a rollback-journal one, and a checkpoint through
          // it does nothing at all (and reports pnLog = -1). So read first.
          db->Exec("SELECT 1 FROM sqlite_master LIMIT 1;");
        }
        // A pass copies the frames committed before it began, and reports
        // their number: the frames the next pass copies are those appended
        // during this one.
        int before = -1;
        for (int pass = 0; pass < kMaxPasses; ++pass) {
          int wal_frames = -1, copied = -1;
          const int rc = sqlite3_wal_checkpoint_v2(db->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                                   &wal_frames, &copied);
          if ((rc != SQLITE_OK && rc != SQLITE_BUSY) || wal_frames < 0) {
            db.reset();  // reopen next time
            break;
          }
          // BUSY: another connection (otpctl) is checkpointing; a reader that
          // holds an old snapshot stops the copy short. Start over later.
          if (rc != SQLITE_OK || copied < wal_frames) break;
          if (before >= 0 && wal_frames - before <= kTailFrames) {
            hand_over = true;  // a short pass: the writer's part is as short
            break;
          }
          before = wal_frames;
        }
      } catch (const SqliteError&) {
        db.reset();
      }
      if (hand_over) {
        tail_due_.store(true, std::memory_order_release);
      } else {
        // The next commit past the threshold starts a new checkpoint.
        std::lock_guard lock(checkpoint_mu_);
        checkpoint_busy_ = false;
      }
    }
  }

  // The writer's part of a checkpoint (see CheckpointLoop), between batches:
  // copies the frames the checkpointer left, so that the next transaction
  // rewinds the WAL. A failure changes nothing but the WAL's length: the next
  // commit past the threshold starts a new checkpoint.
  void FinishCheckpoint() {
    tail_due_.store(false, std::memory_order_relaxed);
    sqlite3_wal_checkpoint_v2(writer_db_.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                              nullptr);
    std::lock_guard lock(checkpoint_mu_);
    checkpoint_busy_ = false;
  }

  void RunBatch(std::vector<std::shared_ptr<WriteOp>>& batch) {
    std::vector<Status> results(batch.size());
    try {
      writer_db_.Run("BEGIN IMMEDIATE");
    } catch (const SqliteError& e) {
      for (auto& op : batch) op->done(FromException(e));
      return;
    }
    for (std::size_t i = 0; i < batch.size();) {
      std::size_t end = i + 1;
      if (batch[i]->rerunnable) {
        while (end < batch.size() && batch[end]->rerunnable) ++end;
      }
      if (end - i == 1 || !RunGroup(batch, i, end, results)) {
        for (std::size_t k = i; k < end; ++k) results[k] = RunOne(*batch[k]);
      }
      i = end;
    }
    try {
      writer_db_.Run("COMMIT");
    } catch (const SqliteError& e) {
      try {
        writer_db_.Run("ROLLBACK");
      } catch (const SqliteError&) {
      }
      for (auto& op : batch) op->done(otp::Unavailable(e.what()));
      return;
    }
    {
      std::lock_guard lock(sync_mu_);
      committed_.push_back(Committed{std::move(batch), std::move(results)});
    }
    sync_cv_.notify_one();
  }

  // One op under its own savepoint: a failed op leaves nothing behind, and
  // the rest of the batch still commits.
  Status RunOne(WriteOp& op) {
    Status result;
    try {
      writer_db_.Run("SAVEPOINT op");
      result = RunFn(op);
      if (!result.ok()) writer_db_.Run("ROLLBACK TO op");
      writer_db_.Run("RELEASE op");
    } catch (const SqliteError& e) {
      result = FromException(e);
    }
    return result;
  }

  Status RunFn(WriteOp& op) {
    try {
      return op.fn(writer_db_);
    } catch (const SqliteError& e) {
      return FromException(e);
    } catch (const std::exception& e) {
      return otp::Internal(e.what());
    }
  }

  // Rerunnable ops [begin, end) under one savepoint, which saves a savepoint
  // per op and, above all, SQLite's copy of every page each op changes (a
  // check's verification, audit and audit-index pages: about 12 KiB copied per
  // op). True when `results` are final; false, with nothing of theirs left,
  // if one failed: the caller then runs them again one savepoint each, so the
  // others still commit.
  bool RunGroup(std::vector<std::shared_ptr<WriteOp>>& batch, std::size_t begin, std::size_t end,
                std::vector<Status>& results) {
    try {
      writer_db_.Run("SAVEPOINT ops");
    } catch (const SqliteError&) {
      return false;  // nothing ran
    }
    bool ok = true;
    for (std::size_t k = begin; k < end && ok; ++k) {
      results[k] = RunFn(*batch[k]);
      ok = results[k].ok();
    }
    try {
      if (!ok) writer_db_.Run("ROLLBACK TO ops");
      writer_db_.Run("RELEASE ops");
    } catch (const SqliteError& e) {
      // What stayed is unknown: running them again could apply one twice.
      for (std::size_t k = begin; k < end; ++k) results[k] = FromException(e);
      return true;
    }
    return ok;
  }

  // Runs `fn` on a pooled read connection.
  template <typename T, typename F>
  Result<T> Read(F&& fn) {
    std::unique_ptr<Db> db;
    {
      std::lock_guard lock(readers_mu_);
      if (!readers_.empty()) {
        db = std::move(readers_.back());
        readers_.pop_back();
      }
    }
    try {
      if (!db) {
        db = std::make_unique<Db>(path_, false);
        db->Exec("PRAGMA query_only=ON;");
      }
      Result<T> r = fn(*db);
      std::lock_guard lock(readers_mu_);
      readers_.push_back(std::move(db));
      return r;
    } catch (const SqliteError& e) {
      return FromException(e);  // the connection is dropped, a fresh one comes next time
    }
  }

  static void LoadDeliveries(Db& db, Verification* v) {
    Stmt s = db.Prepare(
        "SELECT id, step, channel, recipient, provider, status, provider_message_id, error, "
        "created_at, updated_at FROM deliveries WHERE verification_id = ? ORDER BY id");
    s.Bind(1, v->id);
    while (s.Step()) {
      Delivery d;
      d.id = s.Int(0);
      d.step = static_cast<int>(s.Int(1));
      d.channel = s.Text(2);
      d.to = s.Text(3);
      d.provider = s.Text(4);
      d.status = s.Text(5);
      d.provider_message_id = s.Text(6);
      d.error = s.Text(7);
      d.created_at = At(s.Int(8));
      d.updated_at = At(s.Int(9));
      v->deliveries.push_back(std::move(d));
    }
  }

  const std::string path_;
  Db writer_db_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<WriteOp>> queue_;
  bool stopping_ = false;
  std::thread writer_;

  struct Committed {
    std::vector<std::shared_ptr<WriteOp>> ops;
    std::vector<Status> results;
  };
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  std::vector<Committed> committed_;  // committed, waiting for the WAL fsync
  bool sync_stopping_ = false;
  static constexpr int kSyncers = 2;
  std::vector<std::thread> syncers_;

  // WAL pages that start a checkpoint (see OnWalCommit), and the frames the
  // checkpointer leaves to the writer (see CheckpointLoop).
  const int checkpoint_pages_;
  static constexpr int kTailFrames = 256;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_due_ = false;   // the checkpointer has a checkpoint to start
  bool checkpoint_busy_ = false;  // a checkpoint is under way, bulk or tail
  bool checkpoint_stopping_ = false;
  std::atomic<bool> tail_due_{false};  // the writer copies the rest before its next batch
  std::thread checkpointer_;

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Db>> readers_;
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                               const SqliteStoreOptions& options) {
  try {
    return std::unique_ptr<Store>(new SqliteStore(path, options));
  } catch (const SqliteError& e) {
    return otp::Unavailable(e.what());
  }
}

}  // namespace otpd
