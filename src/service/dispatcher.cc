#include "service/dispatcher.h"

#include <pthread.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

#include "service/log_text.h"
#include "service/messages.h"
#include "service/recipients.h"

namespace otpd {

using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {
constexpr auto kLease = seconds(60);
constexpr int kBatch = 64;
constexpr auto kIdlePoll = milliseconds(250);
}  // namespace

Dispatcher::Dispatcher(Store& store, ProviderSet& providers, const Secrets& secrets,
                       otp::Clock& clock, DeliveryObserver* observer, DispatcherOptions options)
    : store_(store),
      providers_(providers),
      secrets_(secrets),
      clock_(clock),
      observer_(observer),
      options_(options) {}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  providers_.SetReportSink(this);
  report_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "otpd-reports");
    ReportLoop();
  });
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "otpd-send");
      Work();
    });
  }
  loop_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "otpd-dispatch");
    Loop();
  });
}

void Dispatcher::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
  {
    // Workers leave only now: a claim that was in flight when stopping began
    // has been queued, and is sent (not left holding busy_ until the wait below
    // times out).
    std::lock_guard lock(mu_);
    loop_done_ = true;
  }
  work_cv_.notify_all();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  workers_.clear();
  {
    // Outcomes handed to the store are answered after their commit.
    std::unique_lock lock(mu_);
    loop_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return busy_ <= 0; });
  }
  providers_.SetReportSink(nullptr);
  {
    std::lock_guard lock(reports_mu_);
    reports_stopping_ = true;
  }
  reports_cv_.notify_all();
  if (report_thread_.joinable()) report_thread_.join();
  // What came after the report thread's last batch (or with no report thread
  // at all) is refused, and so is everything from now on.
  std::vector<QueuedReport> left;
  {
    std::lock_guard lock(reports_mu_);
    reports_closed_ = true;
    left.swap(reports_);
  }
  for (QueuedReport& q : left) {
    if (q.done) q.done(false);
  }
}

void Dispatcher::Notify() {
  {
    std::lock_guard lock(mu_);
    notified_ = true;
  }
  loop_cv_.notify_all();
}

void Dispatcher::Loop() {
  for (;;) {
    int capacity = 0;
    {
      std::unique_lock lock(mu_);
      // Claim ahead: up to one more job per worker waits in the queue, so a
      // worker that finishes finds its next job at once.
      const int most = 2 * options_.workers;
      loop_cv_.wait(lock, [&] { return stopping_ || busy_ < most; });
      if (stopping_) return;
      capacity = most - busy_;
      notified_ = false;
    }
    int claimed = 0;
    auto next = store_.NextJobDue();
    const otp::TimePoint now = clock_.Now();
    if (next.ok() && next->has_value() && **next <= now) {
      auto jobs = store_.ClaimJobs(now, now + kLease, std::min(capacity, kBatch));
      if (!jobs.ok()) {
        spdlog::warn(R"("event":"claim_failed","error":{})", LogText(jobs.status().message()));
      } else if (!jobs->empty()) {
        claimed = static_cast<int>(jobs->size());
        std::lock_guard lock(mu_);
        busy_ += claimed;
        for (Job& j : *jobs) queue_.push_back(std::move(j));
      }
    }
    std::unique_lock lock(mu_);
    if (claimed > 0) {
      work_cv_.notify_all();
      continue;  // more may be due
    }
    // Nothing due: sleep until notified, the next due time, or the idle poll.
    auto wait = kIdlePoll;
    if (next.ok() && next->has_value()) {
      const auto until = std::chrono::duration_cast<milliseconds>(**next - now);
      wait = std::clamp(until, milliseconds(1), kIdlePoll);
    }
    loop_cv_.wait_for(lock, wait, [&] { return stopping_ || notified_; });
    if (stopping_) return;
  }
}

void Dispatcher::Work() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return loop_done_ || !queue_.empty(); });
      // Stopping: the jobs already claimed are still sent (each takes one
      // provider round trip), so that none waits for its lease after a restart.
      if (queue_.empty()) return;
      job = std::move(queue_.front());  // oldest claim first
      queue_.pop_front();
    }
    Process(job, [this] {
      {
        std::lock_guard lock(mu_);
        --busy_;
      }
      loop_cv_.notify_all();
    });
  }
}

int Dispatcher::RunOnce() {
  const otp::TimePoint now = clock_.Now();
  auto jobs = store_.ClaimJobs(now, now + kLease, kBatch);
  if (!jobs.ok()) {
    spdlog::warn(R"("event":"claim_failed","error":{})", LogText(jobs.status().message()));
    return 0;
  }
  for (const Job& job : *jobs) {
    std::promise<void> finished;
    Process(job, [&finished] { finished.set_value(); });
    finished.get_future().wait();
  }
  return static_cast<int>(jobs->size());
}

void Dispatcher::OnReport(const DeliveryReport& report, ReportDone done) {
  {
    std::lock_guard lock(reports_mu_);
    if (!reports_closed_) {
      reports_.push_back({report, std::move(done)});
      done = nullptr;
    }
  }
  if (done) {
    // After Stop: not taken.
    done(false);
    return;
  }
  reports_cv_.notify_one();
}

void Dispatcher::ReportLoop() {
  for (;;) {
    {
      std::unique_lock lock(reports_mu_);
      reports_cv_.wait(lock, [&] { return reports_stopping_ || !reports_.empty(); });
      if (reports_.empty()) return;
    }
    DrainReports();
  }
}

int Dispatcher::DrainReports() {
  std::vector<QueuedReport> queued;
  {
    std::lock_guard lock(reports_mu_);
    queued.swap(reports_);
  }
  if (queued.empty()) return 0;
  std::vector<DeliveryReport> batch;
  batch.reserve(queued.size());
  for (QueuedReport& q : queued) batch.push_back(std::move(q.report));
  auto applied = ApplyReports(batch);
  if (!applied.ok()) {
    // Each provider is told (SMPP answers the SMSC with a temporary error, so
    // it sends the receipt again); the step's timeout still drives failover.
    spdlog::error(R"("event":"delivery_reports_failed","count":{},"error":{})", batch.size(),
                  LogText(applied.status().message()));
  }
  for (QueuedReport& q : queued) {
    if (q.done) q.done(applied.ok());
  }
  return static_cast<int>(batch.size());
}

Result<std::vector<ReportOutcome>> Dispatcher::ApplyReports(
    const std::vector<DeliveryReport>& reports) {
  // Only the statuses a report may set reach the store; a provider's parser
  // maps its own words to them, and anything else is answered as unmatched
  // (found by fuzz_api: a raw status went into the delivery row and its event).
  std::vector<DeliveryReport> known;
  std::vector<std::size_t> known_at;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const std::string& s = reports[i].status;
    if (s == kDeliveryDelivered || s == kDeliveryUndelivered || s == kDeliveryFailed) {
      known.push_back(reports[i]);
      known_at.push_back(i);
    }
  }
  auto applied = store_.ApplyDeliveryReports(known, clock_.Now());
  if (!applied.ok()) return applied.status();
  std::vector<ReportOutcome> outcomes(reports.size());
  for (std::size_t j = 0; j < known_at.size() && j < applied->size(); ++j) {
    outcomes[known_at[j]] = (*applied)[j];
  }
  bool fired = false;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const DeliveryReport& r = reports[i];
    const ReportOutcome& o = outcomes[i];
    spdlog::info(
        R"("event":"delivery_report","provider":{},"status":{},"detail":{},"verification_id":"{}","matched":{},"applied":{},"next_step":{})",
        LogText(r.provider), LogText(r.status), LogText(r.detail), o.verification_id, o.matched,
        o.applied, o.next_step_fired);
    fired = fired || o.next_step_fired;
    if (o.applied && observer_ != nullptr) {
      const double after = std::chrono::duration<double>(clock_.Now() - o.sent_at).count();
      observer_->OnReport(r.provider, o.channel, r.status, std::max(0.0, after));
    }
  }
  if (fired) Notify();
  return outcomes;
}

void Dispatcher::Process(const Job& job, const std::function<void()>& finished) {
  auto v = store_.GetVerification("", job.verification_id);
  if (!v.ok()) {
    if (v.status().code() != otp::StatusCode::kNotFound) return finished();  // after the lease
    JobOutcome gone;
    gone.job = job;
    gone.delivery_status = kDeliveryCanceled;
    gone.at = clock_.Now();
    (void)store_.FinishJob(gone);
    return finished();
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
    return finished();
  }
  auto code = secrets_.keyring.Open(v->code_sealed, v->id);
  if (!code.ok()) {
    spdlog::error(R"("event":"code_unseal_failed","verification_id":"{}")", v->id);
    return finished();  // the lease expires and the job is retried; an operator must look
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
  OutboundMessage message{delivery->channel, delivery->to,     v->id,
                          v->locale,         rendered.subject, rendered.text,
                          vars.code,         vars.app_name,    vars.ttl_minutes};

  // Provider failover: the channel's providers in config order.
  out.delivery_status = kDeliveryFailed;
  out.error = "no provider carries channel " + delivery->channel;
  if (job.attempts > 1) {
    // The lease of an earlier claim ran out: that attempt may have reached the
    // provider (at-least-once), so say so.
    spdlog::warn(R"("event":"delivery_retried","verification_id":"{}","attempt":{})", v->id,
                 job.attempts);
  }
  // A sandbox app's messages go only to `log` providers (checked at start
  // too; held here in case the app became a sandbox meanwhile).
  const bool sandbox = app.ok() && app->settings.sandbox;
  for (Provider* p : providers_.ForChannel(delivery->channel)) {
    if (sandbox && p->config.type != "log") continue;
    if (!out.provider.empty()) {
      out.failed_first.push_back({out.provider, out.error, clock_.Now()});
    }
    out.provider = p->config.name;
    const auto started = std::chrono::steady_clock::now();
    otp::Result<SendReceipt> receipt = otp::Unavailable("provider error");
    try {
      receipt = p->impl->Send(message);
    } catch (const std::exception& e) {
      // A provider bug must not take the dispatcher down: count it as a failed send.
      receipt = otp::Internal(std::string("provider threw: ") + e.what());
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (observer_ != nullptr) {
      observer_->OnDelivery(p->config.name, delivery->channel,
                            receipt.ok() ? kDeliverySent : kDeliveryFailed, took);
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
    // The last step failed: undeliverable only if no other delivery got through
    // or is still to be sent (a resend).
    out.undeliverable =
        std::none_of(v->deliveries.begin(), v->deliveries.end(), [&](const Delivery& d) {
          return d.id != job.delivery_id &&
                 (d.status == kDeliverySent || d.status == kDeliveryDelivered ||
                  d.status == kDeliveryQueued);
        });
  }
  const std::string channel = delivery->channel;
  const std::string to = delivery->to;
  store_.FinishJobAsync(out, [out, channel, to, finished](const Status& s) {
    if (!s.ok()) {
      spdlog::error(R"("event":"finish_job_failed","verification_id":"{}","error":{})",
                    out.job.verification_id, LogText(s.message()));
    } else {
      spdlog::info(
          R"("event":"delivery","verification_id":"{}","channel":"{}","provider":{},"status":"{}","to":{})",
          out.job.verification_id, channel, LogText(out.provider), out.delivery_status,
          LogText(MaskRecipient(to)));
    }
    finished();
  });
}

}  // namespace otpd
