#include "service/api_error.h"

namespace otpd {

const ApiCodeInfo& Describe(ApiCode code) {
  // The one table: problem code → HTTP status and title (SPEC §4).
  static const ApiCodeInfo kTable[] = {
      {200, "", ""},
      {400, "invalid_request", "Invalid request"},
      {400, "invalid_recipient", "Invalid recipient"},
      {401, "unauthorized", "Unauthorized"},
      {403, "country_blocked", "Country blocked"},
      {403, "channel_not_allowed", "Channel not allowed"},
      {404, "not_found", "Not found"},
      {409, "verification_not_pending", "Verification not pending"},
      {422, "idempotency_key_reused", "Idempotency key reused"},
      {413, "payload_too_large", "Payload too large"},
      {429, "rate_limited", "Rate limited"},
      {429, "max_sends_reached", "Maximum sends reached"},
      {429, "user_throttled", "User throttled"},
      {423, "factor_locked", "Factor locked"},
      {503, "unavailable", "Service unavailable"},
      {500, "internal", "Internal error"},
      {405, "invalid_request", "Method not allowed"},
  };
  return kTable[static_cast<int>(code)];
}

ApiError FromStoreStatus(const otp::Status& status) {
  switch (status.code()) {
    case otp::StatusCode::kNotFound:
      return MakeError(ApiCode::kNotFound, "no such object");
    case otp::StatusCode::kUnavailable:
      return MakeError(ApiCode::kUnavailable, "the store is unavailable");
    default:
      return MakeError(ApiCode::kInternal, "internal error");
  }
}

}  // namespace otpd
