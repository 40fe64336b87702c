#include "channels/http/http_channel.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <toml++/toml.h>
#include <kainjow/mustache.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "otp/crypto.h"
#include "otp/percent.h"
#include "service/log_text.h"
#include "service/messages.h"
#include "store/model.h"

namespace otpd {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxResponseBytes = 1 << 20;  // more is read and dropped
constexpr int kMaxJsonDepth = 32;                   // reports (SECURITY.md 25)

const std::set<std::string, std::less<>> kVariables = {
    "code",   "code_spoken", "app_name", "ttl_minutes", "to", "to_digits", "verification_id",
    "locale", "text",        "subject",  "channel"};

const std::set<std::string, std::less<>> kOptions = {
    "method",          "url",        "headers",         "body",       "content_type",
    "message_id",      "timeout_ms", "connect_retries", "ca_file",    "dlr_token",
    "dlr_format",      "dlr_list",   "dlr_id",          "dlr_status", "dlr_delivered",
    "dlr_undelivered", "dlr_failed"};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// A TOML value as the config layer hands it over (tables and arrays as TOML text).
std::optional<toml::table> ParseTomlValue(const std::string& text) {
  try {
    toml::table t = toml::parse("v = " + text);
    return t;
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
}

// A list of strings: a TOML array of strings, or one string.
otp::Result<std::vector<std::string>> StringList(const std::string& text, const std::string& key) {
  if (!text.starts_with('[')) return std::vector<std::string>{text};
  auto t = ParseTomlValue(text);
  const toml::array* array = t ? (*t)["v"].as_array() : nullptr;
  if (array == nullptr) return otp::InvalidArgument(key + " must be a list of strings");
  std::vector<std::string> out;
  for (const auto& item : *array) {
    auto s = item.value<std::string>();
    if (!s) return otp::InvalidArgument(key + " must be a list of strings");
    out.push_back(*s);
  }
  return out;
}

bool ValidPointer(std::string_view pointer) {
  try {
    json::json_pointer p{std::string(pointer)};
    (void)p;
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// A scalar at `pointer` as text; nullopt for nothing, null, objects and arrays.
std::optional<std::string> ScalarText(const json& doc, const std::string& pointer) {
  try {
    const json& v = doc.at(json::json_pointer(pointer));
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number() || v.is_boolean()) return v.dump();
    return std::nullopt;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// `dlr_list` split at its "*" segments: "/entry/*/changes/*/value/statuses" is
// {"/entry", "/changes", "/value/statuses"}: every element of every array on the way.
std::vector<std::string> SplitAtWildcards(std::string_view list) {
  std::vector<std::string> parts(1);
  std::size_t pos = 0;
  while (pos < list.size()) {
    std::size_t next = list.find('/', pos + 1);
    if (next == std::string_view::npos) next = list.size();
    const std::string_view segment = list.substr(pos, next - pos);  // "/name"
    if (segment == "/*") {
      parts.emplace_back();
    } else {
      parts.back() += segment;
    }
    pos = next;
  }
  return parts;
}

void CollectReports(const json& node, const std::vector<std::string>& parts, std::size_t i,
                    std::vector<const json*>& out) {
  const json* target = &node;
  if (!parts[i].empty()) {
    try {
      target = &node.at(json::json_pointer(parts[i]));
    } catch (const json::exception&) {
      return;  // nothing there: no reports
    }
  }
  if (i + 1 == parts.size()) {
    if (target->is_array()) {
      for (const json& element : *target) out.push_back(&element);
    } else if (target->is_object()) {
      out.push_back(target);
    }
    return;
  }
  if (!target->is_array()) return;
  for (const json& element : *target) CollectReports(element, parts, i + 1, out);
}

struct DepthExceeded : std::runtime_error {
  DepthExceeded() : std::runtime_error("too deep") {}
};

otp::Result<json> ParseJsonBounded(std::string_view body) {
  try {
    return json::parse(body, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) throw DepthExceeded();
      return true;
    });
  } catch (const DepthExceeded&) {
    return otp::InvalidArgument("report nested too deep");
  } catch (const json::exception&) {
    return otp::InvalidArgument("report is not valid JSON");
  }
}

// A form body as a JSON object of strings, so that the same pointers apply.
otp::Result<json> FormAsJson(std::string_view body) {
  auto pairs = otp::ParseForm(body);
  if (!pairs.ok()) return otp::InvalidArgument("report is not a valid form");
  json doc = json::object();
  for (auto& [name, value] : *pairs) {
    if (name.empty()) return otp::InvalidArgument("report form has a field without a name");
    doc[name] = std::move(value);
  }
  return doc;
}

// --- libcurl ------------------------------------------------------------------

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

std::size_t CollectResponse(char* data, std::size_t size, std::size_t nmemb, void* userdata) {
  auto* out = static_cast<std::string*>(userdata);
  const std::size_t n = size * nmemb;
  if (out->size() < kMaxResponseBytes)
    out->append(data, std::min(n, kMaxResponseBytes - out->size()));
  return n;
}

struct Attempt {
  CURLcode rc = CURLE_OK;
  long status = 0;
  bool request_started = false;  // past connect (and TLS): the request may have gone out
  std::string response;
};

// Whether a failed attempt surely never reached the server, so that trying
// again cannot deliver the message twice.
bool NeverReachedServer(const Attempt& a) {
  if (a.rc == CURLE_COULDNT_CONNECT || a.rc == CURLE_COULDNT_RESOLVE_HOST) return true;
  return a.rc == CURLE_OPERATION_TIMEDOUT && !a.request_started;
}

struct Settings {
  std::string name;
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // name, value template
  std::string body;
  std::string content_type = "application/json";
  Escaping body_escaping = Escaping::kJson;
  std::string message_id;
  long timeout_ms = 10000;
  int connect_retries = 2;
  std::string ca_file;
  std::string dlr_token;
  bool dlr_form = false;
  std::vector<std::string> dlr_list{""};
  std::string dlr_id;
  std::string dlr_status;
  std::map<std::string, std::string> dlr_statuses;  // lower-cased provider word -> ours
};

class HttpChannel final : public ChannelProvider {
 public:
  explicit HttpChannel(Settings s) : s_(std::move(s)) {}

  otp::Result<SendReceipt> Send(const OutboundMessage& m) override {
    const auto vars = TemplateVariables(m);
    const std::string url = RenderHttpTemplate(s_.url, vars, Escaping::kUrl);
    if (HasControl(url) || url.find(' ') != std::string::npos) {
      return otp::InvalidArgument(Where() + "the rendered url is not a valid URL");
    }
    std::unique_ptr<curl_slist, SlistDeleter> headers;
    auto add_header = [&headers](const std::string& line) {
      curl_slist* next = curl_slist_append(headers.get(), line.c_str());
      if (next == nullptr) throw std::bad_alloc();
      (void)headers.release();
      headers.reset(next);
    };
    for (const auto& [name, value_template] : s_.headers) {
      const std::string value = RenderHttpTemplate(value_template, vars, Escaping::kNone);
      if (HasControl(value)) {
        return otp::InvalidArgument(Where() + "header " + name +
                                    " would carry a line break or control character");
      }
      add_header(name + ": " + value);
    }
    const bool has_body = s_.method != "GET";
    std::string body;
    if (has_body) {
      body = RenderHttpTemplate(s_.body, vars, s_.body_escaping);
      add_header("Content-Type: " + s_.content_type);
    }
    add_header("Expect:");  // no 100-continue round trip

    // Again only while the request surely never reached the server.
    Attempt a = Perform(url, headers.get(), has_body ? &body : nullptr);
    int attempts = 1;
    while (a.rc != CURLE_OK && NeverReachedServer(a) && attempts <= s_.connect_retries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << (attempts - 1)));
      a = Perform(url, headers.get(), has_body ? &body : nullptr);
      ++attempts;
    }
    if (a.rc != CURLE_OK) {
      return otp::Unavailable(
          Where() + curl_easy_strerror(a.rc) + " (" + std::to_string(attempts) +
          (attempts == 1 ? " attempt" : " attempts") +
          (NeverReachedServer(a) ? ")" : "; the request may have been received, not retried)"));
    }
    if (a.status < 200 || a.status > 299) {
      return otp::Unavailable(Where() + "HTTP " + std::to_string(a.status));
    }
    SendReceipt receipt;
    if (!s_.message_id.empty()) {
      auto id = JsonPointerText(a.response, s_.message_id);
      if (id) {
        receipt.provider_message_id = *id;
      } else {
        // Taken (2xx): failing now would send the code twice. Reports cannot match it.
        spdlog::warn(R"("event":"http_provider_no_message_id","provider":{},"http_status":{})",
                     LogText(s_.name), a.status);
      }
    }
    return receipt;
  }

  otp::Result<std::vector<DeliveryReport>> ParseHttpReport(std::string_view token,
                                                           std::string_view body) override {
    if (s_.dlr_token.empty()) {
      return otp::PermissionDenied(Where() + "takes no delivery reports (no dlr_token)");
    }
    // Hashes first, so that the comparison time does not depend on the token's length.
    const otp::Sha256Digest given = otp::Sha256(token);
    const otp::Sha256Digest want = otp::Sha256(s_.dlr_token);
    if (!otp::ConstantTimeEqual(
            std::string_view(reinterpret_cast<const char*>(given.data()), given.size()),
            std::string_view(reinterpret_cast<const char*>(want.data()), want.size()))) {
      return otp::PermissionDenied(Where() + "wrong delivery report token");
    }
    auto doc = s_.dlr_form ? FormAsJson(body) : ParseJsonBounded(body);
    if (!doc.ok()) return otp::InvalidArgument(Where() + doc.status().message());
    std::vector<const json*> elements;
    CollectReports(*doc, s_.dlr_list, 0, elements);
    std::vector<DeliveryReport> reports;
    for (const json* element : elements) {
      auto id = ScalarText(*element, s_.dlr_id);
      auto status = ScalarText(*element, s_.dlr_status);
      if (!id || !status || id->empty()) continue;  // not a status report (e.g. an inbound message)
      auto ours = s_.dlr_statuses.find(Lower(*status));
      if (ours == s_.dlr_statuses.end()) continue;  // "read", "sent", ...: drives nothing
      reports.push_back(DeliveryReport{s_.name, *id, ours->second, *status});
    }
    return reports;
  }

 private:
  std::string Where() const { return "http provider " + s_.name + ": "; }

  Attempt Perform(const std::string& url, curl_slist* headers, const std::string* body) const {
    Attempt a;
    std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
    if (!curl) {
      a.rc = CURLE_OUT_OF_MEMORY;
      return a;
    }
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s_.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(s_.timeout_ms, 5000L));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    // SECURITY.md 21: verification is always on (no setting turns it off), TLS 1.2+.
    curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (!s_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, s_.ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_USERAGENT, "otpd");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (body != nullptr) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->c_str());
      if (s_.method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, s_.method.c_str());
    } else {
      curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CollectResponse);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a.response);
    a.rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    curl_off_t pretransfer = 0;
    curl_easy_getinfo(c, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    a.request_started = pretransfer > 0;
    return a;
  }

  const Settings s_;
};

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool ValidHeaderName(std::string_view name) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           kSpecials.find(c) != std::string_view::npos;
  });
}

}  // namespace

Escaping EscapingFor(std::string_view content_type) {
  const std::string type = Lower(content_type.substr(0, content_type.find(';')));
  auto trimmed = std::string_view(type);
  while (!trimmed.empty() && trimmed.back() == ' ') trimmed.remove_suffix(1);
  if (trimmed == "application/json" || trimmed.ends_with("+json")) return Escaping::kJson;
  if (trimmed == "application/x-www-form-urlencoded") return Escaping::kForm;
  if (trimmed == "application/xml" || trimmed == "text/xml" || trimmed.ends_with("+xml")) {
    return Escaping::kXml;
  }
  return Escaping::kNone;
}

std::string EscapeValue(std::string_view value, Escaping escaping) {
  switch (escaping) {
    case Escaping::kNone:
      return std::string(value);
    case Escaping::kJson: {
      const std::string quoted = LogText(value);  // a JSON string, quotes included
      return quoted.substr(1, quoted.size() - 2);
    }
    case Escaping::kForm: {
      std::string out;
      const std::string escaped = otp::PercentEncode(value);
      for (std::size_t i = 0; i < escaped.size(); ++i) {
        if (escaped.compare(i, 3, "%20") == 0) {
          out += '+';
          i += 2;
        } else {
          out += escaped[i];
        }
      }
      return out;
    }
    case Escaping::kUrl:
      return otp::PercentEncode(value);
    case Escaping::kXml:
      return HtmlEscape(value);
  }
  return std::string(value);
}

std::map<std::string, std::string> TemplateVariables(const OutboundMessage& m) {
  std::map<std::string, std::string> vars;
  vars["code"] = m.code;
  vars["code_spoken"] = SpokenCode(m.code);
  vars["app_name"] = m.app_name;
  vars["ttl_minutes"] = m.ttl_minutes > 0 ? std::to_string(m.ttl_minutes) : "";
  vars["to"] = m.to;
  vars["to_digits"] = m.to.starts_with('+') ? m.to.substr(1) : m.to;
  vars["verification_id"] = m.verification_id;
  vars["locale"] = m.locale;
  vars["text"] = m.text;
  vars["subject"] = m.subject;
  vars["channel"] = m.channel;
  return vars;
}

std::string CheckHttpTemplate(std::string_view text) {
  kainjow::mustache::mustache m{std::string(text)};
  if (!m.is_valid()) return "not valid mustache: " + m.error_message();
  std::size_t pos = 0;
  while ((pos = text.find("{{", pos)) != std::string_view::npos) {
    const bool triple = text.substr(pos).starts_with("{{{");
    const std::size_t start = pos + (triple ? 3 : 2);
    const std::size_t end = text.find(triple ? "}}}" : "}}", start);
    if (end == std::string_view::npos) return "unclosed {{";
    std::string_view tag = text.substr(start, end - start);
    pos = end + (triple ? 3 : 2);
    while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
    if (!tag.empty() && tag.front() == '!') continue;  // comment
    if (!tag.empty() && (tag.front() == '=' || tag.front() == '>')) {
      return "delimiter changes and partials are not supported";
    }
    if (!tag.empty() && std::string_view("#^/&").find(tag.front()) != std::string_view::npos) {
      tag.remove_prefix(1);
    }
    while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
    while (!tag.empty() && tag.back() == ' ') tag.remove_suffix(1);
    if (!kVariables.contains(tag)) {
      return "unknown variable '" + std::string(tag) +
             "' (known: code, code_spoken, app_name, ttl_minutes, to, to_digits, "
             "verification_id, locale, text, subject, channel)";
    }
  }
  return "";
}

std::string RenderHttpTemplate(std::string_view text,
                               const std::map<std::string, std::string>& vars, Escaping escaping) {
  kainjow::mustache::mustache m{std::string(text)};
  m.set_custom_escape([escaping](const std::string& s) { return EscapeValue(s, escaping); });
  kainjow::mustache::data data;
  for (const auto& [name, value] : vars) data.set(name, value);
  return m.render(data);
}

std::optional<std::string> JsonPointerText(std::string_view json_text, std::string_view pointer) {
  if (!ValidPointer(pointer)) return std::nullopt;
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return std::nullopt;
  return ScalarText(doc, std::string(pointer));
}

otp::Result<std::unique_ptr<ChannelProvider>> NewHttpChannel(const ProviderConfig& config,
                                                             ProviderContext& context) {
  (void)context;  // reports come back through ParseHttpReport, from the API
  const std::string where = "provider " + config.name + " (http): ";
  auto bad = [&where](const std::string& what) { return otp::InvalidArgument(where + what); };
  for (const auto& [key, value] : config.options) {
    if (!kOptions.contains(key)) {
      std::string allowed;
      for (const auto& k : kOptions) allowed += (allowed.empty() ? "" : ", ") + k;
      return bad("unknown option '" + key + "' (allowed: " + allowed + ")");
    }
  }
  auto get = [&](const char* key) {
    auto it = config.options.find(key);
    return it == config.options.end() ? std::string() : it->second;
  };
  auto integer = [&](const char* key, long fallback, long min, long max) -> otp::Result<long> {
    const std::string text = get(key);
    if (text.empty()) return fallback;
    long v = 0;
    try {
      std::size_t used = 0;
      v = std::stol(text, &used);
      if (used != text.size()) throw std::invalid_argument(key);
    } catch (const std::exception&) {
      return bad(std::string(key) + " must be an integer");
    }
    if (v < min || v > max) {
      return bad(std::string(key) + " must be " + std::to_string(min) + ".." + std::to_string(max));
    }
    return v;
  };
  auto pointer = [&](const char* key) -> otp::Result<std::string> {
    std::string p = get(key);
    if (!p.empty() && !ValidPointer(p)) {
      return bad(std::string(key) + " must be a JSON pointer such as /messages/0/id");
    }
    return p;
  };
  auto checked_template = [&](const char* key, const std::string& text) -> otp::Status {
    const std::string problem = CheckHttpTemplate(text);
    if (!problem.empty()) return bad(std::string(key) + ": " + problem);
    return otp::Status::Ok();
  };

  Settings s;
  s.name = config.name;
  if (auto m = get("method"); !m.empty()) s.method = m;
  if (s.method != "GET" && s.method != "POST" && s.method != "PUT" && s.method != "PATCH") {
    return bad("method must be GET, POST, PUT or PATCH");
  }
  s.url = get("url");
  if (s.url.empty()) return bad("url is required");
  if (!s.url.starts_with("https://") && !s.url.starts_with("http://")) {
    return bad("url must start with https:// or http://");
  }
  if (HasControl(s.url) || s.url.find(' ') != std::string::npos) {
    return bad("url must not contain spaces or control characters");
  }
  OTP_RETURN_IF_ERROR(checked_template("url", s.url));

  if (const std::string text = get("headers"); !text.empty()) {
    auto t = text.starts_with('{') ? ParseTomlValue(text) : std::nullopt;
    const toml::table* table = t ? (*t)["v"].as_table() : nullptr;
    if (table == nullptr)
      return bad("headers must be a table, e.g. { Authorization = \"Bearer …\" }");
    for (auto&& [k, v] : *table) {
      const std::string name(k.str());
      auto value = v.value<std::string>();
      if (!value) return bad("headers: " + name + " must be a string");
      if (!ValidHeaderName(name)) return bad("headers: '" + name + "' is not a header name");
      if (Lower(name) == "content-type")
        return bad("headers: set content_type instead of Content-Type");
      if (HasControl(*value)) return bad("headers: " + name + " must not contain line breaks");
      OTP_RETURN_IF_ERROR(checked_template("headers", *value));
      s.headers.emplace_back(name, *value);
    }
  }
  s.body = get("body");
  if (s.method == "GET" && !s.body.empty()) return bad("body is not sent with method GET");
  OTP_RETURN_IF_ERROR(checked_template("body", s.body));
  if (auto ct = get("content_type"); !ct.empty()) s.content_type = ct;
  if (HasControl(s.content_type)) return bad("content_type must not contain line breaks");
  s.body_escaping = EscapingFor(s.content_type);

  auto message_id = pointer("message_id");
  if (!message_id.ok()) return message_id.status();
  s.message_id = *message_id;
  auto timeout = integer("timeout_ms", 10000, 100, 120000);
  if (!timeout.ok()) return timeout.status();
  s.timeout_ms = *timeout;
  auto retries = integer("connect_retries", 2, 0, 5);
  if (!retries.ok()) return retries.status();
  s.connect_retries = static_cast<int>(*retries);
  s.ca_file = get("ca_file");

  s.dlr_token = get("dlr_token");
  const bool has_dlr_keys = std::any_of(
      config.options.begin(), config.options.end(),
      [](const auto& kv) { return kv.first.starts_with("dlr_") && kv.first != "dlr_token"; });
  if (s.dlr_token.empty()) {
    if (has_dlr_keys) return bad("dlr_* keys need dlr_token (the reports' shared secret)");
  } else {
    if (s.dlr_token.size() < 16) return bad("dlr_token must be at least 16 characters");
    if (s.dlr_token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789-._~") != std::string::npos) {
      return bad("dlr_token must use only A-Z a-z 0-9 - . _ ~ (it travels in a URL)");
    }
    const std::string format = get("dlr_format");
    if (!format.empty() && format != "json" && format != "form") {
      return bad("dlr_format must be json or form");
    }
    s.dlr_form = format == "form";
    auto id = pointer("dlr_id");
    if (!id.ok()) return id.status();
    auto status = pointer("dlr_status");
    if (!status.ok()) return status.status();
    if (id->empty() || status->empty()) return bad("dlr_token needs dlr_id and dlr_status");
    s.dlr_id = *id;
    s.dlr_status = *status;
    if (const std::string list = get("dlr_list"); !list.empty()) {
      s.dlr_list = SplitAtWildcards(list);
      for (const auto& part : s.dlr_list) {
        if (!part.empty() && !ValidPointer(part)) {
          return bad("dlr_list must be a JSON pointer, with * for every element of an array");
        }
      }
    }
    const std::pair<const char*, const char*> lists[] = {{"dlr_delivered", kDeliveryDelivered},
                                                         {"dlr_undelivered", kDeliveryUndelivered},
                                                         {"dlr_failed", kDeliveryFailed}};
    // With none of the lists given, the words are our own status names.
    const bool defaults = std::none_of(std::begin(lists), std::end(lists),
                                       [&](const auto& l) { return !get(l.first).empty(); });
    for (const auto& [key, ours] : lists) {
      const std::string text = defaults ? std::string(ours) : get(key);
      if (text.empty()) continue;
      auto words = StringList(text, key);
      if (!words.ok()) return bad(words.status().message());
      for (const std::string& word : *words) {
        if (!s.dlr_statuses.emplace(Lower(word), ours).second) {
          return bad(std::string(key) + ": status '" + word + "' is listed twice");
        }
      }
    }
  }
  GlobalInit();
  return std::unique_ptr<ChannelProvider>(new HttpChannel(std::move(s)));
}

}  // namespace otpd
