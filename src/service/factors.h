// Factors (SPEC §4.2): TOTP/HOTP tokens a person holds, and recovery codes.
//
// The service validates, generates and seals secrets, and computes which TOTP
// time step or HOTP counter a submitted code matches; the store applies each
// attempt in one atomic conditional update (Store::RecordFactorAttempt), so
// two concurrent requests with the same right code give one success, and
// throttling and lockout hold across nodes. Time and randomness are injected.
// Thread-safe: it holds only references to thread-safe collaborators.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "otp/clock.h"
#include "otp/hotp.h"
#include "otp/random.h"
#include "service/api_error.h"
#include "service/secrets.h"
#include "store/store.h"

namespace otpd {

// Verification rules. Defaults are SPEC §4.2's. The TOTP window is the app's
// setting (AppSettings::totp_window, default ±1 step).
struct FactorRules {
  int hotp_look_ahead = 10;  // counters past the expected one
  int totp_resync_window = 50;
  int hotp_resync_window = 100;
  int recovery_code_count = 10;
  ThrottlePolicy throttle;
};

struct CreateFactorRequest {
  std::string type;  // "totp" | "hotp"
  std::optional<std::string> label;
  std::optional<std::string> issuer;
  std::optional<int> digits;
  std::optional<int> period;
  std::optional<std::string> algorithm;
  std::optional<std::string> serial;  // bind an imported hardware token instead
};

struct CreatedFactor {
  Factor factor;
  std::string secret_base32;  // empty for a bound hardware token
  std::string otpauth_uri;    // empty for a bound hardware token
};

struct FactorCheck {
  bool valid = false;
  std::string factor_id;  // the factor that matched (empty for a recovery code)
  std::string type;       // "totp", "hotp" or "recovery_code"
  std::string status;     // the factor's status after the attempt
};

class FactorService {
 public:
  FactorService(Store& store, const Secrets& secrets, otp::Clock& clock, otp::Random& random,
                FactorRules rules = {});

  ApiResult<CreatedFactor> Create(const App& app, const std::string& user_id,
                                  const CreateFactorRequest& request);
  ApiResult<FactorCheck> Activate(const App& app, const std::string& user_id,
                                  const std::string& factor_id, const std::string& code);
  // Tries the user's active factors and unused recovery codes, or only
  // `factor_id` when given.
  ApiResult<FactorCheck> Verify(const App& app, const std::string& user_id, const std::string& code,
                                const std::optional<std::string>& factor_id);
  // Verify answered through `done`, so that no thread waits for the store's
  // commit: the reads and the code matching run on the calling thread, and
  // `done` runs exactly once, maybe on the store's writer thread (keep it
  // quick; it must not call the store).
  void VerifyAsync(const App& app, const std::string& user_id, const std::string& code,
                   const std::optional<std::string>& factor_id,
                   std::function<void(ApiResult<FactorCheck>)> done);
  ApiResult<FactorCheck> Resync(const App& app, const std::string& user_id,
                                const std::string& factor_id, const std::string& code1,
                                const std::string& code2);
  ApiResult<std::vector<Factor>> List(const App& app, const std::string& user_id);
  ApiResult<Factor> Get(const App& app, const std::string& user_id, const std::string& factor_id);
  ApiError Delete(const App& app, const std::string& user_id, const std::string& factor_id);
  // A new set of recovery codes (shown once), replacing the earlier set.
  ApiResult<std::vector<std::string>> IssueRecoveryCodes(const App& app,
                                                         const std::string& user_id);

  // The otpauth:// URI of a factor (from its sealed secret): for the QR code
  // of an unverified factor.
  ApiResult<std::string> OtpAuthUri(const Factor& factor);

 private:
  struct Candidates;
  ApiResult<FactorCheck> Attempt(const App& app, const std::string& user_id,
                                 const std::string& action,
                                 std::vector<FactorCandidate> candidates);
  FactorAttempt MakeAttempt(const App& app, const std::string& user_id, const std::string& action,
                            std::vector<FactorCandidate> candidates) const;
  // The API's answer to a recorded attempt made at `now`.
  static ApiResult<FactorCheck> AttemptAnswer(const Result<FactorAttemptOutcome>& outcome,
                                              otp::TimePoint now);
  otp::Result<std::vector<std::uint8_t>> OpenSecret(const Factor& factor) const;
  // The factor's HMAC key (internal error if its secret cannot be opened).
  ApiResult<otp::HotpKey> KeyFor(const Factor& factor) const;

  Store& store_;
  const Secrets& secrets_;
  otp::Clock& clock_;
  otp::Random& random_;
  FactorRules rules_;
};

// User ids: 1..128 of A-Za-z0-9._@:- (SPEC §4.2).
bool ValidUserId(std::string_view user_id);

// A recovery code as typed: dashes and spaces dropped, lower-cased. Empty if it
// cannot be one (not 16 base32 characters).
std::string NormaliseRecoveryCode(std::string_view typed);

// The factor object of the API (never the secret).
nlohmann::json FactorJson(const Factor& factor);

}  // namespace otpd
