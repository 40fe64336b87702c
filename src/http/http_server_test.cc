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
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

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

}  // namespace
}  // namespace otpd
