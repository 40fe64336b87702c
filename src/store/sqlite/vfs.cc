#include "store/sqlite/vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "store/sqlite/sqlite_db.h"

namespace otpd::sqlite {
namespace {

constexpr sqlite3_int64 kPaceBytes = 1 << 20;  // 256 pages of 4 KiB
constexpr int kWalBufferBytes = 1 << 20;       // about 250 frames of 4 KiB pages

// Our file object; the default VFS's own file object follows it in the same
// allocation (SQLite allocates szOsFile bytes, see OtpdVfsName).
struct OtpdFile {
  sqlite3_file base;   // must come first: SQLite sees this
  sqlite3_file* real;  // the default VFS's file, right after this struct
  // A main database file: its name as SQLite passed it (the WAL's
  // sqlite3_filename_database points at the same bytes), its WAL while open,
  // and the pacing of its writes.
  const char* db_name = nullptr;
  OtpdFile* wal = nullptr;
  int fd = -1;           // our descriptor of the file for sync_file_range, or -1
  sqlite3_int64 lo = 0;  // the range written since the last step
  sqlite3_int64 hi = 0;
  // A WAL file: its main database file (nullptr: not ours, nothing is
  // buffered) and the appended bytes not yet written, from `offset`.
  OtpdFile* main = nullptr;
  std::unique_ptr<char[]> buffer;
  int buffered = 0;
  sqlite3_int64 offset = 0;
};

constexpr std::size_t kRealOffset = (sizeof(OtpdFile) + alignof(std::max_align_t) - 1) /
                                    alignof(std::max_align_t) * alignof(std::max_align_t);

sqlite3_vfs* Default() { return sqlite3_vfs_find(nullptr); }
OtpdFile* Ours(sqlite3_file* f) { return reinterpret_cast<OtpdFile*>(f); }
sqlite3_file* Real(sqlite3_file* f) { return Ours(f)->real; }
const sqlite3_io_methods* M(sqlite3_file* f) { return Real(f)->pMethods; }

// The open main database files, so that a WAL finds its own (by pointer: two
// connections to one file each have theirs). Touched on open and close only.
std::mutex& MainsMu() {
  static std::mutex mu;
  return mu;
}
std::vector<OtpdFile*>& Mains() {
  static std::vector<OtpdFile*> mains;
  return mains;
}

// Writes n bytes to the real file in pieces of at most kMaxWrite bytes: the
// unix VFS's xWrite writes at most that much per pwrite() (it masks the length
// with 0x1ffff), and a remainder of exactly 128 KiB makes it write nothing and
// report SQLITE_FULL.
int WriteInPieces(OtpdFile* p, const char* data, int n, sqlite3_int64 offset) {
  constexpr int kMaxWrite = 0x1ffff;
  for (int done = 0; done < n;) {
    const int piece = std::min(n - done, kMaxWrite);
    const int rc = p->real->pMethods->xWrite(p->real, data + done, piece, offset + done);
    if (rc != SQLITE_OK) return rc;
    done += piece;
  }
  return SQLITE_OK;
}

// Writes a WAL file's buffer. On failure the buffer is dropped all the same:
// its frames were never published, and SQLite fails the operation that asked.
int Flush(OtpdFile* wal) {
  const int n = wal->buffered;
  wal->buffered = 0;
  return WriteInPieces(wal, wal->buffer.get(), n, wal->offset);
}

// Sends the pages written since the last step to the disk and waits for them.
void Step(OtpdFile* p) {
  if (p->hi > p->lo) {
    ::sync_file_range(
        p->fd, p->lo, p->hi - p->lo,
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
  p->lo = p->hi = 0;
}

int WriteWal(OtpdFile* p, const void* data, int amount, sqlite3_int64 offset) {
  if (p->buffered > 0 && offset == p->offset + p->buffered &&
      amount <= kWalBufferBytes - p->buffered) {
    std::memcpy(p->buffer.get() + p->buffered, data, static_cast<std::size_t>(amount));
    p->buffered += amount;
    return SQLITE_OK;
  }
  // Not an append to the buffer (or no room): what is buffered goes first.
  if (const int rc = Flush(p); rc != SQLITE_OK) return rc;
  // (SQLite writes at most a page and a frame header at a time, far below.)
  if (amount >= kWalBufferBytes) {
    return WriteInPieces(p, static_cast<const char*>(data), amount, offset);
  }
  if (!p->buffer) p->buffer = std::make_unique<char[]>(kWalBufferBytes);
  std::memcpy(p->buffer.get(), data, static_cast<std::size_t>(amount));
  p->buffered = amount;
  p->offset = offset;
  return SQLITE_OK;
}

int Write(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  OtpdFile* p = Ours(f);
  if (p->main != nullptr) return WriteWal(p, data, amount, offset);
  const int rc = M(f)->xWrite(Real(f), data, amount, offset);
  if (rc != SQLITE_OK || p->fd < 0) return rc;
  if (p->hi == p->lo) {
    p->lo = offset;
    p->hi = offset + amount;
  } else {
    p->lo = std::min(p->lo, offset);
    p->hi = std::max(p->hi, offset + amount);
  }
  // Pages are copied in page order: the range is the bytes written, give or
  // take pages the checkpoint skipped (sync_file_range passes clean pages by).
  if (p->hi - p->lo >= kPaceBytes) Step(p);
  return rc;
}

// A WAL's buffer goes first wherever SQLite reads, measures, syncs or cuts
// the file.
int Read(sqlite3_file* f, void* d, int n, sqlite3_int64 o) {
  if (const int rc = Flush(Ours(f)); rc != SQLITE_OK) return rc;
  return M(f)->xRead(Real(f), d, n, o);
}
int Truncate(sqlite3_file* f, sqlite3_int64 n) {
  if (const int rc = Flush(Ours(f)); rc != SQLITE_OK) return rc;
  return M(f)->xTruncate(Real(f), n);
}
int FileSize(sqlite3_file* f, sqlite3_int64* n) {
  if (const int rc = Flush(Ours(f)); rc != SQLITE_OK) return rc;
  return M(f)->xFileSize(Real(f), n);
}
int FileControl(sqlite3_file* f, int op, void* a) {
  if (const int rc = Flush(Ours(f)); rc != SQLITE_OK) return rc;
  return M(f)->xFileControl(Real(f), op, a);
}

// SQLite's own sync covers everything written so far: the next pacing step
// starts from the next write (not from a range a previous checkpoint left).
int Sync(sqlite3_file* f, int flags) {
  OtpdFile* p = Ours(f);
  if (const int rc = Flush(p); rc != SQLITE_OK) return rc;
  const int rc = M(f)->xSync(Real(f), flags);
  if (rc == SQLITE_OK) p->lo = p->hi = 0;
  return rc;
}

// SQLite publishes a commit in the WAL index between two copies of its header,
// with this barrier between them: the frames must be in the file before.
void ShmBarrier(sqlite3_file* f) {
  OtpdFile* p = Ours(f);
  if (p->wal != nullptr && Flush(p->wal) != SQLITE_OK) {
    std::fputs(
        "otpd: writing the SQLite WAL failed while a commit was being published; stopping "
        "(the commit was not answered, and the next start recovers without it)\n",
        stderr);
    std::abort();
  }
  M(f)->xShmBarrier(Real(f));
}

// Releasing a WAL lock lets another connection write the WAL: anything still
// buffered (frames of a transaction that did not commit) goes first. A failed
// write here loses nothing: those frames were never published.
int ShmLock(sqlite3_file* f, int o, int n, int flags) {
  OtpdFile* p = Ours(f);
  if ((flags & SQLITE_SHM_UNLOCK) != 0 && p->wal != nullptr) Flush(p->wal);
  return M(f)->xShmLock(Real(f), o, n, flags);
}

int Close(sqlite3_file* f) {
  OtpdFile* p = Ours(f);
  const int flushed = Flush(p);
  {
    std::lock_guard lock(MainsMu());
    if (p->main != nullptr) p->main->wal = nullptr;
    if (p->wal != nullptr) p->wal->main = nullptr;
    std::erase(Mains(), p);
  }
  const int rc = M(f)->xClose(Real(f));
  if (p->fd >= 0) ::close(p->fd);
  p->~OtpdFile();
  return flushed != SQLITE_OK ? flushed : rc;
}

// Everything else goes to the default VFS's file as it is.
int Lock(sqlite3_file* f, int l) { return M(f)->xLock(Real(f), l); }
int Unlock(sqlite3_file* f, int l) { return M(f)->xUnlock(Real(f), l); }
int CheckReserved(sqlite3_file* f, int* r) { return M(f)->xCheckReservedLock(Real(f), r); }
int SectorSize(sqlite3_file* f) { return M(f)->xSectorSize(Real(f)); }
int Characteristics(sqlite3_file* f) { return M(f)->xDeviceCharacteristics(Real(f)); }
int ShmMap(sqlite3_file* f, int i, int n, int e, void volatile** pp) {
  return M(f)->xShmMap(Real(f), i, n, e, pp);
}
int ShmUnmap(sqlite3_file* f, int del) { return M(f)->xShmUnmap(Real(f), del); }
int Fetch(sqlite3_file* f, sqlite3_int64 o, int n, void** pp) {
  return M(f)->xFetch(Real(f), o, n, pp);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 o, void* p) { return M(f)->xUnfetch(Real(f), o, p); }

// Version 3 methods: the unix VFS's files have them all.
const sqlite3_io_methods kMethods = {
    3,        Close,         Read,        Write,      Truncate,        Sync,   FileSize, Lock,
    Unlock,   CheckReserved, FileControl, SectorSize, Characteristics, ShmMap, ShmLock,  ShmBarrier,
    ShmUnmap, Fetch,         Unfetch};

int Open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  auto* p = new (f) OtpdFile{};
  p->base.pMethods = nullptr;  // until the real open succeeds
  p->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kRealOffset);
  const int rc = Default()->xOpen(Default(), name, p->real, flags, out_flags);
  if (rc != SQLITE_OK || p->real->pMethods == nullptr || p->real->pMethods->iVersion < 3) {
    // Not a file we can wrap whole: refuse rather than misroute its calls.
    if (rc == SQLITE_OK && p->real->pMethods != nullptr) p->real->pMethods->xClose(p->real);
    p->~OtpdFile();  // SQLite calls no xClose for a file whose open failed
    return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
  }
  if ((flags & SQLITE_OPEN_MAIN_DB) != 0 && name != nullptr) {
    p->fd = ::open(name, O_RDONLY | O_CLOEXEC);  // -1: writes go unpaced
    p->db_name = name;
    std::lock_guard lock(MainsMu());
    Mains().push_back(p);
  } else if ((flags & SQLITE_OPEN_WAL) != 0 && name != nullptr) {
    const char* db = sqlite3_filename_database(name);
    std::lock_guard lock(MainsMu());
    // No main found: the WAL is written through, unbuffered.
    for (OtpdFile* m : Mains()) {
      if (m->db_name == db && m->wal == nullptr) {
        m->wal = p;
        p->main = m;
        break;
      }
    }
  }
  p->base.pMethods = &kMethods;
  return SQLITE_OK;
}

}  // namespace

const char* OtpdVfsName() {
  static const char* const name = [] {
    ConfigureLibrary();  // before Default(), which initializes SQLite
    static sqlite3_vfs vfs = *Default();
    vfs.zName = "otpd";
    vfs.szOsFile = static_cast<int>(kRealOffset) + Default()->szOsFile;
    vfs.xOpen = Open;
    vfs.pNext = nullptr;
    sqlite3_vfs_register(&vfs, 0);
    return vfs.zName;
  }();
  return name;
}

}  // namespace otpd::sqlite
