// TOTP (RFC 6238): HOTP over the number of periods since T0.
//
// Pure functions of their arguments; time is passed in (unix seconds), never
// read from a clock here. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "otp/hotp.h"

namespace otp {

struct TotpParams {
  int digits = 6;       // 6..10
  int period = 30;      // seconds per step, 15..120 in the API
  std::int64_t t0 = 0;  // unix seconds of step 0
};

// The time step containing `unix_seconds` (floor((t - t0) / period)); 64-bit so
// times past 2038 work (RFC 6238 §4.2).
std::uint64_t TotpStep(std::int64_t unix_seconds, const TotpParams& params);

// The code at `unix_seconds`.
std::string TotpGenerate(const HotpKey& key, std::int64_t unix_seconds, const TotpParams& params);

// Checks `code` against steps [step - window, step + window] around `unix_seconds`
// and returns the matching step, or nullopt. Steps <= `min_step_exclusive` (the
// last accepted step, for replay protection) are never accepted when set.
std::optional<std::uint64_t> TotpVerify(const HotpKey& key, std::string_view code,
                                        std::int64_t unix_seconds, const TotpParams& params,
                                        int window,
                                        std::optional<std::uint64_t> min_step_exclusive = {});

}  // namespace otp
