// Expected failures of the API, with the stable problem codes of SPEC §4.
// The one table mapping each code to its HTTP status and title is in
// api_error.cc.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "otp/status.h"

namespace otpd {

enum class ApiCode {
  kNone,  // no error
  kInvalidRequest,
  kInvalidRecipient,
  kUnauthorized,
  kCountryBlocked,
  kChannelNotAllowed,
  kNotFound,
  kVerificationNotPending,
  kIdempotencyKeyReused,
  kPayloadTooLarge,
  kRateLimited,
  kMaxSendsReached,
  kUserThrottled,
  kFactorLocked,
  kUnavailable,
  kInternal,
  kMethodNotAllowed,  // a known path with another method (problem code invalid_request)
};

struct FieldError {
  std::string field;
  std::string message;
};

struct ApiError {
  ApiCode code = ApiCode::kNone;
  std::string detail;
  int retry_after_s = 0;           // sets Retry-After when > 0
  std::string status;              // verification status, for verification_not_pending
  std::vector<FieldError> errors;  // for invalid_request
  std::string guard;  // the limit or guard that refused, for metrics ("recipient", "ip", ...)

  bool ok() const { return code == ApiCode::kNone; }
};

template <typename T>
using ApiResult = otp::Result<T, ApiError>;

inline ApiError MakeError(ApiCode code, std::string detail) {
  ApiError e;
  e.code = code;
  e.detail = std::move(detail);
  return e;
}

// A store failure as an API error: NotFound → not_found, Unavailable →
// unavailable, anything else → internal.
ApiError FromStoreStatus(const otp::Status& status);

struct ApiCodeInfo {
  int http_status;
  const char* code;   // "invalid_request"
  const char* title;  // "Invalid request"
};
const ApiCodeInfo& Describe(ApiCode code);

}  // namespace otpd
