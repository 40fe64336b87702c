// Fuzz target: the recipient parsers every start request goes through
// (src/service/recipients.h): phone numbers (our wrapper over libphonenumber),
// email addresses, and the masking used in logs.
//
// Properties beyond "no crash, no leak, no UB":
//  - a parsed number is '+' and digits only, and parses to itself;
//  - a parsed email parses to itself (normalisation is idempotent);
//  - MaskRecipient never shows more than the last 4 characters of a number.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "service/recipients.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto phone = otpd::ParsePhoneNumber(text); phone.ok()) {
    const std::string& e164 = phone->e164;
    // libphonenumber keeps national numbers of up to 17 digits (Germany has
    // some of 14), so the whole may pass E.164's 15: only the shape is checked.
    if (e164.size() < 2 || e164.size() > 21 || e164[0] != '+') std::abort();
    for (std::size_t i = 1; i < e164.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(e164[i]))) std::abort();
    }
    auto again = otpd::ParsePhoneNumber(e164);
    if (!again.ok() || again->e164 != e164 || again->region != phone->region) std::abort();
    const std::string masked = otpd::MaskRecipient(e164);
    if (masked.size() != e164.size() ||
        masked.substr(0, masked.size() - 4).find_first_of("0123456789") != std::string::npos) {
      std::abort();
    }
    (void)otpd::LocaleForRegion(phone->region);
  }

  if (auto email = otpd::ParseEmail(text); email.ok()) {
    auto again = otpd::ParseEmail(*email);
    if (!again.ok() || *again != *email) std::abort();
  }
  (void)otpd::MaskRecipient(text);
  return 0;
}
