// HOTP with HMAC computed from precomputed inner/outer hash states.
//
// HMAC(K, m) = H(K^opad || H(K^ipad || m)). The states after compressing the
// K^ipad and K^opad blocks depend only on the key, so HotpKey computes them once
// and each code then costs two compressions: the inner block (8-byte counter,
// padded) and the outer block (inner digest, padded). OpenSSL 3 offers no
// non-deprecated API that resumes from a saved state this cheaply (EVP_MD_CTX_copy
// plus EVP_DigestFinal is several times slower), so core/hmac_states.h, and only
// the files that include it, use the deprecated SHA*_Init/Update/Transform functions.
#include "otp/hotp.h"
#include "core/hmac_states.h"  // first: it sets OPENSSL_SUPPRESS_DEPRECATED

#include <openssl/crypto.h>

#include <cstring>
#include <stdexcept>
#include <variant>

#include "core/internal.h"
#include "otp/crypto.h"

namespace otp {
namespace {

using internal::HmacStates;
using internal::MakeHmacStates;
using internal::Sha1Traits;
using internal::Sha256Traits;
using internal::Sha512Traits;
using internal::StoreBigEndian64;

// Writes the total message length in bits (one block of key pad + `message_bytes`)
// at the end of `block`, as the last padding field.
template <typename H>
void StoreLength(std::uint8_t* block, std::size_t message_bytes) {
  const std::uint64_t bits = (H::kBlock + message_bytes) * 8;
  StoreBigEndian64(bits, block + H::kBlock - 8);
}

template <typename H>
std::uint32_t TruncatedHmac(const HmacStates<H>& states, std::uint64_t counter) {
  static_assert(H::kDigest + 1 + H::kLengthField <= H::kBlock);
  // Inner block: counter || 0x80 || zeros || length. The rest of the padding is
  // zero, and stays so for the outer block, which overwrites the first bytes.
  std::uint8_t block[H::kBlock] = {};
  StoreBigEndian64(counter, block);
  block[8] = 0x80;
  StoreLength<H>(block, 8);
  typename H::Ctx ctx = states.inner;
  H::Compress(&ctx, block);
  std::uint8_t digest[H::kDigest];
  H::Digest(ctx, digest);

  // Outer block: inner digest || 0x80 || zeros || length.
  std::memcpy(block, digest, H::kDigest);
  block[H::kDigest] = 0x80;
  StoreLength<H>(block, H::kDigest);
  ctx = states.outer;
  H::Compress(&ctx, block);
  H::Digest(ctx, digest);

  // Dynamic truncation (RFC 4226 §5.3).
  const unsigned offset = digest[H::kDigest - 1] & 0x0f;
  return (std::uint32_t{digest[offset] & 0x7fu} << 24) | (std::uint32_t{digest[offset + 1]} << 16) |
         (std::uint32_t{digest[offset + 2]} << 8) | std::uint32_t{digest[offset + 3]};
}

void CheckDigits(int digits) {
  if (digits < 6 || digits > 10) throw std::invalid_argument("otp: HOTP digits must be 6..10");
}

}  // namespace

static_assert(static_cast<int>(HashAlgorithm::kSha1) == 0 &&
              static_cast<int>(HashAlgorithm::kSha256) == 1 &&
              static_cast<int>(HashAlgorithm::kSha512) == 2);

struct HotpKey::State {
  // The variant's index is the HashAlgorithm (see the static_assert above).
  std::variant<HmacStates<Sha1Traits>, HmacStates<Sha256Traits>, HmacStates<Sha512Traits>> states;

  ~State() {
    std::visit([](auto& s) { OPENSSL_cleanse(&s, sizeof s); }, states);
  }
};

const char* HashAlgorithmName(HashAlgorithm alg) {
  switch (alg) {
    case HashAlgorithm::kSha1:
      return "SHA1";
    case HashAlgorithm::kSha256:
      return "SHA256";
    case HashAlgorithm::kSha512:
      return "SHA512";
  }
  return "SHA1";
}

Result<HashAlgorithm> ParseHashAlgorithm(std::string_view name) {
  for (HashAlgorithm alg : {HashAlgorithm::kSha1, HashAlgorithm::kSha256, HashAlgorithm::kSha512}) {
    if (internal::EqualsIgnoringAsciiCase(name, HashAlgorithmName(alg))) return alg;
  }
  return InvalidArgument("unknown hash algorithm (want SHA1, SHA256 or SHA512)");
}

Result<HotpKey> HotpKey::Create(std::span<const std::uint8_t> secret, HashAlgorithm alg) {
  if (secret.empty()) return InvalidArgument("HOTP secret is empty");
  auto state = std::make_unique<State>();
  switch (alg) {
    case HashAlgorithm::kSha1:
      state->states = MakeHmacStates<Sha1Traits>(secret);
      break;
    case HashAlgorithm::kSha256:
      state->states = MakeHmacStates<Sha256Traits>(secret);
      break;
    case HashAlgorithm::kSha512:
      state->states = MakeHmacStates<Sha512Traits>(secret);
      break;
    default:
      return InvalidArgument("unknown hash algorithm");
  }
  return HotpKey(std::move(state));
}

HotpKey::HotpKey(std::unique_ptr<State> state) : state_(std::move(state)) {}
HotpKey::HotpKey(HotpKey&&) noexcept = default;
HotpKey& HotpKey::operator=(HotpKey&&) noexcept = default;
HotpKey::HotpKey(const HotpKey& other)
    : state_(other.state_ ? std::make_unique<State>(*other.state_) : nullptr) {}
HotpKey& HotpKey::operator=(const HotpKey& other) {
  if (this != &other) state_ = other.state_ ? std::make_unique<State>(*other.state_) : nullptr;
  return *this;
}
HotpKey::~HotpKey() = default;

HashAlgorithm HotpKey::algorithm() const {
  return static_cast<HashAlgorithm>(state_->states.index());
}

std::uint32_t HotpKey::Truncated(std::uint64_t counter) const {
  return std::visit([counter](const auto& s) { return TruncatedHmac(s, counter); }, state_->states);
}

std::string HotpKey::Generate(std::uint64_t counter, int digits) const {
  CheckDigits(digits);
  return FormatCode(Truncated(counter), digits);
}

std::string FormatCode(std::uint32_t value, int digits) {
  if (digits < 1 || digits > 10) throw std::invalid_argument("otp: code digits must be 1..10");
  return internal::ZeroPaddedDecimal(value, digits);
}

std::optional<std::uint64_t> HotpVerify(const HotpKey& key, std::string_view code,
                                        std::uint64_t counter, int digits, int look_ahead) {
  CheckDigits(digits);
  if (code.size() != static_cast<std::size_t>(digits)) return std::nullopt;
  for (int i = 0; i <= look_ahead; ++i) {
    const std::uint64_t candidate = counter + static_cast<std::uint64_t>(i);
    if (candidate < counter) break;  // wrapped past 2^64 - 1
    if (ConstantTimeEqual(key.Generate(candidate, digits), code)) return candidate;
  }
  return std::nullopt;
}

}  // namespace otp
