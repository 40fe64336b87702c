#include "channels/smpp/smpp_channel.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "channels/smpp/receipt.h"
#include "channels/smpp/sms_text.h"
#include "service/log_text.h"

namespace otpd {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using ErrorCode = boost::system::error_code;

constexpr milliseconds kTick{50};          // granularity of timeouts, keep-alive and throttling
constexpr milliseconds kUnbindWait{1000};  // for unbind_resp when stopping

long long Ms(milliseconds d) { return static_cast<long long>(d.count()); }

// --- settings -------------------------------------------------------------------

const std::set<std::string, std::less<>> kKeys = {"host",
                                                  "port",
                                                  "system_id",
                                                  "password",
                                                  "system_type",
                                                  "source_addr",
                                                  "source_ton",
                                                  "source_npi",
                                                  "dest_ton",
                                                  "dest_npi",
                                                  "window",
                                                  "tls",
                                                  "ca_file",
                                                  "enquire_link_s",
                                                  "connect_timeout_s",
                                                  "submit_timeout_s",
                                                  "max_wait_s",
                                                  "reconnect_min_ms",
                                                  "reconnect_max_ms",
                                                  "throttle_ms"};

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The source address as it goes on the wire ('+' dropped from an E.164 sender).
std::string WireAddress(std::string_view addr) {
  if (addr.starts_with('+')) addr.remove_prefix(1);
  return std::string(addr);
}

// --- one submit_sm waiting for its answer ------------------------------------------

struct SubmitRequest {
  smpp::Pdu pdu;
  SteadyClock::time_point give_up_at;  // window wait and throttling end here
  std::promise<otp::Result<SendReceipt>> promise;
  bool done = false;  // touched on the I/O thread only

  void Finish(otp::Result<SendReceipt> result) {
    if (done) return;
    done = true;
    promise.set_value(std::move(result));
  }
};

// One TCP (or TLS) connection to the SMSC. Lives on the I/O thread.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, asio::ssl::context& tls_context, bool tls)
      : resolver(io), stream(io, tls_context), tls_(tls) {}

  tcp::resolver resolver;
  asio::ssl::stream<tcp::socket> stream;
  bool bound = false;
  bool broken = false;
  bool timed_out = false;  // the connect watchdog fired
  std::string reason;      // why it broke (the first cause)
  std::function<void(const std::string&)> on_write_error;

  bool tls() const { return tls_; }

  asio::awaitable<std::size_t> Read(asio::mutable_buffer buffer, ErrorCode& ec) {
    if (tls_) {
      co_return co_await asio::async_read(stream, buffer,
                                          asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return co_await asio::async_read(stream.next_layer(), buffer,
                                        asio::redirect_error(asio::use_awaitable, ec));
  }

  // Queues `bytes`; they go out in order, after the write under way, together
  // with everything queued meanwhile.
  void Write(std::string bytes) {
    if (broken) return;
    queue_.push_back(std::move(bytes));
    if (writing_.empty()) WriteQueued();
  }

  // Sends the ACK of what was read now rather than after the delayed-ACK
  // timer (setting TCP_QUICKACK flushes a pending ACK). For a PDU whose answer
  // is deferred: an SMSC with Nagle's algorithm on holds its next small PDU
  // (a submit_sm_resp) until that ACK comes, and window 1 ran at half speed
  // against the npm peer when receipts were answered late without this.
  void QuickAck() {
    const int on = 1;
    ::setsockopt(stream.next_layer().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on);
  }

  void Close() {
    ErrorCode ec;
    resolver.cancel();
    stream.next_layer().shutdown(tcp::socket::shutdown_both, ec);
    stream.next_layer().close(ec);
  }

 private:
  // Writes every queued PDU in one gather write: a burst (receipts answered
  // after their commit, a window's submits) costs one write, not one each,
  // and a submit queued behind it does not wait for a write per PDU.
  void WriteQueued() {
    writing_.swap(queue_);
    buffers_.clear();
    for (const std::string& pdu : writing_) buffers_.push_back(asio::buffer(pdu));
    auto done = [self = shared_from_this()](const ErrorCode& ec, std::size_t) {
      if (ec) {
        if (self->on_write_error) self->on_write_error("write failed: " + ec.message());
        return;
      }
      self->writing_.clear();
      if (!self->queue_.empty()) self->WriteQueued();
    };
    if (tls_) {
      asio::async_write(stream, buffers_, done);
    } else {
      asio::async_write(stream.next_layer(), buffers_, done);
    }
  }

  bool tls_;
  std::vector<std::string> queue_;    // waiting for the write under way
  std::vector<std::string> writing_;  // being written (empty: no write under way)
  std::vector<asio::const_buffer> buffers_;
};

class SmppChannel final : public ChannelProvider {
 public:
  SmppChannel(SmppSettings s, ProviderContext& context, asio::ssl::context tls_context)
      : s_(std::move(s)),
        reports_(context.reports),
        tls_context_(std::move(tls_context)),
        tick_(io_),
        backoff_(io_),
        throttle_delay_(s_.throttle) {
    asio::co_spawn(io_, Run(), [name = s_.name](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        spdlog::error(R"("event":"smpp_stopped","provider":{},"error":{})", LogText(name),
                      LogText(x.what()));
      }
    });
    Tick();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~SmppChannel() override {
    asio::post(io_, [this] { Stop(); });
    thread_.join();
  }

  otp::Result<SendReceipt> Send(const OutboundMessage& message) override {
    if (std::this_thread::get_id() == thread_.get_id()) {
      // A report sink sending inline from OnReport would wait on itself.
      return otp::Internal(Where() + "Send called on the provider's own I/O thread");
    }
    auto pdu = BuildSubmitSm(s_, message);
    if (!pdu.ok()) return otp::InvalidArgument(Where() + pdu.error().message());
    {
      std::unique_lock lock(mu_);
      // A bind in progress (start-up, re-bind) is worth waiting for; a provider
      // in back-off after a failure answers at once, so the dispatcher fails over.
      cv_.wait_for(lock, s_.connect_timeout, [&] { return state_ != State::kConnecting; });
      if (state_ != State::kBound) {
        return otp::Unavailable(Where() + "not bound to the SMSC" +
                                (last_error_.empty() ? "" : " (" + last_error_ + ")"));
      }
    }
    auto request = std::make_shared<SubmitRequest>();
    request->pdu = std::move(pdu).value();
    request->give_up_at = SteadyClock::now() + s_.max_wait;
    auto answer = request->promise.get_future();
    asio::post(io_, [this, request] { Enqueue(request); });
    // The I/O thread answers every request within these bounds; this is a backstop.
    const auto limit =
        s_.max_wait + s_.submit_timeout + s_.connect_timeout + std::chrono::seconds(1);
    if (answer.wait_for(limit) != std::future_status::ready) {
      return otp::Unavailable(Where() + "no answer from the provider's I/O thread");
    }
    try {
      return answer.get();
    } catch (const std::future_error&) {
      return otp::Unavailable(Where() + "provider stopped");
    }
  }

  std::optional<bool> Bound() const override { return bound_.load(); }

 private:
  enum class State { kConnecting, kBound, kDown };

  struct InFlight {
    std::shared_ptr<SubmitRequest> request;
    SteadyClock::time_point deadline;
  };

  std::string Where() const { return "smpp provider " + s_.name + ": "; }

  void SetState(State state, std::string error) {
    {
      std::lock_guard lock(mu_);
      state_ = state;
      last_error_ = std::move(error);
    }
    bound_.store(state == State::kBound);
    cv_.notify_all();
  }

  // --- the connection's life (I/O thread) -----------------------------------------

  // Ends the provider. A bound link is unbound first (SMPP 3.4 §4.2), so the
  // SMSC frees the bind now rather than after its own timeout (an SMSC that
  // allows one bind per account would refuse the next start's bind until
  // then); the connection closes on unbind_resp or after kUnbindWait.
  void Stop() {
    stopping_ = true;
    tick_.cancel();
    backoff_.cancel();
    FailAll("provider stopped");  // (none in flight: the dispatcher stopped first)
    if (!conn_ || conn_->broken) return;
    if (!conn_->bound) return Break(conn_, "provider stopped");
    smpp::Pdu unbind;
    unbind.command_id = smpp::kUnbind;
    unbind.sequence_number = NextSequence();
    WritePdu(conn_, unbind);
    unbind_wait_.expires_after(kUnbindWait);
    unbind_wait_.async_wait([this, conn = conn_](const ErrorCode&) {
      Break(conn, "provider stopped");  // answered (cancelled by Break) or not
    });
  }

  asio::awaitable<void> Run() {
    milliseconds backoff = s_.reconnect_min;
    while (!stopping_) {
      SetState(State::kConnecting, "");
      auto conn = std::make_shared<Connection>(io_, tls_context_, s_.tls);
      conn->on_write_error = [this, weak = std::weak_ptr<Connection>(conn)](const std::string& e) {
        if (auto c = weak.lock()) Break(c, e);
      };
      conn_ = conn;
      std::string error = co_await ConnectAndBind(conn);
      const bool was_bound = error.empty() && !stopping_;
      if (was_bound) {
        backoff = s_.reconnect_min;
        conn->bound = true;
        last_rx_ = SteadyClock::now();
        enquire_sent_.reset();
        SetState(State::kBound, "");
        spdlog::info(R"("event":"smpp_bound","provider":{},"host":{},"port":{},"tls":{})",
                     LogText(s_.name), LogText(s_.host), s_.port, s_.tls);
        error = co_await ReadLoop(conn);
      }
      Break(conn, error);
      if (stopping_) break;
      spdlog::warn(R"("event":"{}","provider":{},"error":{},"retry_in_ms":{})",
                   was_bound ? "smpp_connection_lost" : "smpp_bind_failed", LogText(s_.name),
                   LogText(conn->reason), Ms(backoff));
      backoff_.expires_after(backoff);
      ErrorCode ec;
      co_await backoff_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      backoff = std::min(backoff * 2, s_.reconnect_max);
    }
    conn_.reset();
    SetState(State::kDown, "provider stopped");
  }

  // "" once bound, else why not.
  asio::awaitable<std::string> ConnectAndBind(std::shared_ptr<Connection> conn) {
    asio::steady_timer watchdog(io_);
    watchdog.expires_after(s_.connect_timeout);
    watchdog.async_wait([conn](const ErrorCode& ec) {
      if (ec) return;
      conn->timed_out = true;
      conn->Close();
    });
    std::string error = co_await ConnectAndBindSteps(conn);
    watchdog.cancel();
    if (!error.empty() && conn->timed_out) {
      error = "no bind within " + std::to_string(Ms(s_.connect_timeout)) + " ms (" + error + ")";
    }
    co_return error;
  }

  asio::awaitable<std::string> ConnectAndBindSteps(std::shared_ptr<Connection> conn) {
    ErrorCode ec;
    auto endpoints = co_await conn->resolver.async_resolve(
        s_.host, std::to_string(s_.port), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return "resolve " + s_.host + ": " + ec.message();
    co_await asio::async_connect(conn->stream.next_layer(), endpoints,
                                 asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return "connect " + s_.host + ":" + std::to_string(s_.port) + ": " + ec.message();
    conn->stream.next_layer().set_option(tcp::no_delay(true), ec);
    if (conn->tls()) {
      if (SSL_set_tlsext_host_name(conn->stream.native_handle(), s_.host.c_str()) != 1) {
        co_return "TLS: cannot set the server name";
      }
      conn->stream.set_verify_mode(asio::ssl::verify_peer);
      conn->stream.set_verify_callback(asio::ssl::host_name_verification(s_.host));
      co_await conn->stream.async_handshake(asio::ssl::stream_base::client,
                                            asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return "TLS handshake: " + ec.message();
    }
    smpp::Pdu bind;
    bind.command_id = smpp::kBindTransceiver;
    bind.sequence_number = NextSequence();
    bind.system_id = s_.system_id;
    bind.password = s_.password;
    bind.system_type = s_.system_type;
    auto bytes = smpp::EncodePdu(bind);
    if (!bytes.ok()) co_return bytes.error().message();  // never carries field values
    conn->Write(std::move(bytes).value());
    for (;;) {
      auto pdu = co_await ReadPdu(conn);
      if (!pdu.ok()) co_return pdu.error().message();
      if (pdu->command_id == smpp::kBindTransceiverResp &&
          pdu->sequence_number == bind.sequence_number) {
        if (pdu->command_status != smpp::kEsmeRok) {
          co_return "bind_transceiver refused: " + smpp::StatusName(pdu->command_status);
        }
        co_return "";
      }
      if (pdu->command_id == smpp::kGenericNack) {
        co_return "bind_transceiver answered by generic_nack: " +
            smpp::StatusName(pdu->command_status);
      }
      if (pdu->command_id == smpp::kEnquireLink) Reply(conn, *pdu, smpp::kEnquireLinkResp);
    }
  }

  // The next whole, decoded PDU. An error ends the connection; a PDU that is
  // framed but malformed is answered with generic_nack and skipped.
  asio::awaitable<otp::Result<smpp::Pdu>> ReadPdu(std::shared_ptr<Connection> conn) {
    for (;;) {
      std::string frame(4, '\0');
      ErrorCode ec;
      co_await conn->Read(asio::buffer(frame), ec);
      if (ec) co_return otp::Unavailable(conn->broken ? conn->reason : "read: " + ec.message());
      auto length = smpp::PduLength(frame);
      if (!length.ok()) co_return length.error();
      frame.resize(*length);
      co_await conn->Read(asio::buffer(frame.data() + 4, frame.size() - 4), ec);
      if (ec) co_return otp::Unavailable(conn->broken ? conn->reason : "read: " + ec.message());
      last_rx_ = SteadyClock::now();
      auto pdu = smpp::DecodePdu(frame);
      if (pdu.ok()) co_return pdu;
      spdlog::warn(R"("event":"smpp_malformed_pdu","provider":{},"error":{})", LogText(s_.name),
                   LogText(pdu.error().message()));
      if (frame.size() >= smpp::kHeaderLength &&
          (static_cast<unsigned char>(frame[4]) & 0x80) == 0) {
        smpp::Pdu nack;
        nack.command_id = smpp::kGenericNack;
        nack.command_status = 0x02;  // ESME_RINVCMDLEN
        for (int i = 12; i < 16; ++i) {
          nack.sequence_number = (nack.sequence_number << 8) |
                                 static_cast<unsigned char>(frame[static_cast<std::size_t>(i)]);
        }
        WritePdu(conn, nack);
      }
    }
  }

  // "" when the SMSC or the provider ended it; the reason otherwise.
  asio::awaitable<std::string> ReadLoop(std::shared_ptr<Connection> conn) {
    for (;;) {
      auto pdu = co_await ReadPdu(conn);
      if (!pdu.ok()) co_return pdu.error().message();
      OnPdu(conn, *pdu);
      if (conn->broken) co_return conn->reason;
    }
  }

  // Ends `conn` (once): closes it and, if it is the current one, fails every
  // submit waiting on it so the dispatcher fails over.
  void Break(const std::shared_ptr<Connection>& conn, const std::string& reason) {
    if (stopping_) unbind_wait_.cancel();
    if (conn->broken) return;
    conn->broken = true;
    conn->reason = reason.empty() ? "connection closed" : reason;
    conn->Close();
    if (conn == conn_) {
      SetState(State::kDown, conn->reason);
      FailAll("connection lost: " + conn->reason);
    }
  }

  void FailAll(const std::string& why) {
    for (auto& [seq, f] : inflight_) f.request->Finish(otp::Unavailable(Where() + why));
    inflight_.clear();
    for (auto& r : waiting_) r->Finish(otp::Unavailable(Where() + why));
    waiting_.clear();
    enquire_sent_.reset();
    throttled_until_ = {};
    throttle_delay_ = s_.throttle;
  }

  // --- PDUs (I/O thread) -------------------------------------------------------------

  std::uint32_t NextSequence() {
    next_sequence_ = next_sequence_ >= 0x7FFFFFFF ? 1 : next_sequence_ + 1;
    return next_sequence_;
  }

  void WritePdu(const std::shared_ptr<Connection>& conn, const smpp::Pdu& pdu) {
    auto bytes = smpp::EncodePdu(pdu);
    if (!bytes.ok()) {
      spdlog::error(R"("event":"smpp_encode_failed","provider":{},"error":{})", LogText(s_.name),
                    LogText(bytes.error().message()));
      return;
    }
    conn->Write(std::move(bytes).value());
  }

  void Reply(const std::shared_ptr<Connection>& conn, const smpp::Pdu& request,
             std::uint32_t command_id, std::uint32_t status = smpp::kEsmeRok) {
    smpp::Pdu resp;
    resp.command_id = command_id;
    resp.command_status = status;
    resp.sequence_number = request.sequence_number;
    WritePdu(conn, resp);
  }

  void OnPdu(const std::shared_ptr<Connection>& conn, const smpp::Pdu& pdu) {
    switch (pdu.command_id) {
      case smpp::kSubmitSmResp:
      case smpp::kGenericNack:
        OnSubmitAnswer(pdu);
        break;
      case smpp::kDeliverSm:
        OnDeliverSm(conn, pdu);
        break;
      case smpp::kEnquireLink:
        Reply(conn, pdu, smpp::kEnquireLinkResp);
        break;
      case smpp::kEnquireLinkResp:
        enquire_sent_.reset();
        break;
      case smpp::kUnbind:
        Reply(conn, pdu, smpp::kUnbindResp);
        Break(conn, "the SMSC unbound");
        break;
      case smpp::kUnbindResp:
        if (stopping_) {
          spdlog::info(R"("event":"smpp_unbound","provider":{})", LogText(s_.name));
          Break(conn, "provider stopped");
        }
        break;
      case smpp::kBindTransceiverResp:
        break;
      default:
        if ((pdu.command_id & 0x80000000) == 0) {
          Reply(conn, pdu, smpp::kGenericNack, smpp::kEsmeRinvCmdId);
        }
    }
  }

  void OnSubmitAnswer(const smpp::Pdu& pdu) {
    auto it = inflight_.find(pdu.sequence_number);
    if (it == inflight_.end()) {
      if (pdu.command_id == smpp::kGenericNack) {
        spdlog::warn(R"("event":"smpp_generic_nack","provider":{},"status":{})", LogText(s_.name),
                     LogText(smpp::StatusName(pdu.command_status)));
      }
      return;  // answered too late (already failed) or never asked
    }
    auto request = it->second.request;
    inflight_.erase(it);
    const auto now = SteadyClock::now();
    if (pdu.command_id == smpp::kSubmitSmResp && pdu.command_status == smpp::kEsmeRok) {
      throttle_delay_ = s_.throttle;
      request->Finish(SendReceipt{pdu.message_id});
    } else if (pdu.command_status == smpp::kEsmeRthrottled) {
      throttled_until_ = now + throttle_delay_;
      spdlog::warn(R"("event":"smpp_throttled","provider":{},"retry_in_ms":{})", LogText(s_.name),
                   Ms(throttle_delay_));
      throttle_delay_ = std::min(throttle_delay_ * 2, s_.throttle * 10);
      if (throttled_until_ > request->give_up_at) {
        request->Finish(otp::Unavailable(Where() + "throttled by the SMSC for over " +
                                         std::to_string(Ms(s_.max_wait)) + " ms"));
      } else {
        request->pdu.sequence_number = 0;
        waiting_.push_front(request);  // first in line once the pause is over
      }
    } else {
      request->Finish(otp::Unavailable(
          Where() + "the SMSC refused the message: " + smpp::CommandName(pdu.command_id) + " " +
          smpp::StatusName(pdu.command_status)));
    }
    Pump();
  }

  void OnDeliverSm(const std::shared_ptr<Connection>& conn, const smpp::Pdu& pdu) {
    // A receipt is acknowledged only once it is in the store: the SMSC sends
    // a receipt it got no deliver_sm_resp for again (after a re-bind), and
    // one answered ESME_RX_T_APPN later, so otpd stopping or crashing before
    // the commit loses none. Applying one twice changes nothing more.
    auto answer = [this, conn, sequence = pdu.sequence_number](bool recorded) {
      smpp::Pdu resp;
      resp.command_id = smpp::kDeliverSmResp;
      resp.command_status = recorded ? smpp::kEsmeRok : smpp::kEsmeRxTAppn;
      resp.sequence_number = sequence;
      WritePdu(conn, resp);
    };
    if (auto receipt = smpp::ParseReceipt(pdu)) {
      const std::string status = smpp::DeliveryStatusForStat(receipt->stat);
      spdlog::info(R"("event":"smpp_receipt","provider":{},"message_id":{},"stat":{},"err":{})",
                   LogText(s_.name), LogText(receipt->message_id), LogText(receipt->stat),
                   LogText(receipt->err));
      if (!status.empty()) {
        conn->QuickAck();  // the answer waits for the commit: the ACK does not
        // The sink answers from its own thread (after the commit) or from
        // this one; the resp is written here, on the I/O thread, either way.
        // (The dispatcher answers every report before otpd destroys the
        // providers: this channel outlives each answer.)
        reports_.OnReport(DeliveryReport{s_.name, receipt->message_id, status, receipt->stat},
                          [this, answer](bool recorded) {
                            asio::post(io_, [answer, recorded] { answer(recorded); });
                          });
        return;
      }
    } else {
      spdlog::info(R"("event":"smpp_deliver_sm_ignored","provider":{},"esm_class":{})",
                   LogText(s_.name), pdu.esm_class);
    }
    answer(true);  // nothing to record: taken as it is
  }

  // --- the window (I/O thread) ----------------------------------------------------

  void Enqueue(const std::shared_ptr<SubmitRequest>& request) {
    if (stopping_ || !conn_ || !conn_->bound || conn_->broken) {
      request->Finish(otp::Unavailable(Where() + "not bound to the SMSC"));
      return;
    }
    waiting_.push_back(request);
    Pump();
  }

  // Starts waiting submits while the window has room and no throttling pause runs.
  void Pump() {
    if (!conn_ || !conn_->bound || conn_->broken) return;
    const auto now = SteadyClock::now();
    if (now < throttled_until_) return;
    while (!waiting_.empty() && inflight_.size() < static_cast<std::size_t>(s_.window)) {
      auto request = waiting_.front();
      waiting_.pop_front();
      request->pdu.sequence_number = NextSequence();
      auto bytes = smpp::EncodePdu(request->pdu);
      if (!bytes.ok()) {
        request->Finish(otp::InvalidArgument(Where() + bytes.error().message()));
        continue;
      }
      inflight_[request->pdu.sequence_number] = InFlight{request, now + s_.submit_timeout};
      conn_->Write(std::move(bytes).value());
    }
  }

  void Tick() {
    tick_.expires_after(kTick);
    tick_.async_wait([this](const ErrorCode& ec) {
      if (ec || stopping_) return;
      OnTick();
      Tick();
    });
  }

  void OnTick() {
    const auto now = SteadyClock::now();
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->give_up_at <= now) {
        (*it)->Finish(otp::Unavailable(Where() + "not submitted within " +
                                       std::to_string(Ms(s_.max_wait)) +
                                       " ms (window full or SMSC throttling)"));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
    if (!conn_ || !conn_->bound || conn_->broken) return;
    for (const auto& [seq, f] : inflight_) {
      if (f.deadline <= now) {
        Break(conn_, "no submit_sm_resp within " + std::to_string(Ms(s_.submit_timeout)) + " ms");
        return;
      }
    }
    if (enquire_sent_) {
      if (now - *enquire_sent_ >= s_.connect_timeout) {
        Break(conn_,
              "no enquire_link_resp within " + std::to_string(Ms(s_.connect_timeout)) + " ms");
        return;
      }
    } else if (now - last_rx_ >= s_.enquire_link) {
      smpp::Pdu ping;
      ping.command_id = smpp::kEnquireLink;
      ping.sequence_number = NextSequence();
      WritePdu(conn_, ping);
      enquire_sent_ = now;
    }
    Pump();
  }

  const SmppSettings s_;
  DeliveryReportSink& reports_;

  // Shared with Send's threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kConnecting;
  std::string last_error_;
  std::atomic<bool> bound_{false};

  // The I/O thread's own.
  asio::io_context io_;
  asio::ssl::context tls_context_;
  asio::steady_timer tick_;
  asio::steady_timer backoff_;
  asio::steady_timer unbind_wait_{io_};
  bool stopping_ = false;
  std::shared_ptr<Connection> conn_;
  std::uint32_t next_sequence_ = 0;
  std::map<std::uint32_t, InFlight> inflight_;
  std::deque<std::shared_ptr<SubmitRequest>> waiting_;
  SteadyClock::time_point last_rx_;
  std::optional<SteadyClock::time_point> enquire_sent_;
  SteadyClock::time_point throttled_until_{};
  milliseconds throttle_delay_;

  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace

otp::Result<SmppSettings> ParseSmppSettings(const ProviderConfig& config) {
  const std::string where = "provider " + config.name + " (smpp): ";
  for (const auto& [key, value] : config.options) {
    if (!kKeys.contains(key)) {
      std::string allowed;
      for (const auto& k : kKeys) allowed += (allowed.empty() ? "" : ", ") + k;
      return otp::InvalidArgument(where + "unknown option '" + key + "' (allowed: " + allowed +
                                  ")");
    }
  }
  auto get = [&](std::string_view key) -> std::optional<std::string> {
    auto it = config.options.find(std::string(key));
    if (it == config.options.end()) return std::nullopt;
    return it->second;
  };
  // An integer option within [lo, hi]; `fallback` when absent.
  auto integer = [&](std::string_view key, long long lo, long long hi, long long fallback,
                     long long* out) -> otp::Status {
    auto v = get(key);
    if (!v) {
      *out = fallback;
      return otp::Status::Ok();
    }
    long long n = 0;
    const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (ec != std::errc() || end != v->data() + v->size() || n < lo || n > hi) {
      return otp::InvalidArgument(where + std::string(key) + " must be an integer from " +
                                  std::to_string(lo) + " to " + std::to_string(hi));
    }
    *out = n;
    return otp::Status::Ok();
  };
  // A string option of at most `max` octets (SMPP's field limits).
  auto text = [&](std::string_view key, std::size_t max, std::string* out) -> otp::Status {
    *out = get(key).value_or("");
    if (out->size() > max) {
      return otp::InvalidArgument(where + std::string(key) + " is longer than " +
                                  std::to_string(max) + " characters");
    }
    if (out->find('\0') != std::string::npos) {
      return otp::InvalidArgument(where + std::string(key) + " must not contain NUL");
    }
    return otp::Status::Ok();
  };

  SmppSettings s;
  s.name = config.name;
  s.host = get("host").value_or("");
  if (s.host.empty()) return otp::InvalidArgument(where + "host is required");
  long long n = 0;
  OTP_RETURN_IF_ERROR(integer("port", 1, 65535, 2775, &n));
  s.port = static_cast<std::uint16_t>(n);
  OTP_RETURN_IF_ERROR(text("system_id", 15, &s.system_id));
  if (s.system_id.empty()) return otp::InvalidArgument(where + "system_id is required");
  OTP_RETURN_IF_ERROR(text("password", 8, &s.password));
  OTP_RETURN_IF_ERROR(text("system_type", 12, &s.system_type));
  OTP_RETURN_IF_ERROR(text("source_addr", 21, &s.source_addr));
  const std::string wire_source = WireAddress(s.source_addr);
  if (wire_source.size() > 20) {
    return otp::InvalidArgument(where + "source_addr is longer than 20 characters");
  }
  // Defaults from the sender's form: alphanumeric, international, or digits.
  long long ton = 0, npi = 0;
  if (s.source_addr.empty()) {
    ton = npi = 0;
  } else if (s.source_addr.starts_with('+') && IsDigits(wire_source)) {
    ton = npi = 1;
  } else if (IsDigits(s.source_addr)) {
    ton = 0;
    npi = 1;
  } else {
    ton = 5;
    npi = 0;
  }
  OTP_RETURN_IF_ERROR(integer("source_ton", 0, 6, ton, &n));
  s.source_ton = static_cast<std::uint8_t>(n);
  OTP_RETURN_IF_ERROR(integer("source_npi", 0, 18, npi, &n));
  s.source_npi = static_cast<std::uint8_t>(n);
  OTP_RETURN_IF_ERROR(integer("dest_ton", 0, 6, 1, &n));
  s.dest_ton = static_cast<std::uint8_t>(n);
  OTP_RETURN_IF_ERROR(integer("dest_npi", 0, 18, 1, &n));
  s.dest_npi = static_cast<std::uint8_t>(n);
  OTP_RETURN_IF_ERROR(integer("window", 1, 1000, 10, &n));
  s.window = static_cast<int>(n);

  const std::string tls = get("tls").value_or("false");
  // TOML booleans reach providers as "true"/"false" (or "1"/"0").
  if (tls != "true" && tls != "false" && tls != "1" && tls != "0") {
    return otp::InvalidArgument(where + "tls must be true or false");
  }
  s.tls = tls == "true" || tls == "1";
  s.ca_file = get("ca_file").value_or("");
  if (!s.ca_file.empty() && !s.tls) {
    return otp::InvalidArgument(where + "ca_file is set but tls is not true");
  }

  OTP_RETURN_IF_ERROR(integer("enquire_link_s", 1, 3600, 30, &n));
  s.enquire_link = std::chrono::seconds(n);
  OTP_RETURN_IF_ERROR(integer("connect_timeout_s", 1, 300, 5, &n));
  s.connect_timeout = std::chrono::seconds(n);
  OTP_RETURN_IF_ERROR(integer("submit_timeout_s", 1, 300, 10, &n));
  s.submit_timeout = std::chrono::seconds(n);
  OTP_RETURN_IF_ERROR(integer("max_wait_s", 1, 3600, 30, &n));
  s.max_wait = std::chrono::seconds(n);
  OTP_RETURN_IF_ERROR(integer("reconnect_min_ms", 10, 600000, 500, &n));
  s.reconnect_min = milliseconds(n);
  OTP_RETURN_IF_ERROR(integer("reconnect_max_ms", 10, 3600000, 30000, &n));
  s.reconnect_max = milliseconds(n);
  if (s.reconnect_max < s.reconnect_min) {
    return otp::InvalidArgument(where + "reconnect_max_ms must not be below reconnect_min_ms");
  }
  OTP_RETURN_IF_ERROR(integer("throttle_ms", 1, 600000, 1000, &n));
  s.throttle = milliseconds(n);
  return s;
}

otp::Result<smpp::Pdu> BuildSubmitSm(const SmppSettings& s, const OutboundMessage& m) {
  auto text = smpp::EncodeSmsText(m.text);
  if (!text.ok()) return text.error();
  smpp::Pdu p;
  p.command_id = smpp::kSubmitSm;
  p.source_addr_ton = s.source_ton;
  p.source_addr_npi = s.source_npi;
  p.source_addr = WireAddress(s.source_addr);
  p.dest_addr_ton = s.dest_ton;
  p.dest_addr_npi = s.dest_npi;
  p.destination_addr = WireAddress(m.to);
  if (p.destination_addr.empty() || p.destination_addr.size() > 20) {
    return otp::InvalidArgument("the recipient is not an SMPP address (1 to 20 characters)");
  }
  p.registered_delivery = 1;  // a receipt on success and on failure
  p.data_coding = text->data_coding;
  if (text->FitsOneSegment()) {
    p.short_message = std::move(text->octets);
  } else {
    p.tlvs.push_back({smpp::kTagMessagePayload, std::move(text->octets)});
  }
  auto bytes = smpp::EncodePdu(p);
  if (!bytes.ok()) return bytes.error();
  return p;
}

otp::Result<std::unique_ptr<ChannelProvider>> NewSmppChannel(const ProviderConfig& config,
                                                             ProviderContext& context) {
  auto settings = ParseSmppSettings(config);
  if (!settings.ok()) return settings.error();
  asio::ssl::context tls(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
  ErrorCode ec;
  if (!settings->ca_file.empty()) {
    tls.load_verify_file(settings->ca_file, ec);
    if (ec) {
      return otp::InvalidArgument("provider " + config.name + " (smpp): ca_file " +
                                  settings->ca_file + " cannot be loaded: " + ec.message());
    }
  } else {
    tls.set_default_verify_paths(ec);
  }
  return std::unique_ptr<ChannelProvider>(
      std::make_unique<SmppChannel>(std::move(settings).value(), context, std::move(tls)));
}

}  // namespace otpd
