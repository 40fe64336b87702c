#include "channels/http/http_channel.h"
#include "channels/log/log_channel.h"
#include "channels/smpp/smpp_channel.h"
#include "channels/smtp/smtp_channel.h"
#include "service/channel.h"

namespace otpd {

void RegisterBuiltinChannels(ChannelRegistry& registry) {
  registry.Register("log", NewLogChannel);
  registry.Register("smtp", NewSmtpChannel);
  registry.Register("smpp", NewSmppChannel);
  registry.Register("http", NewHttpChannel);
}

}  // namespace otpd
