// otpauth:// URIs (Google Authenticator "Key Uri Format").
//
//   otpauth://totp/Issuer:account?secret=BASE32&issuer=Issuer&algorithm=SHA1&digits=6&period=30
//
// Build percent-encodes the label and parameters; the secret is base32 without
// padding. Parse accepts what Build writes and what common apps write.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "otp/hotp.h"
#include "otp/status.h"

namespace otp {

enum class OtpType { kHotp, kTotp };

struct OtpAuthUri {
  OtpType type = OtpType::kTotp;
  std::string issuer;   // may be empty; when set it is also the label prefix
  std::string account;  // the label's account name, required
  std::vector<std::uint8_t> secret;
  HashAlgorithm algorithm = HashAlgorithm::kSha1;
  int digits = 6;
  int period = 30;            // TOTP only
  std::uint64_t counter = 0;  // HOTP only

  bool operator==(const OtpAuthUri&) const = default;
};

std::string BuildOtpAuthUri(const OtpAuthUri& uri);

// InvalidArgument on a wrong scheme, type, missing secret/account, bad base32,
// digits outside 6..10, period outside 1..3600, or an issuer parameter that
// contradicts the label prefix.
Result<OtpAuthUri> ParseOtpAuthUri(std::string_view text);

}  // namespace otp
