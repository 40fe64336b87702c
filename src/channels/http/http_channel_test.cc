#include "channels/http/http_channel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "store/model.h"

namespace otpd {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr const char* kToken = "dlr-token-0123456789abcdef";

class NullSink : public DeliveryReportSink {
 public:
  void OnReport(const DeliveryReport&, ReportDone) override {}
};

OutboundMessage Message() {
  OutboundMessage m;
  m.channel = "whatsapp";
  m.to = "+306912345678";
  m.verification_id = "ver_abc";
  m.locale = "el";
  m.text = "Ο κωδικός είναι 123456. \"Quote\" & <tag> a+b=c";
  m.code = "123456";
  m.app_name = "Shop & Co";
  m.ttl_minutes = 10;
  return m;
}

class HttpChannelTest : public ::testing::Test {
 protected:
  otp::Result<std::unique_ptr<ChannelProvider>> Make(std::map<std::string, std::string> options) {
    ProviderConfig config;
    config.name = "wa";
    config.type = "http";
    config.channels = {"whatsapp"};
    config.options = std::move(options);
    if (!config.options.contains("url")) config.options["url"] = "https://example.invalid/send";
    ProviderContext context{clock_, sink_};
    return NewHttpChannel(config, context);
  }

  // A provider taking WhatsApp-style reports (a list inside entry[].changes[]).
  std::unique_ptr<ChannelProvider> WhatsApp() {
    auto p = Make({{"dlr_token", kToken},
                   {"dlr_list", "/entry/*/changes/*/value/statuses"},
                   {"dlr_id", "/id"},
                   {"dlr_status", "/status"},
                   {"dlr_delivered", R"([ "delivered" ])"},
                   {"dlr_failed", R"([ "failed" ])"}});
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p).value() : nullptr;
  }

  otp::FakeClock clock_;
  NullSink sink_;
};

// --- escaping and templates ------------------------------------------------------

TEST(EscapingTest, ContentTypesPickTheirEscaping) {
  EXPECT_EQ(EscapingFor("application/json"), Escaping::kJson);
  EXPECT_EQ(EscapingFor("application/json; charset=utf-8"), Escaping::kJson);
  EXPECT_EQ(EscapingFor("application/vnd.api+json"), Escaping::kJson);
  EXPECT_EQ(EscapingFor("Application/X-WWW-Form-Urlencoded"), Escaping::kForm);
  EXPECT_EQ(EscapingFor("text/xml"), Escaping::kXml);
  EXPECT_EQ(EscapingFor("application/soap+xml"), Escaping::kXml);
  EXPECT_EQ(EscapingFor("text/plain"), Escaping::kNone);
}

TEST(EscapingTest, JsonKeepsTheStringOneJsonString) {
  const std::string value = "a\"b\\c\nd\te\x01 κ";
  const std::string escaped = EscapeValue(value, Escaping::kJson);
  EXPECT_EQ(escaped, "a\\\"b\\\\c\\nd\\te\\u0001 κ");
  EXPECT_EQ(nlohmann::json::parse("\"" + escaped + "\"").get<std::string>(), value);
}

TEST(EscapingTest, FormAndUrl) {
  EXPECT_EQ(EscapeValue("a b+c&d=e/é~", Escaping::kForm), "a+b%2Bc%26d%3De%2F%C3%A9~");
  EXPECT_EQ(EscapeValue("a b+c&d=e/é~", Escaping::kUrl), "a%20b%2Bc%26d%3De%2F%C3%A9~");
  EXPECT_EQ(EscapeValue("+306912345678", Escaping::kUrl), "%2B306912345678");
}

TEST(EscapingTest, Xml) {
  EXPECT_EQ(EscapeValue("<Say>\"1 & 2\"</Say>", Escaping::kXml),
            "&lt;Say&gt;&quot;1 &amp; 2&quot;&lt;/Say&gt;");
  EXPECT_EQ(EscapeValue("a\nb", Escaping::kNone), "a\nb");
}

TEST(TemplateTest, VariablesComeFromTheMessage) {
  auto vars = TemplateVariables(Message());
  EXPECT_EQ(vars["code"], "123456");
  EXPECT_EQ(vars["code_spoken"], "1 2 3 4 5 6");
  EXPECT_EQ(vars["to"], "+306912345678");
  EXPECT_EQ(vars["to_digits"], "306912345678");
  EXPECT_EQ(vars["verification_id"], "ver_abc");
  EXPECT_EQ(vars["locale"], "el");
  EXPECT_EQ(vars["channel"], "whatsapp");
  EXPECT_EQ(vars["text"], Message().text);
  EXPECT_EQ(vars["app_name"], "Shop & Co");
  EXPECT_EQ(vars["ttl_minutes"], "10");
}

TEST(TemplateTest, JsonBodyStaysValidJson) {
  const std::string body = RenderHttpTemplate(
      R"({"to":"{{to}}","text":"{{text}}","code":"{{code}}","spoken":"{{code_spoken}}"})",
      TemplateVariables(Message()), Escaping::kJson);
  auto doc = nlohmann::json::parse(body);
  EXPECT_EQ(doc["to"], "+306912345678");
  EXPECT_EQ(doc["text"], Message().text);
  EXPECT_EQ(doc["code"], "123456");
  EXPECT_EQ(doc["spoken"], "1 2 3 4 5 6");
}

TEST(TemplateTest, FormBodyAndUrlQuery) {
  const auto vars = TemplateVariables(Message());
  EXPECT_EQ(RenderHttpTemplate("To={{to}}&Body={{code}}+x", vars, Escaping::kForm),
            "To=%2B306912345678&Body=123456+x");
  EXPECT_EQ(RenderHttpTemplate("https://h/send?to={{to_digits}}&id={{verification_id}}", vars,
                               Escaping::kUrl),
            "https://h/send?to=306912345678&id=ver_abc");
  // Triple mustache inserts a value unescaped.
  EXPECT_EQ(RenderHttpTemplate("{{{to}}}|{{to}}", vars, Escaping::kUrl),
            "+306912345678|%2B306912345678");
}

TEST(TemplateTest, CheckRefusesUnknownVariablesAndBadMustache) {
  EXPECT_EQ(CheckHttpTemplate(R"({"to":"{{to}}","c":"{{{code}}}"} {{! note }})"), "");
  EXPECT_EQ(CheckHttpTemplate("{{#app_name}}{{app_name}}{{/app_name}}"), "");
  EXPECT_THAT(CheckHttpTemplate("{{cod}}"), HasSubstr("unknown variable 'cod'"));
  EXPECT_THAT(CheckHttpTemplate("{{#code}}x"), HasSubstr("not valid mustache"));
  EXPECT_THAT(CheckHttpTemplate("{{=<% %>=}}"), HasSubstr("not supported"));
}

// --- JSON pointers ---------------------------------------------------------------

TEST(JsonPointerTest, ExtractsScalarsAsText) {
  const std::string doc =
      R"({"messages":[{"id":"wamid.HBg"}],"n":42,"ok":true,"o":{"a/b":"slash"},"nil":null})";
  EXPECT_EQ(JsonPointerText(doc, "/messages/0/id"), "wamid.HBg");
  EXPECT_EQ(JsonPointerText(doc, "/n"), "42");
  EXPECT_EQ(JsonPointerText(doc, "/ok"), "true");
  EXPECT_EQ(JsonPointerText(doc, "/o/a~1b"), "slash");
  EXPECT_EQ(JsonPointerText(doc, "/messages/1/id"), std::nullopt);
  EXPECT_EQ(JsonPointerText(doc, "/messages"), std::nullopt);
  EXPECT_EQ(JsonPointerText(doc, "/nil"), std::nullopt);
  EXPECT_EQ(JsonPointerText(doc, "messages"), std::nullopt);  // not a pointer
  EXPECT_EQ(JsonPointerText("not json", "/id"), std::nullopt);
}

// --- config ----------------------------------------------------------------------

TEST_F(HttpChannelTest, MinimalConfigIsAccepted) {
  auto p = Make({});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // No dlr_token: reports are refused.
  auto r = (*p)->ParseHttpReport("", "{}");
  EXPECT_EQ(r.status().code(), otp::StatusCode::kPermissionDenied);
}

TEST_F(HttpChannelTest, InvalidConfigNamesTheKey) {
  struct Case {
    std::map<std::string, std::string> options;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"bogus", "1"}}, "unknown option 'bogus'"},
      {{{"url", ""}}, "url is required"},
      {{{"url", "ftp://h/x"}}, "url must start with https:// or http://"},
      {{{"url", "https://h/{{nope}}"}}, "url: unknown variable 'nope'"},
      {{{"method", "DELETE"}}, "method must be GET, POST, PUT or PATCH"},
      {{{"method", "GET"}, {"body", "x"}}, "body is not sent with method GET"},
      {{{"body", "{{#code}}"}}, "body: not valid mustache"},
      {{{"headers", "Bearer x"}}, "headers must be a table"},
      {{{"headers", "{ Authorization = 1 }"}}, "headers: Authorization must be a string"},
      {{{"headers", R"({ "Bad Name" = "x" })"}}, "headers: 'Bad Name' is not a header name"},
      {{{"headers", R"({ Content-Type = "x" })"}}, "set content_type instead"},
      {{{"headers", R"({ X-A = "{{secret}}" })"}}, "headers: unknown variable 'secret'"},
      {{{"message_id", "messages/0"}}, "message_id must be a JSON pointer"},
      {{{"timeout_ms", "abc"}}, "timeout_ms must be an integer"},
      {{{"timeout_ms", "10"}}, "timeout_ms must be 100..120000"},
      {{{"connect_retries", "9"}}, "connect_retries must be 0..5"},
      {{{"dlr_id", "/id"}}, "dlr_* keys need dlr_token"},
      {{{"dlr_token", "short"}}, "dlr_token must be at least 16 characters"},
      {{{"dlr_token", "has spaces in it, 16+ long"}}, "dlr_token must use only"},
      {{{"dlr_token", kToken}, {"dlr_id", "/id"}}, "dlr_token needs dlr_id and dlr_status"},
      {{{"dlr_token", kToken}, {"dlr_id", "/id"}, {"dlr_status", "/s"}, {"dlr_format", "xml"}},
       "dlr_format must be json or form"},
      {{{"dlr_token", kToken}, {"dlr_id", "/id"}, {"dlr_status", "/s"}, {"dlr_list", "entry"}},
       "dlr_list must be a JSON pointer"},
      {{{"dlr_token", kToken}, {"dlr_id", "/id"}, {"dlr_status", "/s"}, {"dlr_failed", "[ 1 ]"}},
       "dlr_failed must be a list of strings"},
      {{{"dlr_token", kToken},
        {"dlr_id", "/id"},
        {"dlr_status", "/s"},
        {"dlr_failed", R"([ "x" ])"},
        {"dlr_undelivered", R"([ "X" ])"}},
       "dlr_failed: status 'x' is listed twice"},
  };
  for (const Case& c : cases) {
    auto p = Make(c.options);
    ASSERT_FALSE(p.ok()) << c.message;
    EXPECT_EQ(p.status().code(), otp::StatusCode::kInvalidArgument);
    EXPECT_THAT(p.status().message(), HasSubstr(c.message));
    EXPECT_THAT(p.status().message(), HasSubstr("provider wa (http)"));
  }
}

TEST_F(HttpChannelTest, HeaderSecretsNeverAppearInConfigErrors) {
  auto p = Make({{"headers", R"({ Authorization = "Bearer s3cr3t-token", X = "{{bad}}" })"}});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), ::testing::Not(HasSubstr("s3cr3t")));
}

// --- delivery reports ------------------------------------------------------------

TEST_F(HttpChannelTest, WrongOrMissingTokenIsPermissionDenied) {
  auto p = WhatsApp();
  ASSERT_NE(p, nullptr);
  const std::string body = R"({"entry":[]})";
  for (std::string_view token : {"", "dlr-token-0123456789abcdeF", "dlr-token-0123456789abcde",
                                 "dlr-token-0123456789abcdef0"}) {
    auto r = p->ParseHttpReport(token, body);
    EXPECT_EQ(r.status().code(), otp::StatusCode::kPermissionDenied) << token;
    EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr(kToken)));
  }
  EXPECT_TRUE(p->ParseHttpReport(kToken, body).ok());
}

TEST_F(HttpChannelTest, WhatsAppWebhookWithSeveralStatuses) {
  auto p = WhatsApp();
  ASSERT_NE(p, nullptr);
  const std::string body = R"({
    "object": "whatsapp_business_account",
    "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
      "messaging_product": "whatsapp",
      "statuses": [
        {"id": "wamid.A", "status": "sent", "recipient_id": "306912345678"},
        {"id": "wamid.B", "status": "delivered", "recipient_id": "306912345678"},
        {"id": "wamid.C", "status": "read"},
        {"id": "wamid.D", "status": "FAILED", "errors": [{"code": 131026}]}
      ]}}]},
      {"id": "WABA2", "changes": [{"field": "messages", "value": {
        "statuses": [{"id": "wamid.E", "status": "delivered"}]}}]}]})";
  auto r = p->ParseHttpReport(kToken, body);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].provider, "wa");
  EXPECT_EQ((*r)[0].provider_message_id, "wamid.B");
  EXPECT_EQ((*r)[0].status, kDeliveryDelivered);
  EXPECT_EQ((*r)[0].detail, "delivered");
  EXPECT_EQ((*r)[1].provider_message_id, "wamid.D");
  EXPECT_EQ((*r)[1].status, kDeliveryFailed);
  EXPECT_EQ((*r)[1].detail, "FAILED");
  EXPECT_EQ((*r)[2].provider_message_id, "wamid.E");
}

TEST_F(HttpChannelTest, WebhookWithoutStatusesGivesNoReports) {
  auto p = WhatsApp();
  ASSERT_NE(p, nullptr);
  // An inbound message on the same webhook: nothing to report, not an error.
  auto r = p->ParseHttpReport(
      kToken, R"({"entry":[{"changes":[{"value":{"messages":[{"id":"x","from":"1"}]}}]}]})");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(*r, IsEmpty());
}

TEST_F(HttpChannelTest, SingleObjectReportWithDefaultStatusWords) {
  auto p = Make({{"dlr_token", kToken}, {"dlr_id", "/message/id"}, {"dlr_status", "/state"}});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto r = (*p)->ParseHttpReport(kToken, R"({"message":{"id":12345},"state":"Undelivered"})");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].provider_message_id, "12345");
  EXPECT_EQ((*r)[0].status, kDeliveryUndelivered);
  // An unknown status word: no report, not an error.
  r = (*p)->ParseHttpReport(kToken, R"({"message":{"id":"1"},"state":"queued"})");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(*r, IsEmpty());
  // Missing id: no report.
  r = (*p)->ParseHttpReport(kToken, R"({"state":"delivered"})");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(*r, IsEmpty());
}

TEST_F(HttpChannelTest, TopLevelArrayOfReports) {
  auto p = Make({{"dlr_token", kToken},
                 {"dlr_list", "/*"},
                 {"dlr_id", "/msg"},
                 {"dlr_status", "/st"},
                 {"dlr_delivered", R"([ "DELIVRD", "ok" ])"},
                 {"dlr_undelivered", "UNDELIV"},
                 {"dlr_failed", R"([ "REJECTD", "EXPIRED" ])"}});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto r = (*p)->ParseHttpReport(kToken, R"([{"msg":"a","st":"DELIVRD"},{"msg":"b","st":"expired"},
                                            {"msg":"c","st":"x"},{"msg":"d","st":"UNDELIV"}])");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].provider_message_id, "a");
  EXPECT_EQ((*r)[0].status, kDeliveryDelivered);
  EXPECT_EQ((*r)[1].status, kDeliveryFailed);
  EXPECT_EQ((*r)[2].provider_message_id, "d");
  EXPECT_EQ((*r)[2].status, kDeliveryUndelivered);
  // An object where "/*" expects an array: no reports.
  r = (*p)->ParseHttpReport(kToken, R"({"msg":"e","st":"ok"})");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(*r, IsEmpty());
}

TEST_F(HttpChannelTest, FormReports) {
  auto p = Make({{"dlr_token", kToken},
                 {"dlr_format", "form"},
                 {"dlr_id", "/MessageSid"},
                 {"dlr_status", "/MessageStatus"},
                 {"dlr_delivered", R"([ "delivered" ])"},
                 {"dlr_undelivered", R"([ "undelivered" ])"},
                 {"dlr_failed", R"([ "failed" ])"}});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto r = (*p)->ParseHttpReport(
      kToken, "AccountSid=AC1&MessageSid=SM%2Fa+b&MessageStatus=undelivered&ErrorCode=30003");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].provider_message_id, "SM/a b");
  EXPECT_EQ((*r)[0].status, kDeliveryUndelivered);
  for (std::string_view bad : {"=x", "MessageSid=%zz&MessageStatus=failed"}) {
    r = (*p)->ParseHttpReport(kToken, bad);
    EXPECT_EQ(r.status().code(), otp::StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(HttpChannelTest, MalformedReportsAreInvalidArgument) {
  auto p = WhatsApp();
  ASSERT_NE(p, nullptr);
  for (std::string_view body : {"", "{", "not json", R"({"entry":[}")"}) {
    auto r = p->ParseHttpReport(kToken, body);
    EXPECT_EQ(r.status().code(), otp::StatusCode::kInvalidArgument) << body;
  }
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  auto r = p->ParseHttpReport(kToken, deep);
  EXPECT_EQ(r.status().code(), otp::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("too deep"));
}

}  // namespace
}  // namespace otpd
