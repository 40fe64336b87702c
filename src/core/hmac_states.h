// HMAC from precomputed inner/outer hash states (RFC 2104), inside libotp.
//
// HMAC(K, m) = H(K^opad || H(K^ipad || m)): the states after the K^ipad and
// K^opad blocks depend only on the key, so a keyed object computes them once and
// each MAC then costs the message's compressions plus one. OpenSSL 3 has no
// non-deprecated API that resumes from a saved state this cheaply, so this
// header, and only the files that include it (hotp.cc, keyed_hash.cc), use the
// deprecated SHA*_Init/Update/Final/Transform functions. Include it first.
#pragma once

#define OPENSSL_SUPPRESS_DEPRECATED

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string_view>

namespace otp::internal {

inline void StoreBigEndian32(std::uint32_t v, std::uint8_t* out) {
  out[0] = static_cast<std::uint8_t>(v >> 24);
  out[1] = static_cast<std::uint8_t>(v >> 16);
  out[2] = static_cast<std::uint8_t>(v >> 8);
  out[3] = static_cast<std::uint8_t>(v);
}

inline void StoreBigEndian64(std::uint64_t v, std::uint8_t* out) {
  StoreBigEndian32(static_cast<std::uint32_t>(v >> 32), out);
  StoreBigEndian32(static_cast<std::uint32_t>(v), out + 4);
}

// One hash function as HMAC needs it: block and digest sizes, the size of the
// message-length field that ends the padding, and the low-level OpenSSL calls.
struct Sha1Traits {
  using Ctx = SHA_CTX;
  static constexpr std::size_t kBlock = 64;
  static constexpr std::size_t kDigest = 20;
  static constexpr std::size_t kLengthField = 8;
  static const EVP_MD* Md() { return EVP_sha1(); }
  static void Init(Ctx* c) { SHA1_Init(c); }
  static void Update(Ctx* c, const std::uint8_t* data, std::size_t n) { SHA1_Update(c, data, n); }
  static void Compress(Ctx* c, const std::uint8_t* block) { SHA1_Transform(c, block); }
  static void Final(Ctx* c, std::uint8_t* out) { SHA1_Final(out, c); }
  static void Digest(const Ctx& c, std::uint8_t* out) {
    StoreBigEndian32(c.h0, out);
    StoreBigEndian32(c.h1, out + 4);
    StoreBigEndian32(c.h2, out + 8);
    StoreBigEndian32(c.h3, out + 12);
    StoreBigEndian32(c.h4, out + 16);
  }
};

struct Sha256Traits {
  using Ctx = SHA256_CTX;
  static constexpr std::size_t kBlock = 64;
  static constexpr std::size_t kDigest = 32;
  static constexpr std::size_t kLengthField = 8;
  static const EVP_MD* Md() { return EVP_sha256(); }
  static void Init(Ctx* c) { SHA256_Init(c); }
  static void Update(Ctx* c, const std::uint8_t* data, std::size_t n) { SHA256_Update(c, data, n); }
  static void Compress(Ctx* c, const std::uint8_t* block) { SHA256_Transform(c, block); }
  static void Final(Ctx* c, std::uint8_t* out) { SHA256_Final(out, c); }
  static void Digest(const Ctx& c, std::uint8_t* out) {
    for (int i = 0; i < 8; ++i) StoreBigEndian32(c.h[i], out + 4 * i);
  }
};

struct Sha512Traits {
  using Ctx = SHA512_CTX;
  static constexpr std::size_t kBlock = 128;
  static constexpr std::size_t kDigest = 64;
  static constexpr std::size_t kLengthField = 16;
  static const EVP_MD* Md() { return EVP_sha512(); }
  static void Init(Ctx* c) { SHA512_Init(c); }
  static void Update(Ctx* c, const std::uint8_t* data, std::size_t n) { SHA512_Update(c, data, n); }
  static void Compress(Ctx* c, const std::uint8_t* block) { SHA512_Transform(c, block); }
  static void Final(Ctx* c, std::uint8_t* out) { SHA512_Final(out, c); }
  static void Digest(const Ctx& c, std::uint8_t* out) {
    for (int i = 0; i < 8; ++i) StoreBigEndian64(c.h[i], out + 8 * i);
  }
};

// The hash states after the K^ipad and K^opad blocks.
template <typename H>
struct HmacStates {
  typename H::Ctx inner;
  typename H::Ctx outer;
};

template <typename H>
HmacStates<H> MakeHmacStates(std::span<const std::uint8_t> secret) {
  std::uint8_t key[H::kBlock] = {};
  if (secret.size() > H::kBlock) {
    // RFC 2104 §2: keys longer than a block are hashed first.
    if (EVP_Digest(secret.data(), secret.size(), key, nullptr, H::Md(), nullptr) != 1) {
      throw std::runtime_error("otp: hashing the HMAC key failed");
    }
  } else {
    std::memcpy(key, secret.data(), secret.size());
  }
  HmacStates<H> states;
  std::uint8_t pad[H::kBlock];
  for (std::size_t i = 0; i < H::kBlock; ++i) pad[i] = key[i] ^ 0x36;
  H::Init(&states.inner);
  H::Update(&states.inner, pad, H::kBlock);
  for (std::size_t i = 0; i < H::kBlock; ++i) pad[i] = key[i] ^ 0x5c;
  H::Init(&states.outer);
  H::Update(&states.outer, pad, H::kBlock);
  OPENSSL_cleanse(key, sizeof key);
  OPENSSL_cleanse(pad, sizeof pad);
  return states;
}

// HMAC of `message` under `states`, into `out` (H::kDigest bytes).
template <typename H>
void Hmac(const HmacStates<H>& states, std::string_view message, std::uint8_t* out) {
  typename H::Ctx ctx = states.inner;
  H::Update(&ctx, reinterpret_cast<const std::uint8_t*>(message.data()), message.size());
  std::uint8_t inner[H::kDigest];
  H::Final(&ctx, inner);
  ctx = states.outer;
  H::Update(&ctx, inner, H::kDigest);
  H::Final(&ctx, out);
  OPENSSL_cleanse(&ctx, sizeof ctx);
}

}  // namespace otp::internal
