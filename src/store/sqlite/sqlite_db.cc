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

}  // namespace

// sqlite3_config works only before SQLite initializes, which the first
// connection, and also the first VFS lookup or registration, does: hence a
// call at the top of each (Db's constructor, OtpdVfsName). Until 2026-11-27
// the otpd VFS was registered first and both settings were silently refused.
// A row of 256 checks (the writer's largest batch) changes about 3 MiB of
// pages; an op bigger than this (a migration rewriting a large table) goes on
// to a temp file, as SQLite's own default of 64 KiB would have it, instead of
// holding the table's pages in memory. (SQLite allocates a journal's memory in
// one chunk of this size, which the allocator hands back and reuses per batch.)
constexpr int kStatementJournalInMemory = 4 << 20;

bool ConfigureLibrary() {
  static const bool configured = [] {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK &&
           sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, kStatementJournalInMemory) == SQLITE_OK;
  }();
  return configured;
}

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
  ConfigureLibrary();
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
