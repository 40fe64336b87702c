// Master-key rotation (SPEC §6, `otpctl master-key rotate`): a new primary key,
// and every sealed value in the store re-wrapped under it while otpd keeps
// serving (it reads the new key files on its own; see SealingKeys).
//
// Re-wrapping goes in batches of conditional updates: a value is replaced only
// if it still holds the blob that was read, so a change otpd makes meanwhile
// (a verification leaving pending, a new seal) is never overwritten. Values
// sealed by otpd with the old key in the moment before it notices the new one
// are caught by later passes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "otp/random.h"
#include "service/secrets.h"
#include "store/store.h"

namespace otpd {

// Re-seals under `keys.primary_id()` every sealed value of the store made with
// another key, `batch` at a time; returns how many were replaced.
// FailedPrecondition (naming the value) when a blob cannot be opened.
Result<std::int64_t> RewrapSealed(Store& store, const SealingKeys& keys, otp::Random& random,
                                  int batch = 100);

struct RotationReport {
  std::string old_key_id;
  std::string new_key_id;
  std::int64_t rewrapped = 0;
};

// RotateMasterKey, then re-wrap passes until no value is sealed with an older
// key: after each pass it waits `settle` (longer than otpd's reload interval,
// so every running otpd seals with the new key by then) and counts what is left.
// FailedPrecondition if values with older keys remain after `max_passes`.
Result<RotationReport> RotateAndRewrap(
    const std::string& master_key_file, Store& store, otp::Random& random,
    std::chrono::milliseconds settle = 2 * SealingKeys::kDefaultReloadInterval, int max_passes = 5);

// What `otpctl master-key status` shows.
struct MasterKeyStatus {
  MasterKeySet keys;
  std::map<std::string, std::int64_t> sealed_by_key_id;
};
Result<MasterKeyStatus> GetMasterKeyStatus(const std::string& master_key_file, Store& store);

}  // namespace otpd
