// A SQLite VFS for the checkpointer's connection: SQLite's default VFS, except
// that writes to the main database file are sent to the disk in steps.
#pragma once

namespace otpd::sqlite {

// The name of the paced VFS (registered on the first call; not the default).
//
// A checkpoint copies thousands of pages into the database file and then
// fsyncs it, so the whole copy reached the disk at once, and every WAL fsync
// issued meanwhile (each one a commit some request waits for) queued behind
// it. Through this VFS, every kPaceBytes written to the main database file are
// sent to the disk and waited for (sync_file_range) before the next write: a
// WAL fsync waits for at most one such step. Durability is unchanged: SQLite
// still syncs the file where it always does; this only starts the write-back
// earlier, in order.
const char* PacedVfsName();

}  // namespace otpd::sqlite
