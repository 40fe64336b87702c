// The master key and the keys derived from it (SPEC §6).
//
// The master key file holds 32 random bytes, mode 0600; it is created on first
// use and refused when readable by group or others. Purpose keys are derived
// with HKDF so one master key serves code hashing and secret sealing apart.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "otp/crypto.h"
#include "otp/sealing.h"
#include "otp/status.h"

namespace otpd {

using MasterKey = std::array<std::uint8_t, 32>;

// Reads the key at `path`, creating it (and its directory) if missing.
otp::Result<MasterKey> LoadOrCreateMasterKey(const std::string& path);

// Everything keyed by the master key. Immutable, thread-safe.
struct Secrets {
  explicit Secrets(const MasterKey& master);
  otp::CodeHasher code_hasher;  // verification and recovery codes
  otp::Keyring keyring;         // sealed codes and token secrets
};

// SHA-256 of an API key, hex: what the store keeps.
std::string HashApiKey(std::string_view api_key);

}  // namespace otpd
