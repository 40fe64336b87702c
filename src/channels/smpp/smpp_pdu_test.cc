#include "channels/smpp/smpp_pdu.h"

#include <gtest/gtest.h>

#include <string>

#include "channels/smpp/test_bytes.h"

namespace otpd::smpp {
namespace {

TEST(SmppPdu, BindTransceiverHasTheWireLayoutOfTheSpec) {
  Pdu p;
  p.command_id = kBindTransceiver;
  p.sequence_number = 1;
  p.system_id = "otpd";
  p.password = "pw";
  auto bytes = EncodePdu(p);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, Bytes({0,    0,   0,   29,  0, 0,   0,   9, 0, 0, 0, 0, 0, 0, 0, 1,  // header
                           'o',  't', 'p', 'd', 0, 'p', 'w', 0, 0,  // system_id, password, type
                           0x34, 0,   0,   0}));  // interface_version, ton, npi, address_range
  auto back = DecodePdu(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
}

Pdu SampleSubmit() {
  Pdu p;
  p.command_id = kSubmitSm;
  p.sequence_number = 0x01020304;
  p.source_addr_ton = 5;
  p.source_addr = "VERIFY";
  p.dest_addr_ton = 1;
  p.dest_addr_npi = 1;
  p.destination_addr = "306912345678";
  p.registered_delivery = 1;
  p.data_coding = 8;
  p.short_message = Bytes({0x03, 0x9F, 0x00, 0x00, 0xD8, 0x3D});  // NULs are fine here
  p.tlvs.push_back({kTagMessagePayload, "payload"});
  p.tlvs.push_back({0x1403, ""});
  return p;
}

TEST(SmppPdu, SubmitAndDeliverRoundTrip) {
  Pdu p = SampleSubmit();
  auto bytes = EncodePdu(p);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(PduLength(*bytes).value(), bytes->size());
  auto back = DecodePdu(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
  EXPECT_EQ(back->FindTlv(kTagMessagePayload).value(), "payload");
  EXPECT_FALSE(back->FindTlv(kTagMessageState).has_value());

  p.command_id = kDeliverSm;
  p.esm_class = kEsmClassDeliveryReceipt;
  p.schedule_delivery_time = "240101120000000+";
  back = DecodePdu(EncodePdu(p).value());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, p);
}

TEST(SmppPdu, ResponsesRoundTrip) {
  for (std::uint32_t id : {kSubmitSmResp, kDeliverSmResp, kBindTransceiverResp}) {
    Pdu p;
    p.command_id = id;
    p.sequence_number = 7;
    if (id == kBindTransceiverResp) {
      p.system_id = "SMSC";
    } else if (id == kSubmitSmResp) {
      p.message_id = "abc-123";
    }
    auto back = DecodePdu(EncodePdu(p).value());
    ASSERT_TRUE(back.ok()) << CommandName(id);
    EXPECT_EQ(*back, p) << CommandName(id);
  }
  for (std::uint32_t id : {kEnquireLink, kEnquireLinkResp, kUnbind, kUnbindResp, kGenericNack}) {
    Pdu p;
    p.command_id = id;
    p.command_status = id == kGenericNack ? kEsmeRinvCmdId : 0;
    p.sequence_number = 9;
    auto bytes = EncodePdu(p).value();
    EXPECT_EQ(bytes.size(), kHeaderLength);
    EXPECT_EQ(DecodePdu(bytes).value(), p);
  }
}

// Found by fuzz_smpp_pdu: an error bind_transceiver_resp with a TLV was
// encoded without its system_id, so the TLV decoded as the system_id.
TEST(SmppPdu, ErrorBindRespWithTlvsKeepsItsSystemId) {
  Pdu p;
  p.command_id = kBindTransceiverResp;
  p.command_status = 0x0E;  // ESME_RINVPASWD
  p.sequence_number = 1;
  p.system_id = "SMSC";
  p.tlvs = {{0x0210, "\x34"}};  // sc_interface_version
  auto back = DecodePdu(EncodePdu(p).value());
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, p);
  // Without TLVs an error resp still goes without a body.
  p.tlvs.clear();
  EXPECT_EQ(EncodePdu(p)->size(), kHeaderLength);
}

TEST(SmppPdu, ErrorSubmitSmRespMayHaveNoBody) {
  // 16-octet submit_sm_resp with ESME_RTHROTTLED, as most SMSCs send it.
  auto p = DecodePdu(Bytes({0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 3}));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->command_status, kEsmeRthrottled);
  EXPECT_EQ(p->sequence_number, 3u);
  EXPECT_EQ(p->message_id, "");
  Pdu e;
  e.command_id = kSubmitSmResp;
  e.command_status = kEsmeRthrottled;
  EXPECT_EQ(EncodePdu(e)->size(), kHeaderLength);
}

TEST(SmppPdu, UnknownCommandsDecodeToTheirHeader) {
  auto p = DecodePdu(Bytes({0, 0, 0, 20, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4}));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->command_id, 0x21u);
  EXPECT_EQ(p->sequence_number, 5u);
  EXPECT_EQ(CommandName(0x21), "0x00000021");
  Pdu q;
  q.command_id = 0x21;
  EXPECT_FALSE(EncodePdu(q).ok());
}

TEST(SmppPdu, MalformedInputIsRefused) {
  const std::string good = EncodePdu(SampleSubmit()).value();
  EXPECT_FALSE(DecodePdu("").ok());
  EXPECT_FALSE(DecodePdu(good.substr(0, good.size() - 1)).ok());  // shorter than its length
  EXPECT_FALSE(DecodePdu(good + "x").ok());                       // longer
  EXPECT_FALSE(PduLength(Bytes({0, 0, 0, 15})).ok());
  EXPECT_FALSE(PduLength(Bytes({0, 1, 0, 1})).ok());  // over kMaxPduLength
  EXPECT_FALSE(PduLength(Bytes({0, 0})).ok());
  // Every truncation of the body, with a length field that agrees, fails or
  // decodes without reading past the end (no TLV can be half there).
  for (std::size_t n = kHeaderLength; n < good.size(); ++n) {
    std::string cut = good.substr(0, n);
    cut[2] = static_cast<char>(n >> 8);
    cut[3] = static_cast<char>(n & 0xFF);
    auto p = DecodePdu(cut);
    if (p.ok()) {
      EXPECT_LE(p->tlvs.size(), 2u);
    }
  }
  // A system_id with no NUL within 16 octets.
  std::string bind = Bytes({0, 0, 0, 40, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1});
  bind += std::string(24, 'a');
  EXPECT_FALSE(DecodePdu(bind).ok());
  // sm_length past the end.
  Pdu p = SampleSubmit();
  p.tlvs.clear();
  std::string s = EncodePdu(p).value();
  s[s.size() - p.short_message.size() - 1] = static_cast<char>(200);
  EXPECT_FALSE(DecodePdu(s).ok());
  // A TLV header with a length past the end.
  std::string t = EncodePdu(p).value() + Bytes({0x04, 0x24, 0x00, 0x09, 'x'});
  t[3] = static_cast<char>(t.size());
  EXPECT_FALSE(DecodePdu(t).ok());
  // Trailing octets after a header-only PDU.
  EXPECT_FALSE(DecodePdu(Bytes({0, 0, 0, 17, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1, 0})).ok());
}

TEST(SmppPdu, FieldsOverTheirLimitsAreNotEncoded) {
  Pdu p;
  p.command_id = kBindTransceiver;
  p.system_id = std::string(16, 'a');
  EXPECT_FALSE(EncodePdu(p).ok());
  p.system_id = "ok";
  p.password = "123456789";
  EXPECT_FALSE(EncodePdu(p).ok());
  p.password = std::string("a\0b", 3);
  EXPECT_FALSE(EncodePdu(p).ok());
  Pdu s = SampleSubmit();
  s.short_message = std::string(255, 'x');
  EXPECT_FALSE(EncodePdu(s).ok());
  s.short_message = std::string(254, 'x');
  EXPECT_TRUE(EncodePdu(s).ok());
  s.destination_addr = std::string(21, '1');
  EXPECT_FALSE(EncodePdu(s).ok());
  Pdu e;
  e.command_id = kEnquireLink;
  e.tlvs.push_back({1, "x"});
  EXPECT_FALSE(EncodePdu(e).ok());
}

TEST(SmppPdu, Names) {
  EXPECT_EQ(CommandName(kSubmitSm), "submit_sm");
  EXPECT_EQ(StatusName(kEsmeRthrottled), "ESME_RTHROTTLED (0x00000058)");
  EXPECT_EQ(StatusName(0x1234), "0x00001234");
}

}  // namespace
}  // namespace otpd::smpp
