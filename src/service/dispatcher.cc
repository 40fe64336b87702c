#include "service/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "service/log_text.h"
#include "service/messages.h"
#include "service/recipients.h"

namespace otpd {

using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {
constexpr auto kLease = seconds(60);
constexpr int kBatch = 32;
constexpr auto kIdlePoll = milliseconds(250);
}  // namespace

Dispatcher::Dispatcher(Store& store, ProviderSet& providers, const Secrets& secrets,
                       otp::Clock& clock, DeliveryObserver* observer)
    : store_(store), providers_(providers), secrets_(secrets), clock_(clock), observer_(observer) {}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Dispatcher::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Dispatcher::Notify() {
  {
    std::lock_guard lock(mu_);
    notified_ = true;
  }
  cv_.notify_all();
}

void Dispatcher::Loop() {
  for (;;) {
    int processed = 0;
    auto next = store_.NextJobDue();
    if (next.ok() && next->has_value() && **next <= clock_.Now()) processed = RunOnce();
    std::unique_lock lock(mu_);
    if (stopping_) return;
    if (processed == 0) {
      cv_.wait_for(lock, kIdlePoll, [&] { return stopping_ || notified_; });
    }
    notified_ = false;
    if (stopping_) return;
  }
}

int Dispatcher::RunOnce() {
  const otp::TimePoint now = clock_.Now();
  auto jobs = store_.ClaimJobs(now, now + kLease, kBatch);
  if (!jobs.ok()) {
    spdlog::warn(R"("event":"claim_failed","error":{})", LogText(jobs.status().message()));
    return 0;
  }
  for (const Job& job : *jobs) Process(job);
  return static_cast<int>(jobs->size());
}

void Dispatcher::Process(const Job& job) {
  auto v = store_.GetVerification("", job.verification_id);
  if (!v.ok()) {
    if (v.status().code() != otp::StatusCode::kNotFound) return;  // retried after the lease
    JobOutcome gone{job, "", kDeliveryCanceled, "", "", clock_.Now(), {}, {}, false};
    (void)store_.FinishJob(gone);
    return;
  }
  JobOutcome out;
  out.job = job;
  const Delivery* delivery = nullptr;
  for (const Delivery& d : v->deliveries) {
    if (d.id == job.delivery_id) delivery = &d;
  }
  if (v->status == kPending && v->expires_at <= clock_.Now()) {
    // Past its lifetime: nothing more is sent; expiring drops the queued steps.
    (void)store_.ExpireIfDue(v->app_id, v->id, clock_.Now());
    v->status = kExpired;
  }
  if (v->status != kPending || delivery == nullptr || v->code_sealed.empty()) {
    out.delivery_status = kDeliveryCanceled;
    out.at = clock_.Now();
    (void)store_.FinishJob(out);
    return;
  }
  auto code = secrets_.keyring.Open(v->code_sealed, v->id);
  if (!code.ok()) {
    spdlog::error(R"("event":"code_unseal_failed","verification_id":"{}")", v->id);
    return;  // the lease expires and the job is retried; an operator must look
  }
  auto app = store_.GetApp(v->app_id);
  MessageVars vars;
  vars.code.assign(code->begin(), code->end());
  vars.app_name = app.ok() ? app->name : "";
  vars.ttl_minutes = static_cast<int>(std::max<std::int64_t>(
      1, std::chrono::duration_cast<seconds>(v->expires_at - v->created_at).count() / 60));
  vars.to = delivery->to;
  vars.verification_id = v->id;
  vars.locale = v->locale;
  const RenderedMessage rendered = RenderMessage(
      delivery->channel, v->locale, vars, app.ok() ? app->settings.templates : TemplateOverrides{});
  OutboundMessage message{delivery->channel, delivery->to,  v->id,    v->locale,
                          rendered.subject,  rendered.text, vars.code};

  // Provider failover: the channel's providers in config order.
  out.delivery_status = kDeliveryFailed;
  out.error = "no provider carries channel " + delivery->channel;
  for (Provider* p : providers_.ForChannel(delivery->channel)) {
    out.provider = p->config.name;
    otp::Result<SendReceipt> receipt = otp::Unavailable("provider error");
    try {
      receipt = p->impl->Send(message);
    } catch (const std::exception& e) {
      // A provider bug must not take the dispatcher down: count it as a failed send.
      receipt = otp::Internal(std::string("provider threw: ") + e.what());
    }
    if (receipt.ok()) {
      out.delivery_status = kDeliverySent;
      out.provider_message_id = receipt->provider_message_id;
      out.error.clear();
      break;
    }
    out.error = receipt.status().message();
    spdlog::warn(R"("event":"provider_failed","provider":{},"channel":"{}","to":{},"error":{})",
                 LogText(p->config.name), delivery->channel, LogText(MaskRecipient(delivery->to)),
                 LogText(out.error));
  }
  out.at = clock_.Now();
  const bool sent = out.delivery_status == kDeliverySent;

  // Channel failover: the next step fires now on failure, after timeout_s otherwise.
  const std::size_t next_step = static_cast<std::size_t>(job.step) + 1;
  if (job.advance && next_step < v->workflow.size()) {
    const WorkflowStep& step = v->workflow[static_cast<std::size_t>(job.step)];
    const WorkflowStep& next = v->workflow[next_step];
    Job j;
    j.verification_id = v->id;
    j.step = static_cast<int>(next_step);
    j.advance = true;
    j.due_at = sent ? out.at + seconds(std::max(1, step.timeout_s)) : out.at;
    Delivery d;
    d.step = j.step;
    d.channel = next.channel;
    d.to = next.to.empty() ? v->to : next.to;
    d.created_at = d.updated_at = out.at;
    out.next = j;
    out.next_delivery = d;
  } else if (job.advance && !sent) {
    // The last step failed: undeliverable only if no earlier step got through.
    out.undeliverable =
        std::none_of(v->deliveries.begin(), v->deliveries.end(), [&](const Delivery& d) {
          return d.id != job.delivery_id &&
                 (d.status == kDeliverySent || d.status == kDeliveryDelivered);
        });
  }
  Status s = store_.FinishJob(out);
  if (!s.ok()) {
    spdlog::error(R"("event":"finish_job_failed","verification_id":"{}","error":{})", v->id,
                  LogText(s.message()));
    return;
  }
  spdlog::info(
      R"("event":"delivery","verification_id":"{}","channel":"{}","provider":{},"status":"{}","to":{})",
      v->id, delivery->channel, LogText(out.provider), out.delivery_status,
      LogText(MaskRecipient(delivery->to)));
  if (observer_ != nullptr)
    observer_->OnDelivery(out.provider, delivery->channel, out.delivery_status);
}

}  // namespace otpd
