#include "channels/smpp/receipt.h"

#include <gtest/gtest.h>

#include "store/model.h"

namespace otpd::smpp {
namespace {

TEST(Receipt, ParsesTheAppendixBFormat) {
  auto r = ParseReceiptText(
      "id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
      "stat:DELIVRD err:000 text:Your code is");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message_id, "0123456789");
  EXPECT_EQ(r->stat, "DELIVRD");
  EXPECT_EQ(r->err, "000");
}

TEST(Receipt, KeysAreCaseInsensitiveAndStatIsUpperCased) {
  auto r = ParseReceiptText("Id:ab-12 Stat:undeliv");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message_id, "ab-12");
  EXPECT_EQ(r->stat, "UNDELIV");
  EXPECT_EQ(r->err, "");
}

TEST(Receipt, MissingOrEmptyIdOrStatIsNoReceipt) {
  EXPECT_FALSE(ParseReceiptText("id:42 sub:001 dlvrd:001 err:000").has_value());
  EXPECT_FALSE(ParseReceiptText("sub:001 stat:DELIVRD").has_value());
  EXPECT_FALSE(ParseReceiptText("id: stat:DELIVRD").has_value());
  EXPECT_FALSE(ParseReceiptText("id:42 stat:").has_value());
  EXPECT_FALSE(ParseReceiptText("").has_value());
  EXPECT_FALSE(ParseReceiptText("hello world").has_value());
  EXPECT_FALSE(ParseReceiptText(std::string("\0\xff\x01id", 5)).has_value());
  // "xid:" is not "id:".
  EXPECT_FALSE(ParseReceiptText("xid:42 stat:DELIVRD").has_value());
}

TEST(Receipt, TheFreeTextFieldCannotForgeFields) {
  EXPECT_FALSE(ParseReceiptText("id:42 err:000 text:stat:DELIVRD").has_value());
  auto r = ParseReceiptText("id:42 stat:UNDELIV text:id:99 stat:DELIVRD");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message_id, "42");
  EXPECT_EQ(r->stat, "UNDELIV");
}

Pdu ReceiptPdu(std::string text) {
  Pdu p;
  p.command_id = kDeliverSm;
  p.esm_class = kEsmClassDeliveryReceipt;
  p.short_message = std::move(text);
  return p;
}

TEST(Receipt, FromDeliverSmText) {
  auto r = ParseReceipt(ReceiptPdu("id:7 sub:001 dlvrd:000 stat:EXPIRED err:000 text:x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message_id, "7");
  EXPECT_EQ(r->stat, "EXPIRED");
}

TEST(Receipt, TlvsWinOverTheText) {
  Pdu p = ReceiptPdu("id:7 stat:DELIVRD");
  p.tlvs.push_back({kTagReceiptedMessageId, std::string("abc\0", 4)});
  p.tlvs.push_back({kTagMessageState, std::string(1, '\x05')});
  auto r = ParseReceipt(p);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message_id, "abc");
  EXPECT_EQ(r->stat, "UNDELIV");
}

TEST(Receipt, TlvsAloneAreEnough) {
  Pdu p = ReceiptPdu("");
  p.tlvs.push_back({kTagReceiptedMessageId, "m-1"});
  p.tlvs.push_back({kTagMessageState, std::string(1, '\x02')});
  auto r = ParseReceipt(p);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message_id, "m-1");
  EXPECT_EQ(r->stat, "DELIVRD");
  p.tlvs[1].value = std::string(1, '\x09');  // no such state
  EXPECT_FALSE(ParseReceipt(p).has_value());
}

TEST(Receipt, TextInMessagePayload) {
  Pdu p = ReceiptPdu("");
  p.tlvs.push_back({kTagMessagePayload, "id:55 stat:REJECTD err:012"});
  auto r = ParseReceipt(p);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message_id, "55");
  EXPECT_EQ(r->stat, "REJECTD");
}

TEST(Receipt, AnOrdinaryDeliverSmIsNoReceipt) {
  Pdu p = ReceiptPdu("id:7 stat:DELIVRD");
  p.esm_class = 0;  // a mobile-originated message that happens to look like one
  EXPECT_FALSE(ParseReceipt(p).has_value());
  p.esm_class = kEsmClassDeliveryReceipt;
  p.command_id = kSubmitSm;
  EXPECT_FALSE(ParseReceipt(p).has_value());
}

TEST(Receipt, StatMapping) {
  EXPECT_EQ(DeliveryStatusForStat("DELIVRD"), kDeliveryDelivered);
  EXPECT_EQ(DeliveryStatusForStat("delivrd"), kDeliveryDelivered);
  for (const char* s : {"UNDELIV", "EXPIRED", "DELETED", "UNKNOWN"}) {
    EXPECT_EQ(DeliveryStatusForStat(s), kDeliveryUndelivered) << s;
  }
  EXPECT_EQ(DeliveryStatusForStat("REJECTD"), kDeliveryFailed);
  for (const char* s : {"ACCEPTD", "ENROUTE", "", "WHATEVER"}) {
    EXPECT_EQ(DeliveryStatusForStat(s), "") << s;
  }
}

}  // namespace
}  // namespace otpd::smpp
