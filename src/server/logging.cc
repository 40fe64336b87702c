#include "server/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <mutex>

namespace otpd {
namespace {

constexpr const char* kRequestLoggerName = "otpd.requests";

// The stderr sink of both loggers. Lines of the request logger are collected in
// memory and written in one write(2) per flush: at least every kFlushEvery
// (spdlog's periodic flusher) and whenever kMaxBuffered bytes are waiting; any
// other line is written at once, after the waiting ones, so events keep their
// order and show up when they happen. A request then pays for formatting its
// line and a short append under a mutex, not for a write(2) or for waking a
// logging thread (spdlog's async logger signals a condition variable per
// message: a futex wake per request under load). Request lines of the last
// kFlushEvery are lost if the process is killed.
class BufferedStderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  static constexpr std::size_t kMaxBuffered = 64 * 1024;

  ~BufferedStderrSink() override { WriteOut(); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    buffer_.append(line.data(), line.size());
    if (msg.logger_name != kRequestLoggerName || buffer_.size() >= kMaxBuffered) WriteOut();
  }
  void flush_() override { WriteOut(); }

 private:
  void WriteOut() {
    std::size_t done = 0;
    while (done < buffer_.size()) {
      const ssize_t n = ::write(STDERR_FILENO, buffer_.data() + done, buffer_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // stderr is gone: drop the lines rather than block the server
      done += static_cast<std::size_t>(n);
    }
    buffer_.clear();
  }

  std::string buffer_;
};

constexpr std::chrono::seconds kFlushEvery{1};  // spdlog 1.10 counts in seconds

// Set once by SetUpLogging; kept alive until exit.
std::shared_ptr<spdlog::logger> request_logger;
std::atomic<spdlog::logger*> request_logger_raw{nullptr};

}  // namespace

void SetUpLogging(const std::string& level) {
  auto sink = std::make_shared<BufferedStderrSink>();
  sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
      R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})", spdlog::pattern_time_type::utc));
  const auto level_value = spdlog::level::from_str(level);
  auto logger = std::make_shared<spdlog::logger>("otpd", sink);
  logger->set_level(level_value);
  spdlog::set_default_logger(logger);
  request_logger = std::make_shared<spdlog::logger>(kRequestLoggerName, sink);
  request_logger->set_level(level_value);
  spdlog::register_logger(request_logger);  // so that flush_every flushes it
  request_logger_raw.store(request_logger.get(), std::memory_order_release);
  spdlog::flush_every(kFlushEvery);
}

spdlog::logger& RequestLogger() {
  spdlog::logger* logger = request_logger_raw.load(std::memory_order_acquire);
  return logger != nullptr ? *logger : *spdlog::default_logger_raw();
}

void ShutDownLogging() { spdlog::shutdown(); }

}  // namespace otpd
