#include "store/open_store.h"

#include <filesystem>

#include "store/sqlite/sqlite_store.h"

namespace otpd {

Result<std::unique_ptr<Store>> OpenStore(const std::string& url) {
  constexpr std::string_view kSqlite = "sqlite://";
  if (url.rfind(kSqlite, 0) == 0) {
    const std::string path = url.substr(kSqlite.size());
    if (path.empty()) return otp::InvalidArgument("store.url: sqlite:// needs a file path");
    std::error_code ec;
    const auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    auto store = OpenSqliteStore(path);
    if (!store.ok()) return store.status();
    OTP_RETURN_IF_ERROR((*store)->Migrate());
    return store;
  }
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    return otp::InvalidArgument(
        "store.url: the PostgreSQL backend is not built yet; use sqlite://");
  }
  return otp::InvalidArgument("store.url: unknown scheme in '" + url + "'");
}

}  // namespace otpd
