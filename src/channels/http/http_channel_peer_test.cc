// The http provider against a real HTTP server: tests/peers/http_peer.py
// (python3, standard library), started per test on a free loopback port.
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "channels/http/http_channel.h"

extern char** environ;

namespace otpd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSecret = "tok-5e3f0a9c71";

std::size_t Append(char* data, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// tests/peers/http_peer.py as a child process.
class Peer {
 public:
  // With `ca_file`, the peer speaks HTTPS (flags carry --tls-dir) and control
  // calls trust that CA.
  explicit Peer(std::vector<std::string> flags = {}, std::string ca_file = "")
      : ca_file_(std::move(ca_file)) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> args = {OTP_PYTHON, OTP_HTTP_PEER, "--port", "0"};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, OTP_PYTHON, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    fd_ = fds[0];
    if (rc != 0) throw std::runtime_error("cannot start the http peer");
    std::string line;
    char c = 0;
    while (read(fd_, &c, 1) == 1 && c != '\n') line += c;
    port_ = std::atoi(line.c_str());
    if (port_ <= 0) throw std::runtime_error("http peer did not print its port: " + line);
  }
  ~Peer() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    close(fd_);
  }

  int port() const { return port_; }
  std::string Url(const std::string& path) const {
    return (ca_file_.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") + std::to_string(port_) +
           path;
  }

  // A control call; returns the answer's body.
  std::string Control(const std::string& path, const std::string& body = "") const {
    std::unique_ptr<CURL, void (*)(CURL*)> c(curl_easy_init(), curl_easy_cleanup);
    std::string out;
    const std::string url = Url(path);
    curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
    if (!body.empty()) curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, Append);
    curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c.get(), CURLOPT_TIMEOUT, 10L);
    if (!ca_file_.empty()) curl_easy_setopt(c.get(), CURLOPT_CAINFO, ca_file_.c_str());
    EXPECT_EQ(curl_easy_perform(c.get()), CURLE_OK) << path;
    return out;
  }
  void Answer(const json& answers) const { Control("/_peer/answers", answers.dump()); }
  json Requests() const { return json::parse(Control("/_peer/requests")); }

 private:
  std::string ca_file_;
  pid_t pid_ = 0;
  int fd_ = -1;
  int port_ = 0;
};

class NullSink : public DeliveryReportSink {
 public:
  void OnReport(const DeliveryReport&, ReportDone) override {}
};

OutboundMessage Message(std::string code = "482913") {
  OutboundMessage m;
  m.channel = "whatsapp";
  m.to = "+306912345678";
  m.verification_id = "ver_peer1";
  m.locale = "en";
  m.text = code + " is your \"Acme\" code & more";
  m.code = std::move(code);
  return m;
}

class HttpPeerTest : public ::testing::Test {
 protected:
  std::unique_ptr<ChannelProvider> Make(std::map<std::string, std::string> options) {
    ProviderConfig config;
    config.name = "wa";
    config.type = "http";
    config.channels = {"whatsapp"};
    config.options = std::move(options);
    ProviderContext context{clock_, sink_};
    auto p = NewHttpChannel(config, context);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p).value() : nullptr;
  }

  std::unique_ptr<ChannelProvider> WhatsApp(const Peer& peer, std::string timeout_ms = "5000") {
    return Make({{"url", peer.Url("/v19.0/PHONE/messages?ref={{verification_id}}&key=") + kSecret},
                 {"headers", std::string("{ Authorization = \"Bearer ") + kSecret +
                                 "\", X-Verification = \"{{verification_id}}\" }"},
                 {"body", R"({"to":"{{to_digits}}","code":"{{code}}","text":"{{text}}"})"},
                 {"message_id", "/messages/0/id"},
                 {"timeout_ms", std::move(timeout_ms)}});
  }

  static void ExpectNoSecrets(const otp::Status& s) {
    EXPECT_THAT(s.message(), Not(HasSubstr(kSecret)));
    EXPECT_THAT(s.message(), Not(HasSubstr("482913")));
    EXPECT_THAT(s.message(), Not(HasSubstr("/v19.0")));
  }

  otp::FakeClock clock_;
  NullSink sink_;
};

TEST_F(HttpPeerTest, TemplatedRequestArrivesAndTheMessageIdIsRead) {
  Peer peer;
  auto p = WhatsApp(peer);
  ASSERT_NE(p, nullptr);
  auto r = p->Send(Message());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->provider_message_id, "peer-1");

  const json requests = peer.Requests();
  ASSERT_EQ(requests.size(), 1u);
  const json& q = requests[0];
  EXPECT_EQ(q["method"], "POST");
  EXPECT_EQ(q["path"], std::string("/v19.0/PHONE/messages?ref=ver_peer1&key=") + kSecret);
  EXPECT_EQ(q["headers"]["authorization"], std::string("Bearer ") + kSecret);
  EXPECT_EQ(q["headers"]["x-verification"], "ver_peer1");
  EXPECT_EQ(q["headers"]["content-type"], "application/json");
  EXPECT_FALSE(q["headers"].contains("expect"));
  const json body = json::parse(q["body"].get<std::string>());
  EXPECT_EQ(body["to"], "306912345678");
  EXPECT_EQ(body["code"], "482913");
  EXPECT_EQ(body["text"], "482913 is your \"Acme\" code & more");
}

TEST_F(HttpPeerTest, FormBodyAndGetWithQueryTemplate) {
  Peer peer;
  auto form = Make({{"url", peer.Url("/sms")},
                    {"content_type", "application/x-www-form-urlencoded"},
                    {"body", "To={{to}}&Body={{text}}"}});
  ASSERT_NE(form, nullptr);
  auto get = Make({{"url", peer.Url("/send?to={{to}}&text={{text}}&lang={{locale}}")},
                   {"method", "GET"},
                   {"message_id", "/messages/0/id"}});
  ASSERT_NE(get, nullptr);
  ASSERT_TRUE(form->Send(Message()).ok());
  auto r = get->Send(Message());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->provider_message_id, "peer-2");
  const json q = peer.Requests();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0]["method"], "POST");
  EXPECT_EQ(q[0]["headers"]["content-type"], "application/x-www-form-urlencoded");
  EXPECT_EQ(q[0]["body"], "To=%2B306912345678&Body=482913+is+your+%22Acme%22+code+%26+more");
  EXPECT_EQ(q[1]["method"], "GET");
  EXPECT_EQ(q[1]["path"],
            "/send?to=%2B306912345678&text=482913%20is%20your%20%22Acme%22%20code%20%26%20more"
            "&lang=en");
  EXPECT_EQ(q[1]["body"], "");
}

TEST_F(HttpPeerTest, PutAndPatchCarryTheBody) {
  Peer peer;
  auto put = Make({{"url", peer.Url("/put")}, {"method", "PUT"}, {"body", R"({"c":"{{code}}"})"}});
  auto patch = Make({{"url", peer.Url("/patch")}, {"method", "PATCH"}, {"body", "{}"}});
  ASSERT_TRUE(put->Send(Message()).ok());
  ASSERT_TRUE(patch->Send(Message()).ok());
  const json q = peer.Requests();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0]["method"], "PUT");
  EXPECT_EQ(q[0]["body"], R"({"c":"482913"})");
  EXPECT_EQ(q[1]["method"], "PATCH");
}

TEST_F(HttpPeerTest, NonSuccessStatusFailsWithoutRetryOrSecrets) {
  Peer peer;
  auto p = WhatsApp(peer);
  ASSERT_NE(p, nullptr);
  peer.Answer(json::array({{{"status", 503}, {"body", "{\"echo\":\"482913 tok-5e3f0a9c71\"}"}},
                           {{"status", 400}, {"body", "bad"}},
                           {{"status", 302}, {"body", ""}}}));
  for (const char* want : {"HTTP 503", "HTTP 400", "HTTP 302"}) {
    auto r = p->Send(Message());
    ASSERT_FALSE(r.ok()) << want;
    EXPECT_EQ(r.status().code(), otp::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("http provider wa: "));
    EXPECT_THAT(r.status().message(), HasSubstr(want));
    ExpectNoSecrets(r.status());
  }
  EXPECT_EQ(peer.Requests().size(), 3u);  // one request each: none retried
}

TEST_F(HttpPeerTest, TimeoutAfterSendingIsNotRetried) {
  Peer peer;
  auto p = WhatsApp(peer, "300");
  ASSERT_NE(p, nullptr);
  peer.Answer(json::array({{{"status", 200}, {"delay_ms", 1500}}}));
  const auto start = std::chrono::steady_clock::now();
  auto r = p->Send(Message());
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("Timeout"));
  EXPECT_THAT(r.status().message(), HasSubstr("not retried"));
  ExpectNoSecrets(r.status());
  EXPECT_LT(took, std::chrono::milliseconds(1200));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(peer.Requests().size(), 1u);
}

TEST_F(HttpPeerTest, ConnectionClosedWithoutAnswerIsNotRetried) {
  Peer peer;
  auto p = WhatsApp(peer);
  ASSERT_NE(p, nullptr);
  peer.Answer(json::array({{{"close", true}}}));
  auto r = p->Send(Message());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("not retried"));
  ExpectNoSecrets(r.status());
  EXPECT_EQ(peer.Requests().size(), 1u);
}

TEST_F(HttpPeerTest, RefusedConnectionsAreRetriedUntilTheServerListens) {
  // Bound at once, listening only after 250 ms: the first attempts are refused.
  Peer peer({"--listen-after-ms", "250"});
  auto p = Make({{"url", peer.Url("/send")},
                 {"connect_retries", "4"},
                 {"body", "{}"},
                 {"message_id", "/messages/0/id"}});
  ASSERT_NE(p, nullptr);
  auto r = p->Send(Message());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->provider_message_id, "peer-1");
  EXPECT_EQ(peer.Requests().size(), 1u);
}

TEST_F(HttpPeerTest, RefusedConnectionFailsAfterTheRetries) {
  Peer peer({"--listen-after-ms", "20000"});
  auto p = Make({{"url", peer.Url("/send?key=") + kSecret}, {"connect_retries", "2"}});
  ASSERT_NE(p, nullptr);
  const auto start = std::chrono::steady_clock::now();
  auto r = p->Send(Message());
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), otp::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("connect"));
  EXPECT_THAT(r.status().message(), HasSubstr("3 attempts"));
  ExpectNoSecrets(r.status());
  EXPECT_GE(took, std::chrono::milliseconds(300));  // 100 + 200 ms between attempts

  auto once = Make({{"url", peer.Url("/send")}, {"connect_retries", "0"}});
  r = once->Send(Message());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("(1 attempt)"));
}

TEST_F(HttpPeerTest, SuccessWithoutMessageIdStillCountsAsSent) {
  Peer peer;
  auto p = WhatsApp(peer);
  ASSERT_NE(p, nullptr);
  peer.Answer(json::array({{{"status", 202}, {"body", "accepted"}}}));
  auto r = p->Send(Message());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->provider_message_id, "");
}

TEST_F(HttpPeerTest, ConcurrentSendsEachGetTheirOwnAnswer) {
  Peer peer;
  auto p = WhatsApp(peer);
  ASSERT_NE(p, nullptr);
  constexpr int kThreads = 8;
  std::vector<std::string> ids(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto r = p->Send(Message(std::to_string(100000 + i)));
      ids[static_cast<std::size_t>(i)] = r.ok() ? r->provider_message_id : r.status().ToString();
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> distinct(ids.begin(), ids.end());
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kThreads));
  std::set<std::string> codes;
  for (const json& q : peer.Requests())
    codes.insert(json::parse(q["body"].get<std::string>())["code"]);
  EXPECT_EQ(codes.size(), static_cast<std::size_t>(kThreads));
  for (const auto& id : ids) EXPECT_THAT(id, HasSubstr("peer-"));
}

// SECURITY.md 21: outbound TLS verifies the certificate.
class Sec21HttpPeerTls : public HttpPeerTest {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("otpd-http-tls-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(Sec21HttpPeerTls, CertificateIsVerifiedAgainstCaFile) {
  Peer peer({"--tls-dir", dir_.string()}, (dir_ / "ca.pem").string());
  const std::string url = peer.Url("/send");
  auto trusted = Make(
      {{"url", url}, {"ca_file", (dir_ / "ca.pem").string()}, {"message_id", "/messages/0/id"}});
  ASSERT_NE(trusted, nullptr);
  auto r = trusted->Send(Message());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->provider_message_id, "peer-1");

  // The system store does not know the test CA: the handshake fails, nothing is sent.
  auto untrusted = Make({{"url", url}});
  ASSERT_NE(untrusted, nullptr);
  r = untrusted->Send(Message());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("SSL"));
  EXPECT_EQ(peer.Requests().size(), 1u);  // the refused handshake carried no request
}

}  // namespace
}  // namespace otpd
