#include "service/secrets.h"

#include "service/log_text.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "otp/random.h"

namespace otpd {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kKeySuffix = ".key";
constexpr const char* kCodeHashKeyFile = "code-hash-key";
constexpr const char* kLockFile = ".lock";

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

std::string Errno() { return std::strerror(errno); }

// Reads a 32-byte key file with mode 0600 (no group or other bits).
// NotFound when missing.
otp::Result<MasterKey> ReadKeyFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) {
    if (errno == ENOENT) return otp::NotFound("no key file " + path);
    return otp::Unavailable("cannot read master key " + path + ": " + Errno());
  }
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) {
    return otp::Unavailable("cannot stat master key " + path + ": " + Errno());
  }
  if ((st.st_mode & 077) != 0) {
    return otp::FailedPrecondition("master key " + path +
                                   " must not be readable by group or others (chmod 600)");
  }
  MasterKey key{};
  const ssize_t n = ::read(fd.fd, key.data(), key.size());
  char extra;
  const ssize_t more = ::read(fd.fd, &extra, 1);
  if (n != static_cast<ssize_t>(key.size()) || more != 0) {
    return otp::FailedPrecondition("master key " + path + " must hold exactly 32 bytes");
  }
  return key;
}

otp::Status SyncDir(const std::string& dir) {
  Fd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.fd < 0 || ::fsync(fd.fd) != 0) return otp::Unavailable("cannot sync " + dir);
  return otp::Status::Ok();
}

// Writes `bytes` to `path` (mode 0600) through a temporary file and a rename,
// so readers see the old content or the new one, never a part; syncs both.
otp::Status WriteFileAtomically(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.fd < 0) return otp::Unavailable("cannot create " + tmp + ": " + Errno());
    if (::write(fd.fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()) ||
        ::fsync(fd.fd) != 0) {
      return otp::Unavailable("cannot write " + tmp + ": " + Errno());
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return otp::Unavailable("cannot rename " + tmp + " to " + path + ": " + Errno());
  }
  return SyncDir(fs::path(path).parent_path().string());
}

std::span<const std::uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// The code-hash key id recorded by the first rotation; empty if none yet.
otp::Result<std::string> ReadCodeHashKeyId(const std::string& dir) {
  const std::string path = dir + "/" + kCodeHashKeyFile;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) {
    if (errno == ENOENT) return std::string();
    return otp::Unavailable("cannot read " + path + ": " + Errno());
  }
  char buf[64];
  const ssize_t n = ::read(fd.fd, buf, sizeof buf);
  if (n <= 0) return otp::FailedPrecondition(path + " is empty");
  std::string id(buf, static_cast<std::size_t>(n));
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

}  // namespace

otp::Result<MasterKey> LoadOrCreateMasterKey(const std::string& path) {
  auto existing = ReadKeyFile(path);
  if (existing.ok() || existing.status().code() != otp::StatusCode::kNotFound) return existing;
  std::error_code ec;
  const auto dir = fs::path(path).parent_path();
  if (!dir.empty()) fs::create_directories(dir, ec);
  MasterKey key{};
  Fd wfd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (wfd.fd >= 0) {
    otp::SystemRandom().Fill(key);
    const bool written =
        ::write(wfd.fd, key.data(), key.size()) == static_cast<ssize_t>(key.size());
    const bool synced = ::fsync(wfd.fd) == 0;
    if (!written || !synced) return otp::Unavailable("cannot write master key " + path);
    return key;
  }
  if (errno != EEXIST) {
    return otp::Unavailable("cannot create master key " + path + ": " + Errno());
  }
  return ReadKeyFile(path);  // another process created it meanwhile
}

std::string MasterKeyId(const MasterKey& key) {
  // The key id names the master key (not the key itself): a short digest.
  const auto id_digest = otp::HmacSha256(key, "otpd key id v1");
  return "m" + otp::HexEncode(std::span(id_digest).first(4));
}

std::string RetiredKeyDir(const std::string& master_key_file) {
  return master_key_file + ".retired";
}

otp::Result<MasterKeySet> LoadMasterKeys(const std::string& master_key_file, bool create) {
  // Order matters against a concurrent rotation, which writes the retired copy,
  // then the code-hash record, then the new primary: reading the primary first
  // means the record and the retired copies it needs are already there.
  auto primary = create ? LoadOrCreateMasterKey(master_key_file) : ReadKeyFile(master_key_file);
  if (!primary.ok()) {
    if (primary.status().code() == otp::StatusCode::kNotFound) {
      return otp::FailedPrecondition("no master key at " + master_key_file);
    }
    return primary.status();
  }
  MasterKeySet set;
  set.primary_id = MasterKeyId(*primary);
  set.keys.emplace(set.primary_id, *primary);

  const std::string dir = RetiredKeyDir(master_key_file);
  auto hash_id = ReadCodeHashKeyId(dir);
  if (!hash_id.ok()) return hash_id.status();
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= kKeySuffix.size() || !name.ends_with(kKeySuffix)) continue;
    auto key = ReadKeyFile(it->path().string());
    if (!key.ok()) {
      if (key.status().code() == otp::StatusCode::kNotFound) continue;  // removed meanwhile
      return key.status();
    }
    const std::string id = MasterKeyId(*key);
    if (name != id + std::string(kKeySuffix)) {
      return otp::FailedPrecondition("retired key " + it->path().string() + " holds key " + id +
                                     ", not the one its name says");
    }
    set.keys.emplace(id, *key);
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return otp::Unavailable("cannot list " + dir + ": " + ec.message());
  }
  set.code_hash_key_id = hash_id->empty() ? set.primary_id : *hash_id;
  if (!set.keys.contains(set.code_hash_key_id)) {
    return otp::FailedPrecondition("the key code hashes are made with (" + set.code_hash_key_id +
                                   ", named in " + dir + "/" + kCodeHashKeyFile +
                                   ") is missing: restore " + dir + "/" + set.code_hash_key_id +
                                   std::string(kKeySuffix));
  }
  return set;
}

otp::Result<KeyRotation> RotateMasterKey(const std::string& master_key_file, otp::Random& random) {
  const std::string dir = RetiredKeyDir(master_key_file);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return otp::Unavailable("cannot create " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  const std::string lock_path = dir + "/" + kLockFile;
  Fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (lock.fd < 0 || ::flock(lock.fd, LOCK_EX) != 0) {
    return otp::Unavailable("cannot lock " + lock_path + ": " + Errno());
  }

  auto keys = LoadMasterKeys(master_key_file, /*create=*/false);
  if (!keys.ok()) return keys.status();
  const MasterKey& old_key = keys->keys.at(keys->primary_id);

  // 1. The old key stays readable in the retired directory.
  const std::string retired = dir + "/" + keys->primary_id + std::string(kKeySuffix);
  OTP_RETURN_IF_ERROR(WriteFileAtomically(retired, old_key));
  // 2. Code hashes keep being made with the key they were made with so far.
  auto hash_id = ReadCodeHashKeyId(dir);
  if (!hash_id.ok()) return hash_id.status();
  if (hash_id->empty()) {
    OTP_RETURN_IF_ERROR(
        WriteFileAtomically(dir + "/" + kCodeHashKeyFile, AsBytes(keys->primary_id + "\n")));
  }
  // 3. The new primary, under an id no key has had.
  MasterKey fresh{};
  std::string fresh_id;
  do {
    random.Fill(fresh);
    fresh_id = MasterKeyId(fresh);
  } while (keys->keys.contains(fresh_id));
  OTP_RETURN_IF_ERROR(WriteFileAtomically(master_key_file, fresh));
  return KeyRotation{keys->primary_id, fresh_id};
}

otp::Keyring SealingKeyring(const MasterKeySet& keys) {
  otp::Keyring ring;
  for (const auto& [id, key] : keys.keys) (void)ring.Add(id, otp::DeriveKey(key, "otpd seal v1"));
  (void)ring.SetPrimary(keys.primary_id);
  return ring;
}

// --- SealingKeys

SealingKeys::SealingKeys(otp::Keyring keyring)
    : keyring_(std::make_shared<const otp::Keyring>(std::move(keyring))) {}

SealingKeys::SealingKeys(const MasterKeySet& keys, std::string master_key_file,
                         std::chrono::milliseconds reload_interval)
    : master_key_file_(std::move(master_key_file)),
      reload_interval_(reload_interval),
      keyring_(std::make_shared<const otp::Keyring>(SealingKeyring(keys))),
      loaded_file_(Identify(master_key_file_)),
      last_look_(std::chrono::steady_clock::now()) {}

SealingKeys::FileId SealingKeys::Identify(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                static_cast<std::uint64_t>(st.st_size),
                static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

std::shared_ptr<const otp::Keyring> SealingKeys::Current() const {
  std::lock_guard lock(mu_);
  return keyring_;
}

otp::Status SealingKeys::Reload() const {
  if (master_key_file_.empty()) return otp::Status::Ok();
  const FileId before = Identify(master_key_file_);
  auto keys = LoadMasterKeys(master_key_file_, /*create=*/false);
  if (!keys.ok()) {
    spdlog::error(R"("event":"master_keys_reload_failed","error":{})",
                  LogText(keys.status().message()));
    return keys.status();
  }
  auto ring = std::make_shared<const otp::Keyring>(SealingKeyring(*keys));
  std::lock_guard lock(mu_);
  const std::string old_primary = keyring_->primary_id();
  keyring_ = std::move(ring);
  loaded_file_ = before;
  if (old_primary != keys->primary_id) {
    spdlog::info(R"("event":"master_key_changed","old_key_id":"{}","key_id":"{}","keys":{})",
                 old_primary, keys->primary_id, keys->keys.size());
  }
  return otp::Status::Ok();
}

void SealingKeys::MaybeReload(bool unknown_key) const {
  if (master_key_file_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    if (unknown_key) {
      if (now - last_reload_ < reload_interval_) return;
      last_reload_ = now;
    } else {
      if (now - last_look_ < reload_interval_) return;
      last_look_ = now;
      if (Identify(master_key_file_) == loaded_file_) return;
    }
  }
  (void)Reload();
}

otp::Result<std::string> SealingKeys::Seal(std::span<const std::uint8_t> plaintext,
                                           std::string_view associated_data,
                                           otp::Random& random) const {
  MaybeReload(false);
  return Current()->Seal(plaintext, associated_data, random);
}

otp::Result<std::vector<std::uint8_t>> SealingKeys::Open(std::string_view sealed,
                                                         std::string_view associated_data) const {
  auto opened = Current()->Open(sealed, associated_data);
  if (opened.ok() || opened.status().code() != otp::StatusCode::kNotFound) return opened;
  // Sealed with a key this process has not read yet (a rotation meanwhile).
  MaybeReload(true);
  return Current()->Open(sealed, associated_data);
}

std::string SealingKeys::primary_id() const { return Current()->primary_id(); }

// --- Secrets

namespace {
otp::Keyring OneKeyKeyring(const MasterKey& master) {
  MasterKeySet set;
  set.primary_id = MasterKeyId(master);
  set.keys.emplace(set.primary_id, master);
  return SealingKeyring(set);
}
}  // namespace

Secrets::Secrets(const MasterKey& master)
    : code_hasher(otp::DeriveKey(master, "otpd code hash v1")), keyring(OneKeyKeyring(master)) {}

Secrets::Secrets(const MasterKeySet& keys, const std::string& master_key_file,
                 std::chrono::milliseconds reload_interval)
    : code_hasher(otp::DeriveKey(keys.keys.at(keys.code_hash_key_id), "otpd code hash v1")),
      keyring(keys, master_key_file, reload_interval) {}

otp::Result<std::unique_ptr<Secrets>> Secrets::Load(const std::string& master_key_file,
                                                    std::chrono::milliseconds reload_interval) {
  auto keys = LoadMasterKeys(master_key_file, /*create=*/true);
  if (!keys.ok()) return keys.status();
  return std::unique_ptr<Secrets>(new Secrets(*keys, master_key_file, reload_interval));
}

std::string HashApiKey(std::string_view api_key) { return otp::HexEncode(otp::Sha256(api_key)); }

}  // namespace otpd
