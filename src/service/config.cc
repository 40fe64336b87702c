#include "service/config.h"

#include "store/model.h"

#include <toml++/toml.h>
#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

namespace otpd {

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

otp::Status Bad(const std::string& what) { return otp::InvalidArgument("config: " + what); }

// A typo in a key must not pass silently: every table's keys are checked.
otp::Status OnlyKnownKeys(const toml::table& t, const std::string& where,
                          std::initializer_list<std::string_view> known) {
  for (auto&& [k, v] : t) {
    if (std::find(known.begin(), known.end(), k.str()) == known.end()) {
      return Bad("unknown key '" + std::string(k.str()) + "'" +
                 (where.empty() ? "" : " in [" + where + "]"));
    }
  }
  return otp::Status::Ok();
}

}  // namespace

Config DefaultConfig() {
  Config c;
  ProviderConfig log;
  log.name = "dev-log";
  log.type = "log";
  log.channels.assign(kChannelNames.begin(), kChannelNames.end());
  log.options["path"] = "otpd-data/messages.jsonl";
  c.providers.push_back(std::move(log));
  return c;
}

std::string Config::ListenHost() const {
  if (!listen.empty() && listen.front() == '[') {
    return listen.substr(1, listen.find(']') - 1);
  }
  return listen.substr(0, listen.rfind(':'));
}

std::uint16_t Config::ListenPort() const {
  const auto colon = listen.rfind(':');
  return static_cast<std::uint16_t>(std::atoi(listen.c_str() + colon + 1));
}

bool Config::ListenIsLoopback() const {
  const std::string host = ListenHost();
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

otp::Result<Config> LoadConfig(const std::string& path) {
  Config c = DefaultConfig();
  if (!path.empty()) {
    toml::table t;
    try {
      t = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      return Bad(path + ": " + std::string(e.description()));
    }
    OTP_RETURN_IF_ERROR(
        OnlyKnownKeys(t, "", {"server", "store", "security", "provider", "webhooks"}));
    if (auto* server = t["server"].as_table()) {
      OTP_RETURN_IF_ERROR(OnlyKnownKeys(
          *server, "server",
          {"listen", "threads", "tls_cert", "tls_key", "max_body_bytes", "max_connections",
           "header_timeout_s", "body_timeout_s", "idle_timeout_s"}));
      c.listen = (*server)["listen"].value_or(c.listen);
      // Checked before the narrowing: 4294967297 must not become 1.
      const auto threads = (*server)["threads"].value_or(std::int64_t{c.threads});
      if (threads < 0 || threads > 256) return Bad("server.threads must be 0..256");
      c.threads = static_cast<int>(threads);
      c.tls_cert = (*server)["tls_cert"].value_or(c.tls_cert);
      c.tls_key = (*server)["tls_key"].value_or(c.tls_key);
      const auto body = (*server)["max_body_bytes"].value_or(std::int64_t(c.max_body_bytes));
      if (body < 1024 || body > 16 * 1024 * 1024) {
        return Bad("server.max_body_bytes must be 1024..16777216");
      }
      c.max_body_bytes = static_cast<std::size_t>(body);
      const auto conns = (*server)["max_connections"].value_or(std::int64_t(c.max_connections));
      if (conns < 1 || conns > 1000000) return Bad("server.max_connections must be 1..1000000");
      c.max_connections = static_cast<std::size_t>(conns);
      for (auto [key, field] : {std::pair{"header_timeout_s", &c.header_timeout_s},
                                std::pair{"body_timeout_s", &c.body_timeout_s},
                                std::pair{"idle_timeout_s", &c.idle_timeout_s}}) {
        const auto s = (*server)[key].value_or(std::int64_t{*field});
        if (s < 1 || s > 3600) return Bad("server." + std::string(key) + " must be 1..3600");
        *field = static_cast<int>(s);
      }
    }
    if (auto* store = t["store"].as_table()) {
      OTP_RETURN_IF_ERROR(OnlyKnownKeys(*store, "store", {"url"}));
      c.store_url = (*store)["url"].value_or(c.store_url);
    }
    if (auto* sec = t["security"].as_table()) {
      OTP_RETURN_IF_ERROR(OnlyKnownKeys(*sec, "security", {"master_key_file"}));
      c.master_key_file = (*sec)["master_key_file"].value_or(c.master_key_file);
    }
    if (auto* hooks = t["webhooks"].as_table()) {
      OTP_RETURN_IF_ERROR(OnlyKnownKeys(
          *hooks, "webhooks",
          {"allow_private_targets", "timeout_s", "first_retry_s", "max_attempts", "workers"}));
      WebhookConfig& w = c.webhooks;
      if (auto node = (*hooks)["allow_private_targets"]; node && !node.is_boolean()) {
        return Bad("webhooks.allow_private_targets must be true or false");
      }
      w.allow_private_targets = (*hooks)["allow_private_targets"].value_or(false);
      auto int_in = [&](const char* key, int* out, int lo, int hi) -> otp::Status {
        const std::int64_t v = (*hooks)[key].value_or(std::int64_t{*out});
        if (v < lo || v > hi) {
          return Bad("webhooks." + std::string(key) + " must be " + std::to_string(lo) + ".." +
                     std::to_string(hi));
        }
        *out = static_cast<int>(v);
        return otp::Status::Ok();
      };
      OTP_RETURN_IF_ERROR(int_in("timeout_s", &w.timeout_s, 1, 60));
      OTP_RETURN_IF_ERROR(int_in("first_retry_s", &w.first_retry_s, 1, 3600));
      OTP_RETURN_IF_ERROR(int_in("max_attempts", &w.max_attempts, 8, 20));
      OTP_RETURN_IF_ERROR(int_in("workers", &w.workers, 1, 64));
    }
    if (auto* providers = t["provider"].as_array()) {
      c.providers.clear();
      std::set<std::string> names;
      for (auto& node : *providers) {
        auto* p = node.as_table();
        if (p == nullptr) return Bad("[[provider]] must be a table");
        ProviderConfig pc;
        pc.name = (*p)["name"].value_or(std::string());
        pc.type = (*p)["type"].value_or(std::string());
        if (pc.name.empty() || pc.type.empty()) return Bad("every provider needs name and type");
        if (!names.insert(pc.name).second) return Bad("duplicate provider name " + pc.name);
        if (auto* chans = (*p)["channels"].as_array()) {
          for (auto& ch : *chans) {
            std::string name = ch.value_or(std::string());
            if (!IsKnownChannel(name)) {
              return Bad("provider " + pc.name + ": unknown channel '" + name + "'");
            }
            pc.channels.push_back(name);
          }
        }
        if (pc.channels.empty()) return Bad("provider " + pc.name + ": channels is empty");
        for (auto&& [k, v] : *p) {
          const std::string key(k.str());
          if (key == "name" || key == "type" || key == "channels") continue;
          if (auto s = v.value<std::string>()) {
            pc.options[key] = *s;
          } else if (v.is_boolean()) {  // before integers: toml++ converts bools to 0/1
            pc.options[key] = v.value_or(false) ? "true" : "false";
          } else if (v.is_integer()) {
            pc.options[key] = std::to_string(v.value_or(std::int64_t{0}));
          } else {
            // Tables and arrays (e.g. headers) are kept as TOML text for the provider.
            std::ostringstream out;
            v.visit([&out](const auto& n) { out << n; });
            pc.options[key] = out.str();
          }
        }
        c.providers.push_back(std::move(pc));
      }
    }
  }
  if (auto v = Env("OTPD_LISTEN"); !v.empty()) c.listen = v;
  if (auto v = Env("OTPD_STORE_URL"); !v.empty()) c.store_url = v;
  if (auto v = Env("OTPD_MASTER_KEY_FILE"); !v.empty()) c.master_key_file = v;
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return Bad(c.tls_cert.empty() ? "server.tls_key is set without server.tls_cert"
                                  : "server.tls_cert is set without server.tls_key");
  }
  const auto colon = c.listen.rfind(':');
  const std::string port = colon == std::string::npos ? "" : c.listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535 ||
      c.ListenHost().empty()) {
    return Bad("server.listen must be HOST:PORT, got '" + c.listen + "'");
  }
  return c;
}

std::string ConfigPathFrom(const std::string& flag) {
  if (!flag.empty()) return flag;
  return Env("OTPD_CONFIG");
}

}  // namespace otpd
