#include "service/channel.h"

#include <spdlog/spdlog.h>

#include <atomic>

#include "service/log_text.h"

namespace otpd {

class ProviderSet::ForwardingSink : public DeliveryReportSink {
 public:
  void OnReport(const DeliveryReport& report, ReportDone done) override {
    DeliveryReportSink* target = target_.load();
    if (target == nullptr) {
      spdlog::warn(R"("event":"delivery_report_refused","provider":{},"reason":"not running")",
                   LogText(report.provider));
      if (done) done(false);
      return;
    }
    target->OnReport(report, std::move(done));
  }
  std::atomic<DeliveryReportSink*> target_{nullptr};
};

void ChannelRegistry::Register(std::string type, ChannelFactory factory) {
  factories_[std::move(type)] = std::move(factory);
}

otp::Result<std::unique_ptr<ChannelProvider>> ChannelRegistry::Create(
    const ProviderConfig& config, ProviderContext& context) const {
  auto it = factories_.find(config.type);
  if (it == factories_.end()) {
    return otp::InvalidArgument("provider " + config.name + ": unknown type '" + config.type + "'");
  }
  return it->second(config, context);
}

otp::Result<ProviderSet> ProviderSet::Create(const std::vector<ProviderConfig>& configs,
                                             const ChannelRegistry& registry, otp::Clock& clock) {
  ProviderSet set;
  set.sink_ = std::make_shared<ForwardingSink>();
  ProviderContext context{clock, *set.sink_};
  for (const ProviderConfig& c : configs) {
    auto impl = registry.Create(c, context);
    if (!impl.ok()) return impl.status();
    auto p = std::make_shared<Provider>();
    p->config = c;
    p->impl = std::move(impl).value();
    set.providers_.push_back(std::move(p));
  }
  return set;
}

std::vector<Provider*> ProviderSet::ForChannel(std::string_view channel) {
  std::vector<Provider*> out;
  for (auto& p : providers_) {
    for (const auto& ch : p->config.channels) {
      if (ch == channel) {
        out.push_back(p.get());
        break;
      }
    }
  }
  return out;
}

bool ProviderSet::Carries(std::string_view channel) const {
  for (const auto& p : providers_) {
    for (const auto& ch : p->config.channels) {
      if (ch == channel) return true;
    }
  }
  return false;
}

Provider* ProviderSet::ByName(std::string_view name) {
  for (auto& p : providers_) {
    if (p->config.name == name) return p.get();
  }
  return nullptr;
}

std::vector<const Provider*> ProviderSet::All() const {
  std::vector<const Provider*> out;
  for (const auto& p : providers_) out.push_back(p.get());
  return out;
}

void ProviderSet::SetReportSink(DeliveryReportSink* sink) {
  if (sink_ != nullptr) sink_->target_.store(sink);
}

void ProviderSet::StopAll() { providers_.clear(); }

std::string ProviderSet::LogPath() const {
  for (const auto& p : providers_) {
    if (p->config.type == "log") {
      auto it = p->config.options.find("path");
      return it == p->config.options.end() ? "" : it->second;
    }
  }
  return "";
}

}  // namespace otpd
