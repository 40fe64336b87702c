#include "otp/totp.h"

#include <algorithm>
#include <stdexcept>

#include "otp/crypto.h"

namespace otp {

std::uint64_t TotpStep(std::int64_t unix_seconds, const TotpParams& params) {
  if (params.period <= 0) throw std::invalid_argument("otp: TOTP period must be positive");
  // Times before t0 have no step; they count as step 0.
  if (unix_seconds <= params.t0) return 0;
  const std::uint64_t elapsed =
      static_cast<std::uint64_t>(unix_seconds) - static_cast<std::uint64_t>(params.t0);
  return elapsed / static_cast<std::uint64_t>(params.period);
}

std::string TotpGenerate(const HotpKey& key, std::int64_t unix_seconds, const TotpParams& params) {
  return key.Generate(TotpStep(unix_seconds, params), params.digits);
}

std::optional<std::uint64_t> TotpVerify(const HotpKey& key, std::string_view code,
                                        std::int64_t unix_seconds, const TotpParams& params,
                                        int window,
                                        std::optional<std::uint64_t> min_step_exclusive) {
  if (code.size() != static_cast<std::size_t>(params.digits)) return std::nullopt;
  const std::uint64_t step = TotpStep(unix_seconds, params);
  const std::uint64_t w = window > 0 ? static_cast<std::uint64_t>(window) : 0;
  std::uint64_t first = step >= w ? step - w : 0;
  const std::uint64_t last = step + w;  // no wrap: steps are at most ~2^63
  if (min_step_exclusive) {
    if (*min_step_exclusive >= last) return std::nullopt;
    first = std::max(first, *min_step_exclusive + 1);
  }
  for (std::uint64_t s = first; s <= last; ++s) {
    if (ConstantTimeEqual(key.Generate(s, params.digits), code)) return s;
  }
  return std::nullopt;
}

}  // namespace otp
