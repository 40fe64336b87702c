// Hardware-token seed files: PSKC (RFC 6030) and the project's CSV (SPEC §4.2).
//
// Both parsers are pure functions of their input (no store, no clock): they turn
// a vendor's file into ImportedTokens or refuse the whole file with one
// InvalidArgument whose message names the key or line at fault. Nothing is
// imported partially. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otp/status.h"

namespace otpd {

// Imported seeds shorter than this are refused (RFC 4226 R6, SECURITY.md 11).
inline constexpr std::size_t kMinImportedSeedBytes = 16;

// One token from a seed file.
struct ImportedToken {
  std::string serial;                // DeviceInfo/SerialNo, else Key Id; unique per file
  std::vector<std::uint8_t> secret;  // the raw seed, >= kMinImportedSeedBytes
  std::string type;                  // "hotp" | "totp"
  std::string algorithm;             // "SHA1" | "SHA256" | "SHA512"
  int digits = 6;                    // 6..10
  int period = 30;                   // TOTP seconds per step, 15..120 (30 for HOTP)
  std::int64_t counter = 0;          // HOTP moving factor (0 for TOTP)
};

struct PskcOptions {
  // The pre-shared AES-128 key (16 bytes) for files whose EncryptionKey is a KeyName.
  std::optional<std::vector<std::uint8_t>> key;
  // The password for files whose EncryptionKey is a PBKDF2 DerivedKey.
  std::optional<std::string> password;
  // Files with unencrypted secrets (PlainValue) are refused unless this is set.
  bool allow_plaintext = false;
};

// Parses a PSKC document (RFC 6030) holding HOTP and TOTP key packages.
// Encrypted secrets (AES-128-CBC under a pre-shared key or a PBKDF2-derived key)
// have their ValueMAC checked against the MACMethod's key before any secret is
// decrypted; one wrong MAC refuses the file.
otp::Result<std::vector<ImportedToken>> ParsePskc(std::string_view xml, const PskcOptions& options);

// Parses the CSV format of SPEC §4.2: the header line
// `serial,secret_hex,type,digits,period_or_counter`, then one token a line
// (period for totp, counter for hotp; SHA1). Blank lines are skipped; errors
// name the 1-based line number.
otp::Result<std::vector<ImportedToken>> ParseTokenCsv(std::string_view csv);

}  // namespace otpd
