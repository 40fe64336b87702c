// The HTTP/1.1 listener of otpd, on Boost.Beast/Asio.
//
// It owns sockets, TLS, parsing, keep-alive, timeouts and limits; everything
// else is a Handler: a plain function from HttpRequest to HttpResponse, so the
// API can be tested without sockets. Handlers run on a pool of blocking worker
// threads (they may wait on the store), never on the I/O threads.
//
// Requests the server refuses itself, as application/problem+json:
//   body over max_body_bytes               413 payload_too_large
//   head over max_header_bytes             431 invalid_request
//   more than max_header_count fields      431 invalid_request
//   request-target over max_target_bytes   414 invalid_request
//   unparsable HTTP                        400 invalid_request
//   past max_connections (plain HTTP)      503 unavailable, Retry-After: 1
// A client too slow for a deadline is disconnected without an answer.
//
// Thread-safety: Run() blocks the calling thread; Stop() may be called from any
// thread or a signal handler context via the io_context (it is async-safe in the
// Asio sense: it posts).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "otp/status.h"

namespace otpd {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: "/v1/x?y=1"
  std::string path;    // target before '?', not percent-decoded
  std::string query;   // target after '?', may be empty
  // Header names lower-cased, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote_address;  // peer IP as text

  // The first header named `name` (lower-case), or "" if absent. Inline, so
  // that the Api (and its fuzz target) use requests without the server library.
  std::string_view Header(std::string_view name) const {
    for (const auto& [key, value] : headers) {
      if (key == name) return value;
    }
    return {};
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// For handlers that answer without holding a thread (they hand work to
// another thread and are called back): call it exactly once, from any thread,
// with a function that builds the response; that function runs on the
// connection's I/O thread.
using HttpResume = std::function<void(std::function<HttpResponse()> finish)>;
using AsyncHttpHandler = std::function<void(const HttpRequest&, HttpResume resume)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0 = pick a free port (see HttpServer::port())
  int io_threads = 0;         // 0 = one per core
  int handler_threads = 64;   // blocking workers for the handler
  std::size_t max_body_bytes = 65536;
  std::size_t max_header_bytes = 16384;  // request line + header fields
  std::size_t max_header_count = 100;    // header fields in one request
  std::size_t max_target_bytes = 8192;   // the request-target ("/v1/...?...")
  // Open connections at most. Past it a new connection is answered 503 at once
  // and closed (plain HTTP) or closed without a handshake (TLS).
  std::size_t max_connections = 10000;
  // The request head must arrive within read_timeout of its first byte; on a
  // new connection the first byte (and the TLS handshake) within read_timeout
  // too. Also the limit for writing one response.
  std::chrono::seconds read_timeout{10};
  std::chrono::seconds body_timeout{10};  // the body, from the end of the head
  std::chrono::seconds idle_timeout{60};  // keep-alive wait for the next request
  // TLS: when both are set (PEM files) the listener speaks TLS 1.2 and 1.3 only,
  // ECDHE with AES-GCM or ChaCha20-Poly1305, no compression, no renegotiation.
  std::string tls_cert_file;  // the certificate chain, leaf first
  std::string tls_key_file;
  // Called after each SIGHUP reload of the TLS files (on an I/O thread): OK, or
  // why the files were refused (the previous certificate stays in use).
  std::function<void(const otp::Status&)> on_tls_reload;
  bool handle_signals = true;  // SIGINT/SIGTERM call Stop(); SIGHUP calls ReloadTls()
  // Requests for which this returns true run on the I/O thread itself, not the
  // worker pool: only for answers that never block (health checks).
  std::function<bool(const HttpRequest&)> run_inline;
  // Requests for which `async_accepts` returns true go to `async_handler` on
  // the I/O thread, which must not block: it answers through its HttpResume.
  std::function<bool(const HttpRequest&)> async_accepts;
  AsyncHttpHandler async_handler;
};

class HttpServer {
 public:
  // Binds and listens; throws std::system_error if the address cannot be bound,
  // std::invalid_argument if the TLS files are half set or cannot be used.
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (useful with port 0).
  std::uint16_t port() const;
  // True when the listener speaks TLS.
  bool tls() const;

  // Loads the TLS files again; new connections use them, open ones keep the
  // certificate they started with. On an error the old files stay in use and
  // the status says why. FailedPrecondition when TLS is off. Thread-safe.
  otp::Status ReloadTls();

  // Serves until Stop() (or a signal): then stops accepting, lets in-flight
  // requests finish (up to a few seconds), closes idle connections and returns.
  void Run();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace otpd
