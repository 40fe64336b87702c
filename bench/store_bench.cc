// store_bench: the SQLite store's hot operations on their own (no HTTP), with
// many threads as otpd's handler pool runs them, so that the store's share of a
// request's cost can be told apart from the HTTP layer's. Figures, not pass/fail.
#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>

#include "store/open_store.h"

namespace otpd {
namespace {

constexpr int kVerifications = 20000;

struct Fixture {
  Fixture() {
    dir =
        std::filesystem::temp_directory_path() / ("otpd_store_bench_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    store = std::move(OpenStore("sqlite://" + (dir / "otpd.db").string())).value();
    const TimePoint now = otp::SystemClock().Now();
    App app;
    app.id = "app_bench";
    app.name = "bench";
    app.webhook_secret = "whsec_x";
    app.created_at = app.updated_at = now;
    (void)store->CreateApp(app);
    (void)store->CreateKey({"key_bench", app.id, "keyhash", now, std::nullopt});
    for (int i = 0; i < kVerifications; ++i) {
      Verification v;
      v.id = "ver_" + std::to_string(i);
      v.app_id = app.id;
      v.to = "+30691" + std::to_string(1000000 + i);
      v.channel = "sms";
      v.locale = "en";
      v.workflow = {{"sms", 60, ""}};
      v.code_hash = "stored-hash";
      v.max_checks = 1 << 30;
      v.created_at = v.updated_at = v.last_sent_at = now;
      v.expires_at = now + std::chrono::hours(1);
      Job job;
      job.verification_id = v.id;
      job.due_at = now + std::chrono::hours(2);  // never claimed during the benchmark
      v.deliveries = {Delivery{}};
      (void)store->CreateVerification(v, job, nullptr, {});
    }
  }
  ~Fixture() { std::filesystem::remove_all(dir); }
  std::filesystem::path dir;
  std::unique_ptr<Store> store;
};

Fixture& Shared() {
  static Fixture* f = new Fixture();
  return *f;
}

// A wrong-code check: one durable conditional write (group-committed).
void BM_RecordCheck(benchmark::State& state) {
  Store& store = *Shared().store;
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    auto t = store.RecordCheck("app_bench", "ver_" + std::to_string(i++ % kVerifications),
                               "wrong-hash", otp::SystemClock().Now());
    benchmark::DoNotOptimize(t);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordCheck)->Threads(1)->Threads(16)->Threads(64)->UseRealTime()->MinTime(2);

// The API-key lookup every authenticated request makes (a read).
void BM_AppForKeyHash(benchmark::State& state) {
  Store& store = *Shared().store;
  for (auto _ : state) benchmark::DoNotOptimize(store.AppForKeyHash("keyhash"));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AppForKeyHash)->Threads(1)->Threads(16)->UseRealTime()->MinTime(1);

}  // namespace
}  // namespace otpd

BENCHMARK_MAIN();
