#include "service/recipients.h"

#include <gtest/gtest.h>

namespace otpd {
namespace {

TEST(PhoneNumberTest, NormalisesToE164WithRegion) {
  auto p = ParsePhoneNumber("+30 691 234 5678");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->e164, "+306912345678");
  EXPECT_EQ(p->region, "GR");
  EXPECT_EQ(ParsePhoneNumber("+1 (650) 253-0000")->e164, "+16502530000");
}

TEST(PhoneNumberTest, Security24_RefusesInvalidPremiumAndSharedCost) {
  EXPECT_FALSE(ParsePhoneNumber("+1234").ok());
  EXPECT_FALSE(ParsePhoneNumber("6912345678").ok());  // no country code
  EXPECT_FALSE(ParsePhoneNumber("").ok());
  EXPECT_FALSE(ParsePhoneNumber("+4490 0123 4567").ok());   // UK premium rate (09)
  EXPECT_FALSE(ParsePhoneNumber("+44 845 464 0000").ok());  // UK shared cost (0845)
  EXPECT_FALSE(ParsePhoneNumber(std::string(40, '1')).ok());
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
