// The hashes on otpd's hot path, on OpenSSL's low-level SHA-256 (see
// hmac_states.h for why): EVP_Digest and HMAC() fetch the algorithm and build a
// context on every call, which costs several times the hashing itself.
#include "core/hmac_states.h"  // first: it sets OPENSSL_SUPPRESS_DEPRECATED
#include "otp/crypto.h"

namespace otp {

using internal::HmacStates;
using internal::Sha256Traits;

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest out;
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, data.data(), data.size());
  SHA256_Final(out.data(), &ctx);
  return out;
}

struct CodeHasher::State {
  HmacStates<Sha256Traits> states;
  ~State() { OPENSSL_cleanse(&states, sizeof states); }
};

CodeHasher::CodeHasher(const std::array<std::uint8_t, 32>& key)
    : state_(std::make_shared<const State>(State{internal::MakeHmacStates<Sha256Traits>(key)})) {}

std::string CodeHasher::Hash(std::string_view binding, std::string_view code) const {
  // binding || 0x00 || code, in a stack buffer for the usual short inputs.
  char stack[256];
  std::string heap;
  const std::size_t size = binding.size() + 1 + code.size();
  char* message = stack;
  if (size > sizeof stack) {
    heap.resize(size);
    message = heap.data();
  }
  std::memcpy(message, binding.data(), binding.size());
  message[binding.size()] = '\0';
  std::memcpy(message + binding.size() + 1, code.data(), code.size());
  Sha256Digest mac;
  internal::Hmac(state_->states, std::string_view(message, size), mac.data());
  OPENSSL_cleanse(message, size);
  return HexEncode(mac);
}

bool CodeHasher::Matches(std::string_view binding, std::string_view code,
                         std::string_view stored) const {
  return ConstantTimeEqual(Hash(binding, code), stored);
}

}  // namespace otp
