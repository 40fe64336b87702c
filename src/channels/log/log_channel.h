// The `log` provider: a development sink that appends each message as one JSON
// line {"at","provider","channel","to","verification_id","locale","text","code"}
// to its file (SPEC §2). It is the only place a code is ever written.
// Thread-safe (a mutex serialises appends).
#pragma once

#include "service/channel.h"

namespace otpd {

// Options: path (default "otpd-data/messages.jsonl"); the directory is created.
otp::Result<std::unique_ptr<ChannelProvider>> NewLogChannel(const ProviderConfig& config,
                                                            ProviderContext& context);

}  // namespace otpd
