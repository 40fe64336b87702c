#include "store/sqlite/paced_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <new>

namespace otpd::sqlite {
namespace {

constexpr sqlite3_int64 kPaceBytes = 1 << 20;  // 256 pages of 4 KiB

// Our file object; the default VFS's own file object follows it in the same
// allocation (SQLite allocates szOsFile bytes, see PacedVfsName).
struct PacedFile {
  sqlite3_file base;   // must come first: SQLite sees this
  sqlite3_file* real;  // the default VFS's file, right after this struct
  int fd;              // our descriptor of the main database file, or -1
  sqlite3_int64 lo;    // the range written since the last step
  sqlite3_int64 hi;
};

constexpr std::size_t kRealOffset = (sizeof(PacedFile) + alignof(std::max_align_t) - 1) /
                                    alignof(std::max_align_t) * alignof(std::max_align_t);

sqlite3_vfs* Default() { return sqlite3_vfs_find(nullptr); }
sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<PacedFile*>(f)->real; }
const sqlite3_io_methods* M(sqlite3_file* f) { return Real(f)->pMethods; }

// Sends the pages written since the last step to the disk and waits for them.
void Step(PacedFile* p) {
  if (p->hi > p->lo) {
    ::sync_file_range(
        p->fd, p->lo, p->hi - p->lo,
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
  p->lo = p->hi = 0;
}

int Write(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  const int rc = M(f)->xWrite(Real(f), data, amount, offset);
  auto* p = reinterpret_cast<PacedFile*>(f);
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

// SQLite's own sync covers everything written so far: the next step starts
// from the next write (not from a range a previous checkpoint left).
int Sync(sqlite3_file* f, int flags) {
  const int rc = M(f)->xSync(Real(f), flags);
  auto* p = reinterpret_cast<PacedFile*>(f);
  if (rc == SQLITE_OK) p->lo = p->hi = 0;
  return rc;
}

int Close(sqlite3_file* f) {
  auto* p = reinterpret_cast<PacedFile*>(f);
  const int rc = M(f)->xClose(Real(f));
  if (p->fd >= 0) ::close(p->fd);
  p->fd = -1;
  return rc;
}

// Everything else goes to the default VFS's file as it is.
int Read(sqlite3_file* f, void* d, int n, sqlite3_int64 o) { return M(f)->xRead(Real(f), d, n, o); }
int Truncate(sqlite3_file* f, sqlite3_int64 n) { return M(f)->xTruncate(Real(f), n); }
int FileSize(sqlite3_file* f, sqlite3_int64* n) { return M(f)->xFileSize(Real(f), n); }
int Lock(sqlite3_file* f, int l) { return M(f)->xLock(Real(f), l); }
int Unlock(sqlite3_file* f, int l) { return M(f)->xUnlock(Real(f), l); }
int CheckReserved(sqlite3_file* f, int* r) { return M(f)->xCheckReservedLock(Real(f), r); }
int FileControl(sqlite3_file* f, int op, void* a) { return M(f)->xFileControl(Real(f), op, a); }
int SectorSize(sqlite3_file* f) { return M(f)->xSectorSize(Real(f)); }
int Characteristics(sqlite3_file* f) { return M(f)->xDeviceCharacteristics(Real(f)); }
int ShmMap(sqlite3_file* f, int i, int n, int e, void volatile** pp) {
  return M(f)->xShmMap(Real(f), i, n, e, pp);
}
int ShmLock(sqlite3_file* f, int o, int n, int flags) {
  return M(f)->xShmLock(Real(f), o, n, flags);
}
void ShmBarrier(sqlite3_file* f) { M(f)->xShmBarrier(Real(f)); }
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
  auto* p = new (f) PacedFile{};
  p->base.pMethods = nullptr;  // until the real open succeeds
  p->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kRealOffset);
  p->fd = -1;
  const int rc = Default()->xOpen(Default(), name, p->real, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  if (p->real->pMethods == nullptr || p->real->pMethods->iVersion < 3) {
    // Not a file we can wrap whole: refuse rather than misroute its calls.
    if (p->real->pMethods != nullptr) p->real->pMethods->xClose(p->real);
    return SQLITE_CANTOPEN;
  }
  if ((flags & SQLITE_OPEN_MAIN_DB) != 0 && name != nullptr) {
    p->fd = ::open(name, O_RDONLY | O_CLOEXEC);  // -1: writes go unpaced
  }
  p->base.pMethods = &kMethods;
  return SQLITE_OK;
}

}  // namespace

const char* PacedVfsName() {
  static const char* const name = [] {
    static sqlite3_vfs vfs = *Default();
    vfs.zName = "otpd-paced";
    vfs.szOsFile = static_cast<int>(kRealOffset) + Default()->szOsFile;
    vfs.xOpen = Open;
    vfs.pNext = nullptr;
    sqlite3_vfs_register(&vfs, 0);
    return vfs.zName;
  }();
  return name;
}

}  // namespace otpd::sqlite
