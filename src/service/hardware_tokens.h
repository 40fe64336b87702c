// Hardware tokens in the store's inventory (SPEC §4.2): imported from a vendor's
// seed file, listed, revoked; bound to a user by the factors API.
//
// A token's secret is sealed under the master keyring with the associated data
// HardwareTokenSealingContext(serial) (store/model.h), so a sealed blob cannot be
// moved to another serial. Stateless functions; thread-safe as the Store is.
#pragma once

#include <vector>

#include "otp/random.h"
#include "service/secrets.h"
#include "service/token_import.h"
#include "store/store.h"

namespace otpd {

// Seals each token's secret and imports them all or none (the store refuses the
// whole batch with AlreadyExists, naming the serial, if one is known already).
// Returns how many were imported.
Result<std::size_t> SealAndImportHardwareTokens(Store& store, const SealingKeys& keyring,
                                                otp::Random& random, TimePoint now,
                                                const std::vector<ImportedToken>& tokens);

}  // namespace otpd
