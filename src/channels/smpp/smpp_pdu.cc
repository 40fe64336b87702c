#include "channels/smpp/smpp_pdu.h"

#include <cstdio>

namespace otpd::smpp {
namespace {

class Writer {
 public:
  explicit Writer(std::string* out) : out_(*out) {}
  void U8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(std::uint16_t v) {
    U8(static_cast<std::uint8_t>(v >> 8));
    U8(static_cast<std::uint8_t>(v));
  }
  void U32(std::uint32_t v) {
    U16(static_cast<std::uint16_t>(v >> 16));
    U16(static_cast<std::uint16_t>(v));
  }
  // A C-octet string of at most `max` characters before its NUL.
  bool CString(std::string_view s, std::size_t max) {
    if (s.size() > max || s.find('\0') != std::string_view::npos) return false;
    out_.append(s);
    out_.push_back('\0');
    return true;
  }
  void Raw(std::string_view s) { out_.append(s); }

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool AtEnd() const { return pos_ == in_.size(); }
  std::size_t Left() const { return in_.size() - pos_; }
  bool U8(std::uint8_t* v) {
    if (Left() < 1) return false;
    *v = static_cast<std::uint8_t>(in_[pos_++]);
    return true;
  }
  bool U16(std::uint16_t* v) {
    std::uint8_t a = 0, b = 0;
    if (!U8(&a) || !U8(&b)) return false;
    *v = static_cast<std::uint16_t>((a << 8) | b);
    return true;
  }
  bool U32(std::uint32_t* v) {
    std::uint16_t a = 0, b = 0;
    if (!U16(&a) || !U16(&b)) return false;
    *v = (static_cast<std::uint32_t>(a) << 16) | b;
    return true;
  }
  // A C-octet string whose NUL comes within max + 1 octets.
  bool CString(std::string* s, std::size_t max) {
    const std::size_t window = std::min(Left(), max + 1);
    const std::size_t nul = in_.substr(pos_, window).find('\0');
    if (nul == std::string_view::npos) return false;
    s->assign(in_.substr(pos_, nul));
    pos_ += nul + 1;
    return true;
  }
  bool Raw(std::string* s, std::size_t n) {
    if (Left() < n) return false;
    s->assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

bool EncodeMessage(const Pdu& p, Writer& w) {
  if (p.short_message.size() > 254) return false;
  if (!w.CString(p.service_type, 5)) return false;
  w.U8(p.source_addr_ton);
  w.U8(p.source_addr_npi);
  if (!w.CString(p.source_addr, 20)) return false;
  w.U8(p.dest_addr_ton);
  w.U8(p.dest_addr_npi);
  if (!w.CString(p.destination_addr, 20)) return false;
  w.U8(p.esm_class);
  w.U8(p.protocol_id);
  w.U8(p.priority_flag);
  if (!w.CString(p.schedule_delivery_time, 16)) return false;
  if (!w.CString(p.validity_period, 16)) return false;
  w.U8(p.registered_delivery);
  w.U8(p.replace_if_present_flag);
  w.U8(p.data_coding);
  w.U8(p.sm_default_msg_id);
  w.U8(static_cast<std::uint8_t>(p.short_message.size()));
  w.Raw(p.short_message);
  return true;
}

bool DecodeMessage(Reader& r, Pdu& p) {
  std::uint8_t sm_length = 0;
  return r.CString(&p.service_type, 5) && r.U8(&p.source_addr_ton) && r.U8(&p.source_addr_npi) &&
         r.CString(&p.source_addr, 20) && r.U8(&p.dest_addr_ton) && r.U8(&p.dest_addr_npi) &&
         r.CString(&p.destination_addr, 20) && r.U8(&p.esm_class) && r.U8(&p.protocol_id) &&
         r.U8(&p.priority_flag) && r.CString(&p.schedule_delivery_time, 16) &&
         r.CString(&p.validity_period, 16) && r.U8(&p.registered_delivery) &&
         r.U8(&p.replace_if_present_flag) && r.U8(&p.data_coding) && r.U8(&p.sm_default_msg_id) &&
         r.U8(&sm_length) && r.Raw(&p.short_message, sm_length);
}

// The commands whose body is a message_id (possibly absent on an error resp).
bool IsMessageIdResp(std::uint32_t id) { return id == kSubmitSmResp || id == kDeliverSmResp; }
bool IsHeaderOnly(std::uint32_t id) {
  return id == kEnquireLink || id == kEnquireLinkResp || id == kUnbind || id == kUnbindResp ||
         id == kGenericNack;
}

}  // namespace

std::optional<std::string_view> Pdu::FindTlv(std::uint16_t tag) const {
  for (const Tlv& t : tlvs) {
    if (t.tag == tag) return std::string_view(t.value);
  }
  return std::nullopt;
}

otp::Result<std::string> EncodePdu(const Pdu& p) {
  std::string out;
  Writer w(&out);
  w.U32(0);  // command_length, filled in below
  w.U32(p.command_id);
  w.U32(p.command_status);
  w.U32(p.sequence_number);
  bool ok = true;
  bool takes_tlvs = false;
  switch (p.command_id) {
    case kBindTransceiver:
      ok = w.CString(p.system_id, 15) && w.CString(p.password, 8) && w.CString(p.system_type, 12);
      w.U8(p.interface_version);
      w.U8(p.addr_ton);
      w.U8(p.addr_npi);
      ok = ok && w.CString(p.address_range, 40);
      break;
    case kBindTransceiverResp:
      // An error resp may go without a body, but TLVs follow the system_id:
      // without it the first TLV's octets would decode as one.
      if (p.command_status == kEsmeRok || !p.tlvs.empty()) ok = w.CString(p.system_id, 15);
      takes_tlvs = true;
      break;
    case kSubmitSm:
    case kDeliverSm:
      ok = EncodeMessage(p, w);
      takes_tlvs = true;
      break;
    case kSubmitSmResp:
    case kDeliverSmResp:
      if (p.command_status == kEsmeRok || p.command_id == kDeliverSmResp) {
        ok = w.CString(p.message_id, 64);
      }
      break;
    default:
      if (!IsHeaderOnly(p.command_id)) {
        return otp::InvalidArgument("smpp: cannot encode " + CommandName(p.command_id));
      }
  }
  if (!ok)
    return otp::InvalidArgument("smpp: a field of " + CommandName(p.command_id) +
                                " is too long or contains NUL");
  if (!p.tlvs.empty() && !takes_tlvs) {
    return otp::InvalidArgument("smpp: " + CommandName(p.command_id) + " takes no TLVs");
  }
  for (const Tlv& t : p.tlvs) {
    if (t.value.size() > 0xFFFF) return otp::InvalidArgument("smpp: TLV value over 65535 octets");
    w.U16(t.tag);
    w.U16(static_cast<std::uint16_t>(t.value.size()));
    w.Raw(t.value);
  }
  if (out.size() > kMaxPduLength) return otp::InvalidArgument("smpp: PDU over the maximum length");
  const auto n = static_cast<std::uint32_t>(out.size());
  for (int i = 0; i < 4; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<char>(n >> (24 - 8 * i));
  return out;
}

otp::Result<std::uint32_t> PduLength(std::string_view prefix) {
  std::uint32_t n = 0;
  Reader r(prefix);
  if (!r.U32(&n)) return otp::InvalidArgument("smpp: fewer than 4 octets of header");
  if (n < kHeaderLength || n > kMaxPduLength) {
    return otp::InvalidArgument("smpp: command_length " + std::to_string(n) + " out of range");
  }
  return n;
}

otp::Result<Pdu> DecodePdu(std::string_view bytes) {
  auto length = PduLength(bytes);
  if (!length.ok()) return length.error();
  if (*length != bytes.size()) {
    return otp::InvalidArgument("smpp: command_length " + std::to_string(*length) +
                                " disagrees with " + std::to_string(bytes.size()) + " octets");
  }
  Pdu p;
  Reader r(bytes.substr(4));
  (void)(r.U32(&p.command_id) && r.U32(&p.command_status) && r.U32(&p.sequence_number));
  auto bad = [&](const char* what) {
    return otp::InvalidArgument(std::string("smpp: malformed ") + CommandName(p.command_id) + ": " +
                                what);
  };
  bool takes_tlvs = false;
  switch (p.command_id) {
    case kBindTransceiver:
      if (!(r.CString(&p.system_id, 15) && r.CString(&p.password, 8) &&
            r.CString(&p.system_type, 12) && r.U8(&p.interface_version) && r.U8(&p.addr_ton) &&
            r.U8(&p.addr_npi) && r.CString(&p.address_range, 40))) {
        return bad("bind fields");
      }
      break;
    case kBindTransceiverResp:
      // An error resp may carry no system_id at all.
      if (!r.AtEnd() && !r.CString(&p.system_id, 15)) return bad("system_id");
      takes_tlvs = true;
      break;
    case kSubmitSm:
    case kDeliverSm:
      if (!DecodeMessage(r, p)) return bad("message fields");
      takes_tlvs = true;
      break;
    default:
      if (IsMessageIdResp(p.command_id)) {
        // An error submit_sm_resp usually has no body; some SMSCs send one.
        if (!r.AtEnd() && !r.CString(&p.message_id, 64)) return bad("message_id");
      } else if (!IsHeaderOnly(p.command_id)) {
        return p;  // a command otpd does not use: its header is enough to nack it
      }
  }
  if (takes_tlvs) {
    while (!r.AtEnd()) {
      Tlv t;
      std::uint16_t len = 0;
      if (!r.U16(&t.tag) || !r.U16(&len) || !r.Raw(&t.value, len)) return bad("truncated TLV");
      p.tlvs.push_back(std::move(t));
    }
  } else if (!r.AtEnd()) {
    return bad("trailing octets");
  }
  return p;
}

std::string CommandName(std::uint32_t id) {
  switch (id) {
    case kGenericNack:
      return "generic_nack";
    case kBindTransceiver:
      return "bind_transceiver";
    case kBindTransceiverResp:
      return "bind_transceiver_resp";
    case kSubmitSm:
      return "submit_sm";
    case kSubmitSmResp:
      return "submit_sm_resp";
    case kDeliverSm:
      return "deliver_sm";
    case kDeliverSmResp:
      return "deliver_sm_resp";
    case kUnbind:
      return "unbind";
    case kUnbindResp:
      return "unbind_resp";
    case kEnquireLink:
      return "enquire_link";
    case kEnquireLinkResp:
      return "enquire_link_resp";
    default: {
      char buf[16];
      std::snprintf(buf, sizeof buf, "0x%08x", id);
      return buf;
    }
  }
}

std::string StatusName(std::uint32_t status) {
  const char* name = nullptr;
  switch (status) {
    case 0x00:
      name = "ESME_ROK";
      break;
    case 0x01:
      name = "ESME_RINVMSGLEN";
      break;
    case 0x02:
      name = "ESME_RINVCMDLEN";
      break;
    case 0x03:
      name = "ESME_RINVCMDID";
      break;
    case 0x04:
      name = "ESME_RINVBNDSTS";
      break;
    case 0x05:
      name = "ESME_RALYBND";
      break;
    case 0x08:
      name = "ESME_RSYSERR";
      break;
    case 0x0A:
      name = "ESME_RINVSRCADR";
      break;
    case 0x0B:
      name = "ESME_RINVDSTADR";
      break;
    case 0x0D:
      name = "ESME_RBINDFAIL";
      break;
    case 0x0E:
      name = "ESME_RINVPASWD";
      break;
    case 0x0F:
      name = "ESME_RINVSYSID";
      break;
    case 0x14:
      name = "ESME_RMSGQFUL";
      break;
    case 0x45:
      name = "ESME_RSUBMITFAIL";
      break;
    case 0x58:
      name = "ESME_RTHROTTLED";
      break;
    case 0x61:
      name = "ESME_RINVSCHED";
      break;
    case 0x62:
      name = "ESME_RINVEXPIRY";
      break;
    case 0x64:
      name = "ESME_RX_T_APPN";
      break;
    case 0xFF:
      name = "ESME_RUNKNOWNERR";
      break;
    default:
      break;
  }
  char buf[48];
  if (name != nullptr) {
    std::snprintf(buf, sizeof buf, "%s (0x%08x)", name, status);
  } else {
    std::snprintf(buf, sizeof buf, "0x%08x", status);
  }
  return buf;
}

}  // namespace otpd::smpp
