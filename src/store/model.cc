#include "store/model.h"

#include <cctype>

#include <nlohmann/json.hpp>

namespace otpd {

using nlohmann::json;

json WorkflowJson(const std::vector<WorkflowStep>& workflow) {
  json steps = json::array();
  for (const WorkflowStep& s : workflow) {
    json step = {{"channel", s.channel}, {"timeout_s", s.timeout_s}};
    if (!s.to.empty()) step["to"] = s.to;
    steps.push_back(std::move(step));
  }
  return steps;
}

namespace {

bool StepsFromJson(const json& j, std::vector<WorkflowStep>* workflow) {
  if (!j.is_array()) return false;
  std::vector<WorkflowStep> out;
  for (const json& s : j) {
    if (!s.is_object()) return false;
    WorkflowStep step;
    step.channel = s.value("channel", "");
    step.timeout_s = s.value("timeout_s", 60);
    step.to = s.value("to", "");
    out.push_back(std::move(step));
  }
  *workflow = std::move(out);
  return true;
}

}  // namespace

std::vector<std::string> SplitCommaList(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string WorkflowToJson(const std::vector<WorkflowStep>& workflow) {
  return WorkflowJson(workflow).dump();
}

bool WorkflowFromJson(const std::string& text, std::vector<WorkflowStep>* workflow) {
  json j = json::parse(text, nullptr, false);
  return !j.is_discarded() && StepsFromJson(j, workflow);
}

namespace {

json CountryListsJson(const CountryLists& c) {
  return json{{"allowed", c.allowed}, {"blocked", c.blocked}};
}

void CountryListsFromJson(const json& j, CountryLists* c) {
  if (!j.is_object()) return;
  auto list = [&](const char* key, std::vector<std::string>* out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_array()) return;
    out->clear();
    for (const json& r : *it) {
      if (r.is_string()) out->push_back(r.get<std::string>());
    }
  };
  list("allowed", &c->allowed);
  list("blocked", &c->blocked);
}

}  // namespace

std::string AppSettingsToJson(const AppSettings& s) {
  json channel_countries = json::object();
  for (const auto& [channel, lists] : s.geo.channels) {
    channel_countries[channel] = CountryListsJson(lists);
  }
  return json{{"workflow", WorkflowJson(s.workflow)},
              {"code_length", s.code_length},
              {"ttl_s", s.ttl_s},
              {"max_checks", s.max_checks},
              {"max_sends", s.max_sends},
              {"resend_cooldown_s", s.resend_cooldown_s},
              {"totp_window", s.totp_window},
              {"starts_per_recipient", s.starts_per_recipient},
              {"starts_window_s", s.starts_window_s},
              {"starts_per_ip", s.starts_per_ip},
              {"ip_window_s", s.ip_window_s},
              {"request_rate", s.request_rate},
              {"request_burst", s.request_burst},
              {"sandbox", s.sandbox},
              {"countries", CountryListsJson(s.geo.all)},
              {"channel_countries", std::move(channel_countries)},
              {"geo_mode", s.geo.mode},
              {"fraud_mode", s.fraud.mode},
              {"fraud_prefix_threshold", s.fraud.prefix_threshold},
              {"fraud_region_threshold", s.fraud.region_threshold},
              {"fraud_min_conversion_pct", s.fraud.min_conversion_pct},
              {"fraud_window_s", s.fraud.window_s},
              {"webhook_url", s.webhook_url},
              {"templates", s.templates}}
      .dump();
}

bool AppSettingsFromJson(const std::string& text, AppSettings* settings) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  AppSettings s;
  if (j.contains("workflow") && !StepsFromJson(j["workflow"], &s.workflow)) return false;
  s.code_length = j.value("code_length", s.code_length);
  s.ttl_s = j.value("ttl_s", s.ttl_s);
  s.max_checks = j.value("max_checks", s.max_checks);
  s.max_sends = j.value("max_sends", s.max_sends);
  s.resend_cooldown_s = j.value("resend_cooldown_s", s.resend_cooldown_s);
  s.totp_window = j.value("totp_window", s.totp_window);
  s.starts_per_recipient = j.value("starts_per_recipient", s.starts_per_recipient);
  s.starts_window_s = j.value("starts_window_s", s.starts_window_s);
  s.starts_per_ip = j.value("starts_per_ip", s.starts_per_ip);
  s.ip_window_s = j.value("ip_window_s", s.ip_window_s);
  s.request_rate = j.value("request_rate", s.request_rate);
  s.request_burst = j.value("request_burst", s.request_burst);
  s.sandbox = j.value("sandbox", s.sandbox);
  if (j.contains("countries")) CountryListsFromJson(j["countries"], &s.geo.all);
  if (j.contains("channel_countries") && j["channel_countries"].is_object()) {
    for (auto& [channel, lists] : j["channel_countries"].items()) {
      CountryListsFromJson(lists, &s.geo.channels[channel]);
    }
  }
  s.geo.mode = j.value("geo_mode", s.geo.mode);
  s.fraud.mode = j.value("fraud_mode", s.fraud.mode);
  s.fraud.prefix_threshold = j.value("fraud_prefix_threshold", s.fraud.prefix_threshold);
  s.fraud.region_threshold = j.value("fraud_region_threshold", s.fraud.region_threshold);
  s.fraud.min_conversion_pct = j.value("fraud_min_conversion_pct", s.fraud.min_conversion_pct);
  s.fraud.window_s = j.value("fraud_window_s", s.fraud.window_s);
  s.webhook_url = j.value("webhook_url", s.webhook_url);
  if (j.contains("templates") && j["templates"].is_object()) {
    for (auto& [k, v] : j["templates"].items()) {
      if (v.is_string()) s.templates[k] = v.get<std::string>();
    }
  }
  *settings = std::move(s);
  return true;
}

std::chrono::seconds ThrottleDelay(const ThrottlePolicy& policy, int failures) {
  if (failures < policy.free_failures) return std::chrono::seconds(0);
  std::int64_t delay = policy.base_delay_s;
  for (int i = policy.free_failures; i < failures && delay < policy.max_delay_s; ++i) delay *= 2;
  return std::chrono::seconds(std::min<std::int64_t>(delay, policy.max_delay_s));
}

std::int64_t RefilledMilliTokens(std::int64_t milli, TimePoint updated_at, int rate, int burst,
                                 TimePoint now) {
  const std::int64_t elapsed_ms = std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(now - updated_at).count());
  const std::int64_t cap = std::int64_t{burst} * 1000;
  // rate tokens per second = rate thousandths per millisecond; capped first (no overflow).
  const std::int64_t gained = std::min(cap, elapsed_ms) * rate;
  return std::min(cap, milli + gained);
}

TimePoint NextTokenAt(std::int64_t milli, int rate, TimePoint now) {
  const std::int64_t missing = std::max<std::int64_t>(0, 1000 - milli);
  return now + std::chrono::milliseconds((missing + rate - 1) / std::max(1, rate));
}

std::string FactorEventJson(const Factor& f) {
  json j = {{"id", f.id},
            {"user_id", f.user_id},
            {"type", f.type},
            {"status", f.status},
            {"label", f.label},
            {"issuer", f.issuer},
            {"created_at", otp::FormatRfc3339(f.created_at)}};
  if (!f.serial.empty()) j["serial"] = f.serial;
  if (f.activated_at) j["activated_at"] = otp::FormatRfc3339(*f.activated_at);
  return j.dump();
}

std::string MaskRecipient(std::string_view to) {
  const auto at = to.find('@');
  if (at != std::string_view::npos) {
    return std::string(to.substr(0, at > 0 ? 1 : 0)) + "***" + std::string(to.substr(at));
  }
  std::string out(to);
  int keep = 4;
  for (std::size_t i = out.size(); i-- > 0;) {
    if (std::isdigit(static_cast<unsigned char>(out[i]))) {
      if (keep > 0) {
        --keep;
      } else {
        out[i] = '*';
      }
    }
  }
  return out;
}

nlohmann::json VerificationJson(const Verification& v) {
  json deliveries = json::array();
  for (const Delivery& d : v.deliveries) {
    json dj = {{"channel", d.channel},
               {"provider", d.provider},
               {"status", d.status},
               {"at", otp::FormatRfc3339(d.updated_at)}};
    deliveries.push_back(std::move(dj));
  }
  json metadata = json::parse(v.metadata_json, nullptr, false);
  if (metadata.is_discarded()) metadata = json::object();
  return json{{"id", v.id},
              {"to", v.to},
              {"status", v.status},
              {"channel", v.channel},
              {"locale", v.locale},
              {"workflow", WorkflowJson(v.workflow)},
              {"deliveries", std::move(deliveries)},
              {"send_count", v.send_count},
              {"check_count", v.check_count},
              {"max_checks", v.max_checks},
              {"flags", v.flags},
              {"expires_at", otp::FormatRfc3339(v.expires_at)},
              {"created_at", otp::FormatRfc3339(v.created_at)},
              {"updated_at", otp::FormatRfc3339(v.updated_at)},
              {"metadata", std::move(metadata)}};
}

// The `data` of verification.* and delivery.* events: the verification object
// with every recipient masked (SECURITY.md 31); metadata is echoed.
std::string VerificationEventJson(const Verification& v) {
  json j = VerificationJson(v);
  j["to"] = MaskRecipient(v.to);
  for (json& step : j["workflow"]) {
    if (step.contains("to")) step["to"] = MaskRecipient(step["to"].get<std::string>());
  }
  // Never throw inside the store's transaction on a byte that is not UTF-8.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace otpd
