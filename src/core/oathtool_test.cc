// Cross-checks HOTP and TOTP against the oathtool binary (OATH Toolkit), an
// independent implementation. oathtool must be installed: without it the test fails.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <optional>
#include <string>

#include "core/test_util.h"
#include "otp/crypto.h"
#include "otp/hotp.h"
#include "otp/totp.h"

namespace otp {
namespace {

// Runs `oathtool <args>`; the trimmed output lines, or nullopt if it did not exit 0.
std::optional<std::vector<std::string>> Oathtool(const std::string& args) {
  const std::string command = "oathtool " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string output;
  char buf[256];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) output += buf;
  const int status = pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << "`" << command << "` failed: " << output;
    return std::nullopt;
  }
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < output.size()) {
    const std::size_t end = output.find('\n', start);
    lines.push_back(output.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return lines;
}

TEST(OathtoolTest, Installed) {
  const auto out = Oathtool("--version");
  ASSERT_TRUE(out.has_value()) << "oathtool is required for the cross-check tests";
}

constexpr int kSecrets = 50;

TEST(OathtoolTest, HotpMatches) {
  testing::SeededRandom random(0x4f415448);
  for (int i = 0; i < kSecrets; ++i) {
    // 1..100 bytes: short keys, the usual 20, and keys longer than a SHA1 block.
    const std::size_t len = i == 0 ? 1 : 1 + random.Next() % 100;
    const std::vector<std::uint8_t> secret = RandomBytes(random, len);
    const HotpKey key = testing::MustKey(secret);
    const std::uint64_t counter = random.Next() >> (random.Next() % 64);
    // oathtool supports 6, 7 and 8 digits only.
    for (int digits : {6, 8}) {
      // -w 2: codes for counter, counter+1, counter+2.
      const auto out = Oathtool("--hotp -d " + std::to_string(digits) + " -w 2 -c " +
                                std::to_string(counter) + " " + HexEncode(secret));
      ASSERT_TRUE(out.has_value());
      ASSERT_EQ(out->size(), 3u);
      for (std::uint64_t k = 0; k < 3; ++k) {
        EXPECT_EQ(key.Generate(counter + k, digits), (*out)[k])
            << "secret=" << HexEncode(secret) << " counter=" << counter + k;
      }
    }
  }
}

TEST(OathtoolTest, TotpMatches) {
  testing::SeededRandom random(6238);
  for (int i = 0; i < kSecrets; ++i) {
    const std::size_t len = 1 + random.Next() % 140;
    const std::vector<std::uint8_t> secret = RandomBytes(random, len);
    const HashAlgorithm alg = static_cast<HashAlgorithm>(i % 3);
    const HotpKey key = testing::MustKey(secret, alg);
    const int digits = (i / 3) % 2 == 0 ? 6 : 8;
    const int period = i % 4 == 0 ? 60 : 30;
    const std::int64_t times[] = {static_cast<std::int64_t>(random.Next() % 4'000'000'000),
                                  20'000'000'000};
    for (std::int64_t t : times) {
      const auto out = Oathtool(std::string("--totp=") + HashAlgorithmName(alg) + " -d " +
                                std::to_string(digits) + " -s " + std::to_string(period) +
                                "s -N @" + std::to_string(t) + " " + HexEncode(secret));
      ASSERT_TRUE(out.has_value());
      ASSERT_EQ(out->size(), 1u);
      const TotpParams params{.digits = digits, .period = period, .t0 = 0};
      EXPECT_EQ(TotpGenerate(key, t, params), (*out)[0])
          << HashAlgorithmName(alg) << " secret=" << HexEncode(secret) << " t=" << t;
    }
  }
}

TEST(OathtoolTest, TotpWithStartTimeMatches) {
  const std::vector<std::uint8_t> secret = testing::Bytes("12345678901234567890");
  const HotpKey key = testing::MustKey(secret);
  const auto out = Oathtool("--totp -d 6 -s 60s -S @100 -N @1000 " + HexEncode(secret));
  ASSERT_TRUE(out.has_value());
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ(TotpGenerate(key, 1000, {.digits = 6, .period = 60, .t0 = 100}), (*out)[0]);
}

}  // namespace
}  // namespace otp
