// otpd: the one-time-password verification server.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <stdexcept>

#include "http/http_server.h"
#include "otp/clock.h"
#include "otp/random.h"
#include "server/api.h"
#include "server/logging.h"
#include "service/apps.h"
#include "service/channel.h"
#include "service/config.h"
#include "service/dispatcher.h"
#include "service/factors.h"
#include "service/log_text.h"
#include "service/secrets.h"
#include "service/verifications.h"
#include "service/webhooks.h"
#include "store/open_store.h"

namespace {

int Fail(const std::string& what) {
  std::cerr << "otpd: " << what << "\n";
  return 1;
}

// Each connection holds a file descriptor: lifts the soft limit towards the
// hard one so that max_connections can be reached, and says so when it cannot.
void RaiseOpenFileLimit(std::size_t max_connections) {
  const rlim_t wanted = static_cast<rlim_t>(max_connections) + 256;  // + store, logs, providers
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= wanted) return;
  limit.rlim_cur = std::min(wanted, limit.rlim_max);
  setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < wanted) {
    spdlog::warn(R"("event":"open_file_limit","limit":{},"max_connections":{})",
                 static_cast<unsigned long long>(limit.rlim_cur), max_connections);
  }
}

// On a first start with no app, creates `demo` and prints how to use it. The
// key is shown once, here, on the terminal (never in the log).
void BootstrapDemoApp(otpd::Store& store, otpd::AppService& apps, const std::string& base,
                      bool inbox_served, const std::string& inbox_path) {
  auto existing = store.ListApps();
  if (!existing.ok()) return;
  if (!existing->empty()) {
    std::printf("  Apps exist already; a new API key for one: otpctl key create NAME\n");
    return;
  }
  auto created = apps.Create("demo", otpd::AppSettings{});
  if (!created.ok()) return;
  std::printf(
      "\n"
      "  otpd created the app \"demo\" (%s). Its API key, shown only this once:\n\n"
      "    export OTPD_KEY=%s\n\n"
      "  Send a code:\n\n"
      "    curl -s %s/v1/verifications -H \"Authorization: Bearer $OTPD_KEY\" \\\n"
      "         -H 'Content-Type: application/json' -d '{\"to\":\"+306912345678\"}'\n\n"
      "  The code appears in %s\n"
      "  %s"
      "  Check it (put the id from the first answer and the code you received):\n\n"
      "    curl -s %s/v1/verifications/ID/check -H \"Authorization: Bearer $OTPD_KEY\" \\\n"
      "         -H 'Content-Type: application/json' -d '{\"code\":\"123456\"}'\n\n",
      created->app.id.c_str(), created->api_key.c_str(), base.c_str(),
      inbox_path.empty() ? "(no log provider configured)" : inbox_path.c_str(),
      inbox_served ? ("and on the page " + base + "/dev/inbox\n\n").c_str() : "\n", base.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // Many threads allocate and free request buffers: without this, glibc keeps
  // returning freed pages to the kernel (an madvise per request) and taking them back.
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  CLI::App cli{"otpd: self-hosted one-time-password verification server"};
  std::string config_flag;
  std::string log_level = "info";
  cli.add_option("-c,--config", config_flag,
                 "TOML config file (default: $OTPD_CONFIG, else built-in defaults)");
  cli.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  cli.set_version_flag("--version", "otpd 0.1.0");
  CLI11_PARSE(cli, argc, argv);

  auto config = otpd::LoadConfig(otpd::ConfigPathFrom(config_flag));
  if (!config.ok()) return Fail(config.status().message());
  otpd::SetUpLogging(log_level);
  RaiseOpenFileLimit(config->max_connections);

  auto store = otpd::OpenStore(config->store_url);
  if (!store.ok()) return Fail(store.status().message());
  auto loaded_secrets = otpd::Secrets::Load(config->master_key_file);
  if (!loaded_secrets.ok()) return Fail(loaded_secrets.status().message());
  const otpd::Secrets& secrets = **loaded_secrets;

  otp::Clock& clock = otp::SystemClock();
  otp::Random& random = otp::SystemRandom();
  otpd::ChannelRegistry registry;
  otpd::RegisterBuiltinChannels(registry);
  auto providers = otpd::ProviderSet::Create(config->providers, registry, clock);
  if (!providers.ok()) return Fail(providers.status().message());

  otpd::Metrics metrics;
  otpd::Dispatcher dispatcher(**store, *providers, secrets, clock, &metrics);
  otpd::AppService apps(**store, clock, random);
  otpd::VerificationService verifications(**store, *providers, secrets, clock, random,
                                          [&dispatcher] { dispatcher.Notify(); });
  otpd::RequestLimiter request_limiter(**store, clock);
  otpd::ApiOptions api_options;
  api_options.request_limiter = &request_limiter;
  const std::string log_path = providers->LogPath();
  if (config->ListenIsLoopback()) api_options.inbox_path = log_path;
  otpd::FactorService factors(**store, secrets, clock, random);
  otpd::Api api(**store, apps, verifications, factors, metrics, api_options);
  api.ServeDeliveryReports(*providers, dispatcher);
  auto webhook_transport = otpd::NewCurlWebhookTransport();
  otpd::WebhookSender webhooks(**store, config->webhooks, clock, random, *webhook_transport,
                               otpd::SystemResolver(), &metrics);
  metrics.AttachDeliveryState(store->get(), &*providers);

  otpd::HttpServerOptions http;
  http.host = config->ListenHost();
  http.port = config->ListenPort();
  http.io_threads = config->threads;
  http.max_body_bytes = config->max_body_bytes;
  http.max_connections = config->max_connections;
  http.read_timeout = std::chrono::seconds(config->header_timeout_s);
  http.body_timeout = std::chrono::seconds(config->body_timeout_s);
  http.idle_timeout = std::chrono::seconds(config->idle_timeout_s);
  http.tls_cert_file = config->tls_cert;
  http.tls_key_file = config->tls_key;
  http.on_tls_reload = [](const otp::Status& s) {
    if (s.ok()) {
      spdlog::info(R"("event":"tls_reloaded")");
    } else if (s.code() == otp::StatusCode::kFailedPrecondition) {
      spdlog::info(R"("event":"sighup_ignored","reason":"TLS is off")");
    } else {
      spdlog::error(R"("event":"tls_reload_failed","error":{},"kept":"the previous certificate")",
                    otpd::LogText(s.message()));
    }
  };
  http.run_inline = [](const otpd::HttpRequest& r) { return r.path == "/healthz"; };
  http.async_accepts = [&api](const otpd::HttpRequest& r) { return api.AcceptsAsync(r); };
  http.async_handler = [&api](const otpd::HttpRequest& r, otpd::HttpResume resume) {
    api.HandleAsync(r, std::move(resume));
  };
  std::unique_ptr<otpd::HttpServer> server;
  try {
    server = std::make_unique<otpd::HttpServer>(
        http, [&api](const otpd::HttpRequest& r) { return api.Handle(r); });
  } catch (const std::invalid_argument& e) {
    return Fail(std::string("server.tls_cert/tls_key: ") + e.what());
  } catch (const std::exception& e) {
    return Fail("cannot listen on " + config->listen + ": " + e.what());
  }
  if (!server->tls() && !config->ListenIsLoopback()) {
    spdlog::warn(
        R"("event":"plain_http_listener","address":{},"warning":"API keys and codes cross the network unencrypted: set server.tls_cert and server.tls_key, or listen on loopback behind a TLS proxy")",
        otpd::LogText(http.host));
  }
  const std::string host =
      http.host.find(':') != std::string::npos ? "[" + http.host + "]" : http.host;
  const std::string base =
      (server->tls() ? "https://" : "http://") + host + ":" + std::to_string(server->port());
  BootstrapDemoApp(**store, apps, base, !api_options.inbox_path.empty(), log_path);
  dispatcher.Start();
  webhooks.Start();
  spdlog::info(R"("event":"listening","address":"{}","port":{},"tls":{},"store":"{}")", http.host,
               server->port(), server->tls(),
               config->store_url.substr(0, config->store_url.find("://")));
  std::printf("otpd listening on %s\n", base.c_str());
  std::fflush(stdout);
  server->Run();
  dispatcher.Stop();
  webhooks.Stop();
  providers->StopAll();  // before logging stops: an SMPP provider logs its unbind
  spdlog::info(R"("event":"stopped")");
  otpd::ShutDownLogging();
  return 0;
}
