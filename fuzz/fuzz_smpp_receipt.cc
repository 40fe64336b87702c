// Fuzz target: the SMSC delivery receipt text parser (SMPP 3.4 Appendix B,
// otpd::smpp::ParseReceiptText), free text that an SMSC relays.
//
// Properties beyond "no crash, no leak, no UB": a parsed receipt has a
// non-empty id and stat, neither contains a space, and stat is upper case.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "channels/smpp/receipt.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace otpd::smpp;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto receipt = ParseReceiptText(text);
  if (!receipt) return 0;
  if (receipt->message_id.empty() || receipt->stat.empty()) std::abort();
  if (receipt->message_id.find(' ') != std::string::npos ||
      receipt->stat.find(' ') != std::string::npos || receipt->err.find(' ') != std::string::npos) {
    std::abort();
  }
  for (unsigned char c : receipt->stat) {
    if (std::islower(c)) std::abort();
  }
  (void)DeliveryStatusForStat(receipt->stat);
  return 0;
}
