#include "service/channel.h"

namespace otpd {

void ChannelRegistry::Register(std::string type, ChannelFactory factory) {
  factories_[std::move(type)] = std::move(factory);
}

otp::Result<std::unique_ptr<ChannelProvider>> ChannelRegistry::Create(const ProviderConfig& config,
                                                                      otp::Clock& clock) const {
  auto it = factories_.find(config.type);
  if (it == factories_.end()) {
    return otp::InvalidArgument("provider " + config.name + ": unknown type '" + config.type + "'");
  }
  return it->second(config, clock);
}

otp::Result<ProviderSet> ProviderSet::Create(const std::vector<ProviderConfig>& configs,
                                             const ChannelRegistry& registry, otp::Clock& clock) {
  ProviderSet set;
  for (const ProviderConfig& c : configs) {
    auto impl = registry.Create(c, clock);
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
