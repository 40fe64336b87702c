// The smpp provider against an in-process fake SMSC (plain sockets and the
// codec): bind, submit, receipts, window, throttling, timeouts, drops. The
// real-peer scenarios are in tests/integration/test_smpp.py.
#include "channels/smpp/smpp_channel.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "store/model.h"

namespace otpd {
namespace {

using namespace std::chrono_literals;
using smpp::Pdu;

bool ReadAll(int fd, char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// A minimal SMSC: accepts binds (answering bind_status), answers enquire_link,
// and answers each submit_sm as `on_submit` says (nullopt: not at all).
class FakeSmsc {
 public:
  std::atomic<std::uint32_t> bind_status{smpp::kEsmeRok};
  std::atomic<bool> answer_unbind{true};
  // Called on the connection's thread with the submit and its index (0, 1, ...).
  std::function<std::optional<Pdu>(const Pdu&, int)> on_submit;

  FakeSmsc() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 8) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "fake SMSC cannot listen";
    }
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~FakeSmsc() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    accept_thread_.join();
    Drop();
    for (auto& t : threads_) t.join();
  }

  int port() const { return port_; }

  // Closes every client connection (the SMSC side of a dropped link).
  void Drop() {
    std::lock_guard lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }

  // Writes `pdu` on the newest connection.
  void Send(const Pdu& pdu) {
    std::lock_guard lock(mu_);
    ASSERT_FALSE(fds_.empty());
    Write(fds_.back(), pdu);
  }

  std::vector<Pdu> Received(std::uint32_t command_id) {
    std::lock_guard lock(mu_);
    std::vector<Pdu> out;
    for (const Pdu& p : received_) {
      if (p.command_id == command_id) out.push_back(p);
    }
    return out;
  }

  // Waits until `pred` holds (checked under the lock on every PDU) or `timeout`.
  bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, pred);
  }
  std::size_t CountLocked(std::uint32_t command_id) const {
    std::size_t n = 0;
    for (const Pdu& p : received_) n += p.command_id == command_id ? 1 : 0;
    return n;
  }
  std::size_t Count(std::uint32_t command_id) {
    std::lock_guard lock(mu_);
    return CountLocked(command_id);
  }

 private:
  void Write(int fd, const Pdu& pdu) {
    const std::string bytes = smpp::EncodePdu(pdu).value();
    (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }

  void AcceptLoop() {
    while (!stopping_) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::lock_guard lock(mu_);
      fds_.push_back(fd);
      threads_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    for (;;) {
      std::string frame(4, '\0');
      if (!ReadAll(fd, frame.data(), 4)) break;
      auto length = smpp::PduLength(frame);
      if (!length.ok()) break;
      frame.resize(*length);
      if (!ReadAll(fd, frame.data() + 4, *length - 4)) break;
      auto pdu = smpp::DecodePdu(frame);
      if (!pdu.ok()) break;
      std::optional<Pdu> answer;
      Pdu resp;
      resp.sequence_number = pdu->sequence_number;
      if (pdu->command_id == smpp::kBindTransceiver) {
        resp.command_id = smpp::kBindTransceiverResp;
        resp.command_status = bind_status.load();
        resp.system_id = "FAKE";
        answer = resp;
      } else if (pdu->command_id == smpp::kEnquireLink) {
        resp.command_id = smpp::kEnquireLinkResp;
        answer = resp;
      } else if (pdu->command_id == smpp::kUnbind) {
        resp.command_id = smpp::kUnbindResp;
        if (answer_unbind) answer = resp;
      } else if (pdu->command_id == smpp::kSubmitSm) {
        const int index = submits_++;
        resp.command_id = smpp::kSubmitSmResp;
        resp.message_id = "id-" + std::to_string(index);
        answer = on_submit ? on_submit(*pdu, index) : std::optional<Pdu>(resp);
        if (answer) answer->sequence_number = pdu->sequence_number;
      }
      std::lock_guard lock(mu_);
      received_.push_back(*pdu);
      if (answer) Write(fd, *answer);
      cv_.notify_all();
    }
    std::lock_guard lock(mu_);
    ::close(fd);
    fds_.erase(std::remove(fds_.begin(), fds_.end(), fd), fds_.end());
    cv_.notify_all();
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> submits_{0};
  std::thread accept_thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::vector<Pdu> received_;
};

class RecordingSink : public DeliveryReportSink {
 public:
  // Each report is answered at once with `answer`, or, with `hold`, when the
  // test calls AnswerHeld.
  std::atomic<bool> hold{false};
  std::atomic<bool> answer{true};

  void OnReport(const DeliveryReport& r, ReportDone done) override {
    std::lock_guard lock(mu_);
    reports_.push_back(r);
    if (hold) {
      held_.push_back(std::move(done));
    } else if (done) {
      done(answer);
    }
    cv_.notify_all();
  }
  void AnswerHeld(bool recorded) {
    std::vector<ReportDone> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (ReportDone& d : held) {
      if (d) d(recorded);
    }
  }
  std::optional<DeliveryReport> WaitFirst(std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !reports_.empty(); })) return std::nullopt;
    return reports_.front();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<DeliveryReport> reports_;
  std::vector<ReportDone> held_;
};

constexpr const char* kPassword = "s3cr3t!";

ProviderConfig Config(int port, std::map<std::string, std::string> extra = {}) {
  ProviderConfig c;
  c.name = "smsc";
  c.type = "smpp";
  c.channels = {"sms"};
  c.options = {{"host", "127.0.0.1"},       {"port", std::to_string(port)},
               {"system_id", "otpd"},       {"password", kPassword},
               {"source_addr", "VERIFY"},   {"reconnect_min_ms", "50"},
               {"reconnect_max_ms", "200"}, {"connect_timeout_s", "2"}};
  for (auto& [k, v] : extra) c.options[k] = v;
  return c;
}

OutboundMessage Sms(std::string text = "Your code is 123456") {
  OutboundMessage m;
  m.channel = "sms";
  m.to = "+306912345678";
  m.verification_id = "ver_1";
  m.locale = "en";
  m.text = std::move(text);
  m.code = "123456";
  return m;
}

// A deliver_sm carrying an SMSC delivery receipt with `text`.
Pdu Receipt(std::uint32_t sequence, std::string text) {
  Pdu receipt;
  receipt.command_id = smpp::kDeliverSm;
  receipt.sequence_number = sequence;
  receipt.esm_class = smpp::kEsmClassDeliveryReceipt;
  receipt.short_message = std::move(text);
  return receipt;
}

class SmppChannelTest : public ::testing::Test {
 protected:
  std::unique_ptr<ChannelProvider> Make(ProviderConfig config) {
    auto p = NewSmppChannel(config, context_);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p).value() : nullptr;
  }

  RecordingSink sink_;
  ProviderContext context_{otp::SystemClock(), sink_};
};

TEST_F(SmppChannelTest, SubmitsAndHandsReceiptsToTheSink) {
  FakeSmsc smsc;
  auto p = Make(Config(smsc.port()));
  auto r = p->Send(Sms());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->provider_message_id, "id-0");
  EXPECT_EQ(p->Bound(), std::optional<bool>(true));

  auto binds = smsc.Received(smpp::kBindTransceiver);
  ASSERT_EQ(binds.size(), 1u);
  EXPECT_EQ(binds[0].system_id, "otpd");
  EXPECT_EQ(binds[0].password, kPassword);
  EXPECT_EQ(binds[0].interface_version, 0x34);
  auto submits = smsc.Received(smpp::kSubmitSm);
  ASSERT_EQ(submits.size(), 1u);
  EXPECT_EQ(submits[0].destination_addr, "306912345678");
  EXPECT_EQ(submits[0].dest_addr_ton, 1);
  EXPECT_EQ(submits[0].source_addr, "VERIFY");
  EXPECT_EQ(submits[0].source_addr_ton, 5);
  EXPECT_EQ(submits[0].registered_delivery, 1);
  EXPECT_EQ(submits[0].data_coding, 0);
  EXPECT_EQ(submits[0].short_message, "Your code is 123456");

  const Pdu receipt =
      Receipt(77,
              "id:id-0 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
              "stat:UNDELIV err:001 text:Your code");
  smsc.Send(receipt);
  auto report = sink_.WaitFirst();
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->provider, "smsc");
  EXPECT_EQ(report->provider_message_id, "id-0");
  EXPECT_EQ(report->status, kDeliveryUndelivered);
  EXPECT_EQ(report->detail, "UNDELIV");
  ASSERT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kDeliverSmResp) == 1; }));
  EXPECT_EQ(smsc.Received(smpp::kDeliverSmResp)[0].sequence_number, 77u);
}

// The deliver_sm_resp goes out only once the sink answered that the receipt
// is recorded: acknowledged earlier, a crash before the commit would lose it.
TEST_F(SmppChannelTest, AcknowledgesAReceiptOnlyOnceTheSinkRecordedIt) {
  FakeSmsc smsc;
  auto p = Make(Config(smsc.port()));
  ASSERT_TRUE(p->Send(Sms()).ok());
  sink_.hold = true;
  const Pdu receipt = Receipt(41, "id:id-0 stat:DELIVRD");
  smsc.Send(receipt);
  ASSERT_TRUE(sink_.WaitFirst().has_value());
  // An enquire_link sent after the receipt is answered after it, on the same
  // connection: its answer proves the receipt was read and not answered.
  Pdu ping;
  ping.command_id = smpp::kEnquireLink;
  ping.sequence_number = 42;
  smsc.Send(ping);
  ASSERT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kEnquireLinkResp) == 1; }));
  EXPECT_EQ(smsc.Count(smpp::kDeliverSmResp), 0u);
  sink_.AnswerHeld(true);
  ASSERT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kDeliverSmResp) == 1; }));
  const Pdu resp = smsc.Received(smpp::kDeliverSmResp)[0];
  EXPECT_EQ(resp.sequence_number, 41u);
  EXPECT_EQ(resp.command_status, smpp::kEsmeRok);
}

// A receipt the sink did not take (otpd stopping, the store failing) is
// answered with a temporary error: the SMSC sends it again later.
TEST_F(SmppChannelTest, AReceiptNotRecordedIsAnsweredWithATemporaryError) {
  FakeSmsc smsc;
  auto p = Make(Config(smsc.port()));
  ASSERT_TRUE(p->Send(Sms()).ok());
  sink_.answer = false;
  const Pdu receipt = Receipt(43, "id:id-0 stat:UNDELIV");
  smsc.Send(receipt);
  ASSERT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kDeliverSmResp) == 1; }));
  const Pdu resp = smsc.Received(smpp::kDeliverSmResp)[0];
  EXPECT_EQ(resp.sequence_number, 43u);
  EXPECT_EQ(resp.command_status, smpp::kEsmeRxTAppn);
}

// Stopping unbinds a bound link before closing it, so the SMSC frees the bind
// at once; an SMSC that never answers the unbind does not hold the stop up.
TEST_F(SmppChannelTest, StoppingUnbindsBeforeClosing) {
  for (const bool answered : {true, false}) {
    SCOPED_TRACE(answered ? "unbind answered" : "unbind never answered");
    FakeSmsc smsc;
    smsc.answer_unbind = answered;
    auto p = Make(Config(smsc.port()));
    ASSERT_TRUE(p->Send(Sms()).ok());
    p.reset();  // returns once the connection is closed
    EXPECT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kUnbind) == 1; }));
    EXPECT_EQ(smsc.Count(smpp::kBindTransceiver), 1u);  // and no re-bind after it
  }
}

TEST_F(SmppChannelTest, AnswersTheSmscsEnquireLinkAndSendsItsOwn) {
  FakeSmsc smsc;
  auto p = Make(Config(smsc.port(), {{"enquire_link_s", "1"}}));
  ASSERT_TRUE(p->Send(Sms()).ok());
  Pdu ping;
  ping.command_id = smpp::kEnquireLink;
  ping.sequence_number = 5;
  smsc.Send(ping);
  EXPECT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kEnquireLinkResp) == 1; }));
  EXPECT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kEnquireLink) >= 1; }, 4s));
}

TEST_F(SmppChannelTest, KeepsAtMostWindowSubmitsInFlight) {
  FakeSmsc smsc;
  std::mutex mu;
  std::vector<Pdu> held;
  std::atomic<bool> hold{true};
  smsc.on_submit = [&](const Pdu& p, int index) -> std::optional<Pdu> {
    Pdu resp;
    resp.command_id = smpp::kSubmitSmResp;
    resp.message_id = "id-" + std::to_string(index);
    std::lock_guard lock(mu);
    if (hold) {
      held.push_back(p);
      return std::nullopt;
    }
    return resp;
  };
  auto p = Make(Config(smsc.port(), {{"window", "3"}}));
  std::vector<std::thread> senders;
  std::atomic<int> ok{0};
  for (int i = 0; i < 7; ++i) {
    senders.emplace_back([&] { ok += p->Send(Sms()).ok() ? 1 : 0; });
  }
  ASSERT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kSubmitSm) >= 3; }));
  std::this_thread::sleep_for(300ms);  // room for a fourth, were the window not kept
  EXPECT_EQ(smsc.Count(smpp::kSubmitSm), 3u);
  {
    std::lock_guard lock(mu);
    hold = false;
    for (std::size_t i = 0; i < held.size(); ++i) {
      Pdu resp;
      resp.command_id = smpp::kSubmitSmResp;
      resp.sequence_number = held[i].sequence_number;
      resp.message_id = "held-" + std::to_string(i);
      smsc.Send(resp);
    }
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(smsc.Count(smpp::kSubmitSm), 7u);
  EXPECT_EQ(ok.load(), 7);
}

TEST_F(SmppChannelTest, ThrottledSubmitIsRetriedAfterAPause) {
  FakeSmsc smsc;
  smsc.on_submit = [](const Pdu&, int index) -> std::optional<Pdu> {
    Pdu resp;
    resp.command_id = smpp::kSubmitSmResp;
    if (index == 0) {
      resp.command_status = smpp::kEsmeRthrottled;
    } else {
      resp.message_id = "id-" + std::to_string(index);
    }
    return resp;
  };
  auto p = Make(Config(smsc.port(), {{"throttle_ms", "300"}}));
  const auto start = std::chrono::steady_clock::now();
  auto r = p->Send(Sms());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->provider_message_id, "id-1");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  auto submits = smsc.Received(smpp::kSubmitSm);
  ASSERT_EQ(submits.size(), 2u);
  EXPECT_EQ(submits[0].short_message, submits[1].short_message);
  EXPECT_NE(submits[0].sequence_number, submits[1].sequence_number);
}

TEST_F(SmppChannelTest, RefusedSubmitIsUnavailableWithTheSmscStatus) {
  FakeSmsc smsc;
  smsc.on_submit = [](const Pdu&, int) -> std::optional<Pdu> {
    Pdu resp;
    resp.command_id = smpp::kSubmitSmResp;
    resp.command_status = 0x45;
    return resp;
  };
  auto p = Make(Config(smsc.port()));
  auto r = p->Send(Sms());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), otp::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("ESME_RSUBMITFAIL"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(p->Bound(), std::optional<bool>(true));  // a refusal keeps the bind
}

TEST_F(SmppChannelTest, SubmitTimeoutFailsAndRebinds) {
  FakeSmsc smsc;
  smsc.on_submit = [](const Pdu&, int index) -> std::optional<Pdu> {
    if (index == 0) return std::nullopt;  // never answered
    Pdu resp;
    resp.command_id = smpp::kSubmitSmResp;
    resp.message_id = "id-" + std::to_string(index);
    return resp;
  };
  auto p = Make(Config(smsc.port(), {{"submit_timeout_s", "1"}}));
  const auto start = std::chrono::steady_clock::now();
  auto r = p->Send(Sms());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), otp::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("submit_sm_resp"), std::string::npos) << r.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kBindTransceiver) == 2; }));
  auto again = p->Send(Sms());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
}

TEST_F(SmppChannelTest, DroppedConnectionFailsEveryPendingSubmitThenRebinds) {
  FakeSmsc smsc;
  std::atomic<bool> hold{true};
  smsc.on_submit = [&](const Pdu&, int index) -> std::optional<Pdu> {
    if (hold) return std::nullopt;
    Pdu resp;
    resp.command_id = smpp::kSubmitSmResp;
    resp.message_id = "id-" + std::to_string(index);
    return resp;
  };
  auto p = Make(Config(smsc.port(), {{"window", "4"}}));
  std::vector<std::thread> senders;
  std::atomic<int> unavailable{0};
  for (int i = 0; i < 6; ++i) {
    senders.emplace_back([&] {
      auto r = p->Send(Sms());
      if (!r.ok() && r.status().code() == otp::StatusCode::kUnavailable) ++unavailable;
    });
  }
  ASSERT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kSubmitSm) == 4; }));
  hold = false;
  smsc.Drop();
  for (auto& t : senders) t.join();
  EXPECT_EQ(unavailable.load(), 6);  // four in flight, two waiting for the window
  EXPECT_TRUE(smsc.WaitFor([&] { return smsc.CountLocked(smpp::kBindTransceiver) == 2; }));
  auto r = p->Send(Sms());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

TEST_F(SmppChannelTest, SmscDownAnswersAtOnceWithoutThePassword) {
  int port = 0;
  {
    FakeSmsc gone;  // a port that nothing listens on once this closes
    port = gone.port();
  }
  auto p = Make(Config(port));
  const auto start = std::chrono::steady_clock::now();
  auto r = p->Send(Sms());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), otp::StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  EXPECT_EQ(r.status().message().find(kPassword), std::string::npos);
  EXPECT_EQ(p->Bound(), std::optional<bool>(false));
}

TEST_F(SmppChannelTest, RefusedBindIsReportedWithoutThePassword) {
  FakeSmsc smsc;
  smsc.bind_status = 0x0E;  // ESME_RINVPASWD
  auto p = Make(Config(smsc.port()));
  auto r = p->Send(Sms());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ESME_RINVPASWD"), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().message().find(kPassword), std::string::npos);
}

TEST(SmppChannelInline, ASinkThatSendsFromOnReportGetsAnErrorNotADeadlock) {
  FakeSmsc smsc;
  struct InlineSink : DeliveryReportSink {
    ChannelProvider* provider = nullptr;
    std::promise<otp::StatusCode> result;
    void OnReport(const DeliveryReport&, ReportDone done) override {
      result.set_value(provider->Send(Sms()).status().code());
      if (done) done(true);
    }
  } sink;
  ProviderContext context{otp::SystemClock(), sink};
  auto p = NewSmppChannel(Config(smsc.port()), context);
  ASSERT_TRUE(p.ok());
  sink.provider = p->get();
  ASSERT_TRUE((*p)->Send(Sms()).ok());
  const Pdu receipt = Receipt(1, "id:id-0 stat:DELIVRD");
  smsc.Send(receipt);
  auto code = sink.result.get_future();
  ASSERT_EQ(code.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(code.get(), otp::StatusCode::kInternal);
}

// --- settings and the submit_sm --------------------------------------------------

TEST(SmppSettings, DefaultsFromTheSpec) {
  auto s = ParseSmppSettings(Config(2775, {}));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->window, 10);
  EXPECT_FALSE(s->tls);
  EXPECT_EQ(s->source_ton, 5);
  EXPECT_EQ(s->source_npi, 0);
  EXPECT_EQ(s->enquire_link, std::chrono::seconds(30));
  EXPECT_EQ(s->submit_timeout, std::chrono::seconds(10));
}

TEST(SmppSettings, SourceAddressFormSetsTonAndNpi) {
  auto s = ParseSmppSettings(Config(1, {{"source_addr", "+306912345678"}}));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->source_ton, 1);
  EXPECT_EQ(s->source_npi, 1);
  s = ParseSmppSettings(Config(1, {{"source_addr", "12345"}}));
  EXPECT_EQ(s->source_ton, 0);
  EXPECT_EQ(s->source_npi, 1);
  s = ParseSmppSettings(Config(1, {{"source_addr", "12345"}, {"source_ton", "3"}}));
  EXPECT_EQ(s->source_ton, 3);
}

TEST(SmppSettings, BadOptionsAreRefusedByName) {
  struct Case {
    std::map<std::string, std::string> extra;
    const char* key;
  };
  const Case cases[] = {
      {{{"hots", "x"}}, "hots"},
      {{{"host", ""}}, "host"},
      {{{"port", "0"}}, "port"},
      {{{"port", "80x"}}, "port"},
      {{{"system_id", ""}}, "system_id"},
      {{{"system_id", "sixteen-chars-xx"}}, "system_id"},
      {{{"password", "123456789"}}, "password"},
      {{{"window", "0"}}, "window"},
      {{{"window", "1001"}}, "window"},
      {{{"tls", "yes"}}, "tls"},
      {{{"ca_file", "/etc/ssl/certs/ca-certificates.crt"}}, "ca_file"},
      {{{"submit_timeout_s", "-1"}}, "submit_timeout_s"},
      {{{"source_addr", std::string(21, '1')}}, "source_addr"},
      {{{"reconnect_min_ms", "5000"}, {"reconnect_max_ms", "1000"}}, "reconnect_max_ms"},
  };
  for (const Case& c : cases) {
    auto s = ParseSmppSettings(Config(2775, c.extra));
    ASSERT_FALSE(s.ok()) << c.key;
    EXPECT_EQ(s.status().code(), otp::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.key), std::string::npos) << s.status().message();
    EXPECT_EQ(s.status().message().find("123456789"), std::string::npos);
  }
  RecordingSink sink;
  ProviderContext context{otp::SystemClock(), sink};
  EXPECT_FALSE(
      NewSmppChannel(Config(2775, {{"tls", "true"}, {"ca_file", "/nonexistent.pem"}}), context)
          .ok());
}

TEST(SmppSubmit, GreekGoesUcs2AndLongTextInMessagePayload) {
  auto s = ParseSmppSettings(Config(1)).value();
  auto greek = BuildSubmitSm(s, Sms("Ο κωδικός σας είναι 123456"));
  ASSERT_TRUE(greek.ok());
  EXPECT_EQ(greek->data_coding, 8);
  EXPECT_EQ(greek->short_message.size(), 2u * 26);
  EXPECT_TRUE(greek->tlvs.empty());

  auto long_text = BuildSubmitSm(s, Sms(std::string(200, 'x')));
  ASSERT_TRUE(long_text.ok());
  EXPECT_EQ(long_text->data_coding, 0);
  EXPECT_EQ(long_text->short_message, "");
  ASSERT_EQ(long_text->tlvs.size(), 1u);
  EXPECT_EQ(long_text->tlvs[0].tag, smpp::kTagMessagePayload);
  EXPECT_EQ(long_text->tlvs[0].value, std::string(200, 'x'));

  OutboundMessage bad = Sms();
  bad.to = "+" + std::string(21, '1');
  EXPECT_FALSE(BuildSubmitSm(s, bad).ok());
  EXPECT_FALSE(BuildSubmitSm(s, Sms("\xff")).ok());
}

}  // namespace
}  // namespace otpd
