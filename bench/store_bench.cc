// store_bench: the SQLite store's hot operations on their own (no HTTP), with
// many threads as otpd's handler pool runs them, so that the store's share of a
// request's cost can be told apart from the HTTP layer's. Figures, not pass/fail.
#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

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

// CPU time (ns) the store's threads named `comm` have run so far
// (/proc/self/task/*/schedstat, whose first field is nanoseconds on a CPU).
std::int64_t ThreadsCpuNs(std::string_view comm) {
  std::int64_t total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream name(task.path() / "comm");
    std::string n;
    std::getline(name, n);
    if (n != comm) continue;
    std::ifstream stat(task.path() / "schedstat");
    std::int64_t ns = 0;
    stat >> ns;
    total += ns;
  }
  return total;
}

// A wrong-code check: one durable conditional write (group-committed). The
// counters give the writer's and the fsync threads' CPU per check, which,
// unlike the rate, do not depend on how much CPU the machine lent the run.
void BM_RecordCheck(benchmark::State& state) {
  Store& store = *Shared().store;
  std::int64_t writer0 = 0, sync0 = 0;
  if (state.thread_index() == 0) {
    writer0 = ThreadsCpuNs("otpd-writer");
    sync0 = ThreadsCpuNs("otpd-sync");
  }
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    auto t = store.RecordCheck("app_bench", "ver_" + std::to_string(i++ % kVerifications),
                               "wrong-hash", otp::SystemClock().Now());
    benchmark::DoNotOptimize(t);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    // Every thread ran about as many checks: thread 0's share times threads.
    const double checks = static_cast<double>(state.iterations()) * state.threads();
    state.counters["writer_us"] =
        static_cast<double>(ThreadsCpuNs("otpd-writer") - writer0) / 1e3 / checks;
    state.counters["sync_us"] =
        static_cast<double>(ThreadsCpuNs("otpd-sync") - sync0) / 1e3 / checks;
  }
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
