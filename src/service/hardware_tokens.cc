#include "service/hardware_tokens.h"

namespace otpd {

Result<std::size_t> SealAndImportHardwareTokens(Store& store, const SealingKeys& keyring,
                                                otp::Random& random, TimePoint now,
                                                const std::vector<ImportedToken>& tokens) {
  std::vector<HardwareToken> rows;
  rows.reserve(tokens.size());
  for (const ImportedToken& t : tokens) {
    auto sealed = keyring.Seal(t.secret, HardwareTokenSealingContext(t.serial), random);
    if (!sealed.ok()) return sealed.status();
    HardwareToken row;
    row.serial = t.serial;
    row.type = t.type;
    row.secret_sealed = std::move(*sealed);
    row.algorithm = t.algorithm;
    row.digits = t.digits;
    row.period = t.period;
    row.counter = t.counter;
    row.imported_at = now;
    rows.push_back(std::move(row));
  }
  OTP_RETURN_IF_ERROR(store.ImportHardwareTokens(rows));
  return rows.size();
}

}  // namespace otpd
