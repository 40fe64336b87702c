#include "channels/smpp/sms_text.h"

#include <gtest/gtest.h>

#include <string>

#include "channels/smpp/test_bytes.h"

namespace otpd::smpp {
namespace {

TEST(SmsText, AsciiTextIsGsm7OneSeptetPerOctet) {
  auto t = EncodeSmsText("Your code is 123456.");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data_coding, kDataCodingGsm7);
  EXPECT_EQ(t->octets, "Your code is 123456.");  // letters, digits, space, '.' keep their values
}

TEST(SmsText, Gsm7BasicTableCharactersThatDifferFromAscii) {
  auto t = EncodeSmsText("@$_£¥èÇ¤¡§¿àÄÖÑÜäöñü\n\r");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data_coding, kDataCodingGsm7);
  EXPECT_EQ(t->octets, Bytes({0x00, 0x02, 0x11, 0x01, 0x03, 0x04, 0x09, 0x24, 0x40, 0x5F, 0x60,
                              0x7F, 0x5B, 0x5C, 0x5D, 0x5E, 0x7B, 0x7C, 0x7D, 0x7E, 0x0A, 0x0D}));
}

TEST(SmsText, ExtensionTableCharactersAreEscaped) {
  auto t = EncodeSmsText("€[]{}\\^~|\f");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data_coding, kDataCodingGsm7);
  EXPECT_EQ(t->octets, Bytes({0x1B, 0x65, 0x1B, 0x3C, 0x1B, 0x3E, 0x1B, 0x28, 0x1B, 0x29,
                              0x1B, 0x2F, 0x1B, 0x14, 0x1B, 0x3D, 0x1B, 0x40, 0x1B, 0x0A}));
}

TEST(SmsText, GreekCapitalsOfTheDefaultAlphabetStayGsm7) {
  // GSM 03.38 has exactly these ten Greek capitals (the others look Latin).
  auto t = EncodeSmsText("ΔΦΓΛΩΠΨΣΘΞ");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data_coding, kDataCodingGsm7);
  EXPECT_EQ(t->octets, Bytes({0x10, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A}));
  EXPECT_TRUE(FitsGsm7("ΔΦΓΛΩΠΨΣΘΞ"));
}

TEST(SmsText, GreekCapitalAlphaAndLowerCaseGreekNeedUcs2) {
  EXPECT_FALSE(FitsGsm7("Α"));  // U+0391, not the Latin A
  auto t = EncodeSmsText("Ο κωδικός 12");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data_coding, kDataCodingUcs2);
  EXPECT_EQ(t->octets,
            Bytes({0x03, 0x9F, 0x00, 0x20, 0x03, 0xBA, 0x03, 0xC9, 0x03, 0xB4, 0x03, 0xB9,
                   0x03, 0xBA, 0x03, 0xCC, 0x03, 0xC2, 0x00, 0x20, 0x00, 0x31, 0x00, 0x32}));
}

TEST(SmsText, CharactersOutsideTheAlphabetSwitchTheWholeTextToUcs2) {
  for (const char* s : {"a`b", "ç", "Ê", "код", "\x1b"}) {
    auto t = EncodeSmsText(s);
    ASSERT_TRUE(t.ok()) << s;
    EXPECT_EQ(t->data_coding, kDataCodingUcs2) << s;
  }
  auto t = EncodeSmsText("a€`");  // € would be GSM-7, ` is not: all UCS-2
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->octets, Bytes({0x00, 0x61, 0x20, 0xAC, 0x00, 0x60}));
}

TEST(SmsText, CharacterOutsideTheBmpIsASurrogatePair) {
  auto t = EncodeSmsText("1😀");  // U+1F600
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data_coding, kDataCodingUcs2);
  EXPECT_EQ(t->octets, Bytes({0x00, 0x31, 0xD8, 0x3D, 0xDE, 0x00}));
  auto back = DecodeUcs2(t->octets);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, "1😀");
}

TEST(SmsText, InvalidUtf8IsRefused) {
  for (const char* s : {"\xC3", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF", "a\x80"}) {
    EXPECT_FALSE(EncodeSmsText(s).ok()) << s;
    EXPECT_FALSE(FitsGsm7(s));
  }
}

TEST(SmsText, OneSegmentLimits) {
  EXPECT_TRUE(EncodeSmsText(std::string(160, 'a'))->FitsOneSegment());
  EXPECT_FALSE(EncodeSmsText(std::string(161, 'a'))->FitsOneSegment());
  std::string euros;
  for (int i = 0; i < 80; ++i) euros += "€";  // two septets each
  EXPECT_TRUE(EncodeSmsText(euros)->FitsOneSegment());
  EXPECT_FALSE(EncodeSmsText(euros + "a")->FitsOneSegment());
  std::string greek;
  for (int i = 0; i < 70; ++i) greek += "λ";
  EXPECT_TRUE(EncodeSmsText(greek)->FitsOneSegment());
  EXPECT_FALSE(EncodeSmsText(greek + "λ")->FitsOneSegment());
}

TEST(SmsText, Gsm7RoundTripsTheWholeAlphabet) {
  const std::string all =
      "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
      "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà\f^{}\\[~]|€";
  auto t = EncodeSmsText(all);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data_coding, kDataCodingGsm7);
  EXPECT_EQ(t->octets.size(), 127u + 2 * 10);  // 127 basic characters, 10 escaped
  auto back = DecodeGsm7(t->octets);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, all);
}

TEST(SmsText, DecodersRefuseMalformedInput) {
  EXPECT_FALSE(DecodeGsm7("a\x1b").ok());
  EXPECT_FALSE(DecodeGsm7("\x80").ok());
  EXPECT_FALSE(DecodeUcs2(Bytes({0x00})).ok());
  EXPECT_FALSE(DecodeUcs2(Bytes({0xD8, 0x3D})).ok());
  EXPECT_FALSE(DecodeUcs2(Bytes({0xDE, 0x00})).ok());
  EXPECT_FALSE(DecodeUcs2(Bytes({0xD8, 0x3D, 0x00, 0x41})).ok());
  // An escape before an undefined extension code reads as the base character.
  EXPECT_EQ(*DecodeGsm7(Bytes({0x1B, 0x41})), "A");
}

}  // namespace
}  // namespace otpd::smpp
