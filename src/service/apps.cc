#include "service/apps.h"

#include <charconv>

#include "otp/crypto.h"
#include "service/limits.h"
#include "service/messages.h"
#include "service/recipients.h"
#include "service/secrets.h"

namespace otpd {

Status ValidateAppName(std::string_view name) {
  if (name.empty() || name.size() > 64) return otp::InvalidArgument("name: 1..64 bytes");
  // The name goes into message texts and JSON: valid UTF-8, no control characters.
  std::size_t i = 0;
  while (i < name.size()) {
    const auto c = static_cast<unsigned char>(name[i]);
    const int len = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xe  ? 3
                    : (c >> 3) == 0x1e ? 4
                                       : 0;
    if (len == 0 || i + static_cast<std::size_t>(len) > name.size() ||
        (len == 1 && (c < 0x20 || c == 0x7f))) {
      return otp::InvalidArgument("name: must be UTF-8 text without control characters");
    }
    for (int k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(name[i + static_cast<std::size_t>(k)]) & 0xc0) != 0x80) {
        return otp::InvalidArgument("name: must be UTF-8 text without control characters");
      }
    }
    i += static_cast<std::size_t>(len);
  }
  return Status::Ok();
}

Status ValidateAppSettings(const AppSettings& s) {
  if (s.workflow.empty() || s.workflow.size() > 10) {
    return otp::InvalidArgument("workflow: 1 to 10 steps");
  }
  for (const WorkflowStep& step : s.workflow) {
    if (!IsKnownChannel(step.channel)) {
      return otp::InvalidArgument("workflow: unknown channel '" + step.channel + "'");
    }
    if (step.timeout_s < 1 || step.timeout_s > 86400) {
      return otp::InvalidArgument("workflow: timeout_s must be 1..86400");
    }
  }
  if (s.code_length < 4 || s.code_length > 10) return otp::InvalidArgument("code_length: 4..10");
  if (s.ttl_s < 60 || s.ttl_s > 86400) return otp::InvalidArgument("ttl: 60..86400 seconds");
  if (s.max_checks < 1 || s.max_checks > 20) return otp::InvalidArgument("max_checks: 1..20");
  if (s.max_sends < 1 || s.max_sends > 20) return otp::InvalidArgument("max_sends: 1..20");
  if (s.totp_window < 0 || s.totp_window > 10) return otp::InvalidArgument("totp_window: 0..10");
  if (s.resend_cooldown_s < 0 || s.resend_cooldown_s > 3600) {
    return otp::InvalidArgument("resend_cooldown: 0..3600 seconds");
  }
  if (s.starts_per_recipient < 1 || s.starts_per_recipient > 1000) {
    return otp::InvalidArgument("starts_per_recipient: 1..1000");
  }
  if (s.starts_window_s < 60 || s.starts_window_s > 86400) {
    return otp::InvalidArgument("starts_window: 60..86400 seconds");
  }
  if (s.starts_per_ip < 0 || s.starts_per_ip > 100000) {
    return otp::InvalidArgument("starts_per_ip: 0..100000 (0 = off)");
  }
  if (s.ip_window_s < 60 || s.ip_window_s > 86400) {
    return otp::InvalidArgument("ip_window: 60..86400 seconds");
  }
  if (s.request_rate < 0 || s.request_rate > 1000000) {
    return otp::InvalidArgument("request_rate: 0..1000000 per second (0 = off)");
  }
  if (s.request_burst < 1 || s.request_burst > 1000000) {
    return otp::InvalidArgument("request_burst: 1..1000000");
  }
  if (s.geo.mode != "block" && s.geo.mode != "monitor") {
    return otp::InvalidArgument("geo_mode: block or monitor");
  }
  OTP_RETURN_IF_ERROR(ValidateRegions(s.geo.all.allowed, "allowed_countries"));
  OTP_RETURN_IF_ERROR(ValidateRegions(s.geo.all.blocked, "blocked_countries"));
  for (const auto& [channel, lists] : s.geo.channels) {
    if (!IsKnownChannel(channel) || !IsPhoneChannel(channel)) {
      return otp::InvalidArgument("countries: '" + channel + "' is not a phone channel");
    }
    OTP_RETURN_IF_ERROR(ValidateRegions(lists.allowed, "allowed_countries " + channel));
    OTP_RETURN_IF_ERROR(ValidateRegions(lists.blocked, "blocked_countries " + channel));
  }
  const FraudPolicy& f = s.fraud;
  if (f.mode != "block" && f.mode != "monitor" && f.mode != "off") {
    return otp::InvalidArgument("fraud_mode: block, monitor or off");
  }
  if (f.prefix_threshold < 1 || f.prefix_threshold > 1000000) {
    return otp::InvalidArgument("fraud_prefix_threshold: 1..1000000");
  }
  if (f.region_threshold < 0 || f.region_threshold > 10000000) {
    return otp::InvalidArgument("fraud_region_threshold: 0..10000000 (0 = not judged)");
  }
  if (f.min_conversion_pct < 0 || f.min_conversion_pct > 100) {
    return otp::InvalidArgument("fraud_min_conversion: 0..100 percent");
  }
  if (f.window_s < 60 || f.window_s > 86400 || f.window_s % 60 != 0) {
    return otp::InvalidArgument("fraud_window: 60..86400 seconds, whole minutes");
  }
  for (const auto& [key, text] : s.templates) {
    const std::string problem = CheckTemplate(key, text);
    if (!problem.empty()) return otp::InvalidArgument("template " + key + ": " + problem);
  }
  if (!s.webhook_url.empty() && s.webhook_url.rfind("https://", 0) != 0 &&
      s.webhook_url.rfind("http://", 0) != 0) {
    return otp::InvalidArgument("webhook_url: must be an http(s) URL");
  }
  return Status::Ok();
}

Result<std::vector<WorkflowStep>> ParseWorkflowSpec(std::string_view spec) {
  std::vector<WorkflowStep> steps;
  std::size_t start = 0;
  while (start <= spec.size()) {
    auto end = spec.find(',', start);
    if (end == std::string_view::npos) end = spec.size();
    std::string_view item = spec.substr(start, end - start);
    WorkflowStep step;
    const auto colon = item.find(':');
    step.channel = std::string(item.substr(0, colon));
    if (colon != std::string_view::npos) {
      std::string_view t = item.substr(colon + 1);
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), step.timeout_s);
      if (ec != std::errc() || p != t.data() + t.size()) {
        return otp::InvalidArgument("workflow: bad timeout in '" + std::string(item) + "'");
      }
    }
    if (!IsKnownChannel(step.channel)) {
      return otp::InvalidArgument("workflow: unknown channel '" + step.channel + "'");
    }
    steps.push_back(std::move(step));
    start = end + 1;
  }
  return steps;
}

Result<NewApp> AppService::Create(const std::string& name, const AppSettings& settings) {
  OTP_RETURN_IF_ERROR(ValidateAppName(name));
  OTP_RETURN_IF_ERROR(ValidateAppSettings(settings));
  NewApp out;
  out.app.id = "app_" + otp::RandomHex(random_, 12);
  out.app.name = name;
  out.app.settings = settings;
  out.app.webhook_secret = "whsec_" + otp::Base64Encode(otp::RandomBytes(random_, 32));
  out.app.created_at = out.app.updated_at = clock_.Now();
  OTP_RETURN_IF_ERROR(store_.CreateApp(out.app));
  auto key = CreateKey(out.app.id);
  if (!key.ok()) return key.status();
  out.key_id = key->key_id;
  out.api_key = key->api_key;
  return out;
}

Result<NewKey> AppService::CreateKey(const std::string& app_id) {
  auto app = store_.GetApp(app_id);
  if (!app.ok()) return app.status();
  NewKey out;
  out.key_id = "key_" + otp::RandomHex(random_, 8);
  out.api_key = "otpd_" + otp::RandomBase64Url(random_, 32);
  ApiKey record{out.key_id, app->id, HashApiKey(out.api_key), clock_.Now(), std::nullopt};
  OTP_RETURN_IF_ERROR(store_.CreateKey(record));
  return out;
}

Status AppService::RevokeKey(const std::string& key_id) {
  Status s = store_.RevokeKey(key_id, clock_.Now());
  std::lock_guard lock(cache_mu_);
  by_key_hash_.clear();  // the cache is keyed by hash, not id: forget every key
  return s;
}

Result<std::shared_ptr<const App>> AppService::Authenticate(std::string_view api_key) {
  if (api_key.empty() || api_key.size() > 128) return otp::NotFound("unknown key");
  const std::string hash = HashApiKey(api_key);
  const otp::TimePoint now = clock_.Now();
  {
    std::lock_guard lock(cache_mu_);
    auto it = by_key_hash_.find(hash);
    if (it != by_key_hash_.end() && now - it->second.fetched_at < kKeyCacheTtl &&
        now >= it->second.fetched_at) {
      return it->second.app;
    }
  }
  auto app = store_.AppForKeyHash(hash);
  std::lock_guard lock(cache_mu_);
  if (!app.ok()) {
    by_key_hash_.erase(hash);
    return app.status();
  }
  auto shared = std::make_shared<const App>(std::move(app).value());
  constexpr std::size_t kMaxCached = 10000;  // keys in use at once; beyond, start over
  if (by_key_hash_.size() >= kMaxCached) by_key_hash_.clear();
  by_key_hash_[hash] = CachedApp{shared, now};
  return shared;
}

}  // namespace otpd
