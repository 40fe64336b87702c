#include "channels/smtp/smtp_channel.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <mutex>
#include <set>
#include <span>

#include "otp/crypto.h"
#include "otp/random.h"
#include "service/messages.h"

namespace otpd {
namespace {

bool HasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

std::string Base64(std::string_view bytes) {
  return otp::Base64Encode(std::span<const std::uint8_t>(
      reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

// Base64 of `bytes`, in lines of at most 76 characters, each ending in CRLF.
std::string Base64Body(std::string_view bytes) {
  const std::string b64 = Base64(bytes);
  std::string out;
  for (std::size_t i = 0; i < b64.size(); i += 76) {
    out += b64.substr(i, 76);
    out += "\r\n";
  }
  return out;
}

void ReplaceAll(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  for (std::size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

// The From header: an ASCII value as written; a non-ASCII display name encoded.
std::string FromHeader(std::string_view from) {
  if (IsAscii(from)) return std::string(from);
  const auto lt = from.rfind('<');
  if (lt == std::string_view::npos) return std::string(from);
  std::string_view name = from.substr(0, lt);
  while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
  if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
    name = name.substr(1, name.size() - 2);
  }
  return EncodeHeaderWord(name) + " " + std::string(from.substr(lt));
}

// --- libcurl ------------------------------------------------------------------

struct Upload {
  const std::string* data;
  std::size_t pos = 0;
};

std::size_t ReadUpload(char* buffer, std::size_t size, std::size_t nitems, void* userdata) {
  auto* up = static_cast<Upload*>(userdata);
  const std::size_t room = size * nitems;
  const std::size_t n = std::min(room, up->data->size() - up->pos);
  std::memcpy(buffer, up->data->data() + up->pos, n);
  up->pos += n;
  return n;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

struct Settings {
  std::string name;
  std::string url;
  std::string from;
  std::string from_address;
  std::string from_domain;
  bool require_tls = false;
  std::string username;
  std::string password;
  std::string ca_file;
};

class SmtpChannel final : public ChannelProvider {
 public:
  SmtpChannel(Settings s, otp::Clock& clock) : s_(std::move(s)), clock_(clock) {}

  otp::Result<SendReceipt> Send(const OutboundMessage& m) override {
    MimeInput in;
    in.from = s_.from;
    in.to = m.to;
    in.subject = m.subject;
    in.text = m.text;
    in.code = m.code;
    in.date = clock_.Now();
    in.message_id = "<" + otp::RandomHex(otp::SystemRandom(), 16) + "@" + s_.from_domain + ">";
    in.boundary = "=_otpd_" + otp::RandomHex(otp::SystemRandom(), 12);
    if (m.to.empty() || std::any_of(m.to.begin(), m.to.end(), [](char c) {
          return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        })) {
      return otp::InvalidArgument("smtp provider " + s_.name + ": bad recipient address");
    }
    auto mime = BuildMimeMessage(in);
    if (!mime.ok()) return mime.error();

    std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
    if (!curl) return otp::Unavailable("smtp provider " + s_.name + ": curl_easy_init failed");
    CURL* c = curl.get();
    char errbuf[CURL_ERROR_SIZE] = {0};
    const std::string rcpt_addr = "<" + m.to + ">";
    std::unique_ptr<curl_slist, SlistDeleter> rcpt(curl_slist_append(nullptr, rcpt_addr.c_str()));
    const std::string mail_from = "<" + s_.from_address + ">";
    Upload upload{&*mime};

    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_URL, s_.url.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from.c_str());
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt.get());
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadUpload);
    curl_easy_setopt(c, CURLOPT_READDATA, &upload);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(mime->size()));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    // SECURITY.md 21: verification is always on (no setting turns it off), TLS 1.2+.
    curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (s_.require_tls) curl_easy_setopt(c, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
    if (!s_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, s_.ca_file.c_str());
    if (!s_.username.empty()) {
      curl_easy_setopt(c, CURLOPT_USERNAME, s_.username.c_str());
      curl_easy_setopt(c, CURLOPT_PASSWORD, s_.password.c_str());
    }

    const CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      std::string error = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
      while (!error.empty() && (error.back() == '\n' || error.back() == '\r')) error.pop_back();
      if (!s_.password.empty()) ReplaceAll(error, s_.password, "***");
      if (!m.code.empty()) ReplaceAll(error, m.code, "***");
      return otp::Unavailable("smtp provider " + s_.name + ": " + error);
    }
    return SendReceipt{in.message_id};
  }

 private:
  const Settings s_;
  otp::Clock& clock_;
};

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string MailboxAddress(std::string_view from) {
  std::string_view addr = from;
  const auto lt = from.rfind('<');
  if (lt != std::string_view::npos) {
    const auto gt = from.find('>', lt);
    if (gt == std::string_view::npos) return "";
    addr = from.substr(lt + 1, gt - lt - 1);
  }
  while (!addr.empty() && addr.front() == ' ') addr.remove_prefix(1);
  while (!addr.empty() && addr.back() == ' ') addr.remove_suffix(1);
  const auto at = addr.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == addr.size()) return "";
  if (addr.find_first_of(" <>,\"\r\n\t") != std::string_view::npos) return "";
  return std::string(addr);
}

std::string EncodeHeaderWord(std::string_view text) {
  if (IsAscii(text)) return std::string(text);
  // Each encoded word carries at most 39 bytes of text (52 base64 characters,
  // 64 in all), so that even "Subject: " plus the first word stays within 78
  // characters; words are cut only at UTF-8 character boundaries.
  std::string out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = std::min(text.size(), pos + 39);
    while (end < text.size() && end > pos &&
           (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
      --end;
    }
    if (end == pos) end = std::min(text.size(), pos + 39);
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + Base64(text.substr(pos, end - pos)) + "?=";
    pos = end;
  }
  return out;
}

std::string FormatRfc5322(otp::TimePoint t) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t secs = static_cast<std::time_t>(otp::ToUnixSeconds(t));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::string TextToHtml(std::string_view text, std::string_view code) {
  std::string normalised;
  normalised.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r') {
      if (i + 1 < text.size() && text[i + 1] == '\n') continue;
      normalised += '\n';
    } else {
      normalised += text[i];
    }
  }
  const std::string escaped_code = HtmlEscape(code);
  std::string body;
  std::size_t pos = 0;
  while (pos <= normalised.size()) {
    std::size_t end = normalised.find("\n\n", pos);
    if (end == std::string::npos) end = normalised.size();
    std::string para = HtmlEscape(std::string_view(normalised).substr(pos, end - pos));
    while (!para.empty() && para.front() == '\n') para.erase(0, 1);
    while (!para.empty() && para.back() == '\n') para.pop_back();
    if (!para.empty()) {
      ReplaceAll(para, "\n", "<br>\n");
      ReplaceAll(para, escaped_code, "<strong>" + escaped_code + "</strong>");
      body += "<p>" + para + "</p>\n";
    }
    if (end == normalised.size()) break;
    pos = end + 2;
  }
  return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n" + body +
         "</body></html>\n";
}

otp::Result<std::string> BuildMimeMessage(const MimeInput& in) {
  if (HasLineBreak(in.from) || HasLineBreak(in.to) || HasLineBreak(in.subject) ||
      HasLineBreak(in.message_id) || HasLineBreak(in.boundary)) {
    return otp::InvalidArgument("email headers must not contain line breaks");
  }
  const std::string from_address = MailboxAddress(in.from);
  if (from_address.empty()) return otp::InvalidArgument("from has no mailbox address");
  if (in.to.empty()) return otp::InvalidArgument("no recipient address");

  std::string m;
  m += "From: " + FromHeader(in.from) + "\r\n";
  m += "To: " + in.to + "\r\n";
  m += "Subject: " + EncodeHeaderWord(in.subject) + "\r\n";
  m += "Date: " + FormatRfc5322(in.date) + "\r\n";
  m += "Message-ID: " + in.message_id + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/alternative; boundary=\"" + in.boundary + "\"\r\n";
  m += "\r\n";
  m += "--" + in.boundary + "\r\n";
  m += "Content-Type: text/plain; charset=UTF-8\r\n";
  m += "Content-Transfer-Encoding: base64\r\n\r\n";
  m += Base64Body(in.text);
  m += "--" + in.boundary + "\r\n";
  m += "Content-Type: text/html; charset=UTF-8\r\n";
  m += "Content-Transfer-Encoding: base64\r\n\r\n";
  m += Base64Body(TextToHtml(in.text, in.code));
  m += "--" + in.boundary + "--\r\n";
  return m;
}

otp::Result<std::unique_ptr<ChannelProvider>> NewSmtpChannel(const ProviderConfig& config,
                                                             ProviderContext& context) {
  const std::string where = "provider " + config.name + " (smtp): ";
  static const std::set<std::string, std::less<>> kAllowed = {"url",      "from",     "starttls",
                                                              "username", "password", "ca_file"};
  for (const auto& [key, value] : config.options) {
    if (!kAllowed.contains(key)) {
      return otp::InvalidArgument(where + "unknown option '" + key +
                                  "' (allowed: url, from, starttls, username, password, ca_file)");
    }
  }
  auto get = [&](const char* key) {
    auto it = config.options.find(key);
    return it == config.options.end() ? std::string() : it->second;
  };
  Settings s;
  s.name = config.name;
  s.url = get("url");
  if (s.url.empty()) return otp::InvalidArgument(where + "url is required");
  const bool implicit_tls = s.url.starts_with("smtps://");
  if (!implicit_tls && !s.url.starts_with("smtp://")) {
    return otp::InvalidArgument(where + "url must start with smtp:// or smtps://");
  }
  const std::string_view rest = std::string_view(s.url).substr(implicit_tls ? 8 : 7);
  const std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.empty()) return otp::InvalidArgument(where + "url has no host");
  if (authority.find('@') != std::string_view::npos) {
    return otp::InvalidArgument(where +
                                "url must not carry credentials: use username and password");
  }
  if (HasLineBreak(s.url)) return otp::InvalidArgument(where + "url must not contain line breaks");
  s.from = get("from");
  if (s.from.empty()) return otp::InvalidArgument(where + "from is required");
  if (HasLineBreak(s.from)) {
    return otp::InvalidArgument(where + "from must not contain line breaks");
  }
  s.from_address = MailboxAddress(s.from);
  if (s.from_address.empty()) {
    return otp::InvalidArgument(where +
                                "from needs an address, e.g. \"Verify <no-reply@example.com>\"");
  }
  s.from_domain = s.from_address.substr(s.from_address.find('@') + 1);
  const std::string starttls = get("starttls");
  // The config layer turns TOML booleans into "true"/"false"; a TOML bool may
  // also arrive as "1"/"0" (toml++ converts bool to integer first).
  if (!starttls.empty() && starttls != "true" && starttls != "false" && starttls != "1" &&
      starttls != "0") {
    return otp::InvalidArgument(where + "starttls must be true or false");
  }
  s.require_tls = implicit_tls || starttls == "true" || starttls == "1";
  s.username = get("username");
  s.password = get("password");
  if (s.username.empty() && !s.password.empty()) {
    return otp::InvalidArgument(where + "password is set but username is not");
  }
  s.ca_file = get("ca_file");
  GlobalInit();
  return std::unique_ptr<ChannelProvider>(new SmtpChannel(std::move(s), context.clock));
}

}  // namespace otpd
