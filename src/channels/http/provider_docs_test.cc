// Every ```toml block in docs/providers/*.md is a config otpd accepts: it
// loads with LoadConfig and its providers are created by the built-in
// factories. For http providers with a JSON body, the body rendered for a
// sample message is valid JSON.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "channels/http/http_channel.h"
#include "service/config.h"

namespace otpd {
namespace {

namespace fs = std::filesystem;

struct Block {
  std::string file;
  int line = 0;
  std::string toml;
};

std::vector<Block> TomlBlocks(const fs::path& file) {
  std::ifstream in(file);
  std::vector<Block> out;
  std::string line;
  int n = 0;
  Block* open = nullptr;
  while (std::getline(in, line)) {
    ++n;
    if (open == nullptr && line == "```toml") {
      out.push_back({file.filename().string(), n, ""});
      open = &out.back();
    } else if (open != nullptr && line == "```") {
      open = nullptr;
    } else if (open != nullptr) {
      open->toml += line + "\n";
    }
  }
  EXPECT_EQ(open, nullptr) << file << ": unclosed ```toml block";
  return out;
}

class NullSink : public DeliveryReportSink {
 public:
  void OnReport(const DeliveryReport&, ReportDone) override {}
};

TEST(ProviderDocsTest, EveryTomlBlockIsAValidConfig) {
  std::map<std::string, int> blocks_per_file;
  std::map<std::string, int> http_providers_per_file;
  const fs::path tmp = fs::temp_directory_path() / ("otpd-docs-" + std::to_string(getpid()));
  fs::create_directories(tmp);
  ChannelRegistry registry;
  RegisterBuiltinChannels(registry);
  otp::FakeClock clock;

  OutboundMessage sample;
  sample.channel = "sms";
  sample.to = "+306912345678";
  sample.verification_id = "ver_0123456789abcdef";
  sample.locale = "el";
  sample.text = "Ο κωδικός \"Acme\" είναι 482913.\nΛήγει σε 10 λεπτά.";
  sample.code = "482913";

  for (const auto& entry : fs::directory_iterator(OTP_PROVIDER_DOCS)) {
    if (entry.path().extension() != ".md") continue;
    for (const Block& b : TomlBlocks(entry.path())) {
      const std::string where = b.file + ":" + std::to_string(b.line);
      ++blocks_per_file[b.file];
      const fs::path path = tmp / "block.toml";
      std::ofstream(path) << b.toml;
      auto config = LoadConfig(path.string());
      ASSERT_TRUE(config.ok()) << where << ": " << config.status().ToString();
      auto set = ProviderSet::Create(config->providers, registry, clock);
      ASSERT_TRUE(set.ok()) << where << ": " << set.status().ToString();
      for (const ProviderConfig& p : config->providers) {
        if (p.type != "http") continue;
        ++http_providers_per_file[b.file];
        auto option = [&p](const char* key, const char* fallback) {
          auto it = p.options.find(key);
          return it == p.options.end() ? std::string(fallback) : it->second;
        };
        const Escaping escaping = EscapingFor(option("content_type", "application/json"));
        const std::string body =
            RenderHttpTemplate(option("body", ""), TemplateVariables(sample), escaping);
        if (escaping == Escaping::kJson && !body.empty()) {
          EXPECT_FALSE(nlohmann::json::parse(body, nullptr, false).is_discarded())
              << where << ": body is not JSON once rendered:\n"
              << body;
        }
        const std::string url =
            RenderHttpTemplate(option("url", ""), TemplateVariables(sample), Escaping::kUrl);
        EXPECT_THAT(body + url, ::testing::AnyOf(::testing::HasSubstr("482913"),
                                                 ::testing::HasSubstr("4+8+2+9+1+3"),
                                                 ::testing::HasSubstr("4%208%202")))
            << where << ": the request does not carry the code";
      }
    }
  }
  fs::remove_all(tmp);
  // The provider docs and the presets the README promises.
  for (const char* file : {"http.md", "whatsapp.md", "viber.md", "voice.md", "flashcall.md",
                           "push.md", "sms-http.md"}) {
    EXPECT_GE(http_providers_per_file[file], 1) << file;
  }
  EXPECT_EQ(http_providers_per_file["sms-http.md"], 2);
  EXPECT_GE(blocks_per_file["smtp.md"], 1);
}

}  // namespace
}  // namespace otpd
