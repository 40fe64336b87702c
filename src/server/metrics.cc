#include "server/metrics.h"

#include <fmt/format.h>

namespace otpd {

void Metrics::RecordRequest(const std::string& method, const std::string& route, int status,
                            double seconds) {
  std::lock_guard lock(mu_);
  ++requests_[{method, route, status}];
  Histogram& h = latency_[route];
  for (std::size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++h.buckets[i];
  }
  ++h.count;
  h.sum += seconds;
}

void Metrics::VerificationStarted(const std::string& channel) {
  std::lock_guard lock(mu_);
  ++started_[channel];
}

void Metrics::VerificationApproved(const std::string& channel) {
  std::lock_guard lock(mu_);
  ++approved_[channel];
}

void Metrics::OnDelivery(const std::string& provider, const std::string& channel,
                         const std::string& status) {
  std::lock_guard lock(mu_);
  ++deliveries_[{provider, channel, status}];
}

std::string Metrics::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  out += "# HELP otpd_http_requests_total HTTP requests by method, route and status.\n";
  out += "# TYPE otpd_http_requests_total counter\n";
  for (const auto& [k, n] : requests_) {
    const auto& [method, route, status] = k;
    out += fmt::format("otpd_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{}\"}} {}\n",
                       method, route, status, n);
  }
  out += "# HELP otpd_http_request_duration_seconds Request latency by route.\n";
  out += "# TYPE otpd_http_request_duration_seconds histogram\n";
  for (const auto& [route, h] : latency_) {
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      out += fmt::format("otpd_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n",
                         route, kBuckets[i], h.buckets[i]);
    }
    out += fmt::format("otpd_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n",
                       route, h.count);
    out += fmt::format("otpd_http_request_duration_seconds_sum{{route=\"{}\"}} {}\n", route, h.sum);
    out += fmt::format("otpd_http_request_duration_seconds_count{{route=\"{}\"}} {}\n", route,
                       h.count);
  }
  out += "# HELP otpd_verifications_started_total Verifications started by first channel.\n";
  out += "# TYPE otpd_verifications_started_total counter\n";
  for (const auto& [ch, n] : started_) {
    out += fmt::format("otpd_verifications_started_total{{channel=\"{}\"}} {}\n", ch, n);
  }
  out += "# HELP otpd_verifications_approved_total Verifications approved by channel.\n";
  out += "# TYPE otpd_verifications_approved_total counter\n";
  for (const auto& [ch, n] : approved_) {
    out += fmt::format("otpd_verifications_approved_total{{channel=\"{}\"}} {}\n", ch, n);
  }
  out += "# HELP otpd_deliveries_total Delivery attempts by provider, channel and status.\n";
  out += "# TYPE otpd_deliveries_total counter\n";
  for (const auto& [k, n] : deliveries_) {
    const auto& [provider, channel, status] = k;
    out += fmt::format("otpd_deliveries_total{{provider=\"{}\",channel=\"{}\",status=\"{}\"}} {}\n",
                       provider, channel, status, n);
  }
  return out;
}

}  // namespace otpd
