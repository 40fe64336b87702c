// The `smpp` provider: SMS through an SMSC over SMPP 3.4 (SPEC §2, §4.1).
//
//   [[provider]]
//   name = "smsc"
//   type = "smpp"
//   channels = ["sms"]
//   host = "127.0.0.1"          # required
//   port = 2775                  # default 2775
//   system_id = "otpd"           # required, at most 15 characters
//   password = "secret"          # at most 8 characters; never logged
//   system_type = ""             # at most 12 characters
//   source_addr = "VERIFY"       # sender: alphanumeric (TON 5), "+digits" (TON 1) or digits
//   source_ton = 5               # default from source_addr's form; source_npi likewise
//   dest_ton = 1                 # recipients are E.164: TON 1 (international), NPI 1
//   dest_npi = 1
//   window = 10                  # unacknowledged submit_sm in flight, 1..1000
//   tls = false                  # TLS 1.2+, certificate and host name verified
//   ca_file = ""                 # PEM CA bundle (default: the system's)
//   enquire_link_s = 30          # keep-alive after this long without traffic
//   connect_timeout_s = 5        # TCP + TLS + bind; also the enquire_link_resp wait
//   submit_timeout_s = 10        # no submit_sm_resp by then: Unavailable, re-bind
//   max_wait_s = 30              # longest a Send waits for a window slot or throttling
//   reconnect_min_ms = 500       # re-bind back-off, doubling up to reconnect_max_ms
//   reconnect_max_ms = 30000
//   throttle_ms = 1000           # pause after ESME_RTHROTTLED, doubling up to 10x
//
// One persistent bind_transceiver per provider, held by the provider's own I/O
// thread (Boost.Asio). Send is thread-safe: callers share the window, each
// blocking until its submit_sm is answered. A message that fits one segment
// goes in short_message, a longer one in the message_payload TLV (the SMSC
// splits it). Delivery receipts (deliver_sm) go to ProviderContext::reports
// from the I/O thread, before the deliver_sm_resp is written: the sink must not
// block for long, and must not call Send itself (that fails with Internal).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "channels/smpp/smpp_pdu.h"
#include "service/channel.h"

namespace otpd {

otp::Result<std::unique_ptr<ChannelProvider>> NewSmppChannel(const ProviderConfig& config,
                                                             ProviderContext& context);

// --- exposed for tests ----------------------------------------------------------

struct SmppSettings {
  std::string name;  // the provider's configured name
  std::string host;
  std::uint16_t port = 2775;
  std::string system_id;
  std::string password;
  std::string system_type;
  std::string source_addr;
  std::uint8_t source_ton = 0;
  std::uint8_t source_npi = 0;
  std::uint8_t dest_ton = 1;
  std::uint8_t dest_npi = 1;
  int window = 10;
  bool tls = false;
  std::string ca_file;
  std::chrono::milliseconds enquire_link{std::chrono::seconds(30)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
  std::chrono::milliseconds submit_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds max_wait{std::chrono::seconds(30)};
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{std::chrono::seconds(30)};
  std::chrono::milliseconds throttle{1000};
};

// The provider's settings from its [[provider]] options. InvalidArgument naming
// the key for an unknown key, a missing required one or a bad value (the
// password's value is never quoted).
otp::Result<SmppSettings> ParseSmppSettings(const ProviderConfig& config);

// The submit_sm for `message` (sequence_number 0): text encoded GSM-7 or UCS-2,
// registered_delivery 1, destination without its '+'. InvalidArgument when the
// text is not UTF-8 or an address is too long for SMPP.
otp::Result<smpp::Pdu> BuildSubmitSm(const SmppSettings& settings, const OutboundMessage& message);

}  // namespace otpd
