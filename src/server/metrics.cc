#include "server/metrics.h"

#include <fmt/format.h>

namespace otpd {

void Metrics::RecordRequest(std::string_view method, std::string_view route, int status,
                            double seconds) {
  std::lock_guard lock(mu_);
  auto count = requests_.find(RequestView{method, route, status});
  if (count == requests_.end()) {
    count = requests_.emplace(RequestKey{method, route, status}, 0).first;
  }
  ++count->second;
  auto latency = latency_.find(route);
  if (latency == latency_.end()) {
    latency = latency_.emplace(std::string(route), LatencyHistogram{}).first;
  }
  latency->second.Observe(kBuckets, seconds);
}

void Metrics::VerificationStarted(const std::string& channel) {
  std::lock_guard lock(mu_);
  ++started_[channel];
}

void Metrics::VerificationApproved(const std::string& channel) {
  std::lock_guard lock(mu_);
  ++approved_[channel];
}

void Metrics::AbuseGuard(const std::string& guard, const std::string& action) {
  std::lock_guard lock(mu_);
  ++abuse_[{guard, action}];
}

void Metrics::OnDelivery(const std::string& provider, const std::string& channel,
                         const std::string& status, double send_seconds) {
  std::lock_guard lock(mu_);
  ++deliveries_[{provider, channel, status}];
  send_latency_[provider].Observe(kBuckets, send_seconds);
}

void Metrics::OnReport(const std::string& provider, const std::string& channel,
                       const std::string& status, double seconds_after_send) {
  std::lock_guard lock(mu_);
  ++reports_[{provider, channel, status}];
  report_delay_[provider].Observe(kReportBuckets, seconds_after_send);
}

void Metrics::OnWebhook(const std::string& result, bool gave_up) {
  std::lock_guard lock(mu_);
  ++webhooks_[result];
  if (gave_up) ++webhooks_given_up_;
}

void Metrics::AttachDeliveryState(Store* store, const ProviderSet* providers) {
  std::lock_guard lock(mu_);
  store_ = store;
  providers_ = providers;
}

namespace {

// One histogram family in exposition format; `label` is e.g. `route="/x"`.
template <typename H, typename B>
void RenderHistogram(std::string& out, const std::string& name, const std::string& label,
                     const H& h, const B& bounds) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, label, bounds[i], h.buckets[i]);
  }
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, label, h.count);
  out += fmt::format("{}_sum{{{}}} {}\n", name, label, h.sum);
  out += fmt::format("{}_count{{{}}} {}\n", name, label, h.count);
}

}  // namespace

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
    RenderHistogram(out, "otpd_http_request_duration_seconds", fmt::format("route=\"{}\"", route),
                    h, kBuckets);
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
  out +=
      "# HELP otpd_abuse_guard_total Requests a limit or guard refused (blocked) or let through "
      "flagged (monitor mode).\n";
  out += "# TYPE otpd_abuse_guard_total counter\n";
  for (const auto& [k, n] : abuse_) {
    out += fmt::format("otpd_abuse_guard_total{{guard=\"{}\",action=\"{}\"}} {}\n", k.first,
                       k.second, n);
  }
  out += "# HELP otpd_deliveries_total Delivery attempts by provider, channel and status.\n";
  out += "# TYPE otpd_deliveries_total counter\n";
  for (const auto& [k, n] : deliveries_) {
    const auto& [provider, channel, status] = k;
    out += fmt::format("otpd_deliveries_total{{provider=\"{}\",channel=\"{}\",status=\"{}\"}} {}\n",
                       provider, channel, status, n);
  }
  out += "# HELP otpd_delivery_send_seconds Time a provider took to take or refuse a message.\n";
  out += "# TYPE otpd_delivery_send_seconds histogram\n";
  for (const auto& [provider, h] : send_latency_) {
    RenderHistogram(out, "otpd_delivery_send_seconds", fmt::format("provider=\"{}\"", provider), h,
                    kBuckets);
  }
  out += "# HELP otpd_delivery_reports_total Delivery reports that changed a delivery.\n";
  out += "# TYPE otpd_delivery_reports_total counter\n";
  for (const auto& [k, n] : reports_) {
    const auto& [provider, channel, status] = k;
    out += fmt::format(
        "otpd_delivery_reports_total{{provider=\"{}\",channel=\"{}\",status=\"{}\"}} {}\n",
        provider, channel, status, n);
  }
  out += "# HELP otpd_delivery_report_seconds Time from the send to its delivery report.\n";
  out += "# TYPE otpd_delivery_report_seconds histogram\n";
  for (const auto& [provider, h] : report_delay_) {
    RenderHistogram(out, "otpd_delivery_report_seconds", fmt::format("provider=\"{}\"", provider),
                    h, kReportBuckets);
  }
  out += "# HELP otpd_webhook_deliveries_total Webhook tries by result.\n";
  out += "# TYPE otpd_webhook_deliveries_total counter\n";
  for (const auto& [result, n] : webhooks_) {
    out += fmt::format("otpd_webhook_deliveries_total{{result=\"{}\"}} {}\n", result, n);
  }
  out += "# HELP otpd_webhooks_given_up_total Webhook events given up (tries spent, or 410).\n";
  out += "# TYPE otpd_webhooks_given_up_total counter\n";
  out += fmt::format("otpd_webhooks_given_up_total {}\n", webhooks_given_up_);
  if (store_ != nullptr) {
    if (auto depth = store_->CountJobs(); depth.ok()) {
      out += "# HELP otpd_delivery_queue_depth Delivery jobs queued or in flight.\n";
      out += "# TYPE otpd_delivery_queue_depth gauge\n";
      out += fmt::format("otpd_delivery_queue_depth {}\n", *depth);
    }
  }
  if (providers_ != nullptr) {
    out += "# HELP otpd_provider_bound Session state of providers that hold one (SMPP bind).\n";
    out += "# TYPE otpd_provider_bound gauge\n";
    for (const Provider* p : providers_->All()) {
      if (auto bound = p->impl->Bound()) {
        out += fmt::format("otpd_provider_bound{{provider=\"{}\",type=\"{}\"}} {}\n",
                           p->config.name, p->config.type, *bound ? 1 : 0);
      }
    }
  }
  return out;
}

}  // namespace otpd
