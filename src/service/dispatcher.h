// The dispatcher: takes due delivery jobs from the store and sends them.
//
// Jobs are claimed with a lease (a crashed worker's jobs come back after it),
// sent through the providers of their channel in config order (provider
// failover), and finished in one store transaction that records the delivery
// and schedules the next workflow step: at once when every provider failed,
// after the step's timeout_s otherwise (SPEC §4.1 failover). Timers live in the
// store, so a restart or another node picks them up.
//
// Thread-safety: Start/Stop/Notify from any thread; RunOnce is for tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "otp/clock.h"
#include "service/channel.h"
#include "service/secrets.h"
#include "store/store.h"

namespace otpd {

// Counts what the dispatcher did, for /metrics. Implemented by the server.
class DeliveryObserver {
 public:
  virtual ~DeliveryObserver() = default;
  virtual void OnDelivery(const std::string& provider, const std::string& channel,
                          const std::string& status) = 0;
};

class Dispatcher {
 public:
  Dispatcher(Store& store, ProviderSet& providers, const Secrets& secrets, otp::Clock& clock,
             DeliveryObserver* observer = nullptr);
  ~Dispatcher();

  void Start();
  void Stop();
  // Wakes the loop (a job was queued).
  void Notify();
  // Claims and processes the jobs due now; returns how many were processed.
  int RunOnce();

 private:
  void Loop();
  void Process(const Job& job);

  Store& store_;
  ProviderSet& providers_;
  const Secrets& secrets_;
  otp::Clock& clock_;
  DeliveryObserver* observer_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool notified_ = false;
  std::thread thread_;
};

}  // namespace otpd
