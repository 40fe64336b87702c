// The master keys and the keys derived from them (SPEC §6).
//
// Key files. `[security] master_key_file` holds the primary master key: 32
// random bytes, mode 0600, created on first use and refused when readable by
// group or others. `otpctl master-key rotate` keeps the keys it replaces in the
// directory "<master_key_file>.retired/", one file "<key_id>.key" each (same
// rules), so that blobs sealed with them stay readable; a key id names a key
// ("m" + 8 hex digits of an HMAC of it), never reveals it.
//
// Purpose keys are derived with HKDF, so one master key serves code hashing and
// secret sealing apart:
// - sealing (token secrets, sealed verification codes): every readable master
//   key gives a key of the keyring; the primary one seals, any of them opens
//   (the blob names its key id), and rotation re-wraps blobs to the new primary.
// - code hashing (verification codes, recovery codes): hashes cannot be re-made
//   (the codes are not kept), so the code-hash key does not follow rotation: it
//   is derived from the master key that was primary before the first rotation,
//   whose id rotate records in "<master_key_file>.retired/code-hash-key". Every
//   process therefore hashes with the same key before, during and after a
//   rotation. See docs/architecture.md ("Master keys").
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otp/crypto.h"
#include "otp/random.h"
#include "otp/sealing.h"
#include "otp/status.h"

namespace otpd {

using MasterKey = std::array<std::uint8_t, 32>;

// Reads the key at `path`, creating it (and its directory) if missing.
otp::Result<MasterKey> LoadOrCreateMasterKey(const std::string& path);

// The id of a master key: "m" + 8 hex digits.
std::string MasterKeyId(const MasterKey& key);

// Where retired keys of `master_key_file` live: "<master_key_file>.retired".
std::string RetiredKeyDir(const std::string& master_key_file);

// Every master key readable now.
struct MasterKeySet {
  std::string primary_id;
  std::string code_hash_key_id;           // the key code hashes are made with
  std::map<std::string, MasterKey> keys;  // by id; the primary and the retired ones
};

// Reads the primary key (creating it if missing and `create`) and the retired
// keys. FailedPrecondition for a key file that is not 0600, not 32 bytes, or
// named for another key; Unavailable when the primary cannot be read.
otp::Result<MasterKeySet> LoadMasterKeys(const std::string& master_key_file, bool create);

struct KeyRotation {
  std::string old_key_id;
  std::string new_key_id;
};

// Replaces the primary key with a new random one. The old key is first written
// to the retired directory (and recorded as the code-hash key if none is yet),
// then the new key replaces `master_key_file` by an atomic rename, so a reader
// sees the old and the new key readable at every moment. Concurrent rotations
// are serialized by a lock file. FailedPrecondition if there is no primary key.
otp::Result<KeyRotation> RotateMasterKey(const std::string& master_key_file, otp::Random& random);

// The sealing keyring, reloaded from the key files while the process runs, so
// that a rotation by another process (otpctl) is followed without a restart:
// - a blob naming an unknown key id makes Open re-read the key files (at most
//   once per `reload_interval`) and try again;
// - Seal checks, at most once per `reload_interval`, whether master_key_file
//   was replaced, and re-reads the key files if so: the new primary is used for
//   sealing from at most `reload_interval` after the rotation.
// Thread-safe. Seal/Open have the signatures of otp::Keyring's.
class SealingKeys {
 public:
  static constexpr std::chrono::milliseconds kDefaultReloadInterval{1000};

  // A fixed keyring (never reloads).
  explicit SealingKeys(otp::Keyring keyring);
  // A keyring from the key files of `master_key_file`.
  SealingKeys(const MasterKeySet& keys, std::string master_key_file,
              std::chrono::milliseconds reload_interval);

  otp::Result<std::string> Seal(std::span<const std::uint8_t> plaintext,
                                std::string_view associated_data, otp::Random& random) const;
  otp::Result<std::vector<std::uint8_t>> Open(std::string_view sealed,
                                              std::string_view associated_data) const;
  std::string primary_id() const;
  // Re-reads the key files now (nothing for a fixed keyring).
  otp::Status Reload() const;

 private:
  struct FileId {
    std::uint64_t dev = 0, ino = 0, size = 0;
    std::int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  static FileId Identify(const std::string& path);
  std::shared_ptr<const otp::Keyring> Current() const;
  // Reloads when `force` (unknown key id) or the primary file changed, if the
  // interval allows.
  void MaybeReload(bool unknown_key) const;

  std::string master_key_file_;  // empty: fixed
  std::chrono::milliseconds reload_interval_{0};
  mutable std::mutex mu_;
  mutable std::shared_ptr<const otp::Keyring> keyring_;
  mutable FileId loaded_file_;
  mutable std::chrono::steady_clock::time_point last_look_{};  // Seal's check of the file
  // Open's last reload on an unknown id; the first one is never delayed.
  mutable std::chrono::steady_clock::time_point last_reload_{};
};

// A keyring holding the sealing key of each key of `keys`, `keys.primary_id` primary.
otp::Keyring SealingKeyring(const MasterKeySet& keys);

// Everything keyed by the master keys. Thread-safe.
class Secrets {
 public:
  // One master key, fixed (tests).
  explicit Secrets(const MasterKey& master);
  // The key files of `master_key_file` (the primary created if missing), followed
  // while the process runs (see SealingKeys).
  static otp::Result<std::unique_ptr<Secrets>> Load(
      const std::string& master_key_file,
      std::chrono::milliseconds reload_interval = SealingKeys::kDefaultReloadInterval);

  otp::CodeHasher code_hasher;  // verification and recovery codes (never rotates)
  SealingKeys keyring;          // sealed codes and token secrets

 private:
  Secrets(const MasterKeySet& keys, const std::string& master_key_file,
          std::chrono::milliseconds reload_interval);
};

// SHA-256 of an API key, hex: what the store keeps.
std::string HashApiKey(std::string_view api_key);

}  // namespace otpd
