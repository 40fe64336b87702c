#include "channels/smpp/sms_text.h"

#include <array>
#include <optional>
#include <vector>

namespace otpd::smpp {
namespace {

constexpr std::uint8_t kEscape = 0x1B;

// GSM 03.38 default alphabet, septet -> Unicode (0x1B is the escape).
constexpr std::array<char32_t, 128> kBasic = {
    U'@', U'£', U'$', U'¥', U'è', U'é', U'ù', U'ì', U'ò', U'Ç',  U'\n', U'Ø', U'ø', U'\r', U'Å',
    U'å', U'Δ', U'_', U'Φ', U'Γ', U'Λ', U'Ω', U'Π', U'Ψ', U'Σ',  U'Θ',  U'Ξ', 0x1B, U'Æ',  U'æ',
    U'ß', U'É', U' ', U'!', U'"', U'#', U'¤', U'%', U'&', U'\'', U'(',  U')', U'*', U'+',  U',',
    U'-', U'.', U'/', U'0', U'1', U'2', U'3', U'4', U'5', U'6',  U'7',  U'8', U'9', U':',  U';',
    U'<', U'=', U'>', U'?', U'¡', U'A', U'B', U'C', U'D', U'E',  U'F',  U'G', U'H', U'I',  U'J',
    U'K', U'L', U'M', U'N', U'O', U'P', U'Q', U'R', U'S', U'T',  U'U',  U'V', U'W', U'X',  U'Y',
    U'Z', U'Ä', U'Ö', U'Ñ', U'Ü', U'§', U'¿', U'a', U'b', U'c',  U'd',  U'e', U'f', U'g',  U'h',
    U'i', U'j', U'k', U'l', U'm', U'n', U'o', U'p', U'q', U'r',  U's',  U't', U'u', U'v',  U'w',
    U'x', U'y', U'z', U'ä', U'ö', U'ñ', U'ü', U'à'};

struct Extension {
  std::uint8_t septet;  // after the escape
  char32_t ch;
};
constexpr std::array<Extension, 10> kExtension = {{{0x0A, U'\f'},
                                                   {0x14, U'^'},
                                                   {0x28, U'{'},
                                                   {0x29, U'}'},
                                                   {0x2F, U'\\'},
                                                   {0x3C, U'['},
                                                   {0x3D, U'~'},
                                                   {0x3E, U']'},
                                                   {0x40, U'|'},
                                                   {0x65, U'€'}}};

// Decodes UTF-8 into code points; nullopt when malformed (overlong forms,
// surrogates and values past U+10FFFF included).
std::optional<std::vector<char32_t>> DecodeUtf8(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int extra = 0;
    char32_t cp = 0;
    if (b0 < 0x80) {
      cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      extra = 1;
      cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      extra = 2;
      cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      extra = 3;
      cp = b0 & 0x07;
    } else {
      return std::nullopt;
    }
    if (i + static_cast<std::size_t>(extra) >= s.size()) return std::nullopt;
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((b & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
    out.push_back(cp);
    i += static_cast<std::size_t>(extra) + 1;
  }
  return out;
}

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The GSM-7 septets of one character: 1 (basic), 2 (escape + extension), 0 (none).
int Gsm7Septets(char32_t cp, std::uint8_t out[2]) {
  if (cp == kEscape) return 0;  // the escape itself is not a character
  for (std::size_t i = 0; i < kBasic.size(); ++i) {
    if (kBasic[i] == cp) {
      out[0] = static_cast<std::uint8_t>(i);
      return 1;
    }
  }
  for (const Extension& e : kExtension) {
    if (e.ch == cp) {
      out[0] = kEscape;
      out[1] = e.septet;
      return 2;
    }
  }
  return 0;
}

}  // namespace

bool EncodedText::FitsOneSegment() const {
  return data_coding == kDataCodingGsm7 ? octets.size() <= kGsm7SegmentSeptets
                                        : octets.size() <= kUcs2SegmentOctets;
}

bool FitsGsm7(std::string_view utf8) {
  auto cps = DecodeUtf8(utf8);
  if (!cps) return false;
  std::uint8_t septets[2];
  for (char32_t cp : *cps) {
    if (Gsm7Septets(cp, septets) == 0) return false;
  }
  return true;
}

otp::Result<EncodedText> EncodeSmsText(std::string_view utf8) {
  auto cps = DecodeUtf8(utf8);
  if (!cps) return otp::InvalidArgument("sms text is not valid UTF-8");
  EncodedText gsm{kDataCodingGsm7, {}};
  bool fits = true;
  for (char32_t cp : *cps) {
    std::uint8_t septets[2];
    const int n = Gsm7Septets(cp, septets);
    if (n == 0) {
      fits = false;
      break;
    }
    gsm.octets.append(reinterpret_cast<const char*>(septets), static_cast<std::size_t>(n));
  }
  if (fits) return gsm;
  EncodedText ucs2{kDataCodingUcs2, {}};
  ucs2.octets.reserve(cps->size() * 2);
  auto unit = [&](char32_t u) {
    ucs2.octets.push_back(static_cast<char>((u >> 8) & 0xFF));
    ucs2.octets.push_back(static_cast<char>(u & 0xFF));
  };
  for (char32_t cp : *cps) {
    if (cp >= 0x10000) {
      const char32_t v = cp - 0x10000;
      unit(0xD800 + (v >> 10));
      unit(0xDC00 + (v & 0x3FF));
    } else {
      unit(cp);
    }
  }
  return ucs2;
}

otp::Result<std::string> DecodeGsm7(std::string_view septets) {
  std::string out;
  for (std::size_t i = 0; i < septets.size(); ++i) {
    const auto s = static_cast<std::uint8_t>(septets[i]);
    if (s > 0x7F) return otp::InvalidArgument("gsm-7: octet above 0x7f");
    if (s != kEscape) {
      AppendUtf8(out, kBasic[s]);
      continue;
    }
    if (++i == septets.size()) return otp::InvalidArgument("gsm-7: escape at the end");
    const auto e = static_cast<std::uint8_t>(septets[i]);
    if (e > 0x7F) return otp::InvalidArgument("gsm-7: octet above 0x7f");
    char32_t ch = e == kEscape ? U' ' : kBasic[e];
    for (const Extension& x : kExtension) {
      if (x.septet == e) ch = x.ch;
    }
    AppendUtf8(out, ch);
  }
  return out;
}

otp::Result<std::string> DecodeUcs2(std::string_view b) {
  if (b.size() % 2 != 0) return otp::InvalidArgument("ucs-2: odd number of octets");
  std::string out;
  for (std::size_t i = 0; i < b.size(); i += 2) {
    char32_t u = (static_cast<char32_t>(static_cast<unsigned char>(b[i])) << 8) |
                 static_cast<unsigned char>(b[i + 1]);
    if (u >= 0xD800 && u <= 0xDBFF) {
      if (i + 3 >= b.size()) return otp::InvalidArgument("ucs-2: lone high surrogate");
      const char32_t lo = (static_cast<char32_t>(static_cast<unsigned char>(b[i + 2])) << 8) |
                          static_cast<unsigned char>(b[i + 3]);
      if (lo < 0xDC00 || lo > 0xDFFF) return otp::InvalidArgument("ucs-2: broken surrogate pair");
      u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
      i += 2;
    } else if (u >= 0xDC00 && u <= 0xDFFF) {
      return otp::InvalidArgument("ucs-2: lone low surrogate");
    }
    AppendUtf8(out, u);
  }
  return out;
}

}  // namespace otpd::smpp
