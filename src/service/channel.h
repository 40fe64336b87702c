// Channel providers: what sends a message to a person (SPEC §2 [[provider]]).
//
// A provider type ("log", "smpp", ...) is a folder under src/channels/ with a
// factory registered by name in a ChannelRegistry by one explicit
// RegisterBuiltinChannels() call. Providers are created once from the config
// and shared by the dispatcher threads: Send must be thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "otp/clock.h"
#include "otp/status.h"
#include "service/config.h"

namespace otpd {

struct OutboundMessage {
  std::string channel;
  std::string to;
  std::string verification_id;
  std::string locale;
  std::string subject;  // email
  std::string text;
  std::string code;  // for providers whose API takes the code itself
};

struct SendReceipt {
  std::string provider_message_id;
};

class ChannelProvider {
 public:
  virtual ~ChannelProvider() = default;
  // Hands the message to the provider. Unavailable / other errors mean the
  // provider did not take it (the dispatcher fails over).
  virtual otp::Result<SendReceipt> Send(const OutboundMessage& message) = 0;
};

using ChannelFactory = std::function<otp::Result<std::unique_ptr<ChannelProvider>>(
    const ProviderConfig& config, otp::Clock& clock)>;

class ChannelRegistry {
 public:
  void Register(std::string type, ChannelFactory factory);
  otp::Result<std::unique_ptr<ChannelProvider>> Create(const ProviderConfig& config,
                                                       otp::Clock& clock) const;

 private:
  std::map<std::string, ChannelFactory, std::less<>> factories_;
};

// Registers every provider type built into otpd ("log", ...).
void RegisterBuiltinChannels(ChannelRegistry& registry);

// The providers of a running otpd, in config order.
struct Provider {
  ProviderConfig config;
  std::unique_ptr<ChannelProvider> impl;
};

class ProviderSet {
 public:
  static otp::Result<ProviderSet> Create(const std::vector<ProviderConfig>& configs,
                                         const ChannelRegistry& registry, otp::Clock& clock);
  // Providers carrying `channel`, in config order (the failover order).
  std::vector<Provider*> ForChannel(std::string_view channel);
  bool Carries(std::string_view channel) const;
  // The `log` provider's file, if one is configured ("" otherwise).
  std::string LogPath() const;

 private:
  std::vector<std::shared_ptr<Provider>> providers_;
};

}  // namespace otpd
