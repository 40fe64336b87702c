// otpd: the one-time-password verification server.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <malloc.h>

#include <cstdio>
#include <iostream>

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
#include "service/secrets.h"
#include "service/verifications.h"
#include "store/open_store.h"

namespace {

int Fail(const std::string& what) {
  std::cerr << "otpd: " << what << "\n";
  return 1;
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
  if (!config->tls_cert.empty() || !config->tls_key.empty()) {
    // Never serve plain HTTP where the operator asked for TLS.
    return Fail(
        "server.tls_cert/tls_key are set, but this build has no TLS listener yet; terminate TLS "
        "in front of otpd (listening on loopback) and remove both keys");
  }
  otpd::SetUpLogging(log_level);

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
  otpd::ApiOptions api_options;
  const std::string log_path = providers->LogPath();
  if (config->ListenIsLoopback()) api_options.inbox_path = log_path;
  otpd::FactorService factors(**store, secrets, clock, random);
  otpd::Api api(**store, apps, verifications, factors, metrics, api_options);
  api.ServeDeliveryReports(*providers, dispatcher);
  metrics.AttachDeliveryState(store->get(), &*providers);

  otpd::HttpServerOptions http;
  http.host = config->ListenHost();
  http.port = config->ListenPort();
  http.io_threads = config->threads;
  http.max_body_bytes = config->max_body_bytes;
  http.run_inline = [](const otpd::HttpRequest& r) { return r.path == "/healthz"; };
  http.async_accepts = [&api](const otpd::HttpRequest& r) { return api.AcceptsAsync(r); };
  http.async_handler = [&api](const otpd::HttpRequest& r, otpd::HttpResume resume) {
    api.HandleAsync(r, std::move(resume));
  };
  std::unique_ptr<otpd::HttpServer> server;
  try {
    server = std::make_unique<otpd::HttpServer>(
        http, [&api](const otpd::HttpRequest& r) { return api.Handle(r); });
  } catch (const std::exception& e) {
    return Fail("cannot listen on " + config->listen + ": " + e.what());
  }
  const std::string host =
      http.host.find(':') != std::string::npos ? "[" + http.host + "]" : http.host;
  const std::string base = "http://" + host + ":" + std::to_string(server->port());
  BootstrapDemoApp(**store, apps, base, !api_options.inbox_path.empty(), log_path);
  dispatcher.Start();
  spdlog::info(R"("event":"listening","address":"{}","port":{},"store":"{}")", http.host,
               server->port(), config->store_url.substr(0, config->store_url.find("://")));
  std::printf("otpd listening on %s\n", base.c_str());
  std::fflush(stdout);
  server->Run();
  dispatcher.Stop();
  spdlog::info(R"("event":"stopped")");
  otpd::ShutDownLogging();
  return 0;
}
