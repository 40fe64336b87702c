// An in-memory Store for unit tests: the same contract as the SQLite backend,
// held in maps under one mutex. Nothing survives the object. Thread-safe.
#pragma once

#include <memory>

#include "store/store.h"

namespace otpd {

std::unique_ptr<Store> NewMemoryStore();

}  // namespace otpd
