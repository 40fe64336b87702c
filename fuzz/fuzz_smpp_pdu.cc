// Fuzz target: SMPP 3.4 PDU decoding (src/channels/smpp/smpp_pdu.h), the bytes
// an SMSC (or anything answering on its port) sends to otpd, and the delivery
// receipt read from a decoded deliver_sm.
//
// Properties beyond "no crash, no leak, no UB":
//  - PduLength agrees with DecodePdu about the length prefix;
//  - a decoded PDU that EncodePdu accepts encodes to bytes that decode again
//    and encode to the very same bytes (the codec is a fixpoint after one trip;
//    decoding is lenient where SMSCs are, e.g. a system_id in an error resp).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "channels/smpp/receipt.h"
#include "channels/smpp/smpp_pdu.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace otpd::smpp;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  auto length = PduLength(bytes);
  auto pdu = DecodePdu(bytes);
  if (!pdu.ok()) return 0;
  if (!length.ok() || *length != size) std::abort();

  (void)CommandName(pdu->command_id);
  (void)StatusName(pdu->command_status);
  if (auto receipt = ParseReceipt(*pdu)) {
    if (receipt->message_id.empty() || receipt->stat.empty()) std::abort();
    (void)DeliveryStatusForStat(receipt->stat);
  }

  auto encoded = EncodePdu(*pdu);
  if (!encoded.ok()) return 0;
  auto again = DecodePdu(*encoded);
  if (!again.ok()) std::abort();
  auto encoded_again = EncodePdu(*again);
  if (!encoded_again.ok() || *encoded_again != *encoded) std::abort();
  return 0;
}
