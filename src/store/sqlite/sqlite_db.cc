#include "store/sqlite/sqlite_db.h"

#include <stdexcept>

namespace otpd::sqlite {
namespace {

[[noreturn]] void Throw(sqlite3* db, int rc, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  throw SqliteError(msg, rc);
}

// Once per process, before the first connection: no memory statistics, which
// SQLite otherwise keeps under one global mutex taken on every allocation of
// every connection (otpd never asks for them).
void ConfigureOnce() {
  static const bool configured = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)configured;
}

}  // namespace

bool Stmt::Step() {
  const int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Throw(sqlite3_db_handle(s_), rc, "step");
}

int Stmt::Exec() {
  while (Step()) {
  }
  return sqlite3_changes(sqlite3_db_handle(s_));
}

Db::Db(const std::string& path, bool read_only, const char* vfs) {
  ConfigureOnce();
  const int flags =
      (read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
      SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = "open " + path + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    sqlite3_close(db_);
    db_ = nullptr;
    throw SqliteError(msg, rc);
  }
  sqlite3_busy_timeout(db_, 5000);
}

Db::~Db() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

Stmt Db::Prepare(std::string_view sql) {
  auto it = cache_.find(sql);  // no std::string built on the hot path
  if (it == cache_.end()) {
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) Throw(db_, rc, "prepare");
    it = cache_.emplace(std::string(sql), s).first;
  }
  return Stmt(it->second);
}

void Db::Exec(const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw SqliteError("exec: " + msg, rc);
  }
}

}  // namespace otpd::sqlite
