// The HTTP/1.1 listener of otpd, on Boost.Beast/Asio.
//
// It owns sockets, parsing, keep-alive, timeouts and limits; everything else is
// a Handler: a plain function from HttpRequest to HttpResponse, so the API can
// be tested without sockets. Handlers run on a pool of blocking worker threads
// (they may wait on the store), never on the I/O threads.
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
  std::size_t max_header_bytes = 16384;
  std::chrono::seconds read_timeout{10};  // whole request (headers + body)
  std::chrono::seconds idle_timeout{60};  // keep-alive wait for the next request
  bool handle_signals = true;             // SIGINT/SIGTERM call Stop()
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
  // Binds and listens; throws std::system_error if the address cannot be bound.
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (useful with port 0).
  std::uint16_t port() const;

  // Serves until Stop() (or a signal): then stops accepting, lets in-flight
  // requests finish (up to a few seconds), closes idle connections and returns.
  void Run();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace otpd
