// Benchmarks of libotp's HOTP/TOTP, with three references in the same binary:
//   raw_openssl   the fastest HOTP loop on OpenSSL: HMAC-SHA1 inner/outer states
//                 precomputed once, then per code two SHA1_Transform calls;
//   liboath       oath_hotp_generate() from the OATH Toolkit;
//   one_shot_hmac OpenSSL's HMAC() per code.
// After the runs it prints the ratios (per-iteration CPU time, best of the
// repetitions), e.g. `otp_bench --benchmark_repetitions=5`.
//
// The raw loop uses SHA1_Init/SHA1_Update/SHA1_Transform, deprecated in
// OpenSSL 3 but the only way to resume from a saved SHA-1 state this cheaply.
#define OPENSSL_SUPPRESS_DEPRECATED

#include <benchmark/benchmark.h>
#include <oath.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "otp/hotp.h"
#include "otp/totp.h"

namespace {

// The RFC 4226 test secret, 20 bytes.
const std::vector<std::uint8_t> kSecret = {'1', '2', '3', '4', '5', '6', '7', '8', '9', '0',
                                           '1', '2', '3', '4', '5', '6', '7', '8', '9', '0'};

// RFC 4226 §5.3 dynamic truncation, reduced to 6 digits.
std::uint32_t TruncateTo6Digits(const unsigned char* mac, std::size_t len) {
  const unsigned off = mac[len - 1] & 0x0f;
  const std::uint32_t value = ((std::uint32_t{mac[off]} & 0x7f) << 24) |
                              (std::uint32_t{mac[off + 1]} << 16) |
                              (std::uint32_t{mac[off + 2]} << 8) | mac[off + 3];
  return value % 1'000'000;
}

// The SHA-1 chaining value of `ctx` as the big-endian digest bytes.
void StoreSha1State(const SHA_CTX& ctx, unsigned char* out) {
  const SHA_LONG h[5] = {ctx.h0, ctx.h1, ctx.h2, ctx.h3, ctx.h4};
  for (int w = 0; w < 5; ++w) {
    out[4 * w] = static_cast<unsigned char>(h[w] >> 24);
    out[4 * w + 1] = static_cast<unsigned char>(h[w] >> 16);
    out[4 * w + 2] = static_cast<unsigned char>(h[w] >> 8);
    out[4 * w + 3] = static_cast<unsigned char>(h[w]);
  }
}

otp::HotpKey MakeKey() {
  return std::move(otp::HotpKey::Create(kSecret, otp::HashAlgorithm::kSha1)).value();
}

void BM_LibotpHotpGenerate(benchmark::State& state) {
  const otp::HotpKey key = MakeKey();
  std::uint64_t counter = 0;
  for (auto _ : state) {
    std::string code = key.Generate(counter++, 6);
    benchmark::DoNotOptimize(code);
  }
}
BENCHMARK(BM_LibotpHotpGenerate);

void BM_LibotpHotpTruncated(benchmark::State& state) {
  const otp::HotpKey key = MakeKey();
  std::uint64_t counter = 0;
  for (auto _ : state) {
    std::uint32_t value = key.Truncated(counter++);
    benchmark::DoNotOptimize(value);
  }
}
BENCHMARK(BM_LibotpHotpTruncated);

void BM_LibotpTotpGenerate(benchmark::State& state) {
  const otp::HotpKey key = MakeKey();
  const otp::TotpParams params;
  std::int64_t t = 1'700'000'000;
  for (auto _ : state) {
    std::string code = otp::TotpGenerate(key, t, params);
    t += 30;
    benchmark::DoNotOptimize(code);
  }
}
BENCHMARK(BM_LibotpTotpGenerate);

// Worst case for verification: a code that matches no candidate, so every
// step of the window (3) or every counter of the look-ahead (11) is computed.
void BM_LibotpTotpVerifyWindow1(benchmark::State& state) {
  const otp::HotpKey key = MakeKey();
  const otp::TotpParams params;
  std::int64_t t = 1'700'000'000;
  for (auto _ : state) {
    auto step = otp::TotpVerify(key, "abcdef", t, params, 1);
    t += 30;
    benchmark::DoNotOptimize(step);
  }
}
BENCHMARK(BM_LibotpTotpVerifyWindow1);

void BM_LibotpHotpVerifyLookAhead10(benchmark::State& state) {
  const otp::HotpKey key = MakeKey();
  std::uint64_t counter = 0;
  for (auto _ : state) {
    auto matched = otp::HotpVerify(key, "abcdef", counter, 6, 10);
    counter += 11;
    benchmark::DoNotOptimize(matched);
  }
}
BENCHMARK(BM_LibotpHotpVerifyLookAhead10);

void BM_RawOpenSslHotp(benchmark::State& state) {
  // HMAC key pads and the states after them, once.
  unsigned char pad[64] = {};
  SHA_CTX inner;
  SHA_CTX outer;
  for (std::size_t i = 0; i < 64; ++i) pad[i] = (i < kSecret.size() ? kSecret[i] : 0) ^ 0x36;
  SHA1_Init(&inner);
  SHA1_Update(&inner, pad, 64);
  for (std::size_t i = 0; i < 64; ++i) pad[i] = (i < kSecret.size() ? kSecret[i] : 0) ^ 0x5c;
  SHA1_Init(&outer);
  SHA1_Update(&outer, pad, 64);
  // Pre-padded blocks: message lengths 64+8 and 64+20 bytes, in bits.
  unsigned char inner_block[64] = {};
  inner_block[8] = 0x80;
  inner_block[62] = (72 * 8) >> 8;
  inner_block[63] = (72 * 8) & 0xff;
  unsigned char outer_block[64] = {};
  outer_block[20] = 0x80;
  outer_block[62] = (84 * 8) >> 8;
  outer_block[63] = (84 * 8) & 0xff;

  auto code_for = [&](std::uint64_t c) {
    for (int i = 7; i >= 0; --i, c >>= 8) inner_block[i] = static_cast<unsigned char>(c);
    SHA_CTX ctx = inner;
    SHA1_Transform(&ctx, inner_block);
    StoreSha1State(ctx, outer_block);
    ctx = outer;
    SHA1_Transform(&ctx, outer_block);
    unsigned char mac[20];
    StoreSha1State(ctx, mac);
    return TruncateTo6Digits(mac, sizeof mac);
  };
  if (code_for(0) != 755224) {  // RFC 4226 App. D
    state.SkipWithError("raw loop computes wrong codes");
    return;
  }

  std::uint64_t counter = 0;
  for (auto _ : state) {
    std::uint32_t code = code_for(counter++);
    benchmark::DoNotOptimize(code);
  }
}
BENCHMARK(BM_RawOpenSslHotp);

void BM_LiboathHotp(benchmark::State& state) {
  if (oath_init() != OATH_OK) {
    state.SkipWithError("oath_init failed");
    return;
  }
  const char* secret = reinterpret_cast<const char*>(kSecret.data());
  char code[7];
  if (oath_hotp_generate(secret, kSecret.size(), 0, 6, false, OATH_HOTP_DYNAMIC_TRUNCATION, code) !=
          OATH_OK ||
      std::strcmp(code, "755224") != 0) {
    state.SkipWithError("liboath computes wrong codes");
    oath_done();
    return;
  }
  std::uint64_t counter = 0;
  for (auto _ : state) {
    if (oath_hotp_generate(secret, kSecret.size(), counter++, 6, false,
                           OATH_HOTP_DYNAMIC_TRUNCATION, code) != OATH_OK) {
      state.SkipWithError("oath_hotp_generate failed");
      break;
    }
    benchmark::DoNotOptimize(code);
  }
  oath_done();
}
BENCHMARK(BM_LiboathHotp);

void BM_OneShotHmacHotp(benchmark::State& state) {
  std::uint64_t counter = 0;
  for (auto _ : state) {
    unsigned char msg[8];
    std::uint64_t c = counter++;
    for (int i = 7; i >= 0; --i, c >>= 8) msg[i] = static_cast<unsigned char>(c);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha1(), kSecret.data(), static_cast<int>(kSecret.size()), msg, sizeof msg, mac, &len);
    std::uint32_t code = TruncateTo6Digits(mac, len);
    benchmark::DoNotOptimize(code);
  }
}
BENCHMARK(BM_OneShotHmacHotp);

// Console output as usual, plus the best per-iteration CPU time of each benchmark.
class CapturingReporter : public benchmark::ConsoleReporter {
 public:
  // Colours only on a terminal, so piped output stays plain text.
  CapturingReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_Defaults : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      const double ns = run.GetAdjustedCPUTime();  // in the run's time unit (ns by default)
      auto [it, inserted] = best_.try_emplace(run.run_name.function_name, ns);
      if (!inserted && ns < it->second) it->second = ns;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  // Best time of `name`, or a negative number if it did not run.
  double Best(const std::string& name) const {
    const auto it = best_.find(name);
    return it == best_.end() ? -1 : it->second;
  }

 private:
  std::map<std::string, double> best_;
};

void PrintRatio(const char* label, double numerator, double denominator, const char* target,
                bool (*meets)(double)) {
  if (numerator <= 0 || denominator <= 0) {
    std::printf("ratio %s = n/a (benchmark filtered out)\n", label);
    return;
  }
  const double ratio = numerator / denominator;
  std::printf("ratio %s = %.2f (target %s)%s\n", label, ratio, target,
              meets == nullptr ? "" : (meets(ratio) ? " ok" : " MISSED"));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  CapturingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const double libotp = reporter.Best("BM_LibotpHotpGenerate");
  const double raw = reporter.Best("BM_RawOpenSslHotp");
  const double oath = reporter.Best("BM_LiboathHotp");
  const double one_shot = reporter.Best("BM_OneShotHmacHotp");
  std::printf("\n");
  PrintRatio("libotp_hotp/raw_openssl", libotp, raw, "<= 1.5", [](double r) { return r <= 1.5; });
  PrintRatio("liboath/libotp_hotp", oath, libotp, ">= 2.5", [](double r) { return r >= 2.5; });
  PrintRatio("one_shot_hmac/libotp_hotp", one_shot, libotp, "none, for scale", nullptr);
  return 0;
}
