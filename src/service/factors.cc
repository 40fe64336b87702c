#include "service/factors.h"

#include <algorithm>
#include <cctype>
#include <future>

#include "otp/base32.h"
#include "otp/hotp.h"
#include "otp/otpauth_uri.h"
#include "otp/totp.h"

namespace otpd {

namespace {

constexpr std::size_t kRecoveryCodeChars = 16;  // base32: 80 bits

ApiError Invalid(const std::string& field, const std::string& message) {
  ApiError e = MakeError(ApiCode::kInvalidRequest, field + ": " + message);
  e.errors.push_back({field, message});
  return e;
}

std::size_t SecretBytes(otp::HashAlgorithm alg) {
  switch (alg) {
    case otp::HashAlgorithm::kSha256:
      return 32;
    case otp::HashAlgorithm::kSha512:
      return 64;
    default:
      return 20;
  }
}

// Recovery codes are bound to the app and the user (app ids hold no ':').
std::string RecoveryBinding(const App& app, const std::string& user_id) {
  return "recovery:" + app.id + ":" + user_id;
}

// The Key Uri Format URI of a factor with its (unsealed) secret.
std::string BuildUri(const Factor& f, const std::vector<std::uint8_t>& secret,
                     otp::HashAlgorithm alg) {
  otp::OtpAuthUri uri;
  uri.type = f.type == kFactorHotp ? otp::OtpType::kHotp : otp::OtpType::kTotp;
  uri.issuer = f.issuer;
  uri.account = f.label;
  uri.secret = secret;
  uri.algorithm = alg;
  uri.digits = f.digits;
  uri.period = f.period;
  uri.counter = static_cast<std::uint64_t>(f.counter);
  return otp::BuildOtpAuthUri(uri);
}

bool AllDigits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

}  // namespace

bool ValidUserId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || c == '.' || c == '_' || c == '@' || c == ':' || c == '-';
  });
}

std::string NormaliseRecoveryCode(std::string_view typed) {
  std::string out;
  for (unsigned char c : typed) {
    if (c == '-' || c == ' ') continue;
    const char lower = static_cast<char>(std::tolower(c));
    if (!((lower >= 'a' && lower <= 'z') || (lower >= '2' && lower <= '7'))) return "";
    out += lower;
  }
  return out.size() == kRecoveryCodeChars ? out : "";
}

nlohmann::json FactorJson(const Factor& f) {
  nlohmann::json j = {{"id", f.id},         {"type", f.type},
                      {"status", f.status}, {"label", f.label},
                      {"issuer", f.issuer}, {"algorithm", f.algorithm},
                      {"digits", f.digits}, {"created_at", otp::FormatRfc3339(f.created_at)}};
  if (f.type == kFactorTotp) j["period"] = f.period;
  if (!f.serial.empty()) j["serial"] = f.serial;
  j["activated_at"] = f.activated_at ? nlohmann::json(otp::FormatRfc3339(*f.activated_at))
                                     : nlohmann::json(nullptr);
  return j;
}

FactorService::FactorService(Store& store, const Secrets& secrets, otp::Clock& clock,
                             otp::Random& random, FactorRules rules)
    : store_(store), secrets_(secrets), clock_(clock), random_(random), rules_(rules) {}

ApiResult<CreatedFactor> FactorService::Create(const App& app, const std::string& user_id,
                                               const CreateFactorRequest& req) {
  if (!ValidUserId(user_id)) return MakeError(ApiCode::kNotFound, "no such user");
  if (req.type != kFactorTotp && req.type != kFactorHotp) {
    return Invalid("type", "must be \"totp\" or \"hotp\"");
  }
  for (const auto* text : {&req.label, &req.issuer}) {
    if (*text && text->value().find(':') != std::string::npos) {
      return Invalid(text == &req.label ? "label" : "issuer", "must not contain ':'");
    }
  }
  Factor f;
  f.id = "fac_" + otp::RandomHex(random_, 12);
  f.app_id = app.id;
  f.user_id = user_id;
  f.type = req.type;
  f.label = req.label.value_or(user_id);
  f.issuer = req.issuer.value_or(app.name);
  f.created_at = clock_.Now();

  if (req.serial) {
    // A hardware token: its parameters and secret come from the vendor's file.
    if (req.digits || req.period || req.algorithm) {
      return Invalid("serial", "a hardware token brings its own digits, period and algorithm");
    }
    auto bound = store_.BindHardwareToken(f, *req.serial);
    if (!bound.ok()) {
      switch (bound.status().code()) {
        case otp::StatusCode::kNotFound:
          return Invalid("serial", "no imported hardware token has this serial");
        case otp::StatusCode::kFailedPrecondition:
          return Invalid("serial", bound.status().message());
        default:
          return FromStoreStatus(bound.status());
      }
    }
    return CreatedFactor{std::move(bound).value(), "", ""};
  }

  f.digits = req.digits.value_or(6);
  f.period = req.period.value_or(30);
  if (f.digits < 6 || f.digits > 10) return Invalid("digits", "must be an integer 6..10");
  if (f.period < 15 || f.period > 120) return Invalid("period", "must be an integer 15..120");
  auto alg = otp::ParseHashAlgorithm(req.algorithm.value_or("SHA1"));
  if (!alg.ok()) return Invalid("algorithm", "must be SHA1, SHA256 or SHA512");
  f.algorithm = otp::HashAlgorithmName(*alg);

  const std::vector<std::uint8_t> secret = otp::RandomBytes(random_, SecretBytes(*alg));
  auto sealed = secrets_.keyring.Seal(secret, FactorSealingContext(f.id), random_);
  if (!sealed.ok()) return MakeError(ApiCode::kInternal, "cannot seal the secret");
  f.secret_sealed = *sealed;
  Status s = store_.CreateFactor(f);
  if (!s.ok()) return FromStoreStatus(s);

  return CreatedFactor{f, otp::Base32Encode(secret), BuildUri(f, secret, *alg)};
}

otp::Result<std::vector<std::uint8_t>> FactorService::OpenSecret(const Factor& f) const {
  return secrets_.keyring.Open(f.secret_sealed, f.serial.empty()
                                                    ? FactorSealingContext(f.id)
                                                    : HardwareTokenSealingContext(f.serial));
}

ApiResult<std::string> FactorService::OtpAuthUri(const Factor& f) {
  auto secret = OpenSecret(f);
  auto alg = otp::ParseHashAlgorithm(f.algorithm);
  if (!secret.ok() || !alg.ok()) return MakeError(ApiCode::kInternal, "cannot open the secret");
  return BuildUri(f, *secret, *alg);
}

ApiResult<otp::HotpKey> FactorService::KeyFor(const Factor& f) const {
  auto secret = OpenSecret(f);
  auto alg = otp::ParseHashAlgorithm(f.algorithm);
  if (!secret.ok() || !alg.ok()) return MakeError(ApiCode::kInternal, "cannot open the secret");
  auto key = otp::HotpKey::Create(*secret, *alg);
  if (!key.ok()) return MakeError(ApiCode::kInternal, "cannot use the secret");
  return std::move(key).value();
}

// The candidates one code gives for `factors`: the TOTP step or HOTP counter
// each factor's code matches, unconditionally of replays (the store decides).
struct FactorService::Candidates {
  static std::optional<FactorCandidate> Match(const FactorRules& rules, int totp_window,
                                              const Factor& f, const otp::HotpKey& key,
                                              const std::string& code, std::int64_t now_s) {
    if (code.size() != static_cast<std::size_t>(f.digits) || !AllDigits(code)) {
      return std::nullopt;
    }
    FactorCandidate c;
    c.factor_id = f.id;
    if (f.type == kFactorTotp) {
      const otp::TotpParams params{f.digits, f.period, 0};
      const std::int64_t centre = now_s + f.drift * f.period;
      auto step = otp::TotpVerify(key, code, centre, params, totp_window);
      if (!step) return std::nullopt;
      c.matched = static_cast<std::int64_t>(*step);
      return c;
    }
    auto counter = otp::HotpVerify(key, code, static_cast<std::uint64_t>(f.counter), f.digits,
                                   rules.hotp_look_ahead);
    if (!counter) return std::nullopt;
    c.matched = static_cast<std::int64_t>(*counter);
    return c;
  }
};

FactorAttempt FactorService::MakeAttempt(const App& app, const std::string& user_id,
                                         const std::string& action,
                                         std::vector<FactorCandidate> candidates) const {
  FactorAttempt a;
  a.app_id = app.id;
  a.user_id = user_id;
  a.action = action;
  a.candidates = std::move(candidates);
  a.policy = rules_.throttle;
  a.now = clock_.Now();
  return a;
}

ApiResult<FactorCheck> FactorService::Attempt(const App& app, const std::string& user_id,
                                              const std::string& action,
                                              std::vector<FactorCandidate> candidates) {
  const FactorAttempt a = MakeAttempt(app, user_id, action, std::move(candidates));
  return AttemptAnswer(store_.RecordFactorAttempt(a), a.now);
}

ApiResult<FactorCheck> FactorService::AttemptAnswer(const Result<FactorAttemptOutcome>& out,
                                                    otp::TimePoint now) {
  if (!out.ok()) return FromStoreStatus(out.status());
  switch (out->refusal) {
    case FactorAttemptOutcome::Refusal::kLocked:
      return MakeError(ApiCode::kFactorLocked,
                       "too many failed attempts: locked until an operator unlocks the user");
    case FactorAttemptOutcome::Refusal::kThrottled: {
      ApiError e = MakeError(ApiCode::kUserThrottled, "too many failed attempts: retry later");
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(out->retry_at - now).count();
      e.retry_after_s = static_cast<int>(std::max<std::int64_t>(1, (wait + 999) / 1000));
      return e;
    }
    case FactorAttemptOutcome::Refusal::kNone:
      break;
  }
  FactorCheck check;
  check.valid = out->valid;
  if (out->matched) {
    if (out->matched->kind == FactorCandidate::Kind::kRecoveryCode) {
      check.type = "recovery_code";
    } else {
      check.factor_id = out->matched->factor_id;
      check.type = out->factor_type;
      check.status = out->factor_status;
    }
  }
  return check;
}

ApiResult<FactorCheck> FactorService::Activate(const App& app, const std::string& user_id,
                                               const std::string& factor_id,
                                               const std::string& code) {
  auto f = Get(app, user_id, factor_id);
  if (!f.ok()) return f.error();
  if (f->status == kFactorActive) {
    FactorCheck already;
    already.factor_id = f->id;
    already.type = f->type;
    already.status = kFactorActive;
    return already;  // valid:false: activation happens once
  }
  std::vector<FactorCandidate> candidates;
  auto key = KeyFor(*f);
  if (!key.ok()) return key.error();
  if (auto c = Candidates::Match(rules_, app.settings.totp_window, *f, *key, code,
                                 otp::ToUnixSeconds(clock_.Now()))) {
    c->activate = true;
    candidates.push_back(*c);
  }
  auto check = Attempt(app, user_id, "factor.activate", std::move(candidates));
  if (check.ok() && !check->valid) {
    check->factor_id = f->id;
    check->type = f->type;
    check->status = kFactorUnverified;
  }
  return check;
}

ApiResult<FactorCheck> FactorService::Verify(const App& app, const std::string& user_id,
                                             const std::string& code,
                                             const std::optional<std::string>& factor_id) {
  std::promise<ApiResult<FactorCheck>> done;
  auto answer = done.get_future();
  VerifyAsync(app, user_id, code, factor_id,
              [&done](ApiResult<FactorCheck> r) { done.set_value(std::move(r)); });
  return answer.get();
}

void FactorService::VerifyAsync(const App& app, const std::string& user_id, const std::string& code,
                                const std::optional<std::string>& factor_id,
                                std::function<void(ApiResult<FactorCheck>)> done) {
  if (!ValidUserId(user_id)) return done(MakeError(ApiCode::kNotFound, "no such user"));
  std::vector<FactorCandidate> recovery;
  if (!factor_id) {
    const std::string normalised = NormaliseRecoveryCode(code);
    if (!normalised.empty()) {
      FactorCandidate c;
      c.kind = FactorCandidate::Kind::kRecoveryCode;
      c.code_hash = secrets_.code_hasher.Hash(RecoveryBinding(app, user_id), normalised);
      recovery.push_back(std::move(c));
    }
  }
  FactorAttempt a = MakeAttempt(app, user_id, "factor.verify", std::move(recovery));
  const otp::TimePoint now = a.now;
  // Runs where the store reads the factors (SQLite: on its writer thread).
  auto match = [this, window = app.settings.totp_window, code, now_s = otp::ToUnixSeconds(now)](
                   const std::vector<Factor>& factors) -> Result<std::vector<FactorCandidate>> {
    std::vector<FactorCandidate> candidates;
    for (const Factor& f : factors) {
      if (f.status != kFactorActive) continue;
      auto key = KeyFor(f);
      if (!key.ok()) return otp::Internal("cannot open the secret of factor " + f.id);
      if (auto c = Candidates::Match(rules_, window, f, *key, code, now_s)) {
        candidates.push_back(*c);
      }
    }
    return candidates;
  };
  store_.MatchFactorAttemptAsync(
      std::move(a), factor_id, match,
      [now, by_id = factor_id.has_value(),
       done = std::move(done)](Result<FactorAttemptOutcome> out) {
        if (by_id && !out.ok() && out.status().code() == otp::StatusCode::kNotFound) {
          return done(MakeError(ApiCode::kNotFound, "no such factor"));
        }
        done(AttemptAnswer(out, now));
      });
}

ApiResult<FactorCheck> FactorService::Resync(const App& app, const std::string& user_id,
                                             const std::string& factor_id, const std::string& code1,
                                             const std::string& code2) {
  auto f = Get(app, user_id, factor_id);
  if (!f.ok()) return f.error();
  std::vector<FactorCandidate> candidates;
  const bool well_formed = code1.size() == static_cast<std::size_t>(f->digits) &&
                           code2.size() == code1.size() && AllDigits(code1) && AllDigits(code2);
  if (f->status == kFactorActive && well_formed) {
    auto key = KeyFor(*f);
    if (!key.ok()) return key.error();
    // Two consecutive codes: code1 at value v and code2 at v + 1.
    std::int64_t from = 0;
    std::int64_t to = 0;
    std::int64_t now_step = 0;
    if (f->type == kFactorTotp) {
      now_step = static_cast<std::int64_t>(otp::TotpStep(otp::ToUnixSeconds(clock_.Now()),
                                                         otp::TotpParams{f->digits, f->period, 0}));
      from = std::max<std::int64_t>(0, now_step - rules_.totp_resync_window);
      to = now_step + rules_.totp_resync_window;
    } else {
      from = f->counter;
      to = f->counter + rules_.hotp_resync_window;
    }
    for (std::int64_t v = from; v <= to; ++v) {
      const auto u = static_cast<std::uint64_t>(v);
      if (otp::ConstantTimeEqual(key->Generate(u, f->digits), code1) &&
          otp::ConstantTimeEqual(key->Generate(u + 1, f->digits), code2)) {
        FactorCandidate c;
        c.factor_id = f->id;
        c.first = v;
        c.matched = v + 1;
        if (f->type == kFactorTotp) c.drift = v + 1 - now_step;
        candidates.push_back(std::move(c));
        break;
      }
    }
  }
  auto check = Attempt(app, user_id, "factor.resync", std::move(candidates));
  if (check.ok() && !check->valid) {
    check->factor_id = f->id;
    check->type = f->type;
    check->status = f->status;
  }
  return check;
}

ApiResult<std::vector<Factor>> FactorService::List(const App& app, const std::string& user_id) {
  if (!ValidUserId(user_id)) return MakeError(ApiCode::kNotFound, "no such user");
  auto list = store_.ListFactors(app.id, user_id);
  if (!list.ok()) return FromStoreStatus(list.status());
  return std::move(list).value();
}

ApiResult<Factor> FactorService::Get(const App& app, const std::string& user_id,
                                     const std::string& factor_id) {
  if (!ValidUserId(user_id)) return MakeError(ApiCode::kNotFound, "no such factor");
  auto f = store_.GetFactor(app.id, user_id, factor_id);
  if (!f.ok()) {
    if (f.status().code() == otp::StatusCode::kNotFound) {
      return MakeError(ApiCode::kNotFound, "no such factor");
    }
    return FromStoreStatus(f.status());
  }
  return std::move(f).value();
}

ApiError FactorService::Delete(const App& app, const std::string& user_id,
                               const std::string& factor_id) {
  if (!ValidUserId(user_id)) return MakeError(ApiCode::kNotFound, "no such factor");
  Status s = store_.DeleteFactor(app.id, user_id, factor_id, clock_.Now());
  if (s.code() == otp::StatusCode::kNotFound) {
    return MakeError(ApiCode::kNotFound, "no such factor");
  }
  return s.ok() ? ApiError{} : FromStoreStatus(s);
}

ApiResult<std::vector<std::string>> FactorService::IssueRecoveryCodes(const App& app,
                                                                      const std::string& user_id) {
  if (!ValidUserId(user_id)) return MakeError(ApiCode::kNotFound, "no such user");
  std::vector<std::string> codes;
  std::vector<std::string> hashes;
  const std::string binding = RecoveryBinding(app, user_id);
  for (int i = 0; i < rules_.recovery_code_count; ++i) {
    // 10 random bytes = 16 base32 characters = 80 bits.
    std::string raw = otp::Base32Encode(otp::RandomBytes(random_, kRecoveryCodeChars * 5 / 8));
    for (char& ch : raw) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    hashes.push_back(secrets_.code_hasher.Hash(binding, raw));
    codes.push_back(raw.substr(0, 4) + "-" + raw.substr(4, 4) + "-" + raw.substr(8, 4) + "-" +
                    raw.substr(12, 4));
  }
  Status s = store_.ReplaceRecoveryCodes(app.id, user_id, hashes, clock_.Now());
  if (!s.ok()) return FromStoreStatus(s);
  return codes;
}

}  // namespace otpd
