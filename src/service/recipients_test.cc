#include "service/recipients.h"

#include <gtest/gtest.h>
#include <phonenumbers/phonenumberutil.h>

#include <set>

namespace otpd {
namespace {

TEST(PhoneNumberTest, NormalisesToE164WithRegion) {
  auto p = ParsePhoneNumber("+30 691 234 5678");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->e164, "+306912345678");
  EXPECT_EQ(p->region, "GR");
  EXPECT_EQ(ParsePhoneNumber("+1 (650) 253-0000")->e164, "+16502530000");
}

// Found by fuzz_recipients ("+5 2021PH3MmO.OamO.#4"): libphonenumber formats
// these as +5217436666266, which itself parses to +527436666266.
TEST(PhoneNumberTest, NormalisesToAFormThatParsesToItself) {
  for (const char* text : {"+520217436666266", "+52 02 1 743 666 6266", "+5 2021PH3MmO.OamO.#4",
                           "+52 1 743 666 6266", "+527436666266"}) {
    auto p = ParsePhoneNumber(text);
    ASSERT_TRUE(p.ok()) << text;
    EXPECT_EQ(p->e164, "+527436666266") << text;
    EXPECT_EQ(p->region, "MX") << text;
  }
}

TEST(PhoneNumberTest, Security24_RefusesInvalidPremiumAndSharedCost) {
  EXPECT_FALSE(ParsePhoneNumber("+1234").ok());
  EXPECT_FALSE(ParsePhoneNumber("6912345678").ok());  // no country code
  EXPECT_FALSE(ParsePhoneNumber("").ok());
  EXPECT_FALSE(ParsePhoneNumber("+4490 0123 4567").ok());   // UK premium rate (09)
  EXPECT_FALSE(ParsePhoneNumber("+44 845 464 0000").ok());  // UK shared cost (0845)
  EXPECT_FALSE(ParsePhoneNumber(std::string(40, '1')).ok());
}

TEST(Sec24_PhoneNumber, RefusesUanAndVoicemail) {
  // libphonenumber's own example numbers of each type, where a region has one.
  using i18n::phonenumbers::PhoneNumberUtil;
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  std::set<std::string> regions;
  util.GetSupportedRegions(&regions);
  for (const auto type : {PhoneNumberUtil::UAN, PhoneNumberUtil::VOICEMAIL}) {
    int tried = 0;
    for (const std::string& region : regions) {
      i18n::phonenumbers::PhoneNumber example;
      if (!util.GetExampleNumberForType(region, type, &example)) continue;
      std::string e164;
      util.Format(example, PhoneNumberUtil::E164, &e164);
      if (util.GetNumberType(example) != type) continue;  // shared with another type
      ++tried;
      auto parsed = ParsePhoneNumber(e164);
      ASSERT_FALSE(parsed.ok()) << region << " " << e164;
      EXPECT_EQ(parsed.status().message(), "UAN and voicemail numbers are refused");
    }
    EXPECT_GT(tried, 0) << "no example number of type " << type;
  }
  // A mobile number of the same country still passes.
  EXPECT_TRUE(ParsePhoneNumber("+447400123456").ok());
}

TEST(EmailTest, ValidatesAndLowerCasesTheDomain) {
  EXPECT_EQ(*ParseEmail("Alice.B+tag@Example.COM"), "Alice.B+tag@example.com");
  for (const char* bad : {"", "a", "a@", "@b.com", "a@b", "a@@b.com", "a b@c.com", "a@-b.com",
                          "a..b@c.com", ".a@c.com", "a@b..com"}) {
    EXPECT_FALSE(ParseEmail(bad).ok()) << bad;
  }
}

TEST(MaskTest, Security31_KeepsOnlyTheLastFourDigits) {
  EXPECT_EQ(MaskRecipient("+306912345678"), "+********5678");
  EXPECT_EQ(MaskRecipient("alice@example.com"), "a***@example.com");
}

TEST(LocaleTest, FromRegion) {
  EXPECT_EQ(LocaleForRegion("GR"), "el");
  EXPECT_EQ(LocaleForRegion("AT"), "de");
  EXPECT_EQ(LocaleForRegion("MX"), "es");
  EXPECT_EQ(LocaleForRegion("US"), "en");
  EXPECT_EQ(LocaleForRegion(""), "en");
}

}  // namespace
}  // namespace otpd
