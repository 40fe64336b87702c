// Status and Result<T>: expected failures as values.
//
// A Status is a canonical code plus a human-readable message. Result<T> holds
// either a T or a non-OK Status. Both are cheap to move and thread-compatible.
// Exceptions are kept for programming errors only.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace otp {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller's input is malformed
  kNotFound,            // no such object (or not visible to the caller)
  kAlreadyExists,       // a unique key is taken
  kFailedPrecondition,  // the object is not in a state that allows this
  kResourceExhausted,   // a limit was reached
  kUnauthenticated,     // missing or bad credentials
  kPermissionDenied,    // credentials fine, action forbidden
  kUnavailable,         // a dependency (store, provider) cannot be reached
  kInternal,            // a bug or a broken invariant
};

// Returns the canonical name of `code`, e.g. "INVALID_ARGUMENT".
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "CODE: message", for logs and test failures.
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status Unauthenticated(std::string m) {
  return {StatusCode::kUnauthenticated, std::move(m)};
}
inline Status PermissionDenied(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// E is the error type: Status by default; layers with richer errors (the API's
// problem codes) use their own E with the same shape.
template <typename T, typename E = Status>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(E error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  // The error; a default-constructed E (Status::Ok()) when a value is held.
  E status() const { return ok() ? E() : std::get<E>(v_); }
  const E& error() const { return std::get<E>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, E> v_;
};

}  // namespace otp

// Returns early from the enclosing function with the error of `expr` (a Status).
#define OTP_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::otp::Status otp_status_ = (expr);        \
    if (!otp_status_.ok()) return otp_status_; \
  } while (0)
