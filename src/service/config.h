// otpd's configuration (SPEC §2): TOML file, then environment overrides, with
// embedded defaults so that no file at all is a working setup.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "otp/status.h"

namespace otpd {

// One [[provider]] block. Keys other than the common ones stay in `options`
// (as TOML-typed strings) for the provider's own factory to read.
struct ProviderConfig {
  std::string name;
  std::string type;                   // "log", later "smpp", "smtp", "http"
  std::vector<std::string> channels;  // channels this provider carries
  std::map<std::string, std::string> options;
};

// [webhooks] (SPEC §5; docs/configuration.md).
struct WebhookConfig {
  // Send to loopback, private, CGNAT, link-local, ... addresses (development
  // and tests). Metadata services stay refused.
  bool allow_private_targets = false;
  int timeout_s = 10;      // per try: connect, send, answer (1..60)
  int first_retry_s = 30;  // the first retry's nominal wait; each next one ×4, capped at 16 h
  int max_attempts = 10;   // tries per event before it is given up (8..20)
  int workers = 4;         // sends in flight at once (1..64)
};

struct Config {
  std::string listen = "127.0.0.1:8080";
  int threads = 0;       // 0 = one per core
  std::string tls_cert;  // PEM; with tls_key the listener speaks TLS only
  std::string tls_key;
  std::size_t max_body_bytes = 65536;
  std::size_t max_connections = 10000;  // open connections at most (503 past it)
  int header_timeout_s = 10;            // request head (and a new connection's TLS handshake)
  int body_timeout_s = 10;              // request body, after its head
  int idle_timeout_s = 60;              // keep-alive wait for the next request
  std::string store_url = "sqlite://otpd-data/otpd.db";
  std::string master_key_file = "otpd-data/master.key";
  std::vector<ProviderConfig> providers;
  WebhookConfig webhooks;

  // host and port of `listen`; "[::1]:8080" style accepted for IPv6.
  std::string ListenHost() const;
  std::uint16_t ListenPort() const;
  // True when the listener only accepts loopback connections.
  bool ListenIsLoopback() const;
  // True when tls_cert and tls_key are set.
  bool Tls() const { return !tls_cert.empty() && !tls_key.empty(); }
};

// The embedded defaults, including the `dev-log` provider.
Config DefaultConfig();

// Reads `path` (empty = no file: defaults) and applies OTPD_LISTEN,
// OTPD_STORE_URL, OTPD_MASTER_KEY_FILE. InvalidArgument names the bad key.
otp::Result<Config> LoadConfig(const std::string& path);

// The config file to use: `flag` if set, else $OTPD_CONFIG, else "".
std::string ConfigPathFrom(const std::string& flag);

}  // namespace otpd
