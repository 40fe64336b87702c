#include "service/secrets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "otp/random.h"

namespace otpd {

otp::Result<MasterKey> LoadOrCreateMasterKey(const std::string& path) {
  MasterKey key{};
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    std::error_code ec;
    const auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    const int wfd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (wfd >= 0) {
      otp::SystemRandom().Fill(key);
      const bool written = ::write(wfd, key.data(), key.size()) == static_cast<ssize_t>(key.size());
      const bool synced = ::fsync(wfd) == 0;
      ::close(wfd);
      if (!written || !synced) return otp::Unavailable("cannot write master key " + path);
      return key;
    }
    if (errno != EEXIST) {
      return otp::Unavailable("cannot create master key " + path + ": " + std::strerror(errno));
    }
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // another process created it meanwhile
  }
  if (fd < 0)
    return otp::Unavailable("cannot read master key " + path + ": " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return otp::FailedPrecondition("master key " + path +
                                   " must not be readable by group or others (chmod 600)");
  }
  const ssize_t n = ::read(fd, key.data(), key.size());
  char extra;
  const ssize_t more = ::read(fd, &extra, 1);
  ::close(fd);
  if (n != static_cast<ssize_t>(key.size()) || more != 0) {
    return otp::FailedPrecondition("master key " + path + " must hold exactly 32 bytes");
  }
  return key;
}

Secrets::Secrets(const MasterKey& master)
    : code_hasher(otp::DeriveKey(master, "otpd code hash v1")) {
  // The key id names the master key (not the key itself): a short digest.
  const auto id_digest = otp::HmacSha256(master, "otpd key id v1");
  std::string key_id = "m";
  key_id += otp::HexEncode(std::span(id_digest).first(4));
  (void)keyring.Add(key_id, otp::DeriveKey(master, "otpd seal v1"));
}

std::string HashApiKey(std::string_view api_key) { return otp::HexEncode(otp::Sha256(api_key)); }

}  // namespace otpd
