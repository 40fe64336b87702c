// Thin RAII helpers over the SQLite C API: a connection with a cache of
// prepared statements, and a statement with typed binds and reads.
// A Db is used by one thread at a time.
#pragma once

#include <sqlite3.h>

#include <concepts>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "otp/status.h"

namespace otpd::sqlite {

class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() {
    if (s_ != nullptr) {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // Binds without a copy: `v` must stay unchanged until the statement is
  // reset (the Stmt goes away). For the hot statements only, where every
  // value bound is a named variable that outlives the Stmt; each copy costs
  // SQLite a malloc and a free.
  Stmt& BindBorrowed(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  template <std::integral I>
  Stmt& Bind(int i, I v) {
    sqlite3_bind_int64(s_, i, static_cast<sqlite3_int64>(v));
    return *this;
  }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  // Binds each argument in order, from parameter 1.
  template <typename... Args>
  Stmt& BindAll(const Args&... args) {
    int i = 0;
    (Bind(++i, args), ...);
    return *this;
  }
  // BindAll without copies of the text arguments (see BindBorrowed): only
  // integers may be temporaries, which is checked at compile time.
  template <typename... Args>
  Stmt& BindAllBorrowed(Args&&... args) {
    static_assert(
        ((std::is_lvalue_reference_v<Args> || std::is_integral_v<std::decay_t<Args>>)&&...),
        "a borrowed text value must outlive the statement: pass a named variable");
    int i = 0;
    (BindOneBorrowed(++i, args), ...);
    return *this;
  }

  // True while a row is available; throws std::runtime_error on SQL errors
  // (caught at the store boundary and turned into a Status).
  bool Step();
  // Runs to completion; returns the number of rows changed.
  int Exec();

  bool IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  // The column's text, valid until the next Step or the Stmt goes away.
  std::string_view View(int col) const {
    const auto* p = sqlite3_column_text(s_, col);
    return p == nullptr ? std::string_view()
                        : std::string_view(reinterpret_cast<const char*>(p),
                                           static_cast<std::size_t>(sqlite3_column_bytes(s_, col)));
  }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(s_, col);
    return p == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(p),
                                      static_cast<std::size_t>(sqlite3_column_bytes(s_, col)));
  }

 private:
  void BindOneBorrowed(int i, std::string_view v) { BindBorrowed(i, v); }
  template <std::integral I>
  void BindOneBorrowed(int i, I v) {
    Bind(i, v);
  }

  sqlite3_stmt* s_;
};

// Sets SQLite's process-wide options, once, before SQLite initializes:
// - no memory statistics, which SQLite otherwise keeps under one global mutex
//   taken on every allocation of every connection (otpd never asks for them;
//   Debian's build has no lookaside, so every small allocation is a malloc);
// - statement journals (the pages a savepoint may roll back) held in memory
//   up to 4 MiB, not moved to a temp file past SQLite's default of 64 KiB:
//   the writer holds one savepoint over a row of checks (SqliteStore's
//   RunGroup), a few hundred KiB usually, 3 MiB at most.
// Called by Db's constructor and OtpdVfsName; nothing else need call it.
// True if the options are in effect (false: SQLite was initialized first).
bool ConfigureLibrary();

// Thrown by Stmt and Db on SQLite errors; `busy` for SQLITE_BUSY/LOCKED.
struct SqliteError : std::runtime_error {
  SqliteError(const std::string& what, int result_code)
      : std::runtime_error(what), rc(result_code) {}
  bool busy() const { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }
  bool constraint() const { return (rc & 0xff) == SQLITE_CONSTRAINT; }
  int rc;
};

class Db {
 public:
  // Opens `path` (through the VFS named `vfs`, or the default); throws SqliteError.
  Db(const std::string& path, bool read_only, const char* vfs = nullptr);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // A cached prepared statement for `sql`; reset when the Stmt goes away.
  Stmt Prepare(std::string_view sql);
  // Runs one or more statements without results (parsed every time).
  void Exec(const std::string& sql);
  // Runs one statement without results through the statement cache (for the
  // BEGIN/SAVEPOINT/COMMIT that every transaction repeats).
  void Run(std::string_view sql) { Prepare(sql).Exec(); }
  std::int64_t LastInsertId() const { return sqlite3_last_insert_rowid(db_); }
  sqlite3* raw() { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::map<std::string, sqlite3_stmt*, std::less<>> cache_;
};

}  // namespace otpd::sqlite
