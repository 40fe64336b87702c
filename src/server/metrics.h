// Prometheus metrics of otpd (SPEC §7), rendered as text exposition format.
// Thread-safe: counters under one mutex (cheap next to a request's I/O).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

#include "service/channel.h"
#include "service/dispatcher.h"
#include "service/webhooks.h"
#include "store/store.h"

namespace otpd {

class Metrics : public DeliveryObserver, public WebhookObserver {
 public:
  void RecordRequest(std::string_view method, std::string_view route, int status, double seconds);
  void VerificationStarted(const std::string& channel);
  void VerificationApproved(const std::string& channel);
  // A limit or guard refused a request (action "blocked") or let it through
  // flagged (monitor mode, "flagged"). Guards: "recipient", "ip", "app_rate",
  // "country_blocked", "pumping_suspected".
  void AbuseGuard(const std::string& guard, const std::string& action);
  void OnDelivery(const std::string& provider, const std::string& channel,
                  const std::string& status, double send_seconds) override;
  void OnReport(const std::string& provider, const std::string& channel, const std::string& status,
                double seconds_after_send) override;
  void OnWebhook(const std::string& result, bool gave_up) override;
  // Where the gauges read at render time come from: queue depth from the
  // store, bind state from the providers. Either may be null.
  void AttachDeliveryState(Store* store, const ProviderSet* providers);

  // The whole exposition text.
  std::string Render() const;

 private:
  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    2.5};
  // Time to a delivery report: seconds to hours.
  static constexpr std::array<double, 12> kReportBuckets = {1,   2,   5,   10,   30,   60,
                                                            120, 300, 600, 1800, 3600, 21600};
  template <std::size_t N>
  struct Histogram {
    std::array<std::uint64_t, N> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
    void Observe(const std::array<double, N>& bounds, double value) {
      for (std::size_t i = 0; i < N; ++i) {
        if (value <= bounds[i]) ++buckets[i];
      }
      ++count;
      sum += value;
    }
  };
  using LatencyHistogram = Histogram<kBuckets.size()>;
  using ReportHistogram = Histogram<kReportBuckets.size()>;

  mutable std::mutex mu_;
  // (method, route, status), looked up by string_view on every request: no
  // key is built once it has been seen. (A comparator of its own: libstdc++
  // under clang does not compare tuples of string and string_view.)
  using RequestKey = std::tuple<std::string, std::string, int>;
  using RequestView = std::tuple<std::string_view, std::string_view, int>;
  struct RequestLess {
    using is_transparent = void;
    static RequestView View(const RequestKey& k) {
      return {std::get<0>(k), std::get<1>(k), std::get<2>(k)};
    }
    static const RequestView& View(const RequestView& v) { return v; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return View(a) < View(b);
    }
  };
  std::map<RequestKey, std::uint64_t, RequestLess> requests_;
  std::map<std::string, LatencyHistogram, std::less<>> latency_;  // by route
  std::map<std::string, std::uint64_t> started_;
  std::map<std::string, std::uint64_t> approved_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> abuse_;  // (guard, action)
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> deliveries_;
  std::map<std::string, LatencyHistogram> send_latency_;  // by provider
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> reports_;
  std::map<std::string, ReportHistogram> report_delay_;  // by provider
  std::map<std::string, std::uint64_t> webhooks_;        // tries by result
  std::uint64_t webhooks_given_up_ = 0;
  Store* store_ = nullptr;
  const ProviderSet* providers_ = nullptr;
};

}  // namespace otpd
