#include "service/messages.h"

#include <gtest/gtest.h>

namespace otpd {
namespace {

MessageVars Vars() {
  MessageVars v;
  v.code = "123456";
  v.app_name = "Shop & Co";
  v.ttl_minutes = 10;
  v.locale = "en";
  return v;
}

TEST(MessagesTest, EveryBuiltInLocaleCarriesTheCode) {
  for (const char* locale : {"en", "el", "de", "fr", "es"}) {
    for (const char* channel : {"sms", "voice", "email", "whatsapp"}) {
      RenderedMessage m = RenderMessage(channel, locale, Vars());
      const std::string want = std::string(channel) == "voice" ? "1 2 3 4 5 6" : "123456";
      EXPECT_NE(m.text.find(want), std::string::npos) << locale << " " << channel << ": " << m.text;
      EXPECT_NE(m.text.find("Shop & Co"), std::string::npos) << "plain text, not HTML-escaped";
    }
  }
  EXPECT_FALSE(RenderMessage("email", "en", Vars()).subject.empty());
}

TEST(MessagesTest, LocaleFallback) {
  EXPECT_EQ(SupportedLocale("el-GR"), "el");
  EXPECT_EQ(SupportedLocale("DE"), "de");
  EXPECT_EQ(SupportedLocale("pt-BR"), "en");
  EXPECT_EQ(RenderMessage("sms", "pt", Vars()).text, RenderMessage("sms", "en", Vars()).text);
  EXPECT_NE(RenderMessage("sms", "el", Vars()).text.find("κωδικός"), std::string::npos);
}

TEST(MessagesTest, SpokenCode) { EXPECT_EQ(SpokenCode("0912"), "0 9 1 2"); }

}  // namespace
}  // namespace otpd
