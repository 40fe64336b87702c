// Fuzz targets for the hardware-token seed files (src/service/token_import.h):
// a vendor's PSKC document (RFC 6030, through libpskc, libxml2 and OpenSSL) and
// the project's CSV format. Built twice: OTP_FUZZ_PSKC selects the PSKC parser,
// otherwise the CSV one.
//
// PSKC input: the first byte picks the options (bit 0: allow plaintext
// secrets; bit 1: the pre-shared key of RFC 6030 Figure 6; bit 2: the password
// "qwerty" of Figure 7), the rest is the XML document.
//
// Properties beyond "no crash, no leak, no UB": every imported token satisfies
// the documented invariants (seed >= kMinImportedSeedBytes, digits 6..10,
// known type and algorithm, period 15..120 for TOTP, non-empty unique serial).
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "service/token_import.h"

namespace {

void CheckTokens(const std::vector<otpd::ImportedToken>& tokens) {
  std::set<std::string> serials;
  for (const otpd::ImportedToken& t : tokens) {
    if (t.serial.empty() || !serials.insert(t.serial).second) std::abort();
    if (t.secret.size() < otpd::kMinImportedSeedBytes) std::abort();
    if (t.digits < 6 || t.digits > 10) std::abort();
    if (t.type != "hotp" && t.type != "totp") std::abort();
    if (t.algorithm != "SHA1" && t.algorithm != "SHA256" && t.algorithm != "SHA512") std::abort();
    if (t.type == "totp" && (t.period < 15 || t.period > 120)) std::abort();
    if (t.counter < 0) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
#ifdef OTP_FUZZ_PSKC
  if (size == 0) return 0;
  otpd::PskcOptions options;
  options.allow_plaintext = (data[0] & 1) != 0;
  if ((data[0] & 2) != 0) {
    options.key = std::vector<std::uint8_t>{0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56,
                                            0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12};
  }
  if ((data[0] & 4) != 0) options.password = "qwerty";
  const std::string_view xml(reinterpret_cast<const char*>(data + 1), size - 1);
  auto tokens = otpd::ParsePskc(xml, options);
#else
  const std::string_view csv(reinterpret_cast<const char*>(data), size);
  auto tokens = otpd::ParseTokenCsv(csv);
#endif
  if (tokens.ok()) CheckTokens(*tokens);
  return 0;
}
