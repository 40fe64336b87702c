#include "otp/sealing.h"

#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "core/internal.h"
#include "otp/crypto.h"

namespace otp {
namespace {

constexpr std::string_view kVersion = "v1.";
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kTagSize = 16;
constexpr std::size_t kMaxKeyIdSize = 32;

bool IsValidKeyId(std::string_view id) {
  if (id.empty() || id.size() > kMaxKeyIdSize) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

// The blob's header ("v1.<key_id>.") is authenticated along with the caller's
// associated data, so neither the version nor the key id can be edited. The
// header ends with the only '.' it may contain, so the concatenation is unambiguous.
std::string AuthenticatedData(std::string_view header, std::string_view associated_data) {
  std::string out(header);
  out += associated_data;
  return out;
}

// Splits "v1.<key_id>.<payload>"; false if the shape or key id is wrong.
bool SplitSealed(std::string_view sealed, std::string_view& header, std::string_view& key_id,
                 std::string_view& payload) {
  if (sealed.substr(0, kVersion.size()) != kVersion) return false;
  const auto dot = sealed.find('.', kVersion.size());
  if (dot == std::string_view::npos) return false;
  key_id = sealed.substr(kVersion.size(), dot - kVersion.size());
  if (!IsValidKeyId(key_id)) return false;
  header = sealed.substr(0, dot + 1);
  payload = sealed.substr(dot + 1);
  return true;
}

}  // namespace

Status Keyring::Add(std::string key_id, const AesKey& key) {
  if (!IsValidKeyId(key_id)) return InvalidArgument("key id must be [A-Za-z0-9_-]{1,32}");
  if (keys_.contains(key_id)) return AlreadyExists("key id already in the keyring: " + key_id);
  if (primary_.empty()) primary_ = key_id;
  keys_.emplace(std::move(key_id), key);
  return Status::Ok();
}

Status Keyring::SetPrimary(std::string_view key_id) {
  const auto it = keys_.find(key_id);
  if (it == keys_.end()) return NotFound("no key with id " + std::string(key_id));
  primary_ = it->first;
  return Status::Ok();
}

Result<std::string> Keyring::Seal(std::span<const std::uint8_t> plaintext,
                                  std::string_view associated_data, Random& random) const {
  const auto it = keys_.find(primary_);
  if (it == keys_.end()) return FailedPrecondition("keyring has no key");
  const std::string header = std::string(kVersion) + primary_ + ".";
  const std::string aad = AuthenticatedData(header, associated_data);

  std::vector<std::uint8_t> blob(kNonceSize + plaintext.size() + kTagSize);
  random.Fill(std::span(blob).first(kNonceSize));
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int final_len = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, it->second.data(), blob.data()) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), blob.data() + kNonceSize, &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), blob.data() + kNonceSize + len, &final_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize),
                          blob.data() + kNonceSize + plaintext.size()) != 1) {
    return Internal("AES-256-GCM encryption failed");
  }
  return header + internal::Base64UrlEncode(blob);
}

Result<std::vector<std::uint8_t>> Keyring::Open(std::string_view sealed,
                                                std::string_view associated_data) const {
  std::string_view header;
  std::string_view key_id;
  std::string_view payload;
  if (!SplitSealed(sealed, header, key_id, payload)) {
    return InvalidArgument("sealed secret is malformed");
  }
  const std::optional<std::vector<std::uint8_t>> blob = Base64Decode(payload);
  if (!blob || blob->size() < kNonceSize + kTagSize) {
    return InvalidArgument("sealed secret is malformed");
  }
  const auto it = keys_.find(key_id);
  if (it == keys_.end()) return NotFound("no key with id " + std::string(key_id));
  const std::string aad = AuthenticatedData(header, associated_data);

  const std::size_t ciphertext_size = blob->size() - kNonceSize - kTagSize;
  std::vector<std::uint8_t> plaintext(ciphertext_size);
  // GCM_SET_TAG wants a writable buffer.
  std::uint8_t tag[kTagSize];
  std::copy_n(blob->data() + kNonceSize + ciphertext_size, kTagSize, tag);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int final_len = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, it->second.data(), blob->data()) !=
          1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), plaintext.data(), &len, blob->data() + kNonceSize,
                        static_cast<int>(ciphertext_size)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag) != 1) {
    return Internal("AES-256-GCM decryption failed");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plaintext.data() + len, &final_len) != 1) {
    return Status(StatusCode::kPermissionDenied,
                  "sealed secret failed authentication (tampered, or wrong associated data)");
  }
  return plaintext;
}

std::string Keyring::KeyIdOf(std::string_view sealed) {
  std::string_view header;
  std::string_view key_id;
  std::string_view payload;
  if (!SplitSealed(sealed, header, key_id, payload)) return {};
  return std::string(key_id);
}

}  // namespace otp
