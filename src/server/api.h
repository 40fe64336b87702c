// The HTTP API of otpd (SPEC §4, §7) as a plain function from request to
// response: routing, authentication, JSON validation, problem+json errors,
// metrics. No sockets here, so every path is unit-testable.
// Thread-safe: Handle may run on many threads at once.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "http/http_server.h"
#include "otp/clock.h"
#include "server/metrics.h"
#include "service/apps.h"
#include "service/channel.h"
#include "service/dispatcher.h"
#include "service/factors.h"
#include "service/limits.h"
#include "service/verifications.h"

namespace otpd {

struct RouteInfo {
  const char* method;
  const char* path;  // OpenAPI style: "/v1/verifications/{id}"
  bool authenticated;
};

struct ApiOptions {
  std::string inbox_path;  // the log provider's file when /dev/inbox is served; "" = off
  bool log_requests = true;
  // Admits each authenticated request against its app's request rate; null = no per-app rate.
  RequestLimiter* request_limiter = nullptr;
};

class Api {
 public:
  Api(Store& store, AppService& apps, VerificationService& verifications, FactorService& factors,
      Metrics& metrics, ApiOptions options);

  HttpResponse Handle(const HttpRequest& request);

  // The requests HandleAsync answers (a check by id and a user's verify, the
  // hot paths): the server hands them to HandleAsync on its I/O thread instead
  // of a worker.
  bool AcceptsAsync(const HttpRequest& request) const;
  // Answers through `resume` once the store has committed; no thread waits.
  // Handle() answers the same requests through this, waiting for it.
  void HandleAsync(const HttpRequest& request, HttpResume resume);

  // Serves POST /v1/providers/{name}/dlr: reports parsed by the named provider
  // and applied by the dispatcher before the answer. Off (404) until called.
  void ServeDeliveryReports(ProviderSet& providers, Dispatcher& dispatcher);

  // Every route the API serves (checked against docs/openapi.json by a test).
  static const std::vector<RouteInfo>& Routes();

 private:
  HttpResponse Dispatch(const HttpRequest& request, const RouteInfo& route,
                        const std::vector<std::string>& params);
  HttpResponse Inbox() const;
  // The app of the request's bearer key, admitted by the per-app request rate.
  ApiResult<std::shared_ptr<const App>> Authenticate(const HttpRequest& request);
  HttpResponse CheckResponse(const ApiResult<CheckAnswer>& answer);
  // POST /v1/users/{user}/verify for HandleAsync: answers through `resume`,
  // the response passing through `finish` (counted and logged).
  void VerifyAsync(const HttpRequest& request, const App& app, const std::string& user_param,
                   const HttpResume& resume,
                   const std::function<HttpResponse(HttpResponse)>& finish);
  // Counts and logs one answered request.
  void Record(const std::string& method, const RouteInfo* route, const HttpResponse& response,
              std::chrono::steady_clock::time_point started);
  HttpResponse DeliveryReports(const HttpRequest& request, const std::string& provider);
  // The /v1/users/{user}/... routes (SPEC §4.2).
  HttpResponse Factors(const HttpRequest& request, const App& app, const std::string& path,
                       const std::vector<std::string>& params);

  Store& store_;
  AppService& apps_;
  VerificationService& verifications_;
  FactorService& factors_;
  Metrics& metrics_;
  ApiOptions options_;
  ProviderSet* providers_ = nullptr;
  Dispatcher* dispatcher_ = nullptr;
};

// The OpenAPI document served at /openapi.json (embedded at build time).
const std::string& OpenApiDocument();

}  // namespace otpd
