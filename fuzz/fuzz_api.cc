// Fuzz target: the HTTP API as the plain request handler (otpd::Api::Handle),
// with the in-memory store, so every route's JSON parsing and validation and
// the service code behind it see the fuzzer's requests.
//
// Each input is one request, written like HTTP/1.1 without the version:
//
//   POST /v1/verifications
//   authorization: Bearer $KEY
//   idempotency-key: k1
//
//   {"to":"+306912345678"}
//
// (first line "METHOD TARGET", then "name: value" header lines, a blank line,
// and the body). Placeholders are replaced before the request is handled, so
// the corpus can reach the authenticated and stateful paths: $KEY (the app's API
// key), $VID and $CODE (a pending SMS verification and its code), $MSGID (the
// provider message id of its send, for delivery reports), $FID (an unverified
// TOTP factor of user "alice") and $TOTP (its current code).
//
// Every input runs against a fresh store, clock and seeded randomness, so a
// crash reproduces from its input alone. After the request, the dispatcher
// runs once (so a started verification's message is rendered and sent).
//
// Properties beyond "no crash, no leak, no UB":
//  - the answer is well formed: a status in 200..499 (500 means an exception
//    reached the edge), a JSON body for JSON content types, problem+json with
//    type/title/status/code/detail on errors;
//  - secrets never leak: the verification code, the API key and the factor's
//    secret appear in no answer unless the request itself carried them
//    (SECURITY.md: codes and secrets never in responses).
#include <spdlog/spdlog.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/test_util.h"
#include "otp/base32.h"
#include "otp/percent.h"
#include "otp/totp.h"
#include "server/api.h"
#include "service/dispatcher.h"
#include "store/memory/memory_store.h"

namespace otpd {
namespace {

using nlohmann::json;

// Carries every channel; records sends; takes delivery reports as the form
// "id=…&status=…" with ?token=t0k (like a provider with an HTTP webhook).
class FuzzProvider : public ChannelProvider {
 public:
  otp::Result<SendReceipt> Send(const OutboundMessage& message) override {
    std::lock_guard lock(mu_);
    sent_.push_back(message);
    return SendReceipt{"msg-" + std::to_string(sent_.size())};
  }
  otp::Result<std::vector<DeliveryReport>> ParseHttpReport(std::string_view token,
                                                           std::string_view body) override {
    if (token != "t0k") return otp::PermissionDenied("wrong token");
    auto form = otp::ParseForm(body);
    if (!form.ok()) return form.status();
    DeliveryReport r;
    for (const auto& [k, v] : *form) {
      if (k == "id") r.provider_message_id = v;
      if (k == "status") r.status = v;
    }
    if (r.provider_message_id.empty()) return otp::InvalidArgument("no id");
    return std::vector<DeliveryReport>{r};
  }
  std::vector<OutboundMessage> Sent() {
    std::lock_guard lock(mu_);
    return sent_;
  }

 private:
  std::mutex mu_;
  std::vector<OutboundMessage> sent_;
};

// One otpd in memory: what otpd_main wires, with fakes for time and randomness.
struct World {
  otp::FakeClock clock{1'700'000'000};
  otp::testing::SeededRandom random{42};
  std::unique_ptr<Store> store = NewMemoryStore();
  Secrets secrets{MasterKey{7}};
  ChannelRegistry registry;
  std::unique_ptr<ProviderSet> providers;
  FuzzProvider* provider = nullptr;
  std::unique_ptr<AppService> apps;
  Metrics metrics;
  std::unique_ptr<VerificationService> verifications;
  std::unique_ptr<FactorService> factors;
  std::unique_ptr<Dispatcher> dispatcher;
  std::unique_ptr<Api> api;

  // Placeholder values.
  std::string key, vid, code, msgid, fid, totp, factor_secret;

  World() {
    registry.Register("fuzz",
                      [this](const ProviderConfig&,
                             ProviderContext&) -> otp::Result<std::unique_ptr<ChannelProvider>> {
                        auto p = std::make_unique<FuzzProvider>();
                        provider = p.get();
                        return std::unique_ptr<ChannelProvider>(std::move(p));
                      });
    ProviderConfig config{"fuzz", "fuzz", {"sms", "email", "whatsapp", "voice", "viber"}, {}};
    auto set = ProviderSet::Create({config}, registry, clock);
    if (!set.ok()) std::abort();
    providers = std::make_unique<ProviderSet>(std::move(set).value());
    apps = std::make_unique<AppService>(*store, clock, random);
    verifications =
        std::make_unique<VerificationService>(*store, *providers, secrets, clock, random);
    factors = std::make_unique<FactorService>(*store, secrets, clock, random);
    dispatcher = std::make_unique<Dispatcher>(*store, *providers, secrets, clock, &metrics);
    ApiOptions options;
    options.log_requests = false;
    api = std::make_unique<Api>(*store, *apps, *verifications, *factors, metrics, options);
    api->ServeDeliveryReports(*providers, *dispatcher);

    auto app = apps->Create("fuzz", AppSettings{});
    if (!app.ok()) std::abort();
    key = app->api_key;
    StartRequest start;
    start.to = "+306912345678";
    auto started = verifications->Start(app->app, start);
    if (!started.ok()) std::abort();
    vid = started->id;
    dispatcher->RunOnce();
    const auto sent = provider->Sent();
    if (sent.size() != 1) std::abort();
    code = sent[0].code;
    msgid = "msg-1";

    CreateFactorRequest totp_factor;
    totp_factor.type = kFactorTotp;
    auto factor = factors->Create(app->app, "alice", totp_factor);
    if (!factor.ok()) std::abort();
    fid = factor->factor.id;
    factor_secret = factor->secret_base32;
    auto secret = otp::Base32Decode(factor_secret);
    auto hotp_key = otp::HotpKey::Create(*secret, otp::HashAlgorithm::kSha1);
    if (!secret.ok() || !hotp_key.ok()) std::abort();
    totp = otp::TotpGenerate(*hotp_key, otp::ToUnixSeconds(clock.Now()), otp::TotpParams{});
  }
};

void Replace(std::string& s, std::string_view from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The request an input stands for (see the top of this file).
HttpRequest ParseInput(std::string_view input) {
  HttpRequest r;
  auto line_end = input.find('\n');
  const std::string_view first = input.substr(0, line_end);
  input = line_end == std::string_view::npos ? std::string_view() : input.substr(line_end + 1);
  const auto space = first.find(' ');
  r.method = std::string(first.substr(0, space));
  r.target = space == std::string_view::npos ? "" : std::string(first.substr(space + 1));
  const auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  r.query = q == std::string::npos ? "" : r.target.substr(q + 1);
  while (!input.empty()) {
    line_end = input.find('\n');
    const std::string_view line = input.substr(0, line_end);
    input = line_end == std::string_view::npos ? std::string_view() : input.substr(line_end + 1);
    if (line.empty()) break;
    const auto colon = line.find(':');
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    r.headers.emplace_back(ToLower(line.substr(0, colon)), std::string(value));
  }
  r.body = std::string(input);
  r.remote_address = "127.0.0.1";
  return r;
}

bool Mentions(const HttpRequest& r, const std::string& secret) {
  if (r.method.find(secret) != std::string::npos || r.target.find(secret) != std::string::npos ||
      r.body.find(secret) != std::string::npos) {
    return true;
  }
  for (const auto& [name, value] : r.headers) {
    if (name.find(secret) != std::string::npos || value.find(secret) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Prints the answer that broke a property, then aborts (the crash report then
// says what was wrong, not only where).
[[noreturn]] void Fail(const char* what, const HttpResponse& response) {
  std::fprintf(stderr, "fuzz_api: %s: status %d, body %s\n", what, response.status,
               response.body.c_str());
  std::abort();
}

// Every key and string/number value in `j`, unescaped, one per line.
void AppendValues(const json& j, std::string& out) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      out += key + "\n";
      AppendValues(value, out);
    }
  } else if (j.is_array()) {
    for (const auto& value : j) AppendValues(value, out);
  } else if (j.is_string()) {
    out += j.get<std::string>() + "\n";
  } else {
    out += j.dump() + "\n";
  }
}

void CheckResponse(const HttpRequest& request, const HttpResponse& response, const World& w) {
  if (response.status < 200 || response.status > 499) Fail("status out of range", response);
  const bool problem = response.content_type == "application/problem+json";
  if (problem || response.content_type == "application/json") {
    json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded() || !body.is_object()) Fail("body is not a JSON object", response);
    if (problem) {
      for (const char* field : {"type", "title", "status", "code", "detail"}) {
        if (!body.contains(field)) Fail("problem without a field", response);
      }
      if (!body["code"].is_string()) Fail("problem code not a string", response);
    }
  }
  if (response.status >= 400 && !problem) Fail("error not problem+json", response);
  // A JSON answer is searched value by value, unescaped: its escapes are not
  // the answer's content ("\u0000" then "18565" holds "018565" as text only).
  // A new factor's QR code is an SVG full of digits: a six-digit code may occur
  // in it by chance, so it is left out of the search.
  std::string all = response.body;
  if (json body = json::parse(response.body, nullptr, false); body.is_object()) {
    body.erase("qr_svg");
    all.clear();
    AppendValues(body, all);
  }
  for (const auto& [name, value] : response.headers) all += "\n" + name + ": " + value;
  for (const std::string* secret : {&w.code, &w.key, &w.factor_secret}) {
    if (all.find(*secret) != std::string::npos && !Mentions(request, *secret)) {
      Fail("a secret in the answer", response);
    }
  }
}

}  // namespace
}  // namespace otpd

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace otpd;
  World w;
  std::string input(reinterpret_cast<const char*>(data), size);
  Replace(input, "$KEY", w.key);
  Replace(input, "$VID", w.vid);
  Replace(input, "$CODE", w.code);
  Replace(input, "$MSGID", w.msgid);
  Replace(input, "$FID", w.fid);
  Replace(input, "$TOTP", w.totp);
  const HttpRequest request = ParseInput(input);
  const HttpResponse response = w.api->Handle(request);
  CheckResponse(request, response, w);
  w.dispatcher->RunOnce();
  return 0;
}
