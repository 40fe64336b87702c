// Opens the store named by a URL: "sqlite://PATH" (relative or absolute;
// "sqlite:///abs/path" also works). PostgreSQL ("postgresql://…") comes with
// its backend; until then it is refused with a clear message.
#pragma once

#include <memory>
#include <string>

#include "store/store.h"

namespace otpd {

// Opens and migrates. The SQLite file's directory is created if missing.
Result<std::unique_ptr<Store>> OpenStore(const std::string& url);

}  // namespace otpd
