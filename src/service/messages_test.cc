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

namespace otpd {
namespace {

TEST(MessagesTest, AppTemplatesReplaceTheBuiltInOnePerChannelAndLocale) {
  const TemplateOverrides own = {{"sms:en", "{{app_name}}: {{code}}"},
                                 {"voice:el", "Κωδικός {{code_spoken}}"}};
  EXPECT_EQ(RenderMessage("sms", "en", Vars(), own).text, "Shop & Co: 123456");
  EXPECT_EQ(RenderMessage("voice", "el", Vars(), own).text, "Κωδικός 1 2 3 4 5 6");
  // Other channels and locales keep the built-in text.
  EXPECT_EQ(RenderMessage("sms", "de", Vars(), own).text, RenderMessage("sms", "de", Vars()).text);
  EXPECT_EQ(RenderMessage("whatsapp", "en", Vars(), own).text,
            RenderMessage("whatsapp", "en", Vars()).text);
  // An email keeps the built-in subject.
  const TemplateOverrides mail = {{"email:en", "Code: {{code}}"}};
  EXPECT_EQ(RenderMessage("email", "en", Vars(), mail).subject,
            RenderMessage("email", "en", Vars()).subject);
}

TEST(MessagesTest, TemplatesAreCheckedBeforeTheyAreStored) {
  EXPECT_EQ(CheckTemplate("sms:en", "Your code {{code}}"), "");
  EXPECT_EQ(CheckTemplate("voice:fr", "{{code_spoken}}"), "");
  EXPECT_NE(CheckTemplate("sms", "{{code}}"), "");
  EXPECT_NE(CheckTemplate("fax:en", "{{code}}"), "");
  EXPECT_NE(CheckTemplate("sms:pt", "{{code}}"), "");
  EXPECT_NE(CheckTemplate("sms:en", "no code here"), "");
  EXPECT_NE(CheckTemplate("sms:en", "{{#code}} unclosed"), "");
  EXPECT_NE(CheckTemplate("sms:en", ""), "");
}

}  // namespace
}  // namespace otpd
