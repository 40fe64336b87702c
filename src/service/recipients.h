// Recipients: phone numbers (E.164, via libphonenumber) and email addresses.
// Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "otp/status.h"
#include "store/model.h"  // MaskRecipient

namespace otpd {

struct PhoneNumber {
  std::string e164;    // "+306912345678"
  std::string region;  // ISO 3166 alpha-2, e.g. "GR"; "" if unknown
};

// True for channels that deliver to a phone number.
bool IsPhoneChannel(std::string_view channel);

// Parses a number written in international form ("+30 691 234 5678" and
// similar punctuation allowed) and returns it normalised. InvalidArgument when
// it is not a valid number, or is premium-rate / shared-cost / UAN / voicemail.
otp::Result<PhoneNumber> ParsePhoneNumber(std::string_view text);

// Validates an email address (one '@', sane local part and dotted domain,
// ≤ 254 characters) and returns it with the domain lower-cased.
otp::Result<std::string> ParseEmail(std::string_view text);

// The default message language for a region ("GR" → "el"); "en" otherwise.
std::string LocaleForRegion(std::string_view region);

}  // namespace otpd
