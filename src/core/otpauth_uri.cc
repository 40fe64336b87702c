#include "otp/otpauth_uri.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include "core/internal.h"
#include "otp/base32.h"
#include "otp/percent.h"

namespace otp {
namespace {

constexpr std::string_view kScheme = "otpauth://";

// A decimal integer in [min, max], digits only.
template <typename T>
Result<T> ParseNumber(std::string_view text, T min, T max, const char* what) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || text[0] == '-' ||
      value < min || value > max) {
    return InvalidArgument(std::string("otpauth URI: bad ") + what);
  }
  return value;
}

}  // namespace

std::string BuildOtpAuthUri(const OtpAuthUri& uri) {
  std::string out(kScheme);
  out += uri.type == OtpType::kHotp ? "hotp/" : "totp/";
  // Without an issuer, an account holding ':' gets an empty issuer prefix:
  // Parse reads an escaped colon as the separator when the label has no literal one.
  if (!uri.issuer.empty() || uri.account.find(':') != std::string::npos) {
    out += PercentEncode(uri.issuer);
    out += ':';
  }
  out += PercentEncode(uri.account);
  out += "?secret=";
  out += Base32Encode(uri.secret, /*pad=*/false);
  if (!uri.issuer.empty()) {
    out += "&issuer=";
    out += PercentEncode(uri.issuer);
  }
  out += "&algorithm=";
  out += HashAlgorithmName(uri.algorithm);
  out += "&digits=";
  out += std::to_string(uri.digits);
  if (uri.type == OtpType::kHotp) {
    out += "&counter=";
    out += std::to_string(uri.counter);
  } else {
    out += "&period=";
    out += std::to_string(uri.period);
  }
  return out;
}

Result<OtpAuthUri> ParseOtpAuthUri(std::string_view text) {
  if (text.size() < kScheme.size() ||
      !internal::EqualsIgnoringAsciiCase(text.substr(0, kScheme.size()), kScheme)) {
    return InvalidArgument("otpauth URI: scheme is not otpauth://");
  }
  std::string_view rest = text.substr(kScheme.size());
  if (const auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);

  OtpAuthUri uri;
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return InvalidArgument("otpauth URI: no label");
  const std::string_view type = rest.substr(0, slash);
  if (internal::EqualsIgnoringAsciiCase(type, "totp")) {
    uri.type = OtpType::kTotp;
  } else if (internal::EqualsIgnoringAsciiCase(type, "hotp")) {
    uri.type = OtpType::kHotp;
  } else {
    return InvalidArgument("otpauth URI: type is not totp or hotp");
  }
  rest = rest.substr(slash + 1);
  const auto question = rest.find('?');
  const std::string_view raw_label = rest.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : rest.substr(question + 1);

  // Label: "issuer:account" or "account". The separator may be a literal or an
  // escaped colon; a literal one is preferred so that an escaped colon inside an
  // issuer (as BuildOtpAuthUri writes it) stays part of the issuer.
  std::string label_issuer;
  std::string account;
  if (const auto colon = raw_label.find(':'); colon != std::string_view::npos) {
    Result<std::string> issuer = PercentDecode(raw_label.substr(0, colon), false);
    if (!issuer.ok()) return issuer.status();
    Result<std::string> name = PercentDecode(raw_label.substr(colon + 1), false);
    if (!name.ok()) return name.status();
    label_issuer = std::move(*issuer);
    account = std::move(*name);
  } else {
    Result<std::string> label = PercentDecode(raw_label, false);
    if (!label.ok()) return label.status();
    if (const auto colon2 = label->find(':'); colon2 != std::string::npos) {
      label_issuer = label->substr(0, colon2);
      account = label->substr(colon2 + 1);
    } else {
      account = std::move(*label);
    }
  }
  // The Key Uri Format allows spaces before the account name.
  account.erase(0, std::min(account.find_first_not_of(' '), account.size()));
  if (account.empty()) return InvalidArgument("otpauth URI: no account name");
  uri.account = std::move(account);

  bool have_secret = false;
  bool have_issuer = false;
  std::string issuer_param;
  std::string_view params = query;
  while (!params.empty()) {
    const auto amp = params.find('&');
    const std::string_view pair = params.substr(0, amp);
    params = amp == std::string_view::npos ? std::string_view() : params.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    Result<std::string> decoded = PercentDecode(
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
    if (!decoded.ok()) return decoded.status();
    std::string& value = *decoded;

    if (key == "secret") {
      if (have_secret) return InvalidArgument("otpauth URI: secret given twice");
      Result<std::vector<std::uint8_t>> secret = Base32Decode(value);
      if (!secret.ok()) return InvalidArgument("otpauth URI: secret is not base32");
      uri.secret = std::move(*secret);
      have_secret = true;
    } else if (key == "issuer") {
      if (have_issuer) return InvalidArgument("otpauth URI: issuer given twice");
      issuer_param = std::move(value);
      have_issuer = true;
    } else if (key == "algorithm") {
      Result<HashAlgorithm> alg = ParseHashAlgorithm(value);
      if (!alg.ok()) return InvalidArgument("otpauth URI: bad algorithm");
      uri.algorithm = *alg;
    } else if (key == "digits") {
      Result<int> digits = ParseNumber<int>(value, 6, 10, "digits (want 6..10)");
      if (!digits.ok()) return digits.status();
      uri.digits = *digits;
    } else if (key == "period" && uri.type == OtpType::kTotp) {
      Result<int> period = ParseNumber<int>(value, 1, 3600, "period (want 1..3600)");
      if (!period.ok()) return period.status();
      uri.period = *period;
    } else if (key == "counter" && uri.type == OtpType::kHotp) {
      Result<std::uint64_t> counter = ParseNumber<std::uint64_t>(
          value, 0, std::numeric_limits<std::uint64_t>::max(), "counter");
      if (!counter.ok()) return counter.status();
      uri.counter = *counter;
    }
    // Other parameters (image, color, ..., period for HOTP, counter for TOTP)
    // are ignored.
  }
  if (!have_secret || uri.secret.empty()) return InvalidArgument("otpauth URI: no secret");
  // An empty issuer parameter counts as absent.
  if (!issuer_param.empty() && !label_issuer.empty() && issuer_param != label_issuer) {
    return InvalidArgument("otpauth URI: issuer parameter differs from the label prefix");
  }
  uri.issuer = issuer_param.empty() ? std::move(label_issuer) : std::move(issuer_param);
  return uri;
}

}  // namespace otp
