#include "service/recipients.h"

#include <phonenumbers/phonenumberutil.h>

#include <algorithm>
#include <cctype>

namespace otpd {

using i18n::phonenumbers::PhoneNumberUtil;

bool IsPhoneChannel(std::string_view channel) { return channel != "email" && channel != "push"; }

namespace {

otp::Result<PhoneNumber> ParseOnce(std::string_view text) {
  if (text.size() > 32 || text.empty() || text.front() != '+') {
    return otp::InvalidArgument("a phone number must be in E.164 form, starting with '+'");
  }
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  i18n::phonenumbers::PhoneNumber number;
  if (util.Parse(std::string(text), "ZZ", &number) != PhoneNumberUtil::NO_PARSING_ERROR ||
      !util.IsValidNumber(number)) {
    return otp::InvalidArgument("not a valid phone number");
  }
  const auto type = util.GetNumberType(number);
  if (type == PhoneNumberUtil::PREMIUM_RATE || type == PhoneNumberUtil::SHARED_COST) {
    return otp::InvalidArgument("premium-rate and shared-cost numbers are refused");
  }
  // Neither reaches a person's handset: a code sent there is money spent for
  // nothing (and a favourite of SMS pumping).
  if (type == PhoneNumberUtil::UAN || type == PhoneNumberUtil::VOICEMAIL) {
    return otp::InvalidArgument("UAN and voicemail numbers are refused");
  }
  PhoneNumber out;
  util.Format(number, PhoneNumberUtil::E164, &out.e164);
  util.GetRegionCodeForNumber(number, &out.region);
  if (out.region == "ZZ") out.region.clear();
  return out;
}

}  // namespace

otp::Result<PhoneNumber> ParsePhoneNumber(std::string_view text) {
  auto first = ParseOnce(text);
  // Already in the form it formats to: parsing that form again gives the same.
  if (!first.ok() || first->e164 == text) return first;
  // libphonenumber's E.164 form is not always a fixed point: "+520217436666266"
  // formats as +5217436666266 (Mexico's old mobile '1'), which parses to
  // +527436666266. One number must have one key (recipient limits, check by
  // recipient), so take the form that parses to itself.
  auto second = ParseOnce(first->e164);
  if (!second.ok() || second->e164 == first->e164) return second;
  auto third = ParseOnce(second->e164);
  if (!third.ok() || third->e164 != second->e164) {
    return otp::InvalidArgument("not a valid phone number");
  }
  return second;
}

otp::Result<std::string> ParseEmail(std::string_view text) {
  const auto at = text.find('@');
  if (text.size() > 254 || at == std::string_view::npos || at == 0 ||
      text.find('@', at + 1) != std::string_view::npos || at > 64) {
    return otp::InvalidArgument("not a valid email address");
  }
  std::string local(text.substr(0, at));
  std::string domain(text.substr(at + 1));
  auto local_ok = [](unsigned char c) {
    return std::isalnum(c) || std::string_view("!#$%&'*+/=?^_`{|}~.-").find(static_cast<char>(c)) !=
                                  std::string_view::npos;
  };
  if (!std::all_of(local.begin(), local.end(), local_ok) || local.front() == '.' ||
      local.back() == '.' || local.find("..") != std::string::npos) {
    return otp::InvalidArgument("not a valid email address");
  }
  // Domain: dot-separated labels of letters, digits and inner hyphens, at least two.
  std::transform(domain.begin(), domain.end(), domain.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (domain.empty() || domain.find('.') == std::string::npos) {
    return otp::InvalidArgument("not a valid email address");
  }
  std::size_t start = 0;
  while (start <= domain.size()) {
    auto end = domain.find('.', start);
    if (end == std::string::npos) end = domain.size();
    std::string_view label(domain.data() + start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
        !std::all_of(label.begin(), label.end(),
                     [](unsigned char c) { return std::isalnum(c) || c == '-'; })) {
      return otp::InvalidArgument("not a valid email address");
    }
    start = end + 1;
  }
  return local + "@" + domain;
}

std::string LocaleForRegion(std::string_view region) {
  static const std::pair<std::string_view, std::string_view> kMap[] = {
      {"GR", "el"}, {"CY", "el"}, {"DE", "de"}, {"AT", "de"}, {"CH", "de"}, {"LI", "de"},
      {"FR", "fr"}, {"BE", "fr"}, {"LU", "fr"}, {"MC", "fr"}, {"ES", "es"}, {"MX", "es"},
      {"AR", "es"}, {"CO", "es"}, {"CL", "es"}, {"PE", "es"}, {"VE", "es"}, {"EC", "es"},
      {"GT", "es"}, {"CU", "es"}, {"BO", "es"}, {"DO", "es"}, {"HN", "es"}, {"PY", "es"},
      {"SV", "es"}, {"NI", "es"}, {"CR", "es"}, {"PA", "es"}, {"UY", "es"}};
  for (const auto& [r, l] : kMap) {
    if (r == region) return std::string(l);
  }
  return "en";
}

}  // namespace otpd
