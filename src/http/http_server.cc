// The HTTP/1.1 listener of otpd: one coroutine per connection, each on one of
// the I/O threads' contexts (a context per thread, so no strands); handlers run
// on a separate thread pool and the connection resumes on its context when the
// handler is done. The connection code is a template on the
// stream: plain TCP (the benchmarked path) and TLS share it, with no TLS cost
// on the plain path.
#include "http/http_server.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including
// <utility>; it must come before any Asio header.
#include <pthread.h>

#include <utility>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <csignal>
#include <cstddef>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/ssl.h>

namespace otpd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// How long Stop() waits for in-flight requests before closing everything.
constexpr std::chrono::milliseconds kDrainTimeout{5000};
// After forcibly closing sockets, how long to wait for handlers to return.
constexpr std::chrono::milliseconds kForceGrace{500};
constexpr std::chrono::milliseconds kStopPoll{10};
// Lingering close after an error response: read and discard what the client
// still sends, so that closing does not reset the connection before the client
// has read the response.
constexpr std::chrono::milliseconds kLingerTimeout{1000};
constexpr std::size_t kLingerMaxBytes = 1 << 20;
constexpr std::size_t kReadChunk = 4096;

std::string Problem(int status, std::string_view title, std::string_view code,
                    std::string_view detail) {
  // All strings are fixed by the server: nothing to escape.
  std::string out;
  out.reserve(128);
  out += R"({"type":"about:blank","title":")";
  out += title;
  out += R"(","status":)";
  out += std::to_string(status);
  out += R"(,"code":")";
  out += code;
  out += R"(","detail":")";
  out += detail;
  out += R"("})";
  return out;
}

HttpResponse ProblemResponse(int status, std::string_view title, std::string_view code,
                             std::string_view detail) {
  HttpResponse res;
  res.status = status;
  res.content_type = "application/problem+json";
  res.body = Problem(status, title, code, detail);
  return res;
}

HttpResponse InternalError() {
  return ProblemResponse(500, "Internal Server Error", "internal", "internal server error");
}

// ASCII only, as header names are (and without a libc call per character:
// every header name of every request passes here).
std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c <= 32 || c >= 127 || c == ':') return false;
  }
  return true;
}

std::system_error ToSystemError(const error_code& ec, const std::string& what) {
  return std::system_error(static_cast<std::error_code>(ec), what);
}

bool IsParseError(const error_code& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_target).category()) return false;
  // These mean the peer went away (or has not finished), not that it is broken.
  return ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more && ec != http::error::need_buffer;
}

// Runs `fn` on `pool` and completes, with its result, on the completion
// handler's associated executor (the connection's I/O context).
template <typename Fn, typename Token>
auto AsyncRunOnPool(asio::thread_pool& pool, Fn fn, Token&& token) {
  return asio::async_initiate<Token, void(HttpResponse)>(
      [&pool](auto completion, Fn f) {
        // Keep the I/O context alive while the handler runs.
        auto work = asio::prefer(asio::get_associated_executor(completion),
                                 asio::execution::outstanding_work.tracked);
        asio::post(pool, [completion = std::move(completion), work = std::move(work),
                          f = std::move(f)]() mutable {
          HttpResponse res = f();
          auto ex = work;
          asio::post(ex, [completion = std::move(completion), res = std::move(res)]() mutable {
            std::move(completion)(std::move(res));
          });
        });
      },
      token, std::move(fn));
}

// Runs `handler`, which answers through an HttpResume from any thread; the
// finishing function then runs, and the operation completes, on the completion
// handler's associated executor (the connection's I/O context).
template <typename Token>
auto AsyncViaResume(const AsyncHttpHandler& handler, const HttpRequest& req, Token&& token) {
  return asio::async_initiate<Token, void(HttpResponse)>(
      [&handler, &req](auto completion) {
        auto work = asio::prefer(asio::get_associated_executor(completion),
                                 asio::execution::outstanding_work.tracked);
        // HttpResume is copyable; the completion handler is move-only.
        auto shared = std::make_shared<decltype(completion)>(std::move(completion));
        HttpResume resume = [shared, work](std::function<HttpResponse()> finish) {
          asio::post(work, [shared, finish = std::move(finish)]() mutable {
            HttpResponse res;
            try {
              res = finish();
            } catch (...) {
              res = InternalError();
            }
            std::move (*shared)(std::move(res));
          });
        };
        try {
          handler(req, resume);
        } catch (...) {
          resume([] { return InternalError(); });
        }
      },
      token);
}

// TLS 1.2 suites allowed: forward-secret (ECDHE) with an AEAD cipher only.
// TLS 1.3 suites (OpenSSL's defaults) are all AEAD and forward-secret.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// A server context for `cert_file` and `key_file`, or why they cannot serve.
otp::Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const std::string& cert_file,
                                                                const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    return otp::Internal("TLS: cannot restrict protocol versions and ciphers");
  }
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression |
                   asio::ssl::context::single_dh_use);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  error_code ec;
  if (ctx->use_certificate_chain_file(cert_file, ec)) {
    return otp::InvalidArgument("TLS certificate " + cert_file + ": " + ec.message());
  }
  if (ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec)) {
    return otp::InvalidArgument("TLS key " + key_file + ": " + ec.message());
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    return otp::InvalidArgument("TLS key " + key_file + " does not match the certificate " +
                                cert_file);
  }
  return ctx;
}

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

}  // namespace

struct HttpServer::Impl {
  // What the registry and Stop() see of a connection, whatever its stream.
  struct ConnBase {
    virtual ~ConnBase() = default;
    virtual asio::any_io_executor executor() = 0;
    virtual tcp::socket& socket() = 0;
    std::string remote_address;
    bool idle = true;  // waiting for the first byte of a request; its I/O thread only
  };

  template <typename Stream>
  struct Conn final : ConnBase {
    explicit Conn(tcp::socket socket) : stream(std::move(socket)) {}
    Conn(tcp::socket socket, std::shared_ptr<asio::ssl::context> context)
        : stream(std::move(socket), *context), tls_context(std::move(context)) {}
    asio::any_io_executor executor() override { return stream.get_executor(); }
    tcp::socket& socket() override { return beast::get_lowest_layer(stream).socket(); }
    Stream stream;
    std::shared_ptr<asio::ssl::context> tls_context;  // TLS only: outlives the stream's SSL
  };

  Impl(HttpServerOptions opts, HttpHandler h)
      : options(std::move(opts)),
        handler(std::move(h)),
        contexts(MakeContexts(options.io_threads)),
        control(asio::make_strand(*contexts[0])),
        acceptor(control),
        signals(control),
        pool(static_cast<std::size_t>(std::max(1, options.handler_threads))) {
    if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
      throw std::invalid_argument("TLS needs both a certificate and a key file");
    }
    if (!options.tls_cert_file.empty()) {
      auto context = MakeTlsContext(options.tls_cert_file, options.tls_key_file);
      if (!context.ok()) throw std::invalid_argument(context.status().message());
      tls_context = std::move(context).value();
    }
  }

  bool Tls() const { return !options.tls_cert_file.empty(); }

  std::shared_ptr<asio::ssl::context> CurrentTlsContext() {
    std::lock_guard lock(tls_mu);
    return tls_context;
  }

  otp::Status ReloadTls() {
    if (!Tls()) return otp::FailedPrecondition("TLS is not configured");
    auto context = MakeTlsContext(options.tls_cert_file, options.tls_key_file);
    if (!context.ok()) return context.status();
    std::lock_guard lock(tls_mu);
    tls_context = std::move(context).value();
    return otp::Status::Ok();
  }

  ~Impl() {
    // No handler may run once the objects it reaches (strands, sockets) are gone.
    pool.join();
  }

  void Bind() {
    error_code ec;
    tcp::endpoint endpoint;
    auto address = asio::ip::make_address(options.host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, options.port);
    } else {
      tcp::resolver resolver(*contexts[0]);
      auto results =
          resolver.resolve(options.host, std::to_string(options.port), tcp::resolver::passive, ec);
      if (ec) throw ToSystemError(ec, "cannot resolve " + options.host);
      if (results.empty()) {
        throw std::system_error(std::make_error_code(std::errc::address_not_available),
                                "cannot resolve " + options.host);
      }
      endpoint = results.begin()->endpoint();
    }
    const std::string where = options.host + ":" + std::to_string(options.port);
    if (acceptor.open(endpoint.protocol(), ec)) throw ToSystemError(ec, "socket " + where);
    if (acceptor.set_option(asio::socket_base::reuse_address(true), ec)) {
      throw ToSystemError(ec, "SO_REUSEADDR " + where);
    }
    if (acceptor.bind(endpoint, ec)) throw ToSystemError(ec, "bind " + where);
    if (acceptor.listen(asio::socket_base::max_listen_connections, ec)) {
      throw ToSystemError(ec, "listen " + where);
    }
    bound_port = acceptor.local_endpoint().port();
  }

  void Start() {
    asio::co_spawn(control, AcceptLoop(), asio::detached);
    if (options.handle_signals) {
      signals.add(SIGINT);
      signals.add(SIGTERM);
      signals.add(SIGHUP);
      WaitForSignal();
    }
  }

  void WaitForSignal() {
    signals.async_wait([this](const error_code& ec, int signo) {
      if (ec) return;
      if (signo != SIGHUP) {
        BeginStop();
        return;
      }
      const otp::Status reloaded = ReloadTls();
      if (options.on_tls_reload) options.on_tls_reload(reloaded);
      WaitForSignal();
    });
  }

  // ---- connection registry -------------------------------------------------

  // Registers `conn`; 0 when max_connections are open already.
  std::uint64_t Register(const std::shared_ptr<ConnBase>& conn) {
    std::lock_guard lock(mu);
    if (conns.size() >= options.max_connections) return 0;
    const std::uint64_t id = ++next_id;
    conns.emplace(id, conn);
    return id;
  }

  void Unregister(std::uint64_t id) {
    std::lock_guard lock(mu);
    conns.erase(id);
  }

  bool NoConnections() {
    std::lock_guard lock(mu);
    return conns.empty();
  }

  // Closes connections (only idle ones unless `all`), each on its own I/O thread.
  void CloseConnections(bool all) {
    std::vector<std::shared_ptr<ConnBase>> live;
    {
      std::lock_guard lock(mu);
      for (auto& [id, weak] : conns) {
        if (auto conn = weak.lock()) live.push_back(std::move(conn));
      }
    }
    for (auto& conn : live) {
      auto ex = conn->executor();
      asio::post(ex, [conn, all] {
        if (all || conn->idle) {
          error_code ignored;
          conn->socket().shutdown(tcp::socket::shutdown_both, ignored);
          conn->socket().close(ignored);
        }
      });
    }
  }

  // ---- stop --------------------------------------------------------------

  // Runs on the control strand.
  void BeginStop() {
    if (stopping.exchange(true)) return;
    error_code ignored;
    acceptor.close(ignored);
    signals.cancel(ignored);
    asio::co_spawn(control, DrainAndStop(), asio::detached);
  }

  asio::awaitable<void> DrainAndStop() {
    asio::steady_timer timer(control);
    error_code ec;
    CloseConnections(false);
    auto deadline = std::chrono::steady_clock::now() + kDrainTimeout;
    while (!NoConnections() && std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(kStopPoll);
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    ReleaseContexts();
    if (NoConnections()) co_return;  // the I/O contexts run out of work
    CloseConnections(true);
    deadline = std::chrono::steady_clock::now() + kForceGrace;
    while (!NoConnections() && std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(kStopPoll);
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    // A handler is still busy: give up on it. Its completion is discarded.
    if (!NoConnections()) {
      for (auto& context : contexts) context->stop();
    }
  }

  // ---- accept ------------------------------------------------------------

  asio::awaitable<void> AcceptLoop() {
    asio::steady_timer backoff(control);
    for (;;) {
      error_code ec;
      tcp::socket socket =
          co_await acceptor.async_accept(asio::any_io_executor(NextContext().get_executor()),
                                         asio::redirect_error(asio::use_awaitable, ec));
      if (stopping) co_return;
      if (ec) {
        if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
        // E.g. EMFILE: do not spin.
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto remote = socket.remote_endpoint(ignored);
      if (Tls()) {
        Open(std::make_shared<Conn<TlsStream>>(std::move(socket), CurrentTlsContext()), remote);
      } else {
        Open(std::make_shared<Conn<PlainStream>>(std::move(socket)), remote);
      }
    }
  }

  // Serves a new connection, or refuses it past max_connections.
  template <typename Stream>
  void Open(std::shared_ptr<Conn<Stream>> conn, const tcp::endpoint& remote) {
    conn->remote_address = remote.address().to_string();
    const std::uint64_t id = Register(conn);
    auto ex = conn->stream.get_executor();  // before the moves below
    if (id == 0) {
      asio::co_spawn(ex, Refuse(std::move(conn)), asio::detached);
      return;
    }
    asio::co_spawn(ex, Session(std::move(conn), id), asio::detached);
  }

  // A connection past max_connections: a plain one is told so (503) and closed;
  // a TLS one is closed at once, before the handshake would cost anything.
  template <typename Stream>
  asio::awaitable<void> Refuse(std::shared_ptr<Conn<Stream>> conn) {
    if constexpr (std::is_same_v<Stream, PlainStream>) {
      HttpResponse res = ProblemResponse(503, "Service Unavailable", "unavailable",
                                         "too many open connections; try again");
      res.headers.emplace_back("Retry-After", "1");
      co_await Fail(*conn, 11, std::move(res));
    }
    error_code ignored;
    conn->socket().shutdown(tcp::socket::shutdown_both, ignored);
    conn->socket().close(ignored);
  }

  // ---- one connection ------------------------------------------------------

  // Runs the handler on a worker thread; exceptions become a bare 500.
  struct HandlerJob {
    Impl* impl;
    HttpRequest req;
    HttpResponse operator()() const {
      try {
        return impl->handler(req);
      } catch (...) {
        return InternalError();
      }
    }
  };

  struct Unregisterer {
    Impl* impl;
    std::uint64_t id;
    ~Unregisterer() { impl->Unregister(id); }
  };

  template <typename Stream>
  asio::awaitable<void> Session(std::shared_ptr<Conn<Stream>> conn, std::uint64_t id) {
    Unregisterer unregister{this, id};
    try {
      if constexpr (std::is_same_v<Stream, TlsStream>) {
        error_code ec;
        beast::get_lowest_layer(conn->stream).expires_after(options.read_timeout);
        co_await conn->stream.async_handshake(asio::ssl::stream_base::server,
                                              asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) co_await Serve(*conn);
      } else {
        co_await Serve(*conn);
      }
    } catch (const std::exception&) {
      // Never let a connection take the server down.
    }
    error_code ignored;
    conn->socket().shutdown(tcp::socket::shutdown_both, ignored);
    conn->socket().close(ignored);
  }

  // Ends a TLS connection after its last response: a close_notify, waiting
  // briefly for the peer's.
  asio::awaitable<void> ShutdownSend(Conn<TlsStream>& conn) {
    error_code ec;
    beast::get_lowest_layer(conn.stream).expires_after(kLingerTimeout);
    co_await conn.stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
  }

  // Why a request whose head has been read is refused before its body, if it is.
  std::optional<HttpResponse> HeadProblem(const http::request<http::string_body>& msg) const {
    if (msg.target().size() > options.max_target_bytes) {
      return TargetTooLong();
    }
    std::size_t fields = 0;
    for (auto it = msg.begin(); it != msg.end(); ++it) {
      if (++fields > options.max_header_count) {
        return ProblemResponse(
            431, "Request Header Fields Too Large", "invalid_request",
            "more than " + std::to_string(options.max_header_count) + " header fields");
      }
    }
    return std::nullopt;
  }

  HttpResponse TargetTooLong() const {
    return ProblemResponse(
        414, "URI Too Long", "invalid_request",
        "request target exceeds " + std::to_string(options.max_target_bytes) + " bytes");
  }

  template <typename Stream>
  asio::awaitable<void> Serve(Conn<Stream>& conn) {
    beast::flat_buffer buffer;
    bool first = true;
    for (;;) {
      error_code ec;
      // Wait for the first byte of the next request (idle).
      if (buffer.size() == 0) {
        conn.idle = true;
        if (stopping) co_return;
        beast::get_lowest_layer(conn.stream)
            .expires_after(first ? options.read_timeout : options.idle_timeout);
        const std::size_t n = co_await conn.stream.async_read_some(
            buffer.prepare(kReadChunk), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;  // closed, timed out or cancelled by Stop()
        buffer.commit(n);
      }
      conn.idle = false;
      first = false;

      // The request head must arrive within read_timeout, the body within
      // body_timeout after it.
      beast::get_lowest_layer(conn.stream).expires_after(options.read_timeout);
      http::request_parser<http::string_body> parser;
      parser.header_limit(
          static_cast<std::uint32_t>(std::min<std::size_t>(options.max_header_bytes, UINT32_MAX)));
      parser.body_limit(options.max_body_bytes);
      parser.eager(true);

      // Parse what is already buffered first: a small request usually arrives
      // whole in one segment, and then no further asynchronous read is needed.
      buffer.consume(parser.put(buffer.data(), ec));
      if (ec == http::error::need_more) ec = {};
      if (!ec && !parser.is_header_done()) {
        co_await http::async_read_header(conn.stream, buffer, parser,
                                         asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec) {
        // Checked before the body is read (or answered, when it is all here).
        std::optional<HttpResponse> problem = HeadProblem(parser.get());
        if (problem) {
          co_await Fail(conn, parser.get().version(), std::move(*problem));
          co_return;
        }
      }
      if (!ec && !parser.is_done()) {
        beast::get_lowest_layer(conn.stream).expires_after(options.body_timeout);
        if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
          http::response<http::empty_body> cont{http::status::continue_, parser.get().version()};
          co_await http::async_write(conn.stream, cont,
                                     asio::redirect_error(asio::use_awaitable, ec));
          if (ec) co_return;
        }
        co_await http::async_read(conn.stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        std::optional<HttpResponse> problem = ProblemFor(ec, parser.get());
        if (problem) {
          const unsigned version = ec == http::error::body_limit ? parser.get().version() : 11;
          co_await Fail(conn, version, std::move(*problem));
        }
        co_return;  // timeouts, resets, EOF: just close
      }

      auto& msg = parser.get();
      const unsigned version = msg.version();
      const bool keep_alive = msg.keep_alive();

      HttpRequest req;
      req.method = std::string(msg.method_string());
      req.target = std::string(msg.target());
      if (auto q = req.target.find('?'); q != std::string::npos) {
        req.path = req.target.substr(0, q);
        req.query = req.target.substr(q + 1);
      } else {
        req.path = req.target;
      }
      req.headers.reserve(static_cast<std::size_t>(std::distance(msg.begin(), msg.end())));
      for (const auto& field : msg) {
        req.headers.emplace_back(Lower({field.name_string().data(), field.name_string().size()}),
                                 std::string(field.value().data(), field.value().size()));
      }
      req.body = std::move(msg.body());
      req.remote_address = conn.remote_address;

      // No read timeout while the handler runs.
      beast::get_lowest_layer(conn.stream).expires_never();
      // GCC 12 mishandles non-trivial temporaries (e.g. lambdas with captures)
      // inside a co_await expression: keep the job in a named local.
      const bool run_inline = options.run_inline && options.run_inline(req);
      const bool run_async = !run_inline && options.async_handler && options.async_accepts &&
                             options.async_accepts(req);
      HttpResponse res;
      if (run_async) {
        // Answered by a callback (e.g. after the store's commit): no worker waits.
        res = co_await AsyncViaResume(options.async_handler, req, asio::use_awaitable);
      } else if (run_inline) {
        res = HandlerJob{this, std::move(req)}();  // never blocks (e.g. /healthz)
      } else {
        HandlerJob job{this, std::move(req)};
        res = co_await AsyncRunOnPool(pool, std::move(job), asio::use_awaitable);
      }

      const bool again = keep_alive && !stopping;
      co_await Write(conn, version, std::move(res), again, ec);
      if (ec || !again) {
        if constexpr (std::is_same_v<Stream, TlsStream>) {
          if (!ec) co_await ShutdownSend(conn);
        } else {
          error_code ignored;
          conn.socket().shutdown(tcp::socket::shutdown_send, ignored);
        }
        co_return;
      }
    }
  }

  template <typename Stream>
  asio::awaitable<void> Write(Conn<Stream>& conn, unsigned version, HttpResponse res,
                              bool keep_alive, error_code& ec) {
    if (res.status < 200 || res.status > 599) res = InternalError();
    // Serialised by hand into one buffer: cheaper than Beast's serializer, and
    // the header set is small and fully ours.
    const auto status = static_cast<unsigned>(res.status);
    const bool no_body = status == 204 || status == 304;
    std::string out;
    out.reserve(192 + res.body.size());
    out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    const beast::string_view reason = http::obsolete_reason(http::int_to_status(status));
    out.append(reason.data(), reason.size());
    out += "\r\nServer: otpd\r\n";
    if (!HasCrLf(res.content_type) && !no_body) {
      out += "Content-Type: ";
      out += res.content_type;
      out += "\r\n";
    }
    for (const auto& [name, value] : res.headers) {
      // Drop anything that could split the response or that we own.
      if (!IsToken(name) || HasCrLf(value)) continue;
      const auto field = http::string_to_field(name);
      if (field == http::field::content_length || field == http::field::transfer_encoding ||
          field == http::field::connection || field == http::field::server ||
          field == http::field::content_type) {
        continue;
      }
      out += name;
      out += ": ";
      out += value;
      out += "\r\n";
    }
    if (!no_body) {
      out += "Content-Length: ";
      out += std::to_string(res.body.size());
      out += "\r\n";
    }
    if (version == 10 && keep_alive) out += "Connection: keep-alive\r\n";
    if (version != 10 && !keep_alive) out += "Connection: close\r\n";
    out += "\r\n";
    if (!no_body) out += res.body;
    beast::get_lowest_layer(conn.stream).expires_after(options.read_timeout);
    co_await asio::async_write(conn.stream, asio::buffer(out),
                               asio::redirect_error(asio::use_awaitable, ec));
  }

  // The answer to a request that could not be read, if it deserves one.
  // (`msg` holds what was parsed of it.)
  std::optional<HttpResponse> ProblemFor(const error_code& ec,
                                         const http::request<http::string_body>& msg) const {
    if (ec == http::error::body_limit) {
      return ProblemResponse(
          413, "Payload Too Large", "payload_too_large",
          "request body exceeds " + std::to_string(options.max_body_bytes) + " bytes");
    }
    if (ec == http::error::header_limit) {
      // A request line that never ended within the limit is too long a target
      // (414), not too big a header block.
      if (msg.target().empty() || msg.target().size() > options.max_target_bytes) {
        return TargetTooLong();
      }
      return ProblemResponse(
          431, "Request Header Fields Too Large", "invalid_request",
          "request header block exceeds " + std::to_string(options.max_header_bytes) + " bytes");
    }
    if (IsParseError(ec)) {
      return ProblemResponse(400, "Bad Request", "invalid_request", "malformed HTTP request");
    }
    return std::nullopt;  // timeouts, resets, EOF
  }

  // Answers an unreadable request and closes the connection gracefully.
  template <typename Stream>
  asio::awaitable<void> Fail(Conn<Stream>& conn, unsigned version, HttpResponse res) {
    error_code ec;
    co_await Write(conn, version == 10 ? 10 : 11, std::move(res), false, ec);
    if (ec) co_return;
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      co_await ShutdownSend(conn);  // close_notify, and the peer's, within kLingerTimeout
      co_return;
    }
    conn.socket().shutdown(tcp::socket::shutdown_send, ec);
    beast::get_lowest_layer(conn.stream).expires_after(kLingerTimeout);
    std::array<char, kReadChunk> sink;
    std::size_t drained = 0;
    while (!ec && drained < kLingerMaxBytes) {
      drained += co_await conn.stream.async_read_some(
          asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // ---- run ---------------------------------------------------------------

  // One I/O context per thread, each run by that thread alone: a connection
  // lives on one context (chosen round-robin at accept), so its handlers never
  // need a strand, and the threads share no scheduler queue or lock. (One
  // context run by every thread cost more CPU per request and more latency:
  // strand dispatch, and the threads waking each other through its queue.)
  // `threads` <= 0: one per core.
  static std::vector<std::unique_ptr<asio::io_context>> MakeContexts(int threads) {
    const int n =
        threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (int i = 0; i < n; ++i) out.push_back(std::make_unique<asio::io_context>(1));
    return out;
  }

  // Keeps each context running while it has no connection yet (released at stop).
  static std::vector<asio::executor_work_guard<asio::io_context::executor_type>> MakeGuards(
      const std::vector<std::unique_ptr<asio::io_context>>& contexts) {
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> out;
    for (const auto& context : contexts) out.push_back(asio::make_work_guard(*context));
    return out;
  }

  // The context of the next accepted connection. Control strand only.
  asio::io_context& NextContext() { return *contexts[next_context++ % contexts.size()]; }

  // Lets each context's run() return once it has no work left (connections,
  // timers); until then an idle context waits for connections. Control strand.
  void ReleaseContexts() {
    for (auto& guard : context_guards) guard.reset();
  }

  void Run() {
    std::vector<std::thread> threads;
    threads.reserve(contexts.size() - 1);
    for (std::size_t i = 1; i < contexts.size(); ++i) {
      threads.emplace_back([this, i] {
        pthread_setname_np(pthread_self(), "otpd-io");
        contexts[i]->run();
      });
    }
    contexts[0]->run();
    for (auto& t : threads) t.join();
    // Let any handler still running finish before returning.
    pool.join();
  }

  HttpServerOptions options;
  HttpHandler handler;
  std::atomic<bool> stopping{false};
  std::uint16_t bound_port = 0;

  // Declared before the I/O context: coroutine frames destroyed with it still
  // unregister themselves.
  std::mutex mu;
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, std::weak_ptr<ConnBase>> conns;

  std::mutex tls_mu;
  std::shared_ptr<asio::ssl::context> tls_context;  // for new connections; null: plain HTTP

  std::vector<std::unique_ptr<asio::io_context>> contexts;  // contexts[0]: control, acceptor
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> context_guards =
      MakeGuards(contexts);
  std::size_t next_context = 0;
  asio::strand<asio::io_context::executor_type> control;
  tcp::acceptor acceptor;
  asio::signal_set signals;
  asio::thread_pool pool;  // last: destroyed (joined) first
};

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {
  impl_->Bind();
  impl_->Start();
}

HttpServer::~HttpServer() = default;

std::uint16_t HttpServer::port() const { return impl_->bound_port; }

bool HttpServer::tls() const { return impl_->Tls(); }

otp::Status HttpServer::ReloadTls() { return impl_->ReloadTls(); }

void HttpServer::Run() { impl_->Run(); }

void HttpServer::Stop() {
  Impl* impl = impl_.get();
  asio::post(impl->control, [impl] { impl->BeginStop(); });
}

}  // namespace otpd
