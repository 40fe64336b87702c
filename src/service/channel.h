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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otp/clock.h"
#include "otp/status.h"
#include "service/config.h"
#include "store/model.h"  // DeliveryReport, delivery statuses

namespace otpd {

struct OutboundMessage {
  std::string channel;
  std::string to;
  std::string verification_id;
  std::string locale;
  std::string subject;  // email
  std::string text;
  std::string code;  // for providers whose API takes the code itself
  std::string app_name;
  int ttl_minutes = 0;  // the code's lifetime, rounded down, at least 1
};

struct SendReceipt {
  std::string provider_message_id;
};

// The answer to a report handed to a sink, given once and from any thread:
// true once the report is recorded in the store (its sender may be told it was
// received), false when it was not taken (otpd is stopping, or the store
// failed) and the sender should send it again.
using ReportDone = std::function<void(bool recorded)>;

// Where providers hand the reports they receive (the dispatcher, in otpd).
// Called from the provider's own threads; must be thread-safe. `done` may be
// empty (nobody waits for the answer).
class DeliveryReportSink {
 public:
  virtual ~DeliveryReportSink() = default;
  virtual void OnReport(const DeliveryReport& report, ReportDone done) = 0;
};

class ChannelProvider {
 public:
  virtual ~ChannelProvider() = default;
  // Hands the message to the provider and returns once the provider took it
  // (or refused it). Unavailable / other errors mean the provider did not take
  // it (the dispatcher fails over). Called from several dispatcher threads at
  // once: providers with a window (SMPP) keep that many sends in flight.
  virtual otp::Result<SendReceipt> Send(const OutboundMessage& message) = 0;

  // For providers whose reports arrive over HTTP (POST /v1/providers/{name}/dlr):
  // checks `token` against the provider's dlr_token (PermissionDenied if wrong)
  // and parses `body` (InvalidArgument if it cannot). An empty vector means a
  // report of a status that drives nothing (e.g. "read"). NotFound by default:
  // the provider takes no reports over HTTP.
  virtual otp::Result<std::vector<DeliveryReport>> ParseHttpReport(std::string_view token,
                                                                   std::string_view body) {
    (void)token;
    (void)body;
    return otp::NotFound("this provider takes no delivery reports over HTTP");
  }

  // Connection state for /metrics, for providers holding a session (SMPP bind):
  // true bound, false not bound, nullopt for providers without one.
  virtual std::optional<bool> Bound() const { return std::nullopt; }
};

// What a provider factory gets besides its config.
struct ProviderContext {
  otp::Clock& clock;
  DeliveryReportSink& reports;  // outlives the provider
};

using ChannelFactory = std::function<otp::Result<std::unique_ptr<ChannelProvider>>(
    const ProviderConfig& config, ProviderContext& context)>;

class ChannelRegistry {
 public:
  void Register(std::string type, ChannelFactory factory);
  otp::Result<std::unique_ptr<ChannelProvider>> Create(const ProviderConfig& config,
                                                       ProviderContext& context) const;

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
  // By configured name; nullptr if none.
  Provider* ByName(std::string_view name);
  // Every provider, in config order.
  std::vector<const Provider*> All() const;
  // Where the providers' delivery reports go from now on (nullptr: refused,
  // with a warning: each is answered `false`, so a provider that can ask its
  // sender to send it again does, and otherwise the step's timeout still
  // drives failover).
  void SetReportSink(DeliveryReportSink* sink);
  // The `log` provider's file, if one is configured ("" otherwise).
  std::string LogPath() const;
  // Ends every provider (an SMPP provider unbinds), once nothing sends any
  // more (the dispatcher and the server have stopped) and while logging still
  // runs: the set is empty afterwards.
  void StopAll();

 private:
  class ForwardingSink;
  std::shared_ptr<ForwardingSink> sink_;  // shared: ProviderSet is movable
  std::vector<std::shared_ptr<Provider>> providers_;
};

}  // namespace otpd
