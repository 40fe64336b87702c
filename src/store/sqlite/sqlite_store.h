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

// Tuning of the backend; the defaults are otpd's (tests change them).
struct SqliteStoreOptions {
  // WAL pages that start a checkpoint. 64000 (250 MiB of WAL), not SQLite's
  // 1000: a page changed many times between two checkpoints is copied to the
  // database once, so checks spread over many verifications cost the
  // checkpointer a fraction of what they did (at 16000 pages its share of CPU
  // was about 1.6 times this; docs/benchmarks.md). A crash leaves at most
  // about this much WAL to read back on the next start.
  int checkpoint_pages = 64000;
};

// Opens (creating if needed) the database at `path`. Does not migrate.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                               const SqliteStoreOptions& options = {});

}  // namespace otpd
