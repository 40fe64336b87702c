// SMS text encodings for SMPP (SPEC §4.1: GSM-7 when the text fits, else UCS-2).
//
// GSM-7 is the GSM 03.38 default alphabet plus its extension table (escape 0x1B
// then € [ ] { } \ ^ ~ | and form feed). SMPP's short_message carries GSM-7
// unpacked, one septet per octet (data_coding 0); packing into 7 bits is the
// SMSC's job. Everything else goes as UCS-2 big-endian (data_coding 8), with
// characters outside the BMP as UTF-16 surrogate pairs, as handsets expect.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "otp/status.h"

namespace otpd::smpp {

inline constexpr std::uint8_t kDataCodingGsm7 = 0x00;
inline constexpr std::uint8_t kDataCodingUcs2 = 0x08;

// Characters of one single-segment SMS, in septets (GSM-7) or octets (UCS-2).
inline constexpr std::size_t kGsm7SegmentSeptets = 160;
inline constexpr std::size_t kUcs2SegmentOctets = 140;

struct EncodedText {
  std::uint8_t data_coding = kDataCodingGsm7;
  std::string octets;  // unpacked septets (GSM-7) or UTF-16BE (UCS-2)

  // True when it fits one SMS segment (160 septets / 140 octets): sent in
  // short_message, else in the message_payload TLV.
  bool FitsOneSegment() const;
};

// `utf8` as GSM-7 if every character is in the default alphabet or its
// extension table, else as UCS-2. InvalidArgument when `utf8` is not valid UTF-8.
otp::Result<EncodedText> EncodeSmsText(std::string_view utf8);

// True when every character of `utf8` (valid UTF-8) has a GSM-7 encoding.
bool FitsGsm7(std::string_view utf8);

// The reverse, for receipts, tests and logs: InvalidArgument on a septet
// above 0x7F, a lone escape at the end, or (UCS-2) an odd length or a broken
// surrogate pair. An escape before an undefined extension code decodes as the
// base character, as GSM 03.38 recommends.
otp::Result<std::string> DecodeGsm7(std::string_view septets);
otp::Result<std::string> DecodeUcs2(std::string_view utf16be);

}  // namespace otpd::smpp
