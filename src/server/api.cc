#include "server/api.h"

#include "server/logging.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <future>
#include <regex>
#include <stdexcept>

#include "otp/crypto.h"
#include "otp/percent.h"
#include "service/messages.h"
#include "service/qr.h"
#include "service/recipients.h"

namespace otpd {

using nlohmann::json;

namespace {

constexpr int kMaxJsonDepth = 16;

const std::vector<RouteInfo> kRoutes = {
    {"GET", "/healthz", false},
    {"GET", "/readyz", false},
    {"GET", "/metrics", false},
    {"GET", "/openapi.json", false},
    {"GET", "/dev/inbox", false},
    {"POST", "/v1/verifications", true},
    {"POST", "/v1/verifications/check", true},
    {"GET", "/v1/verifications/{id}", true},
    {"POST", "/v1/verifications/{id}/check", true},
    {"POST", "/v1/verifications/{id}/resend", true},
    {"POST", "/v1/verifications/{id}/cancel", true},
    // Authenticated by the provider's dlr_token (?token=), not an API key.
    {"POST", "/v1/providers/{name}/dlr", false},
    {"POST", "/v1/users/{user}/factors", true},
    {"GET", "/v1/users/{user}/factors", true},
    {"DELETE", "/v1/users/{user}/factors/{id}", true},
    {"POST", "/v1/users/{user}/factors/{id}/activate", true},
    {"POST", "/v1/users/{user}/factors/{id}/resync", true},
    {"GET", "/v1/users/{user}/factors/{id}/qr.png", true},
    {"POST", "/v1/users/{user}/verify", true},
    {"POST", "/v1/users/{user}/recovery-codes", true},
};

// The segments of `path`, as views into it.
std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t start = 1;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// Every route's path split into segments, once.
// (Views into kRoutes, which lives as long as the program.)
const std::vector<std::vector<std::string_view>>& RouteSegments() {
  static const auto* segments = [] {
    auto* out = new std::vector<std::vector<std::string_view>>();
    for (const RouteInfo& r : kRoutes) out->push_back(Split(r.path));
    return out;
  }();
  return *segments;
}

// Matches `parts` against `want`; fills `params` with the {…} segments.
bool Match(const std::vector<std::string_view>& want, const std::vector<std::string_view>& parts,
           std::vector<std::string>* params) {
  if (want.size() != parts.size()) return false;
  const auto is_param = [](std::string_view segment) {
    return !segment.empty() && segment.front() == '{';
  };
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (is_param(want[i]) ? parts[i].empty() : want[i] != parts[i]) return false;
  }
  params->clear();
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (is_param(want[i])) params->emplace_back(parts[i]);
  }
  return true;
}

HttpResponse Json(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  // Problem details may quote request bytes (a method, a header) that are not
  // UTF-8: they are replaced (U+FFFD) rather than thrown on.
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

HttpResponse Problem(const ApiError& e) {
  const ApiCodeInfo& info = Describe(e.code);
  json body = {{"type", "about:blank"},
               {"title", info.title},
               {"status", info.http_status},
               {"code", info.code},
               {"detail", e.detail}};
  // verification_not_pending: the body carries the verification's status (SPEC §4.1)
  // in place of the HTTP status number, which the response line already gives.
  if (!e.status.empty()) body["status"] = e.status;
  if (!e.errors.empty()) {
    json errors = json::array();
    for (const FieldError& f : e.errors)
      errors.push_back({{"field", f.field}, {"message", f.message}});
    body["errors"] = std::move(errors);
  }
  HttpResponse r = Json(info.http_status, body);
  r.content_type = "application/problem+json";
  if (e.retry_after_s > 0) r.headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
  if (e.code == ApiCode::kUnauthorized) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

ApiError Invalid(std::vector<FieldError> errors) {
  ApiError e = MakeError(
      ApiCode::kInvalidRequest,
      errors.empty() ? "invalid request" : errors.front().field + ": " + errors.front().message);
  e.errors = std::move(errors);
  return e;
}

struct DepthExceeded : std::runtime_error {
  DepthExceeded() : std::runtime_error("depth") {}
};

// Parses a JSON object body (an empty body is `{}` when `allow_empty`).
ApiResult<json> ParseObject(const std::string& body, bool allow_empty) {
  if (body.empty() && allow_empty) return json::object();
  json j;
  try {
    j = json::parse(body, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) throw DepthExceeded();
      return true;
    });
  } catch (const DepthExceeded&) {
    return Invalid({{"body", "JSON nested deeper than " + std::to_string(kMaxJsonDepth)}});
  } catch (const json::exception&) {
    return Invalid({{"body", "malformed JSON"}});
  }
  if (!j.is_object()) return Invalid({{"body", "must be a JSON object"}});
  return j;
}

// Typed field access that collects every problem before answering.
class Fields {
 public:
  explicit Fields(const json& j) : j_(j) {}

  std::optional<std::string> String(const char* name, bool required, std::size_t max_len) {
    seen_.push_back(name);
    auto it = j_.find(name);
    if (it == j_.end() || it->is_null()) {
      if (required) errors_.push_back({name, "is required"});
      return std::nullopt;
    }
    if (!it->is_string()) {
      errors_.push_back({name, "must be a string"});
      return std::nullopt;
    }
    const auto& s = it->get_ref<const std::string&>();
    if (s.empty() || s.size() > max_len) {
      errors_.push_back({name, "must be 1.." + std::to_string(max_len) + " characters"});
      return std::nullopt;
    }
    return s;
  }

  std::optional<int> Int(const char* name, int min, int max) {
    seen_.push_back(name);
    auto it = j_.find(name);
    if (it == j_.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer() || *it < min || *it > max) {
      errors_.push_back(
          {name, "must be an integer " + std::to_string(min) + ".." + std::to_string(max)});
      return std::nullopt;
    }
    return it->get<int>();
  }

  const json* Raw(const char* name) {
    seen_.push_back(name);
    auto it = j_.find(name);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  void Add(std::string field, std::string message) {
    errors_.push_back({std::move(field), std::move(message)});
  }

  // Unknown fields are refused, so a typo never passes silently.
  ApiError Finish() {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (std::find(seen_.begin(), seen_.end(), it.key()) == seen_.end()) {
        errors_.push_back({it.key(), "is not a known field"});
      }
    }
    return errors_.empty() ? ApiError{} : Invalid(errors_);
  }

 private:
  const json& j_;
  std::vector<std::string> seen_;
  std::vector<FieldError> errors_;
};

bool ValidId(std::string_view id) {
  if (id.size() < 5 || id.size() > 64) return false;
  for (unsigned char c : id) {
    if (!std::isalnum(c) && c != '_') return false;
  }
  return true;
}

bool ValidLocale(const std::string& s) {
  static const std::regex kLocale("[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,3}");
  return std::regex_match(s, kLocale);
}

ApiResult<StartRequest> ParseStart(const HttpRequest& req) {
  auto body = ParseObject(req.body, false);
  if (!body.ok()) return body.error();
  Fields f(*body);
  StartRequest out;
  if (auto to = f.String("to", true, 254)) out.to = *to;
  if (auto ch = f.String("channel", false, 16)) {
    if (IsKnownChannel(*ch)) {
      out.channel = *ch;
    } else {
      f.Add("channel", "unknown channel '" + *ch + "'");
    }
  }
  if (const json* wf = f.Raw("workflow")) {
    if (!wf->is_array() || wf->empty() || wf->size() > 10) {
      f.Add("workflow", "must be an array of 1..10 steps");
    } else {
      std::vector<WorkflowStep> steps;
      for (std::size_t i = 0; i < wf->size(); ++i) {
        const json& s = (*wf)[i];
        const std::string where = "workflow[" + std::to_string(i) + "]";
        if (!s.is_object()) {
          f.Add(where, "must be an object");
          continue;
        }
        Fields sf(s);
        WorkflowStep step;
        if (auto ch = sf.String("channel", true, 16)) {
          if (!IsKnownChannel(*ch)) sf.Add("channel", "unknown channel '" + *ch + "'");
          step.channel = *ch;
        }
        step.timeout_s = sf.Int("timeout_s", 1, 86400).value_or(60);
        if (auto to = sf.String("to", false, 254)) step.to = *to;
        ApiError e = sf.Finish();
        for (const FieldError& fe : e.errors) f.Add(where + "." + fe.field, fe.message);
        steps.push_back(std::move(step));
      }
      out.workflow = std::move(steps);
    }
  }
  if (out.channel && out.workflow) f.Add("channel", "give channel or workflow, not both");
  if (auto locale = f.String("locale", false, 35)) {
    if (ValidLocale(*locale)) {
      out.locale = *locale;
    } else {
      f.Add("locale", "must be a language tag like \"en\" or \"el-GR\"");
    }
  }
  if (auto ip = f.String("ip", false, 45)) out.ip = *ip;
  out.code_length = f.Int("code_length", 4, 10);
  out.ttl_s = f.Int("ttl_s", 60, 86400);
  if (const json* md = f.Raw("metadata")) {
    if (!md->is_object()) {
      f.Add("metadata", "must be an object");
    } else {
      out.metadata_json = md->dump();
      if (out.metadata_json.size() > 4096) f.Add("metadata", "must be at most 4 KiB");
    }
  }
  ApiError e = f.Finish();
  if (!e.ok()) return e;
  const std::string_view key = req.Header("idempotency-key");
  if (!key.empty()) {
    if (key.size() > 255) return Invalid({{"Idempotency-Key", "must be at most 255 characters"}});
    out.idempotency_key = std::string(key);
    out.body_hash = otp::HexEncode(otp::Sha256(body->dump()));
  }
  return out;
}

struct CheckRequest {
  std::string to;  // by recipient only
  std::string code;
};

ApiResult<CheckRequest> ParseCheck(const HttpRequest& req, bool by_recipient) {
  auto body = ParseObject(req.body, false);
  if (!body.ok()) return body.error();
  Fields f(*body);
  std::optional<std::string> to;
  if (by_recipient) to = f.String("to", true, 254);
  auto code = f.String("code", true, 64);
  ApiError e = f.Finish();
  if (!e.ok()) return e;
  return CheckRequest{to.value_or(""), *code};
}

}  // namespace

Api::Api(Store& store, AppService& apps, VerificationService& verifications, FactorService& factors,
         Metrics& metrics, ApiOptions options)
    : store_(store),
      apps_(apps),
      verifications_(verifications),
      factors_(factors),
      metrics_(metrics),
      options_(std::move(options)) {}

const std::vector<RouteInfo>& Api::Routes() { return kRoutes; }

void Api::ServeDeliveryReports(ProviderSet& providers, Dispatcher& dispatcher) {
  providers_ = &providers;
  dispatcher_ = &dispatcher;
}

namespace {

struct Resolved {
  const RouteInfo* route = nullptr;  // null: no route for this method and path
  bool path_known = false;           // some route has this path (→ 405, not 404)
  std::vector<std::string> params;
};

Resolved Resolve(const HttpRequest& request) {
  Resolved out;
  // Only origin-form targets name a route: "2v1/verifications/x/check" splits
  // into the same segments as "/v1/…" but is none of them.
  if (!request.path.starts_with('/')) return out;
  const std::vector<std::string_view> parts = Split(request.path);
  std::vector<std::string> params;
  for (std::size_t i = 0; i < kRoutes.size(); ++i) {
    if (!Match(RouteSegments()[i], parts, &params)) continue;
    out.path_known = true;
    if (request.method == kRoutes[i].method) {
      out.route = &kRoutes[i];
      out.params = std::move(params);
      break;
    }
  }
  return out;
}

// The routes answered without holding a thread (HandleAsync): a code checked
// against a verification or against a user's factors, the hot paths.
constexpr std::string_view kCheckById = "/v1/verifications/{id}/check";
constexpr std::string_view kVerifyUser = "/v1/users/{user}/verify";

// A cheap test that `path` may be `route`: literal prefix and suffix around
// its one parameter. It runs for every request, before the full resolution.
constexpr bool MayBe(std::string_view route, std::string_view path) {
  const std::size_t open = route.find('{');
  const std::size_t close = route.find('}');
  return path.starts_with(route.substr(0, open)) && path.ends_with(route.substr(close + 1));
}

// The path parameter of `route` in `path`, for a path that Resolve matched to
// `route` (a route of one parameter): what lies between its literal prefix and
// suffix, without a second resolution.
std::string HotParam(std::string_view route, std::string_view path) {
  const std::size_t prefix = route.find('{');
  const std::size_t suffix = route.size() - route.find('}') - 1;
  return std::string(path.substr(prefix, path.size() - prefix - suffix));
}

// The POST route of `path` in kRoutes.
const RouteInfo* HotRoute(std::string_view path) {
  for (const RouteInfo& r : kRoutes) {
    if (std::string_view(r.path) == path && std::string_view(r.method) == "POST") return &r;
  }
  return nullptr;
}

// A user id from its (percent-encoded) path segment, if it is a valid one.
std::optional<std::string> UserParam(const std::string& segment) {
  auto user = otp::PercentDecode(segment, false);
  if (!user.ok() || !ValidUserId(*user)) return std::nullopt;
  return std::move(user).value();
}

// The answer to a user id segment that UserParam refuses.
ApiError BadUserParam() {
  return Invalid({{"user", "must be 1..128 characters of A-Za-z0-9._@:-"}});
}

// A code answer of the factor routes: {"valid", ...} or the problem
// (throttled, locked, ...).
HttpResponse FactorCheckResponse(const ApiResult<FactorCheck>& r, bool with_status) {
  if (!r.ok()) return Problem(r.error());
  json body = {{"valid", r->valid}};
  if (with_status) {
    body["status"] = r->status;
  } else if (r->valid) {
    if (!r->factor_id.empty()) body["factor_id"] = r->factor_id;
    body["type"] = r->type;
  }
  return Json(200, body);
}

}  // namespace

bool Api::AcceptsAsync(const HttpRequest& request) const {
  if (request.method != "POST" ||
      !(MayBe(kCheckById, request.path) || MayBe(kVerifyUser, request.path))) {
    return false;
  }
  const Resolved r = Resolve(request);
  return r.route != nullptr && (r.route->path == kCheckById || r.route->path == kVerifyUser);
}

HttpResponse Api::Handle(const HttpRequest& request) {
  if (AcceptsAsync(request)) {
    // The same code as the server's path, waited for here.
    std::promise<std::function<HttpResponse()>> resumed;
    auto finish = resumed.get_future();
    HandleAsync(request,
                [&resumed](std::function<HttpResponse()> f) { resumed.set_value(std::move(f)); });
    return finish.get()();
  }
  const auto started = std::chrono::steady_clock::now();
  Resolved r = Resolve(request);
  HttpResponse response;
  if (r.route == nullptr) {
    response = r.path_known ? Problem(MakeError(ApiCode::kMethodNotAllowed,
                                                request.method + " is not served on this path"))
                            : Problem(MakeError(ApiCode::kNotFound, "no such route"));
  } else {
    try {
      response = Dispatch(request, *r.route, r.params);
    } catch (const std::exception& e) {
      spdlog::error(R"("event":"handler_exception","route":"{}")", r.route->path);
      response = Problem(MakeError(ApiCode::kInternal, "internal error"));
    }
  }
  Record(request.method, r.route, response, started);
  return response;
}

void Api::HandleAsync(const HttpRequest& request, HttpResume resume) {
  const auto started = std::chrono::steady_clock::now();
  // AcceptsAsync resolved the request to one of the two routes already; the
  // two have disjoint prefixes, so the path tells which (and a second Resolve,
  // about 3 % of the I/O thread's work on a check, is saved).
  static const RouteInfo* const check_route = HotRoute(kCheckById);
  static const RouteInfo* const verify_route = HotRoute(kVerifyUser);
  const RouteInfo* route = MayBe(kVerifyUser, request.path) ? verify_route : check_route;
  const std::string param = HotParam(route->path, request.path);
  // Builds the response on the I/O thread, counted and logged like any other.
  auto finish = [this, started, method = request.method, route](HttpResponse res) {
    Record(method, route, res, started);
    return res;
  };
  auto answer = [&resume, &finish](HttpResponse res) {
    resume([res = std::move(res), finish]() mutable { return finish(std::move(res)); });
  };
  try {
    auto authed = Authenticate(request);
    if (!authed.ok()) return answer(Problem(authed.error()));
    const App* app = authed->get();
    if (route == verify_route) return VerifyAsync(request, *app, param, resume, finish);
    if (!ValidId(param)) {
      return answer(Problem(MakeError(ApiCode::kNotFound, "no such verification")));
    }
    auto check = ParseCheck(request, false);
    if (!check.ok()) return answer(Problem(check.error()));
    verifications_.CheckAsync(
        *app, param, check->code, [this, resume, finish](ApiResult<CheckAnswer> a) {
          resume([this, a = std::move(a), finish]() mutable { return finish(CheckResponse(a)); });
        });
  } catch (const std::exception& e) {
    spdlog::error(R"("event":"handler_exception","route":"{}")", route->path);
    answer(Problem(MakeError(ApiCode::kInternal, "internal error")));
  }
}

void Api::VerifyAsync(const HttpRequest& request, const App& app, const std::string& user_param,
                      const HttpResume& resume,
                      const std::function<HttpResponse(HttpResponse)>& finish) {
  auto answer = [&resume, &finish](HttpResponse res) {
    resume([res = std::move(res), finish]() mutable { return finish(std::move(res)); });
  };
  auto user = UserParam(user_param);
  if (!user) return answer(Problem(BadUserParam()));
  auto body = ParseObject(request.body, false);
  if (!body.ok()) return answer(Problem(body.error()));
  Fields f(*body);
  auto code = f.String("code", true, 64);
  auto id = f.String("factor_id", false, 64);
  ApiError e = f.Finish();
  if (!e.ok()) return answer(Problem(e));
  if (id && !ValidId(*id)) return answer(Problem(MakeError(ApiCode::kNotFound, "no such factor")));
  factors_.VerifyAsync(app, *user, *code, id, [resume, finish](ApiResult<FactorCheck> r) {
    resume([r = std::move(r), finish]() mutable { return finish(FactorCheckResponse(r, false)); });
  });
}

void Api::Record(const std::string& method, const RouteInfo* route, const HttpResponse& response,
                 std::chrono::steady_clock::time_point started) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::string_view route_name = route != nullptr ? route->path : "unmatched";
  metrics_.RecordRequest(method, route_name, response.status, seconds);
  if (options_.log_requests) {
    // Probes and scrapes (unauthenticated GETs) log at debug: they are frequent
    // and say nothing; /metrics counts them all the same.
    const bool probe = route != nullptr && !route->authenticated && response.status < 400;
    RequestLogger().log(probe ? spdlog::level::debug : spdlog::level::info,
                        R"("event":"request","method":"{}","route":"{}","status":{},"ms":{:.2f})",
                        route != nullptr ? route->method : "-", route_name, response.status,
                        seconds * 1000);
  }
}

ApiResult<std::shared_ptr<const App>> Api::Authenticate(const HttpRequest& req) {
  const std::string_view auth = req.Header("authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() <= kBearer.size() || auth.substr(0, kBearer.size()) != kBearer) {
    return MakeError(ApiCode::kUnauthorized, "missing Authorization: Bearer <api_key>");
  }
  auto app = apps_.Authenticate(auth.substr(kBearer.size()));
  if (!app.ok()) {
    if (app.status().code() == otp::StatusCode::kNotFound) {
      return MakeError(ApiCode::kUnauthorized, "unknown or revoked API key");
    }
    return FromStoreStatus(app.status());
  }
  if (options_.request_limiter != nullptr) {
    const int wait_s = options_.request_limiter->Admit(**app);
    if (wait_s > 0) {
      metrics_.AbuseGuard("app_rate", "blocked");
      ApiError e = MakeError(ApiCode::kRateLimited, "this app's request rate is exceeded");
      e.retry_after_s = wait_s;
      return e;
    }
  }
  return std::move(app).value();
}

HttpResponse Api::CheckResponse(const ApiResult<CheckAnswer>& answer) {
  if (!answer.ok()) return Problem(answer.error());
  if (answer->valid) metrics_.VerificationApproved(answer->channel);
  // The hottest answer of the API, written directly: building and dumping a
  // json object costs more than the rest of the response. Ids and statuses are
  // otpd's own [A-Za-z0-9_] strings (checked: anything else takes the general path).
  if (!ValidId(answer->id) || !ValidId(answer->status)) {
    return Json(200, {{"id", answer->id},
                      {"status", answer->status},
                      {"valid", answer->valid},
                      {"remaining_checks", answer->remaining_checks}});
  }
  HttpResponse r;
  r.body.reserve(96);
  r.body.append(R"({"id":")").append(answer->id);
  r.body.append(R"(","remaining_checks":)").append(std::to_string(answer->remaining_checks));
  r.body.append(R"(,"status":")").append(answer->status);
  r.body.append(R"(","valid":)").append(answer->valid ? "true" : "false").append("}");
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::Dispatch(const HttpRequest& req, const RouteInfo& route,
                           const std::vector<std::string>& params) {
  const std::string path = route.path;
  if (path == "/healthz") return Json(200, {{"status", "ok"}});
  if (path == "/readyz") {
    Status s = store_.Ping();
    if (!s.ok()) return Problem(MakeError(ApiCode::kUnavailable, "the store is unreachable"));
    return Json(200, {{"status", "ready"}});
  }
  if (path == "/metrics") {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = metrics_.Render();
    return r;
  }
  if (path == "/openapi.json") {
    HttpResponse r;
    r.body = OpenApiDocument();
    return r;
  }
  if (path == "/dev/inbox") {
    if (options_.inbox_path.empty()) return Problem(MakeError(ApiCode::kNotFound, "no such route"));
    return Inbox();
  }

  if (path == "/v1/providers/{name}/dlr") return DeliveryReports(req, params[0]);

  // Everything below needs an app.
  auto authed = Authenticate(req);
  if (!authed.ok()) return Problem(authed.error());
  const App* app = authed->get();
  if (path.starts_with("/v1/users/")) return Factors(req, *app, path, params);
  if (!params.empty() && !ValidId(params[0])) {
    return Problem(MakeError(ApiCode::kNotFound, "no such verification"));
  }

  if (path == "/v1/verifications") {
    auto start = ParseStart(req);
    if (!start.ok()) return Problem(start.error());
    auto answer = verifications_.Start(*app, *start);
    if (!answer.ok()) {
      if (!answer.error().guard.empty()) metrics_.AbuseGuard(answer.error().guard, "blocked");
      return Problem(answer.error());
    }
    for (const std::string& flag : answer->flags) metrics_.AbuseGuard(flag, "flagged");
    HttpResponse r;
    r.status = answer->http_status;
    r.body = answer->body;
    r.headers.emplace_back("Cache-Control", "no-store");
    if (!answer->id.empty()) r.headers.emplace_back("Location", "/v1/verifications/" + answer->id);
    if (!answer->replayed) metrics_.VerificationStarted(answer->channel);
    return r;
  }
  if (path == "/v1/verifications/check") {  // by id: HandleAsync
    auto check = ParseCheck(req, true);
    if (!check.ok()) return Problem(check.error());
    return CheckResponse(verifications_.CheckByRecipient(*app, check->to, check->code));
  }
  ApiResult<Verification> result = MakeError(ApiCode::kInternal, "unreachable");
  if (path == "/v1/verifications/{id}") {
    result = verifications_.Get(*app, params[0]);
  } else if (path == "/v1/verifications/{id}/resend") {
    auto body = ParseObject(req.body, true);
    if (!body.ok()) return Problem(body.error());
    Fields f(*body);
    std::optional<std::string> channel = f.String("channel", false, 16);
    if (channel && !IsKnownChannel(*channel))
      f.Add("channel", "unknown channel '" + *channel + "'");
    ApiError e = f.Finish();
    if (!e.ok()) return Problem(e);
    result = verifications_.Resend(*app, params[0], channel);
  } else if (path == "/v1/verifications/{id}/cancel") {
    auto body = ParseObject(req.body, true);
    if (!body.ok()) return Problem(body.error());
    ApiError e = Fields(*body).Finish();
    if (!e.ok()) return Problem(e);
    result = verifications_.Cancel(*app, params[0]);
  }
  if (!result.ok()) {
    if (!result.error().guard.empty()) metrics_.AbuseGuard(result.error().guard, "blocked");
    return Problem(result.error());
  }
  return Json(200, VerificationJson(*result));
}

HttpResponse Api::Factors(const HttpRequest& req, const App& app, const std::string& path,
                          const std::vector<std::string>& params) {
  // Path segments arrive percent-encoded ("alice%40example.com").
  auto user = UserParam(params[0]);
  if (!user) return Problem(BadUserParam());
  const std::string factor_id = params.size() > 1 ? params[1] : "";
  if (!factor_id.empty() && !ValidId(factor_id)) {
    return Problem(MakeError(ApiCode::kNotFound, "no such factor"));
  }
  auto check_response = &FactorCheckResponse;

  if (path == "/v1/users/{user}/factors" && req.method == "POST") {
    auto body = ParseObject(req.body, false);
    if (!body.ok()) return Problem(body.error());
    Fields f(*body);
    CreateFactorRequest c;
    if (auto type = f.String("type", true, 8)) {
      if (*type != kFactorTotp && *type != kFactorHotp) f.Add("type", "must be totp or hotp");
      c.type = *type;
    }
    c.label = f.String("label", false, 128);
    c.issuer = f.String("issuer", false, 128);
    c.digits = f.Int("digits", 6, 10);
    c.period = f.Int("period", 15, 120);
    c.algorithm = f.String("algorithm", false, 16);
    c.serial = f.String("serial", false, 64);
    ApiError e = f.Finish();
    if (!e.ok()) return Problem(e);
    auto created = factors_.Create(app, *user, c);
    if (!created.ok()) return Problem(created.error());
    json out = FactorJson(created->factor);
    if (!created->secret_base32.empty()) {
      auto svg = QrSvg(created->otpauth_uri);
      if (!svg.ok()) return Problem(MakeError(ApiCode::kInternal, "cannot draw the QR code"));
      out["secret"] = created->secret_base32;
      out["otpauth_uri"] = created->otpauth_uri;
      out["qr_svg"] = *svg;
    }
    HttpResponse r = Json(201, out);
    r.headers.emplace_back(
        "Location", "/v1/users/" + otp::PercentEncode(*user) + "/factors/" + created->factor.id);
    return r;
  }
  if (path == "/v1/users/{user}/factors") {  // GET
    auto list = factors_.List(app, *user);
    if (!list.ok()) return Problem(list.error());
    json items = json::array();
    for (const Factor& f : *list) items.push_back(FactorJson(f));
    return Json(200, {{"factors", std::move(items)}});
  }
  if (path == "/v1/users/{user}/factors/{id}") {  // DELETE
    ApiError e = factors_.Delete(app, *user, factor_id);
    if (!e.ok()) return Problem(e);
    HttpResponse r;
    r.status = 204;
    r.content_type.clear();
    return r;
  }
  if (path == "/v1/users/{user}/factors/{id}/qr.png") {
    // Only while unverified: once active, the secret is never shown again.
    auto f = factors_.Get(app, *user, factor_id);
    if (!f.ok()) return Problem(f.error());
    if (f->status != kFactorUnverified || !f->serial.empty()) {
      return Problem(MakeError(ApiCode::kNotFound, "no QR code: the factor is active"));
    }
    auto uri = factors_.OtpAuthUri(*f);
    if (!uri.ok()) return Problem(uri.error());
    auto png = QrPng(*uri);
    if (!png.ok()) return Problem(MakeError(ApiCode::kInternal, "cannot draw the QR code"));
    HttpResponse r;
    r.content_type = "image/png";
    r.body = std::move(png).value();
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  }
  if (path == "/v1/users/{user}/recovery-codes") {
    auto body = ParseObject(req.body, true);
    if (!body.ok()) return Problem(body.error());
    ApiError e = Fields(*body).Finish();
    if (!e.ok()) return Problem(e);
    auto codes = factors_.IssueRecoveryCodes(app, *user);
    if (!codes.ok()) return Problem(codes.error());
    return Json(201, {{"codes", *codes}});
  }

  auto body = ParseObject(req.body, false);
  if (!body.ok()) return Problem(body.error());
  Fields f(*body);
  if (path == "/v1/users/{user}/factors/{id}/activate") {
    auto code = f.String("code", true, 64);
    ApiError e = f.Finish();
    if (!e.ok()) return Problem(e);
    return check_response(factors_.Activate(app, *user, factor_id, *code), true);
  }
  // The verify route is HandleAsync's; the one left is resync.
  auto code1 = f.String("code1", true, 64);
  auto code2 = f.String("code2", true, 64);
  ApiError e = f.Finish();
  if (!e.ok()) return Problem(e);
  return check_response(factors_.Resync(app, *user, factor_id, *code1, *code2), true);
}

HttpResponse Api::DeliveryReports(const HttpRequest& req, const std::string& name) {
  Provider* provider = providers_ != nullptr ? providers_->ByName(name) : nullptr;
  if (provider == nullptr) return Problem(MakeError(ApiCode::kNotFound, "no such provider"));
  std::string token;
  auto query = otp::ParseForm(req.query);
  if (!query.ok()) return Problem(Invalid({{"token", "bad percent escape in the query"}}));
  for (const auto& [k, v] : *query) {
    if (k == "token") token = v;
  }
  auto reports = provider->impl->ParseHttpReport(token, req.body);
  if (!reports.ok()) {
    switch (reports.status().code()) {
      case otp::StatusCode::kPermissionDenied:
        return Problem(MakeError(ApiCode::kUnauthorized, "missing or wrong dlr token"));
      case otp::StatusCode::kNotFound:
        return Problem(MakeError(ApiCode::kNotFound, "this provider takes no delivery reports"));
      default:
        return Problem(Invalid({{"body", reports.status().message()}}));
    }
  }
  for (DeliveryReport& r : *reports) r.provider = provider->config.name;
  std::size_t matched = 0;
  if (!reports->empty()) {
    auto outcomes = dispatcher_->ApplyReports(*reports);
    if (!outcomes.ok()) return Problem(FromStoreStatus(outcomes.status()));
    for (const ReportOutcome& o : *outcomes) matched += o.matched ? 1 : 0;
  }
  return Json(200, {{"accepted", reports->size()}, {"matched", matched}});
}

HttpResponse Api::Inbox() const {
  // The newest 50 messages of the log provider, newest first. Development only:
  // served only on a loopback listener with a log provider configured.
  std::deque<std::string> lines;
  std::ifstream in(options_.inbox_path);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > 50) lines.pop_front();
  }
  std::string rows;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    json m = json::parse(*it, nullptr, false);
    if (!m.is_object()) continue;
    rows += "<tr><td>" + HtmlEscape(m.value("at", "")) + "</td><td>" +
            HtmlEscape(m.value("channel", "")) + "</td><td>" + HtmlEscape(m.value("to", "")) +
            "</td><td><code>" + HtmlEscape(m.value("code", "")) + "</code></td><td>" +
            HtmlEscape(m.value("text", "")) + "</td><td>" +
            HtmlEscape(m.value("verification_id", "")) + "</td></tr>\n";
  }
  HttpResponse r;
  r.content_type = "text/html; charset=utf-8";
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'none'; style-src 'unsafe-inline'");
  r.body =
      "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" "
      "content=\"5\"><title>otpd dev inbox</title><style>body{font-family:sans-serif;margin:2em}"
      "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
      "code{font-size:1.2em}</style></head><body><h1>otpd dev inbox</h1><p>Messages written by "
      "the <code>log</code> provider to <code>" +
      HtmlEscape(options_.inbox_path) +
      "</code>, newest first (refreshes every 5 s). Development only.</p><table><tr><th>at</th>"
      "<th>channel</th><th>to</th><th>code</th><th>text</th><th>verification</th></tr>\n" +
      rows + "</table></body></html>\n";
  return r;
}

}  // namespace otpd
