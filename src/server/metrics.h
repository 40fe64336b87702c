// Prometheus metrics of otpd (SPEC §7), rendered as text exposition format.
// Thread-safe: counters under one mutex (cheap next to a request's I/O).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "service/dispatcher.h"

namespace otpd {

class Metrics : public DeliveryObserver {
 public:
  void RecordRequest(const std::string& method, const std::string& route, int status,
                     double seconds);
  void VerificationStarted(const std::string& channel);
  void VerificationApproved(const std::string& channel);
  void OnDelivery(const std::string& provider, const std::string& channel,
                  const std::string& status) override;

  // The whole exposition text.
  std::string Render() const;

 private:
  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    2.5};
  struct Histogram {
    std::array<std::uint64_t, kBuckets.size()> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
  };

  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;
  std::map<std::string, Histogram> latency_;  // by route
  std::map<std::string, std::uint64_t> started_;
  std::map<std::string, std::uint64_t> approved_;
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> deliveries_;
};

}  // namespace otpd
