// The dispatcher: takes due delivery jobs from the store and sends them.
//
// Jobs are claimed with a lease (a crashed worker's jobs come back after it),
// sent through the providers of their channel in config order (provider
// failover), and finished in one store transaction that records the delivery
// and schedules the next workflow step: at once when every provider failed,
// after the step's timeout_s otherwise (SPEC §4.1 failover). Timers live in the
// store, so a restart or another node picks them up.
//
// Sends run on a pool of workers (DispatcherOptions::workers), so a provider
// with a window (SMPP) has that many messages in flight; the claim loop only
// claims as many jobs as there are free workers, so no lease ticks away in a
// queue. Delivery reports come back through OnReport / ApplyReports and bring
// the next step forward on undelivered/failed.
//
// Thread-safety: everything may be called from any thread; RunOnce and
// DrainReports are for tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "otp/clock.h"
#include "service/channel.h"
#include "service/secrets.h"
#include "store/store.h"

namespace otpd {

// Counts what the dispatcher did, for /metrics. Implemented by the server.
// Called from dispatcher threads.
class DeliveryObserver {
 public:
  virtual ~DeliveryObserver() = default;
  // One per provider tried: its status ("sent", "failed", ...) and how long
  // the provider took to take or refuse the message.
  virtual void OnDelivery(const std::string& provider, const std::string& channel,
                          const std::string& status, double send_seconds) = 0;
  // A delivery report that changed a delivery, and how long after the send it came.
  virtual void OnReport(const std::string& provider, const std::string& channel,
                        const std::string& status, double seconds_after_send) = 0;
};

struct DispatcherOptions {
  int workers = 32;  // sends in flight at once (an SMPP window needs that many)
};

class Dispatcher : public DeliveryReportSink {
 public:
  Dispatcher(Store& store, ProviderSet& providers, const Secrets& secrets, otp::Clock& clock,
             DeliveryObserver* observer = nullptr, DispatcherOptions options = {});
  ~Dispatcher() override;

  // Starts the claim loop, the workers and the report thread, and becomes the
  // providers' report sink.
  void Start();
  // Lets in-flight sends finish, applies the reports already received, stops.
  void Stop();
  // Wakes the loop (a job was queued).
  void Notify();
  // Claims and processes the jobs due now in the calling thread (tests);
  // returns how many were processed.
  int RunOnce();

  // A provider's report (SMPP receipts): queued and applied by the report
  // thread in batches, so the provider's I/O thread never waits on the store;
  // `done` answers once the batch is committed (or failed), or at once with
  // false after Stop.
  void OnReport(const DeliveryReport& report, ReportDone done) override;
  // Applies reports now and answers once they are stored (the HTTP report
  // endpoint: a 2xx tells the provider it need not retry).
  Result<std::vector<ReportOutcome>> ApplyReports(const std::vector<DeliveryReport>& reports);
  // Applies the queued reports in the calling thread (tests); returns how many.
  int DrainReports();

 private:
  void Loop();
  void Work();
  void ReportLoop();
  // Sends one claimed job and hands its outcome to the store; `finished` runs
  // once the outcome is committed (or the job is given back), maybe on another
  // thread.
  void Process(const Job& job, const std::function<void()>& finished);

  Store& store_;
  ProviderSet& providers_;
  const Secrets& secrets_;
  otp::Clock& clock_;
  DeliveryObserver* observer_;
  const DispatcherOptions options_;

  std::mutex mu_;
  std::condition_variable loop_cv_;  // the claim loop: notified, a worker freed, stopping
  std::condition_variable work_cv_;  // workers: jobs queued, stopping
  bool stopping_ = false;
  bool loop_done_ = false;  // the claim loop has returned: no job joins queue_ any more
  bool notified_ = false;
  std::deque<Job> queue_;  // claimed, waiting for a worker (oldest first)
  int busy_ = 0;           // claimed jobs not finished yet (queued or being sent)
  std::thread loop_;
  std::vector<std::thread> workers_;

  std::mutex reports_mu_;
  std::condition_variable reports_cv_;
  bool reports_stopping_ = false;
  bool reports_closed_ = false;  // Stop has ended the report thread: nothing is applied any more
  struct QueuedReport {
    DeliveryReport report;
    ReportDone done;
  };
  std::vector<QueuedReport> reports_;
  std::thread report_thread_;
};

}  // namespace otpd
