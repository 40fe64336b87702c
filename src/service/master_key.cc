#include "service/master_key.h"

#include <thread>

namespace otpd {
namespace {

// How many values are sealed with a key other than `key_id`.
Result<std::int64_t> CountOthers(Store& store, const std::string& key_id) {
  auto counts = store.CountSealedByKeyId();
  if (!counts.ok()) return counts.status();
  std::int64_t n = 0;
  for (const auto& [id, count] : *counts) {
    if (id != key_id) n += count;
  }
  return n;
}

}  // namespace

Result<std::int64_t> RewrapSealed(Store& store, const SealingKeys& keys, otp::Random& random,
                                  int batch) {
  const std::string primary = keys.primary_id();
  std::int64_t replaced = 0;
  for (std::string_view kind : kSealedKinds) {
    std::string after;
    for (;;) {
      auto values = store.ListSealed(kind, primary, after, batch);
      if (!values.ok()) return values.status();
      if (values->empty()) break;
      std::vector<SealedReplacement> replacements;
      replacements.reserve(values->size());
      for (const SealedValue& v : *values) {
        auto plain = keys.Open(v.sealed, v.associated_data);
        if (!plain.ok()) {
          return otp::FailedPrecondition("cannot open the sealed " + v.kind + " of " + v.id + ": " +
                                         plain.status().message());
        }
        auto resealed = keys.Seal(*plain, v.associated_data, random);
        std::fill(plain->begin(), plain->end(), std::uint8_t{0});
        if (!resealed.ok()) return resealed.status();
        replacements.push_back(SealedReplacement{v.kind, v.id, v.sealed, *resealed});
      }
      auto applied = store.ReplaceSealed(replacements);
      if (!applied.ok()) return applied.status();
      replaced += *applied;
      after = values->back().id;
    }
  }
  return replaced;
}

Result<RotationReport> RotateAndRewrap(const std::string& master_key_file, Store& store,
                                       otp::Random& random, std::chrono::milliseconds settle,
                                       int max_passes) {
  auto rotation = RotateMasterKey(master_key_file, random);
  if (!rotation.ok()) return rotation.status();
  auto keys = LoadMasterKeys(master_key_file, /*create=*/false);
  if (!keys.ok()) return keys.status();
  if (keys->primary_id != rotation->new_key_id) {
    return otp::FailedPrecondition("the master key changed again during the rotation");
  }
  const SealingKeys ring(SealingKeyring(*keys));
  RotationReport report{rotation->old_key_id, rotation->new_key_id, 0};
  for (int pass = 0; pass < max_passes; ++pass) {
    auto n = RewrapSealed(store, ring, random);
    if (!n.ok()) return n.status();
    report.rewrapped += *n;
    std::this_thread::sleep_for(settle);
    auto left = CountOthers(store, ring.primary_id());
    if (!left.ok()) return left.status();
    if (*left == 0) return report;
  }
  return otp::FailedPrecondition(
      "values sealed with older keys keep appearing: is an otpd running with other key files "
      "than " +
      master_key_file + "?");
}

Result<MasterKeyStatus> GetMasterKeyStatus(const std::string& master_key_file, Store& store) {
  auto keys = LoadMasterKeys(master_key_file, /*create=*/false);
  if (!keys.ok()) return keys.status();
  auto counts = store.CountSealedByKeyId();
  if (!counts.ok()) return counts.status();
  return MasterKeyStatus{std::move(*keys), std::move(*counts)};
}

}  // namespace otpd
