#include "channels/log/log_channel.h"

#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "otp/random.h"

namespace otpd {
namespace {

class LogChannel final : public ChannelProvider {
 public:
  LogChannel(std::string name, std::string path, otp::Clock& clock)
      : name_(std::move(name)), path_(std::move(path)), clock_(clock) {}

  otp::Result<SendReceipt> Send(const OutboundMessage& m) override {
    nlohmann::json line = {{"at", otp::FormatRfc3339(clock_.Now())},
                           {"provider", name_},
                           {"channel", m.channel},
                           {"to", m.to},
                           {"verification_id", m.verification_id},
                           {"locale", m.locale},
                           {"text", m.text},
                           {"code", m.code}};
    if (!m.subject.empty()) line["subject"] = m.subject;
    std::lock_guard lock(mu_);
    std::ofstream out(path_, std::ios::app);
    out << line.dump() << '\n';
    out.flush();
    if (!out) return otp::Unavailable("log provider: cannot append to " + path_);
    return SendReceipt{"log_" + otp::RandomHex(otp::SystemRandom(), 8)};
  }

 private:
  const std::string name_;
  const std::string path_;
  otp::Clock& clock_;
  std::mutex mu_;
};

}  // namespace

otp::Result<std::unique_ptr<ChannelProvider>> NewLogChannel(const ProviderConfig& config,
                                                            ProviderContext& context) {
  auto it = config.options.find("path");
  std::string path = it == config.options.end() ? "otpd-data/messages.jsonl" : it->second;
  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  if (ec)
    return otp::InvalidArgument("provider " + config.name + ": cannot create " + dir.string());
  return std::unique_ptr<ChannelProvider>(new LogChannel(config.name, path, context.clock));
}

}  // namespace otpd
