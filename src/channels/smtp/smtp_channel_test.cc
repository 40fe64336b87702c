#include "channels/smtp/smtp_channel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "otp/crypto.h"

namespace otpd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Decode(std::string_view b64) {
  std::string clean;
  for (char c : b64) {
    if (c != '\r' && c != '\n' && c != ' ') clean += c;
  }
  auto bytes = otp::Base64Decode(clean);
  EXPECT_TRUE(bytes.has_value()) << b64;
  return bytes ? std::string(bytes->begin(), bytes->end()) : "";
}

// Decodes a header made of "=?UTF-8?B?...?=" words (or plain ASCII).
std::string DecodeHeader(std::string_view value) {
  std::string out;
  std::size_t pos = 0;
  bool any = false;
  while ((pos = value.find("=?UTF-8?B?", pos)) != std::string_view::npos) {
    const std::size_t start = pos + 10;
    const std::size_t end = value.find("?=", start);
    out += Decode(value.substr(start, end - start));
    pos = end + 2;
    any = true;
  }
  return any ? out : std::string(value);
}

struct Parsed {
  std::map<std::string, std::string> headers;  // unfolded
  std::vector<std::string> part_headers;
  std::vector<std::string> part_bodies;
};

Parsed Parse(const std::string& mime) {
  Parsed p;
  const auto head_end = mime.find("\r\n\r\n");
  std::string head = mime.substr(0, head_end + 2);
  std::string last;
  std::size_t pos = 0;
  while (pos < head.size()) {
    auto eol = head.find("\r\n", pos);
    std::string line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (!line.empty() && line[0] == ' ') {
      p.headers[last] += line;
    } else {
      auto colon = line.find(':');
      last = line.substr(0, colon);
      p.headers[last] = line.substr(colon + 2);
    }
  }
  const std::string ct = p.headers["Content-Type"];
  const auto b = ct.find("boundary=\"");
  const std::string boundary = ct.substr(b + 10, ct.find('"', b + 10) - b - 10);
  const std::string sep = "--" + boundary + "\r\n";
  std::size_t at = mime.find(sep, head_end);
  while (at != std::string::npos) {
    const std::size_t start = at + sep.size();
    std::size_t next = mime.find("--" + boundary, start);
    std::string part = mime.substr(start, next - start);
    const auto split = part.find("\r\n\r\n");
    p.part_headers.push_back(part.substr(0, split));
    p.part_bodies.push_back(part.substr(split + 4));
    at = mime.find(sep, next);
  }
  return p;
}

MimeInput Greek() {
  MimeInput in;
  in.from = "Verify <no-reply@example.com>";
  in.to = "someone@example.com";
  in.subject = "Ο κωδικός επαλήθευσης της εφαρμογής μας που είναι αρκετά μακρύς";
  in.text = "Ο κωδικός είναι 123456.\n\nΑν δεν τον ζητήσατε, <αγνοήστε> & συνεχίστε.";
  in.code = "123456";
  in.date = otp::FromUnixMillis(1'700'000'000'000);  // Tue, 14 Nov 2023 22:13:20 UTC
  in.message_id = "<abc@example.com>";
  in.boundary = "=_otpd_test";
  return in;
}

TEST(SmtpMime, HeadersArePresent) {
  auto mime = BuildMimeMessage(Greek());
  ASSERT_TRUE(mime.ok()) << mime.status().ToString();
  Parsed p = Parse(*mime);
  EXPECT_EQ(p.headers["From"], "Verify <no-reply@example.com>");
  EXPECT_EQ(p.headers["To"], "someone@example.com");
  EXPECT_EQ(p.headers["Date"], "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(p.headers["Message-ID"], "<abc@example.com>");
  EXPECT_EQ(p.headers["MIME-Version"], "1.0");
  EXPECT_THAT(p.headers["Content-Type"], HasSubstr("multipart/alternative"));
  ASSERT_EQ(p.part_headers.size(), 2u);
  EXPECT_THAT(p.part_headers[0], HasSubstr("text/plain; charset=UTF-8"));
  EXPECT_THAT(p.part_headers[1], HasSubstr("text/html; charset=UTF-8"));
  for (const auto& h : p.part_headers) {
    EXPECT_THAT(h, HasSubstr("Content-Transfer-Encoding: base64"));
  }
}

TEST(SmtpMime, LinesAreCrlfAndShort) {
  auto mime = BuildMimeMessage(Greek());
  ASSERT_TRUE(mime.ok());
  std::size_t pos = 0;
  while (pos < mime->size()) {
    auto eol = mime->find('\n', pos);
    ASSERT_NE(eol, std::string::npos);
    ASSERT_GT(eol, 0u);
    EXPECT_EQ((*mime)[eol - 1], '\r');
    EXPECT_LE(eol - pos - 1, 78u) << mime->substr(pos, eol - pos);
    pos = eol + 1;
  }
}

TEST(SmtpMime, GreekSubjectIsEncodedAndDecodesBack) {
  MimeInput in = Greek();
  auto mime = BuildMimeMessage(in);
  ASSERT_TRUE(mime.ok());
  Parsed p = Parse(*mime);
  EXPECT_THAT(p.headers["Subject"], HasSubstr("=?UTF-8?B?"));
  EXPECT_THAT(p.headers["Subject"], Not(HasSubstr("κωδικός")));
  EXPECT_EQ(DecodeHeader(p.headers["Subject"]), in.subject);
}

TEST(SmtpMime, AsciiSubjectStaysPlain) { EXPECT_EQ(EncodeHeaderWord("Your code"), "Your code"); }

TEST(SmtpMime, BodiesDecodeToTextAndEscapedHtml) {
  MimeInput in = Greek();
  auto mime = BuildMimeMessage(in);
  ASSERT_TRUE(mime.ok());
  Parsed p = Parse(*mime);
  ASSERT_EQ(p.part_bodies.size(), 2u);
  for (const auto& body : p.part_bodies) {
    std::size_t pos = 0;
    while (pos < body.size()) {
      auto eol = body.find("\r\n", pos);
      EXPECT_LE(eol - pos, 76u);
      pos = eol + 2;
    }
  }
  EXPECT_EQ(Decode(p.part_bodies[0]), in.text);
  const std::string html = Decode(p.part_bodies[1]);
  EXPECT_THAT(html, HasSubstr("&lt;αγνοήστε&gt; &amp;"));
  EXPECT_THAT(html, Not(HasSubstr("<αγνοήστε>")));
  EXPECT_THAT(html, HasSubstr("<strong>123456</strong>"));
  EXPECT_THAT(html, HasSubstr("<p>Ο κωδικός"));
  EXPECT_THAT(html, HasSubstr("</p>\n<p>Αν"));
}

TEST(SmtpMime, NonAsciiDisplayNameIsEncoded) {
  MimeInput in = Greek();
  in.from = "Επαλήθευση <no-reply@example.com>";
  auto mime = BuildMimeMessage(in);
  ASSERT_TRUE(mime.ok());
  Parsed p = Parse(*mime);
  EXPECT_THAT(p.headers["From"], HasSubstr("=?UTF-8?B?"));
  EXPECT_THAT(p.headers["From"], HasSubstr("<no-reply@example.com>"));
}

TEST(SmtpMime, RefusesHeaderInjection) {
  for (auto field : {&MimeInput::to, &MimeInput::subject, &MimeInput::from}) {
    for (const char* bad : {"\r\nBcc: evil@example.com", "\nX: y", "a\rb"}) {
      MimeInput in = Greek();
      in.*field += bad;
      auto mime = BuildMimeMessage(in);
      ASSERT_FALSE(mime.ok());
      EXPECT_EQ(mime.status().code(), otp::StatusCode::kInvalidArgument);
    }
  }
}

TEST(SmtpMime, MailboxAddress) {
  EXPECT_EQ(MailboxAddress("Verify <no-reply@example.com>"), "no-reply@example.com");
  EXPECT_EQ(MailboxAddress("no-reply@example.com"), "no-reply@example.com");
  EXPECT_EQ(MailboxAddress("\"A, B\" <a@b.c>"), "a@b.c");
  EXPECT_EQ(MailboxAddress("Verify"), "");
  EXPECT_EQ(MailboxAddress("Verify <nobody>"), "");
  EXPECT_EQ(MailboxAddress("Verify <a@b"), "");
}

// A provider context whose reports go nowhere (SMTP sends none).
struct TestEnv : DeliveryReportSink {
  void OnReport(const DeliveryReport&, ReportDone) override {}
  otp::FakeClock clock;
  ProviderContext context{clock, *this};
};

ProviderConfig Config(std::map<std::string, std::string> options) {
  ProviderConfig c;
  c.name = "mail";
  c.type = "smtp";
  c.channels = {"email"};
  c.options = std::move(options);
  return c;
}

TEST(SmtpConfig, AcceptsValidConfigs) {
  TestEnv env;
  EXPECT_TRUE(NewSmtpChannel(Config({{"url", "smtp://127.0.0.1:2525"},
                                     {"from", "Verify <no-reply@example.com>"}}),
                             env.context)
                  .ok());
  EXPECT_TRUE(NewSmtpChannel(Config({{"url", "smtps://mail.example.com"},
                                     {"from", "no-reply@example.com"},
                                     {"starttls", "false"},
                                     {"username", "u"},
                                     {"password", "p"},
                                     {"ca_file", "/tmp/ca.pem"}}),
                             env.context)
                  .ok());
  EXPECT_TRUE(NewSmtpChannel(Config({{"url", "smtp://mail.example.com:587"},
                                     {"from", "no-reply@example.com"},
                                     {"starttls", "true"}}),
                             env.context)
                  .ok());
}

TEST(SmtpConfig, RefusesBadConfigs) {
  TestEnv env;
  const std::string from = "Verify <no-reply@example.com>";
  const std::string url = "smtp://127.0.0.1:2525";
  struct Case {
    std::map<std::string, std::string> options;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{{"from", from}}, "url is required"},
      {{{"url", "http://x"}, {"from", from}}, "smtp:// or smtps://"},
      {{{"url", "smtp://"}, {"from", from}}, "no host"},
      {{{"url", "smtp://u:secret@host"}, {"from", from}}, "credentials"},
      {{{"url", url}}, "from is required"},
      {{{"url", url}, {"from", "Verify"}}, "needs an address"},
      {{{"url", url}, {"from", "a@b.c\r\nBcc: x@y.z"}}, "line breaks"},
      {{{"url", url}, {"from", from}, {"starttls", "yes"}}, "starttls"},
      {{{"url", url}, {"from", from}, {"password", "p"}}, "username"},
      {{{"url", url}, {"from", from}, {"tls_verify", "false"}}, "unknown option 'tls_verify'"},
  };
  for (const Case& c : cases) {
    auto r = NewSmtpChannel(Config(c.options), env.context);
    ASSERT_FALSE(r.ok()) << c.want;
    EXPECT_EQ(r.status().code(), otp::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.want));
    EXPECT_THAT(r.status().message(), Not(HasSubstr("secret")));
  }
}

TEST(SmtpSend, RefusesInjectionWithoutConnecting) {
  TestEnv env;
  // Port 9 on loopback: nothing listens; an attempt to connect would give Unavailable.
  auto p = NewSmtpChannel(
      Config({{"url", "smtp://127.0.0.1:9"}, {"from", "Verify <no-reply@example.com>"}}),
      env.context);
  ASSERT_TRUE(p.ok());
  OutboundMessage m;
  m.channel = "email";
  m.to = "someone@example.com\r\nBcc: evil@example.com";
  m.subject = "Code";
  m.text = "Your code is 123456";
  m.code = "123456";
  auto r = (*p)->Send(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), otp::StatusCode::kInvalidArgument);
  m.to = "someone@example.com";
  m.subject = "Code\nBcc: evil@example.com";
  r = (*p)->Send(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), otp::StatusCode::kInvalidArgument);
}

TEST(SmtpSend, UnreachableServerIsUnavailableWithoutSecrets) {
  TestEnv env;
  auto p = NewSmtpChannel(Config({{"url", "smtp://127.0.0.1:9"},
                                  {"from", "Verify <no-reply@example.com>"},
                                  {"username", "user"},
                                  {"password", "hunter2-secret"}}),
                          env.context);
  ASSERT_TRUE(p.ok());
  OutboundMessage m;
  m.channel = "email";
  m.to = "someone@example.com";
  m.subject = "Code";
  m.text = "Your code is 987654";
  m.code = "987654";
  auto r = (*p)->Send(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), otp::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("mail"));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("hunter2-secret")));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("987654")));
}

}  // namespace
}  // namespace otpd
