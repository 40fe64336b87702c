// The SQLite backend of Store: one database file in WAL mode.
//
// Writes go through one writer thread that runs every queued write of the
// moment in one transaction (each in its own SAVEPOINT, so one failing write
// does not undo its neighbours) and answers them after the COMMIT: many
// concurrent requests share one fsync (group commit). Reads use a pool of
// read-only connections, which WAL lets run beside the writer. Other processes
// (otpctl) may write the same file; busy_timeout makes them wait their turn.
#pragma once

#include <memory>
#include <string>

#include "store/store.h"

namespace otpd {

// Opens (creating if needed) the database at `path`. Does not migrate.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace otpd
