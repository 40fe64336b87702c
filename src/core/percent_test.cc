#include "otp/percent.h"

#include <gtest/gtest.h>

namespace otp {
namespace {

TEST(Percent, EncodesAllButUnreserved) {
  EXPECT_EQ(PercentEncode("a-Z_0.~"), "a-Z_0.~");
  EXPECT_EQ(PercentEncode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
}

TEST(Percent, DecodesAndRoundTrips) {
  EXPECT_EQ(*PercentDecode("a%20b+c", false), "a b+c");
  EXPECT_EQ(*PercentDecode("a%20b+c", true), "a b c");
  EXPECT_EQ(*PercentDecode(PercentEncode("x:y?z=é&"), false), "x:y?z=é&");
}

TEST(Percent, RefusesBadEscapes) {
  EXPECT_FALSE(PercentDecode("%", false).ok());
  EXPECT_FALSE(PercentDecode("%4", false).ok());
  EXPECT_FALSE(PercentDecode("%zz", false).ok());
}

TEST(Percent, ParsesForms) {
  auto f = ParseForm("token=a%2Bb&empty=&flag&&x=1+2");
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->size(), 4u);
  EXPECT_EQ((*f)[0], std::make_pair(std::string("token"), std::string("a+b")));
  EXPECT_EQ((*f)[1], std::make_pair(std::string("empty"), std::string("")));
  EXPECT_EQ((*f)[2], std::make_pair(std::string("flag"), std::string("")));
  EXPECT_EQ((*f)[3], std::make_pair(std::string("x"), std::string("1 2")));
  EXPECT_FALSE(ParseForm("a=%g0").ok());
}

}  // namespace
}  // namespace otp
