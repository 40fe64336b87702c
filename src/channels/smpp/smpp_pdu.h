// SMPP 3.4 PDUs: a pure codec between bytes and a plain struct, no I/O.
//
// Why our own codec and not libsmpp34 (Debian libsmpp34-dev, named in SPEC §1):
//  - libsmpp34 reports errors through process-wide globals (smpp34_errno,
//    smpp34_strerror), so two providers decoding on two threads race on them;
//  - its PDU structs have fixed-size char arrays and it uses a global hook for
//    TLV allocation, which makes a bounded, allocation-clean fuzz target awkward;
//  - otpd needs eight commands; this file is smaller than the glue libsmpp34
//    would need, and it is a pure function pair that issue 5 can fuzz directly.
//
// Only what an ESME needs is decoded into fields (bind_transceiver and its
// resp, submit_sm/deliver_sm and their resps, enquire_link, unbind,
// generic_nack); any other command decodes to its header alone, so the caller
// can answer it with generic_nack. Thread-safe: pure functions over values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otp/status.h"

namespace otpd::smpp {

// command_id values (SMPP 3.4 §5.1.2.1).
inline constexpr std::uint32_t kGenericNack = 0x80000000;
inline constexpr std::uint32_t kBindTransceiver = 0x00000009;
inline constexpr std::uint32_t kBindTransceiverResp = 0x80000009;
inline constexpr std::uint32_t kSubmitSm = 0x00000004;
inline constexpr std::uint32_t kSubmitSmResp = 0x80000004;
inline constexpr std::uint32_t kDeliverSm = 0x00000005;
inline constexpr std::uint32_t kDeliverSmResp = 0x80000005;
inline constexpr std::uint32_t kUnbind = 0x00000006;
inline constexpr std::uint32_t kUnbindResp = 0x80000006;
inline constexpr std::uint32_t kEnquireLink = 0x00000015;
inline constexpr std::uint32_t kEnquireLinkResp = 0x80000015;

// command_status values otpd acts on (SMPP 3.4 §5.1.3).
inline constexpr std::uint32_t kEsmeRok = 0x00000000;
inline constexpr std::uint32_t kEsmeRinvCmdId = 0x00000003;
inline constexpr std::uint32_t kEsmeRsysErr = 0x00000008;
inline constexpr std::uint32_t kEsmeRthrottled = 0x00000058;
inline constexpr std::uint32_t kEsmeRxTAppn = 0x00000064;  // temporary: send it again later

// Optional parameter tags (SMPP 3.4 §5.3.2).
inline constexpr std::uint16_t kTagReceiptedMessageId = 0x001E;
inline constexpr std::uint16_t kTagMessageState = 0x0427;
inline constexpr std::uint16_t kTagMessagePayload = 0x0424;

// esm_class bits of a deliver_sm that is an SMSC delivery receipt.
inline constexpr std::uint8_t kEsmClassTypeMask = 0x3C;
inline constexpr std::uint8_t kEsmClassDeliveryReceipt = 0x04;

inline constexpr std::uint32_t kHeaderLength = 16;
// Largest PDU otpd accepts; SMPP sets no limit, real ones stay far below.
inline constexpr std::uint32_t kMaxPduLength = 64 * 1024;

struct Tlv {
  std::uint16_t tag = 0;
  std::string value;  // raw octets
  bool operator==(const Tlv&) const = default;
};

// One PDU. Which fields are on the wire depends on command_id:
//  bind_transceiver:      system_id, password, system_type, interface_version,
//                         addr_ton, addr_npi, address_range
//  bind_transceiver_resp: system_id (only when command_status is 0), tlvs
//  submit_sm, deliver_sm: the "message" fields below, tlvs
//  submit_sm_resp, deliver_sm_resp: message_id (only when command_status is 0
//                         for submit_sm_resp)
//  enquire_link(_resp), unbind(_resp), generic_nack: header only
struct Pdu {
  std::uint32_t command_id = 0;
  std::uint32_t command_status = 0;
  std::uint32_t sequence_number = 0;

  // bind
  std::string system_id;    // max 15 octets
  std::string password;     // max 8
  std::string system_type;  // max 12
  std::uint8_t interface_version = 0x34;
  std::uint8_t addr_ton = 0;
  std::uint8_t addr_npi = 0;
  std::string address_range;  // max 40

  // submit_sm / deliver_sm
  std::string service_type;  // max 5
  std::uint8_t source_addr_ton = 0;
  std::uint8_t source_addr_npi = 0;
  std::string source_addr;  // max 20
  std::uint8_t dest_addr_ton = 0;
  std::uint8_t dest_addr_npi = 0;
  std::string destination_addr;  // max 20
  std::uint8_t esm_class = 0;
  std::uint8_t protocol_id = 0;
  std::uint8_t priority_flag = 0;
  std::string schedule_delivery_time;  // "" or 16 characters
  std::string validity_period;         // "" or 16 characters
  std::uint8_t registered_delivery = 0;
  std::uint8_t replace_if_present_flag = 0;
  std::uint8_t data_coding = 0;
  std::uint8_t sm_default_msg_id = 0;
  std::string short_message;  // max 254 raw octets (sm_length)

  // submit_sm_resp / deliver_sm_resp
  std::string message_id;  // max 64

  std::vector<Tlv> tlvs;

  // The value of the first TLV with `tag`, if any.
  std::optional<std::string_view> FindTlv(std::uint16_t tag) const;

  bool operator==(const Pdu&) const = default;
};

// The whole PDU on the wire, header included. InvalidArgument when a field is
// longer than SMPP allows (a C-octet string over its maximum, a short_message
// over 254 octets, a TLV over 65535) or contains a NUL where a C-octet string
// cannot, or for a command_id this codec does not encode.
otp::Result<std::string> EncodePdu(const Pdu& pdu);

// Parses one whole PDU (`bytes` is exactly command_length octets).
// InvalidArgument on any malformation: a length that disagrees with `bytes`,
// below 16 or above kMaxPduLength, a C-octet string without its NUL within its
// maximum, a short_message or TLV running past the end, trailing bytes that are
// not whole TLVs. Commands outside the list above decode to their header.
otp::Result<Pdu> DecodePdu(std::string_view bytes);

// command_length from the first four octets of a PDU (`prefix` holds at least
// 4). InvalidArgument when below 16 or above kMaxPduLength: the stream cannot
// be resynchronised and must be closed.
otp::Result<std::uint32_t> PduLength(std::string_view prefix);

// "submit_sm", "bind_transceiver_resp", ... or "0x…" for others (logs).
std::string CommandName(std::uint32_t command_id);

// "ESME_RTHROTTLED (0x00000058)", or "0x…" for codes without a name (logs).
std::string StatusName(std::uint32_t command_status);

}  // namespace otpd::smpp
