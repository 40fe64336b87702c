// The VFS otpd's own SQLite connections use: SQLite's default (unix) VFS with
// two changes to when bytes reach the OS and the disk, none to what is written.
#pragma once

namespace otpd::sqlite {

// The name of otpd's VFS (registered on the first call; not the default).
//
// 1. WAL appends are written in one piece. SQLite writes each WAL frame as two
//    pwrite()s (its 24-byte header, then the page); a commit of 20 pages made
//    40 system calls, each dirtying one or two page-cache pages. Through this
//    VFS, frames appended one after another collect in a buffer (up to
//    kWalBufferBytes) and go to the file in one write, before SQLite
//    publishes the commit in the WAL index: the main file's xShmBarrier,
//    which SQLite calls between its two copies of the index header, writes
//    the buffer first, so no reader can look for a frame still in the buffer.
//    Any other use of the WAL file (a read, a write elsewhere, sync, truncate,
//    size, close) and every release of a WAL lock write the buffer first, in
//    order. A write that fails in xShmBarrier can no longer fail its commit:
//    the process stops there (abort), as PostgreSQL stops on a failed WAL
//    write. That commit was not answered, and recovery at the next start
//    drops its frames by their checksums.
// 2. Database writes are paced. A checkpoint copies thousands of pages into
//    the database file and then fsyncs it, so the whole copy reached the disk
//    at once, and every WAL fsync issued meanwhile (each one a commit some
//    request waits for) queued behind it. Through this VFS, every kPaceBytes
//    written to the main database file are sent to the disk and waited for
//    (sync_file_range) before the next write: a WAL fsync waits for at most
//    one such step. SQLite still syncs the file where it always does.
const char* OtpdVfsName();

}  // namespace otpd::sqlite
