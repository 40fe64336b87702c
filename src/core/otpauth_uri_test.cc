#include "otp/otpauth_uri.h"

#include <gtest/gtest.h>

#include "core/test_util.h"

namespace otp {
namespace {

using testing::Bytes;

OtpAuthUri Sample() {
  OtpAuthUri uri;
  uri.issuer = "ACME Co";
  uri.account = "john.doe@example.com";
  uri.secret = Bytes("12345678901234567890");
  return uri;
}

void ExpectRoundTrip(const OtpAuthUri& uri) {
  const std::string text = BuildOtpAuthUri(uri);
  Result<OtpAuthUri> back = ParseOtpAuthUri(text);
  ASSERT_TRUE(back.ok()) << text << ": " << back.status().ToString();
  EXPECT_EQ(*back, uri) << text;
}

TEST(OtpAuthUriTest, BuildsKeyUriFormat) {
  EXPECT_EQ(BuildOtpAuthUri(Sample()),
            "otpauth://totp/ACME%20Co:john.doe%40example.com?secret="
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30");
  OtpAuthUri hotp = Sample();
  hotp.type = OtpType::kHotp;
  hotp.issuer.clear();
  hotp.counter = 42;
  EXPECT_EQ(BuildOtpAuthUri(hotp),
            "otpauth://hotp/john.doe%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
            "&algorithm=SHA1&digits=6&counter=42");
}

TEST(OtpAuthUriTest, RoundTrips) {
  ExpectRoundTrip(Sample());

  OtpAuthUri tricky = Sample();
  tricky.issuer = "Big: Corp & Sons / R=D?#%+";
  tricky.account = "a:b c&d=e@ex.com";
  ExpectRoundTrip(tricky);

  OtpAuthUri unicode = Sample();
  unicode.issuer = "Ελληνική Τράπεζα";
  unicode.account = "χρήστης@παράδειγμα.gr ☃";
  ExpectRoundTrip(unicode);

  OtpAuthUri no_issuer = Sample();
  no_issuer.issuer.clear();
  ExpectRoundTrip(no_issuer);

  OtpAuthUri sha512 = Sample();
  sha512.algorithm = HashAlgorithm::kSha512;
  sha512.digits = 10;
  sha512.period = 60;
  sha512.secret = std::vector<std::uint8_t>(64, 0xa5);
  ExpectRoundTrip(sha512);

  OtpAuthUri hotp = Sample();
  hotp.type = OtpType::kHotp;
  hotp.algorithm = HashAlgorithm::kSha256;
  hotp.digits = 8;
  hotp.counter = 18446744073709551615u;
  ExpectRoundTrip(hotp);
}

// Found by fuzz_otpauth_uri: "otpauth://totp/:a%3Ab?..." parses to no issuer
// and the account "a:b", which was built again as "a%3Ab" and then read as
// issuer "a", account "b".
TEST(OtpAuthUriTest, AccountWithColonAndNoIssuerRoundTrips) {
  Result<OtpAuthUri> parsed = ParseOtpAuthUri("otpauth://totp/:a%3Ab?secret=JBSWY3DPEHPK3PXP");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->issuer, "");
  EXPECT_EQ(parsed->account, "a:b");
  ExpectRoundTrip(*parsed);
  EXPECT_EQ(BuildOtpAuthUri(*parsed).substr(0, 22), "otpauth://totp/:a%3Ab?");

  OtpAuthUri colon = Sample();
  colon.issuer.clear();
  colon.account = "Co:john@example.com";
  ExpectRoundTrip(colon);
}

TEST(OtpAuthUriTest, ParsesGoogleAuthenticatorExample) {
  Result<OtpAuthUri> uri = ParseOtpAuthUri(
      "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example");
  ASSERT_TRUE(uri.ok()) << uri.status().ToString();
  EXPECT_EQ(uri->type, OtpType::kTotp);
  EXPECT_EQ(uri->issuer, "Example");
  EXPECT_EQ(uri->account, "alice@google.com");
  EXPECT_EQ(uri->secret,
            (std::vector<std::uint8_t>{'H', 'e', 'l', 'l', 'o', '!', 0xde, 0xad, 0xbe, 0xef}));
  EXPECT_EQ(uri->algorithm, HashAlgorithm::kSha1);
  EXPECT_EQ(uri->digits, 6);
  EXPECT_EQ(uri->period, 30);
}

TEST(OtpAuthUriTest, ParsesCommonVariants) {
  // Escaped colon separator, space before the account, lower-case secret,
  // '+' for space in the issuer parameter, extra parameters, upper-case scheme.
  Result<OtpAuthUri> uri = ParseOtpAuthUri(
      "OTPAUTH://TOTP/ACME%20Co%3A%20john@example.com?secret=jbswy3dpehpk3pxp"
      "&issuer=ACME+Co&algorithm=sha256&digits=8&period=60&image=https%3A%2F%2Fx");
  ASSERT_TRUE(uri.ok()) << uri.status().ToString();
  EXPECT_EQ(uri->issuer, "ACME Co");
  EXPECT_EQ(uri->account, "john@example.com");
  EXPECT_EQ(uri->algorithm, HashAlgorithm::kSha256);
  EXPECT_EQ(uri->digits, 8);
  EXPECT_EQ(uri->period, 60);

  // Issuer only in the label, or only as a parameter.
  Result<OtpAuthUri> label_only =
      ParseOtpAuthUri("otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP");
  ASSERT_TRUE(label_only.ok());
  EXPECT_EQ(label_only->issuer, "Acme");
  Result<OtpAuthUri> param_only =
      ParseOtpAuthUri("otpauth://totp/bob?secret=JBSWY3DPEHPK3PXP&issuer=Acme");
  ASSERT_TRUE(param_only.ok());
  EXPECT_EQ(param_only->issuer, "Acme");
  EXPECT_EQ(param_only->account, "bob");

  Result<OtpAuthUri> empty_issuer =
      ParseOtpAuthUri("otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&issuer=");
  ASSERT_TRUE(empty_issuer.ok());
  EXPECT_EQ(empty_issuer->issuer, "Acme");

  // period means nothing for HOTP, counter nothing for TOTP.
  Result<OtpAuthUri> totp =
      ParseOtpAuthUri("otpauth://totp/bob?secret=JBSWY3DPEHPK3PXP&counter=7&period=45");
  ASSERT_TRUE(totp.ok());
  EXPECT_EQ(totp->counter, 0u);
  EXPECT_EQ(totp->period, 45);
  Result<OtpAuthUri> hotp =
      ParseOtpAuthUri("otpauth://hotp/bob?secret=JBSWY3DPEHPK3PXP&counter=7&period=45");
  ASSERT_TRUE(hotp.ok());
  EXPECT_EQ(hotp->type, OtpType::kHotp);
  EXPECT_EQ(hotp->counter, 7u);
  EXPECT_EQ(hotp->period, 30);
}

TEST(OtpAuthUriTest, Refusals) {
  for (const char* text : {
           "https://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP",    // wrong scheme
           "otpauth:/totp/Acme:bob?secret=JBSWY3DPEHPK3PXP",   // malformed scheme
           "otpauth://motp/Acme:bob?secret=JBSWY3DPEHPK3PXP",  // wrong type
           "otpauth://totp/Acme:bob?issuer=Acme",              // missing secret
           "otpauth://totp/Acme:bob?secret=",                  // empty secret
           "otpauth://totp/Acme:bob",                          // no query at all
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PX1",  // bad base32
           "otpauth://totp/Acme:?secret=JBSWY3DPEHPK3PXP",     // empty account
           "otpauth://totp/?secret=JBSWY3DPEHPK3PXP",          // no label
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&digits=5",
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&digits=11",
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&digits=six",
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&digits=-6",
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&period=0",
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&period=3601",
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&algorithm=MD5",
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&issuer=Evil",  // contradicts label
           "otpauth://totp/Ac%2me:bob?secret=JBSWY3DPEHPK3PXP",            // bad escape
           "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&secret=MZXW6YTB",
       }) {
    Result<OtpAuthUri> uri = ParseOtpAuthUri(text);
    EXPECT_FALSE(uri.ok()) << text;
    if (!uri.ok()) {
      EXPECT_EQ(uri.status().code(), StatusCode::kInvalidArgument) << text;
    }
  }
}

}  // namespace
}  // namespace otp
