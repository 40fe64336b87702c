#include "http/http_server.h"

// Before any Asio header (Boost 1.74 + GCC 12).
#include <utility>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>

namespace otpd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Response = http::response<http::string_body>;

HttpServerOptions TestOptions() {
  HttpServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.io_threads = 2;
  o.handler_threads = 8;
  o.read_timeout = std::chrono::seconds(5);
  o.idle_timeout = std::chrono::seconds(5);
  o.handle_signals = false;
  return o;
}

// Runs an HttpServer on a background thread.
class TestServer {
 public:
  explicit TestServer(HttpHandler handler, HttpServerOptions options = TestOptions())
      : server_(std::make_unique<HttpServer>(std::move(options), std::move(handler))) {
    auto done = std::make_shared<std::promise<void>>();
    run_done_ = done->get_future();
    thread_ = std::thread([this, done] {
      server_->Run();
      done->set_value();
    });
  }
  ~TestServer() { Stop(); }

  std::uint16_t port() const { return server_->port(); }

  // Stops the server and waits for Run() to return; false if it did not within `limit`.
  bool Stop(milliseconds limit = milliseconds(10000)) {
    if (!thread_.joinable()) return true;
    server_->Stop();
    return WaitForRun(limit);
  }

  bool WaitForRun(milliseconds limit) {
    if (run_done_.wait_for(limit) != std::future_status::ready) {
      ADD_FAILURE() << "Run() did not return";
      std::abort();  // a hung thread cannot be joined
    }
    thread_.join();
    return true;
  }

 private:
  std::unique_ptr<HttpServer> server_;
  std::future<void> run_done_;
  std::thread thread_;
};

// A tiny blocking client with a time limit on every operation.
class Client {
 public:
  explicit Client(std::uint16_t port, std::string_view host = "127.0.0.1") {
    socket_.connect(tcp::endpoint(asio::ip::make_address(host), port));
  }

  void Send(std::string_view raw) { asio::write(socket_, asio::buffer(raw.data(), raw.size())); }

  // Reads one response; ec is set on failure.
  Response Read(error_code& ec, milliseconds limit = milliseconds(5000)) {
    Response res;
    ec = asio::error::timed_out;
    http::async_read(socket_, buffer_, res, [&](const error_code& e, std::size_t) { ec = e; });
    Drive(limit);
    return res;
  }

  Response Read() {
    error_code ec;
    Response res = Read(ec);
    EXPECT_FALSE(ec) << ec.message();
    return res;
  }

  Response Get(std::string_view target, std::string_view extra_headers = "") {
    std::string raw = "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" +
                      std::string(extra_headers) + "\r\n";
    Send(raw);
    return Read();
  }

  Response Post(std::string_view target, std::string_view body) {
    Send("POST " + std::string(target) + " HTTP/1.1\r\nHost: test\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body));
    return Read();
  }

  // Reads until the server closes the connection (or `limit`); returns the
  // error that ended the read (eof on a clean close) and the bytes received.
  error_code ReadUntilClosed(std::string* received = nullptr,
                             milliseconds limit = milliseconds(5000)) {
    error_code result = asio::error::timed_out;
    std::string data(buffer_.size(), '\0');
    asio::buffer_copy(asio::buffer(data), buffer_.data());
    buffer_.consume(buffer_.size());
    std::array<char, 4096> chunk;
    std::function<void()> next = [&] {
      socket_.async_read_some(asio::buffer(chunk), [&](const error_code& e, std::size_t n) {
        data.append(chunk.data(), n);
        if (e) {
          result = e;
          return;
        }
        next();
      });
    };
    next();
    Drive(limit);
    if (received) *received = data;
    return result;
  }

  tcp::socket& socket() { return socket_; }

 private:
  void Drive(milliseconds limit) {
    ioc_.restart();
    ioc_.run_for(limit);
    if (!ioc_.stopped()) {
      error_code ignored;
      socket_.cancel(ignored);
      ioc_.restart();
      ioc_.run();
    }
  }

  asio::io_context ioc_;
  tcp::socket socket_{ioc_};
  beast::flat_buffer buffer_;
};

bool ClosedCleanly(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset;
}

HttpResponse Echo(const HttpRequest& r) {
  HttpResponse res;
  res.content_type = "text/plain";
  res.headers = {{"X-Echo", "yes"}};
  std::string names;
  for (const auto& [name, value] : r.headers) names += name + ",";
  res.body = "method=" + r.method + "\ntarget=" + r.target + "\npath=" + r.path +
             "\nquery=" + r.query + "\nx-test=" + std::string(r.Header("x-test")) +
             "\nnames=" + names + "\nremote=" + r.remote_address + "\nbody=" + r.body;
  return res;
}

TEST(HttpServerTest, PicksAFreePort) {
  TestServer server(Echo);
  EXPECT_NE(server.port(), 0);
}

TEST(HttpServerTest, GetEcho) {
  TestServer server(Echo);
  Client client(server.port());
  Response res = client.Get("/v1/things?a=1&b=2", "X-Test: Hello World\r\n");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::server], "otpd");
  EXPECT_EQ(res[http::field::content_type], "text/plain");
  EXPECT_EQ(res["X-Echo"], "yes");
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
  EXPECT_TRUE(res.keep_alive());
  EXPECT_EQ(res.body(),
            "method=GET\ntarget=/v1/things?a=1&b=2\npath=/v1/things\nquery=a=1&b=2\n"
            "x-test=Hello World\nnames=host,x-test,\nremote=127.0.0.1\nbody=");
}

TEST(HttpServerTest, PostEcho) {
  TestServer server(Echo);
  Client client(server.port());
  client.Send(
      "POST /v1/codes HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
      "Content-Length: 13\r\n\r\n{\"user\":\"ab\"}");
  Response res = client.Read();
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_NE(res.body().find("method=POST\n"), std::string::npos) << res.body();
  EXPECT_NE(res.body().find("path=/v1/codes\nquery=\n"), std::string::npos) << res.body();
  EXPECT_NE(res.body().find("names=host,content-type,content-length,"), std::string::npos);
  EXPECT_NE(res.body().find("\nbody={\"user\":\"ab\"}"), std::string::npos) << res.body();
}

TEST(HttpServerTest, ChunkedBody) {
  TestServer server(Echo);
  Client client(server.port());
  client.Send(
      "POST /c HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  Response res = client.Read();
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_NE(res.body().find("\nbody=abcde"), std::string::npos) << res.body();
}

TEST(HttpServerTest, ExpectContinue) {
  TestServer server(Echo);
  Client client(server.port());
  client.Send(
      "POST /e HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  Response interim = client.Read();
  EXPECT_EQ(interim.result_int(), 100);
  client.Send("hello");
  Response res = client.Read();
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_NE(res.body().find("\nbody=hello"), std::string::npos) << res.body();
}

TEST(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  std::atomic<int> calls{0};
  TestServer server([&](const HttpRequest& r) {
    HttpResponse res;
    res.body = std::to_string(++calls) + r.path;
    return res;
  });
  Client client(server.port());
  Response first = client.Get("/a");
  EXPECT_EQ(first.result_int(), 200);
  EXPECT_EQ(first.body(), "1/a");
  EXPECT_TRUE(first.keep_alive());
  Response second = client.Get("/b");
  EXPECT_EQ(second.result_int(), 200);
  EXPECT_EQ(second.body(), "2/b");
  // Pipelined: both requests in one write.
  client.Send("GET /c HTTP/1.1\r\nHost: t\r\n\r\nGET /d HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(client.Read().body(), "3/c");
  EXPECT_EQ(client.Read().body(), "4/d");
}

TEST(HttpServerTest, ConnectionCloseAndHttp10CloseTheConnection) {
  TestServer server(Echo);
  {
    Client client(server.port());
    Response res = client.Get("/", "Connection: close\r\n");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_FALSE(res.keep_alive());
    EXPECT_TRUE(ClosedCleanly(client.ReadUntilClosed()));
  }
  {
    Client client(server.port());
    client.Send("GET /old HTTP/1.0\r\n\r\n");
    Response res = client.Read();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.version(), 10);
    EXPECT_FALSE(res.keep_alive());
    EXPECT_TRUE(ClosedCleanly(client.ReadUntilClosed()));
  }
  {
    // HTTP/1.0 with keep-alive stays open.
    Client client(server.port());
    client.Send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    Response res = client.Read();
    EXPECT_TRUE(res.keep_alive());
    client.Send("GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_EQ(client.Read().result_int(), 200);
  }
}

TEST(HttpServerTest, OversizeBodyIs413) {
  std::atomic<int> calls{0};
  HttpServerOptions options = TestOptions();
  options.max_body_bytes = 1024;
  TestServer server(
      [&](const HttpRequest& r) {
        ++calls;
        return Echo(r);
      },
      options);
  {
    Client client(server.port());
    client.Send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" +
                std::string(4000, 'x'));
    Response res = client.Read();
    EXPECT_EQ(res.result_int(), 413);
    EXPECT_EQ(res[http::field::content_type], "application/problem+json");
    EXPECT_EQ(res[http::field::server], "otpd");
    EXPECT_EQ(res.body(),
              R"({"type":"about:blank","title":"Payload Too Large","status":413,)"
              R"("code":"payload_too_large","detail":"request body exceeds 1024 bytes"})");
    EXPECT_FALSE(res.keep_alive());
    EXPECT_TRUE(ClosedCleanly(client.ReadUntilClosed()));
  }
  {
    // Chunked bodies are limited too.
    Client client(server.port());
    client.Send("POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" +
                std::string(1024, 'y') + "\r\n10\r\n" + std::string(16, 'z') + "\r\n0\r\n\r\n");
    Response res = client.Read();
    EXPECT_EQ(res.result_int(), 413);
  }
  {
    // At the limit is fine.
    Client client(server.port());
    client.Send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n" +
                std::string(1024, 'x'));
    EXPECT_EQ(client.Read().result_int(), 200);
  }
  EXPECT_EQ(calls, 1);
}

TEST(HttpServerTest, OversizeHeaderIs431) {
  HttpServerOptions options = TestOptions();
  options.max_header_bytes = 1024;
  TestServer server(Echo, options);
  Client client(server.port());
  client.Send("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
  Response res = client.Read();
  EXPECT_EQ(res.result_int(), 431);
  EXPECT_EQ(res[http::field::content_type], "application/problem+json");
  EXPECT_NE(res.body().find(R"("code":"invalid_request")"), std::string::npos) << res.body();
  EXPECT_NE(res.body().find(R"("status":431)"), std::string::npos) << res.body();
  EXPECT_TRUE(ClosedCleanly(client.ReadUntilClosed()));
}

TEST(HttpServerTest, MalformedRequestIs400) {
  TestServer server(Echo);
  for (std::string_view raw : {
           std::string_view("THIS IS NOT HTTP\r\n\r\n"),
           std::string_view("GET / HTTP/1.1\r\nHost: t\r\nBroken header line\r\n\r\n"),
           std::string_view("GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
       }) {
    Client client(server.port());
    client.Send(raw);
    Response res = client.Read();
    EXPECT_EQ(res.result_int(), 400) << raw;
    EXPECT_EQ(res[http::field::content_type], "application/problem+json");
    EXPECT_EQ(res.body(), R"({"type":"about:blank","title":"Bad Request","status":400,)"
                          R"("code":"invalid_request","detail":"malformed HTTP request"})");
    EXPECT_FALSE(res.keep_alive());
    EXPECT_TRUE(ClosedCleanly(client.ReadUntilClosed()));
  }
}

TEST(HttpServerTest, HandlerExceptionIs500WithoutDetails) {
  TestServer server([](const HttpRequest& r) -> HttpResponse {
    if (r.path == "/boom") throw std::runtime_error("secret-database-password");
    return HttpResponse{};
  });
  Client client(server.port());
  Response res = client.Get("/boom");
  EXPECT_EQ(res.result_int(), 500);
  EXPECT_EQ(res[http::field::content_type], "application/problem+json");
  EXPECT_NE(res.body().find(R"("code":"internal")"), std::string::npos) << res.body();
  EXPECT_EQ(res.body().find("secret"), std::string::npos) << res.body();
  // The connection survives.
  EXPECT_EQ(client.Get("/ok").result_int(), 200);
}

TEST(HttpServerTest, SlowClientDoesNotBlockOthersAndIsCutOff) {
  HttpServerOptions options = TestOptions();
  options.io_threads = 1;  // even with a single I/O thread
  options.read_timeout = std::chrono::seconds(1);
  TestServer server(Echo, options);

  Client slow(server.port());
  const auto start = Clock::now();
  slow.Send("GET / HTTP/1.1\r\nHost: t\r\nX-Partial: ");  // and stall

  Client trickle(server.port());
  std::atomic<bool> stop_trickle{false};
  trickle.Send("GET / HTTP/1.1\r\n");
  std::thread trickler([&] {
    // One byte every 200 ms: never a complete header.
    const int fd = trickle.socket().native_handle();
    while (!stop_trickle) {
      if (::send(fd, "a", 1, MSG_NOSIGNAL) != 1) break;
      std::this_thread::sleep_for(milliseconds(200));
    }
  });

  {
    Client other(server.port());
    const auto t0 = Clock::now();
    Response res = other.Get("/fast");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_LT(Clock::now() - t0, milliseconds(500));
  }

  std::string received;
  error_code ec = slow.ReadUntilClosed(&received);
  const auto slow_elapsed = Clock::now() - start;
  EXPECT_TRUE(ClosedCleanly(ec)) << ec.message();
  EXPECT_EQ(received, "");  // no response: just cut off
  EXPECT_GE(slow_elapsed, milliseconds(900));
  EXPECT_LT(slow_elapsed, milliseconds(2500));

  ec = trickle.ReadUntilClosed(&received);
  const auto trickle_elapsed = Clock::now() - start;
  stop_trickle = true;
  trickler.join();
  EXPECT_TRUE(ClosedCleanly(ec)) << ec.message();
  EXPECT_LT(trickle_elapsed, milliseconds(2500));

  // Still serving.
  Client after(server.port());
  EXPECT_EQ(after.Get("/after").result_int(), 200);
}

TEST(HttpServerTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  HttpServerOptions options = TestOptions();
  options.idle_timeout = std::chrono::seconds(1);
  TestServer server(Echo, options);
  Client client(server.port());
  EXPECT_EQ(client.Get("/").result_int(), 200);
  const auto t0 = Clock::now();
  EXPECT_TRUE(ClosedCleanly(client.ReadUntilClosed()));
  const auto elapsed = Clock::now() - t0;
  EXPECT_GE(elapsed, milliseconds(900));
  EXPECT_LT(elapsed, milliseconds(2500));
}

TEST(HttpServerTest, InlineRequestsSkipABusyWorkerPool) {
  HttpServerOptions options = TestOptions();
  options.handler_threads = 1;
  options.run_inline = [](const HttpRequest& r) { return r.path == "/health"; };
  TestServer server(
      [](const HttpRequest& r) {
        if (r.path == "/slow") std::this_thread::sleep_for(milliseconds(1500));
        return HttpResponse{200, "application/json", {}, "{}"};
      },
      options);
  std::thread slow([&] {
    Client client(server.port());
    client.Get("/slow");
  });
  std::this_thread::sleep_for(milliseconds(200));  // the only worker is now busy
  const auto start = Clock::now();
  Client client(server.port());
  EXPECT_EQ(client.Get("/health").result_int(), 200);
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  slow.join();
}

TEST(HttpServerTest, AsyncRequestsAreAnsweredFromAnotherThreadWithoutAWorker) {
  HttpServerOptions options = TestOptions();
  options.handler_threads = 1;
  options.async_accepts = [](const HttpRequest& r) { return r.path.rfind("/async", 0) == 0; };
  std::mutex mu;
  std::vector<std::thread> threads;
  options.async_handler = [&](const HttpRequest& r, HttpResume resume) {
    if (r.path == "/async/throw") throw std::runtime_error("handler bug");
    // Answer later, from a thread of our own (as the store's writer does).
    std::lock_guard lock(mu);
    threads.emplace_back([resume, body = r.body] {
      std::this_thread::sleep_for(milliseconds(50));
      resume([body] {
        return HttpResponse{202, "text/plain", {{"X-Async", "yes"}}, "got " + body};
      });
    });
  };
  TestServer server(
      [](const HttpRequest& r) {
        if (r.path == "/slow") std::this_thread::sleep_for(milliseconds(1500));
        return HttpResponse{200, "application/json", {}, "{}"};
      },
      options);
  std::thread slow([&] {
    Client client(server.port());
    client.Get("/slow");
  });
  std::this_thread::sleep_for(milliseconds(200));  // the only worker is now busy
  const auto start = Clock::now();
  Client client(server.port());
  auto res = client.Post("/async/x", "abc");
  EXPECT_EQ(res.result_int(), 202);
  EXPECT_EQ(res.body(), "got abc");
  EXPECT_EQ(res["X-Async"], "yes");
  EXPECT_LT(Clock::now() - start, milliseconds(1000));  // did not wait for the worker
  // Keep-alive goes on after an async answer; a throwing handler is a bare 500.
  EXPECT_EQ(client.Post("/async/throw", "").result_int(), 500);
  EXPECT_EQ(client.Get("/other").result_int(), 200);
  slow.join();
  std::lock_guard lock(mu);
  for (auto& t : threads) t.join();
}

TEST(HttpServerTest, HandlersRunConcurrently) {
  HttpServerOptions options = TestOptions();
  options.io_threads = 2;
  options.handler_threads = 64;
  std::atomic<int> in_handler{0};
  std::atomic<int> max_in_handler{0};
  TestServer server(
      [&](const HttpRequest&) {
        const int now = ++in_handler;
        int seen = max_in_handler.load();
        while (now > seen && !max_in_handler.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(milliseconds(100));
        --in_handler;
        return HttpResponse{200, "application/json", {}, "{}"};
      },
      options);

  constexpr int kRequests = 50;
  std::atomic<int> ok{0};
  const auto start = Clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < kRequests; ++i) {
    clients.emplace_back([&] {
      Client client(server.port());
      if (client.Get("/sleep").result_int() == 200) ++ok;
    });
  }
  for (auto& t : clients) t.join();
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(ok, kRequests);
  EXPECT_LT(elapsed, milliseconds(2500));
  EXPECT_GT(max_in_handler, 8);
}

TEST(HttpServerTest, StopWithOpenKeepAliveAndInFlightRequest) {
  std::atomic<bool> entered{false};
  auto server = std::make_unique<TestServer>([&](const HttpRequest& r) {
    HttpResponse res;
    if (r.path == "/slow") {
      entered = true;
      std::this_thread::sleep_for(milliseconds(500));
      res.body = "slow done";
    } else {
      res.body = "fast";
    }
    return res;
  });

  Client idle(server->port());
  EXPECT_EQ(idle.Get("/fast").body(), "fast");  // kept alive, now idle

  Client busy(server->port());
  busy.Send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto wait_start = Clock::now();
  while (!entered && Clock::now() - wait_start < milliseconds(3000)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(entered);

  const auto stop_start = Clock::now();
  EXPECT_TRUE(server->Stop());
  const auto stop_elapsed = Clock::now() - stop_start;
  EXPECT_LT(stop_elapsed, milliseconds(2000));

  // The in-flight request got its answer, with Connection: close.
  error_code ec;
  Response res = busy.Read(ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "slow done");
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(ClosedCleanly(busy.ReadUntilClosed()));
  // The idle keep-alive connection was closed.
  EXPECT_TRUE(ClosedCleanly(idle.ReadUntilClosed()));
  const std::uint16_t port = server->port();
  server.reset();

  // No longer listening.
  EXPECT_ANY_THROW(Client{port});
}

TEST(HttpServerTest, StopWithOnlyIdleConnectionsIsPrompt) {
  TestServer server(Echo);
  Client a(server.port());
  Client b(server.port());
  EXPECT_EQ(a.Get("/").result_int(), 200);
  const auto t0 = Clock::now();
  EXPECT_TRUE(server.Stop());
  EXPECT_LT(Clock::now() - t0, milliseconds(1000));
  EXPECT_TRUE(ClosedCleanly(a.ReadUntilClosed()));
  EXPECT_TRUE(ClosedCleanly(b.ReadUntilClosed()));
}

TEST(HttpServerTest, StopGivesUpOnAStuckHandlerAfterTheDrainTimeout) {
  std::atomic<bool> entered{false};
  TestServer server([&](const HttpRequest&) {
    entered = true;
    std::this_thread::sleep_for(milliseconds(6000));
    return HttpResponse{};
  });
  Client client(server.port());
  client.Send("GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n");
  Client partial(server.port());  // a request that never completes
  partial.Send("GET /never-finished HTTP/1.1\r\n");
  const auto wait_start = Clock::now();
  while (!entered && Clock::now() - wait_start < milliseconds(3000)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(entered);
  const auto t0 = Clock::now();
  EXPECT_TRUE(server.Stop());
  // The connection is closed after ~5 s; Run() still waits for the handler to
  // return so that nothing it uses is torn down under it.
  EXPECT_LT(Clock::now() - t0, milliseconds(8000));
  std::string received;
  EXPECT_TRUE(ClosedCleanly(client.ReadUntilClosed(&received)));
  EXPECT_EQ(received, "");
  EXPECT_TRUE(ClosedCleanly(partial.ReadUntilClosed(&received)));
  EXPECT_EQ(received, "");
}

TEST(HttpServerTest, StopBeforeRun) {
  HttpServer server(TestOptions(), Echo);
  server.Stop();
  const auto t0 = Clock::now();
  server.Run();
  EXPECT_LT(Clock::now() - t0, milliseconds(1000));
}

TEST(HttpServerTest, SignalStopsTheServer) {
  HttpServerOptions options = TestOptions();
  options.handle_signals = true;
  auto server = std::make_shared<HttpServer>(options, Echo);
  auto done = std::async(std::launch::async, [server] { server->Run(); });
  {
    Client client(server->port());
    EXPECT_EQ(client.Get("/").result_int(), 200);
  }
  ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
  ASSERT_EQ(done.wait_for(std::chrono::seconds(5)), std::future_status::ready);
}

TEST(HttpServerTest, BindErrorsThrowSystemError) {
  TestServer server(Echo);
  HttpServerOptions options = TestOptions();
  options.port = server.port();
  EXPECT_THROW(HttpServer(options, Echo), std::system_error);
  options.port = 0;
  options.host = "203.0.113.1";  // TEST-NET-3: not a local address
  EXPECT_THROW(HttpServer(options, Echo), std::system_error);
}

TEST(HttpServerTest, Ipv6Loopback) {
  HttpServerOptions options = TestOptions();
  options.host = "::1";
  std::unique_ptr<TestServer> server;
  try {
    server = std::make_unique<TestServer>(Echo, options);
  } catch (const std::system_error& e) {
    GTEST_SKIP() << "no IPv6 loopback: " << e.what();
  }
  Client client(server->port(), "::1");
  Response res = client.Get("/six");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_NE(res.body().find("\nremote=::1\n"), std::string::npos) << res.body();
}

// ---- input limits and slow clients (SECURITY.md 25) --------------------------

TEST(Sec25HttpLimits, TooManyHeaderFieldsIs431AndNeverReachesTheHandler) {
  std::atomic<int> calls{0};
  HttpServerOptions options = TestOptions();
  options.max_header_count = 10;
  TestServer server(
      [&](const HttpRequest& r) {
        ++calls;
        return Echo(r);
      },
      options);
  auto headers = [](int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += "X-H" + std::to_string(i) + ": v\r\n";
    return out;
  };
  {
    Client client(server.port());
    // Host + 9 = 10 fields: at the limit.
    EXPECT_EQ(client.Get("/ok", headers(9)).result_int(), 200);
  }
  {
    Client client(server.port());
    Response res = client.Get("/many", headers(10));
    EXPECT_EQ(res.result_int(), 431);
    EXPECT_EQ(res[http::field::content_type], "application/problem+json");
    EXPECT_EQ(res.body(),
              R"({"type":"about:blank","title":"Request Header Fields Too Large","status":431,)"
              R"("code":"invalid_request","detail":"more than 10 header fields"})");
    EXPECT_FALSE(res.keep_alive());
    EXPECT_TRUE(ClosedCleanly(client.ReadUntilClosed()));
  }
  {
    // With a body on the way: refused before the body is read.
    Client client(server.port());
    client.Send("POST /many HTTP/1.1\r\nHost: t\r\n" + headers(10) + "Content-Length: 100\r\n\r\n");
    EXPECT_EQ(client.Read().result_int(), 431);
  }
  EXPECT_EQ(calls, 1);
}

TEST(Sec25HttpLimits, LongRequestTargetIs414) {
  std::atomic<int> calls{0};
  HttpServerOptions options = TestOptions();
  options.max_target_bytes = 2048;
  options.max_header_bytes = 4096;
  TestServer server(
      [&](const HttpRequest& r) {
        ++calls;
        return Echo(r);
      },
      options);
  const std::string at_limit = "/" + std::string(2047, 'a');
  {
    Client client(server.port());
    EXPECT_EQ(client.Get(at_limit).result_int(), 200);
  }
  // Over the target limit but inside the header limit, then over both.
  for (std::size_t length : {2049u, 3000u, 100000u}) {
    Client client(server.port());
    client.Send("GET /" + std::string(length - 1, 'b') + " HTTP/1.1\r\nHost: t\r\n\r\n");
    Response res = client.Read();
    EXPECT_EQ(res.result_int(), 414) << length;
    EXPECT_EQ(res[http::field::content_type], "application/problem+json");
    EXPECT_EQ(res.body(),
              R"({"type":"about:blank","title":"URI Too Long","status":414,)"
              R"("code":"invalid_request","detail":"request target exceeds 2048 bytes"})")
        << length;
  }
  // A long header (not the target) past the header limit stays 431.
  {
    Client client(server.port());
    Response res = client.Get("/x", "X-Big: " + std::string(5000, 'c') + "\r\n");
    EXPECT_EQ(res.result_int(), 431);
  }
  EXPECT_EQ(calls, 1);
}

TEST(Sec25HttpLimits, SlowBodyIsCutOffAfterTheBodyTimeout) {
  std::atomic<int> calls{0};
  HttpServerOptions options = TestOptions();
  options.read_timeout = std::chrono::seconds(5);
  options.body_timeout = std::chrono::seconds(1);
  TestServer server(
      [&](const HttpRequest& r) {
        ++calls;
        return Echo(r);
      },
      options);
  Client slow(server.port());
  const auto t0 = Clock::now();
  slow.Send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly-part");
  std::string received;
  const error_code ec = slow.ReadUntilClosed(&received);
  const auto elapsed = Clock::now() - t0;
  EXPECT_TRUE(ClosedCleanly(ec)) << ec.message();
  EXPECT_EQ(received, "");
  EXPECT_GE(elapsed, milliseconds(900));
  EXPECT_LT(elapsed, milliseconds(2500));  // the body deadline, not the 5 s head deadline
  EXPECT_EQ(calls, 0);
}

TEST(Sec25HttpLimits, ConnectionsPastTheCapAreTold503AndTheRestAreServed) {
  HttpServerOptions options = TestOptions();
  options.max_connections = 3;
  TestServer server(Echo, options);
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<Client>(server.port()));
    EXPECT_EQ(held.back()->Get("/held").result_int(), 200);  // registered and kept alive
  }
  {
    Client extra(server.port());
    Response res = extra.Get("/extra");
    EXPECT_EQ(res.result_int(), 503);
    EXPECT_EQ(res[http::field::content_type], "application/problem+json");
    EXPECT_EQ(res[http::field::retry_after], "1");
    EXPECT_NE(res.body().find(R"("code":"unavailable")"), std::string::npos) << res.body();
    EXPECT_FALSE(res.keep_alive());
  }
  // The held connections are still served.
  EXPECT_EQ(held[0]->Get("/still").result_int(), 200);
  // Once one closes, a new client gets in.
  held.pop_back();
  int status = 0;
  for (int attempt = 0; attempt < 50 && status != 200; ++attempt) {
    Client next(server.port());
    status = next.Get("/next").result_int();
    if (status != 200) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(status, 200);
}

// ---- TLS (SECURITY.md 21) -----------------------------------------------------

// Writes a self-signed P-256 certificate for 127.0.0.1 named `common_name`.
void WriteSelfSigned(const std::string& cert_path, const std::string& key_path,
                     const std::string& common_name) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
  X509_add_ext(cert, san, -1);
  X509_EXTENSION_free(san);
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  FILE* f = std::fopen(cert_path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(key_path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
}

class Sec21TlsListener : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("otpd-http-tls-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    cert_ = (dir_ / "cert.pem").string();
    key_ = (dir_ / "key.pem").string();
    WriteSelfSigned(cert_, key_, "first");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  HttpServerOptions TlsOptions() const {
    HttpServerOptions o = TestOptions();
    o.tls_cert_file = cert_;
    o.tls_key_file = key_;
    return o;
  }

  std::filesystem::path dir_;
  std::string cert_, key_;
};

// A blocking TLS client (the certificate is read, not verified: the tests
// compare names) with a 5 s limit on every socket operation.
class TlsClient {
 public:
  // `configure` restricts the client context (versions, ciphers).
  explicit TlsClient(std::uint16_t port, const std::function<void(SSL*)>& configure = nullptr) {
    if (configure) configure(stream_.native_handle());
    stream_.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    timeval tv{5, 0};
    const int fd = stream_.next_layer().native_handle();
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  error_code Handshake() {
    error_code ec;
    stream_.handshake(asio::ssl::stream_base::client, ec);
    return ec;
  }

  std::string PeerCommonName() {
    X509* cert = SSL_get1_peer_certificate(stream_.native_handle());
    if (cert == nullptr) return "";
    char name[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, name, sizeof name);
    X509_free(cert);
    return name;
  }

  std::string Version() { return SSL_get_version(stream_.native_handle()); }

  Response Get(std::string_view target) {
    const std::string raw = "GET " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n\r\n";
    asio::write(stream_, asio::buffer(raw));
    Response res;
    http::read(stream_, buffer_, res);
    return res;
  }

 private:
  asio::io_context ioc_;
  asio::ssl::context context_{asio::ssl::context::tls_client};
  asio::ssl::stream<tcp::socket> stream_{ioc_, context_};
  beast::flat_buffer buffer_;
};

TEST_F(Sec21TlsListener, ServesHttpsWithKeepAlive) {
  TestServer server(Echo, TlsOptions());
  TlsClient client(server.port());
  ASSERT_FALSE(client.Handshake());
  EXPECT_EQ(client.PeerCommonName(), "first");
  Response first = client.Get("/one?x=1");
  EXPECT_EQ(first.result_int(), 200);
  EXPECT_NE(first.body().find("path=/one\nquery=x=1\n"), std::string::npos) << first.body();
  EXPECT_EQ(client.Get("/two").result_int(), 200);  // same connection

  // Plain HTTP on the TLS port gets no HTTP answer.
  Client plain(server.port());
  plain.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string received;
  plain.ReadUntilClosed(&received);
  EXPECT_EQ(received.find("HTTP/1.1"), std::string::npos) << received;
}

TEST_F(Sec21TlsListener, OnlyTls12And13WithForwardSecretAeadCiphers) {
  TestServer server(Echo, TlsOptions());
  {
    TlsClient tls13(server.port());
    ASSERT_FALSE(tls13.Handshake());
    EXPECT_EQ(tls13.Version(), "TLSv1.3");
  }
  {
    TlsClient tls12(server.port(), [](SSL* c) {
      SSL_set_max_proto_version(c, TLS1_2_VERSION);
      SSL_set_cipher_list(c, "ECDHE-ECDSA-AES128-GCM-SHA256");
    });
    ASSERT_FALSE(tls12.Handshake());
    EXPECT_EQ(tls12.Version(), "TLSv1.2");
    EXPECT_EQ(tls12.Get("/").result_int(), 200);
  }
  for (int version : {TLS1_VERSION, TLS1_1_VERSION}) {
    // The client offers the old version (security level 0 lets it); the server's
    // alert says it will not speak it.
    TlsClient old(server.port(), [version](SSL* c) {
      SSL_set_security_level(c, 0);
      SSL_set_min_proto_version(c, version);
      SSL_set_max_proto_version(c, version);
    });
    const error_code ec = old.Handshake();
    ASSERT_TRUE(ec) << version;
    EXPECT_NE(ec.message().find("protocol version"), std::string::npos) << ec.message();
  }
  // TLS 1.2 without forward secrecy or without an AEAD cipher: no shared cipher.
  for (const char* weak :
       {"AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"}) {
    TlsClient client(server.port(), [weak](SSL* c) {
      SSL_set_max_proto_version(c, TLS1_2_VERSION);
      SSL_set_security_level(c, 0);
      SSL_set_cipher_list(c, weak);
    });
    const error_code ec = client.Handshake();
    ASSERT_TRUE(ec) << weak;
    EXPECT_NE(ec.message().find("handshake failure"), std::string::npos)
        << weak << ": " << ec.message();
  }
}

TEST_F(Sec21TlsListener, ReloadServesTheNewCertificateAndABadReloadKeepsTheOld) {
  // (SIGHUP calls ReloadTls(); the signal is sent end to end in tests/integration/test_tls.py.)
  HttpServer server(TlsOptions(), Echo);
  std::thread runner([&] { server.Run(); });
  TlsClient before(server.port());
  ASSERT_FALSE(before.Handshake());
  EXPECT_EQ(before.PeerCommonName(), "first");

  WriteSelfSigned(cert_, key_, "second");
  ASSERT_TRUE(server.ReloadTls().ok());
  {
    TlsClient after(server.port());
    ASSERT_FALSE(after.Handshake());
    EXPECT_EQ(after.PeerCommonName(), "second");
  }
  // A broken key file: refused with the reason, the old certificate stays.
  {
    std::FILE* f = std::fopen(key_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("not a key\n", f);
    std::fclose(f);
  }
  const otp::Status bad = server.ReloadTls();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find(key_), std::string::npos) << bad.message();
  // A key that does not match the certificate.
  WriteSelfSigned((dir_ / "other.pem").string(), key_, "other");
  const otp::Status mismatch = server.ReloadTls();
  EXPECT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.message().find("mismatch"), std::string::npos) << mismatch.message();
  {
    TlsClient still(server.port());
    ASSERT_FALSE(still.Handshake());
    EXPECT_EQ(still.PeerCommonName(), "second");
    EXPECT_EQ(still.Get("/").result_int(), 200);
  }
  // The connection opened before the reloads keeps working.
  EXPECT_EQ(before.Get("/").result_int(), 200);
  server.Stop();
  runner.join();
}

TEST_F(Sec21TlsListener, HandshakeMustFinishWithinTheReadTimeout) {
  HttpServerOptions options = TlsOptions();
  options.read_timeout = std::chrono::seconds(1);
  TestServer server(Echo, options);
  Client silent(server.port());  // connects, never says hello
  const auto t0 = Clock::now();
  std::string received;
  EXPECT_TRUE(ClosedCleanly(silent.ReadUntilClosed(&received)));
  EXPECT_EQ(received, "");
  EXPECT_LT(Clock::now() - t0, milliseconds(2500));
  TlsClient ok(server.port());
  EXPECT_FALSE(ok.Handshake());
}

TEST_F(Sec21TlsListener, BadOrHalfSetFilesAreRefusedAtStart) {
  HttpServerOptions options = TlsOptions();
  options.tls_key_file.clear();
  EXPECT_THROW(HttpServer(options, Echo), std::invalid_argument);
  options = TlsOptions();
  options.tls_cert_file = (dir_ / "missing.pem").string();
  try {
    HttpServer server(options, Echo);
    ADD_FAILURE() << "a missing certificate was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("missing.pem"), std::string::npos) << e.what();
  }
  HttpServer plain(TestOptions(), Echo);
  EXPECT_FALSE(plain.tls());
  EXPECT_EQ(plain.ReloadTls().code(), otp::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace otpd
