// SMSC delivery receipts (SMPP 3.4 Appendix B): what a deliver_sm with
// esm_class "delivery receipt" says about a message otpd submitted.
// Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "channels/smpp/smpp_pdu.h"

namespace otpd::smpp {

struct Receipt {
  std::string message_id;  // the submit_sm_resp message_id it is about
  std::string stat;        // "DELIVRD", "UNDELIV", ... (upper case, as sent)
  std::string err;         // "" when absent
};

// Parses the receipt text "id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm
// done date:YYMMDDhhmm stat:DDDDDDD err:E text: . . ." (fields after id and stat
// are optional, keys are case-insensitive, the order is as in the appendix but
// not relied on). nullopt when id or stat is missing or empty.
std::optional<Receipt> ParseReceiptText(std::string_view text);

// A receipt from a whole deliver_sm: the receipted_message_id and message_state
// TLVs when present (they win over the text), else the text of short_message or
// of the message_payload TLV. nullopt when `pdu` is not a delivery receipt
// (esm_class) or carries neither an id nor a state.
std::optional<Receipt> ParseReceipt(const Pdu& pdu);

// The delivery status a receipt state means (store/model.h): kDeliveryDelivered
// for DELIVRD; kDeliveryUndelivered for UNDELIV, EXPIRED, DELETED, UNKNOWN;
// kDeliveryFailed for REJECTD; "" for states that are not final (ACCEPTD,
// ENROUTE) or not known.
std::string DeliveryStatusForStat(std::string_view stat);

}  // namespace otpd::smpp
