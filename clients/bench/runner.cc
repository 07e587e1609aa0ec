#include "clients/bench/runner.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace moeserve::bench {

LoadRunner::LoadRunner(BenchBackend& backend, const std::vector<BenchPrompt>& prompts,
                       std::string request_id_prefix)
    : backend_(backend), prompts_(prompts), request_id_prefix_(std::move(request_id_prefix)) {}

LoadRunner::~LoadRunner() = default;

void LoadRunner::Interrupt() {
  interrupted_ = true;
  std::vector<BenchCall*> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    live.assign(live_calls_.begin(), live_calls_.end());
    cv_.notify_all();
  }
  // Outside mu_: a cancelled call may finish inline, and its callback takes mu_. The calls stay
  // allocated until the runner dies, so cancelling one that has just ended is harmless.
  for (BenchCall* call : live) call->Cancel();
}

template <typename Predicate>
bool LoadRunner::WaitUntil(std::unique_lock<std::mutex>& lock, Clock::time_point deadline,
                           Predicate ready) {
  // Short slices, so an Interrupt() from a signal watcher that could not notify is still seen.
  constexpr auto kSlice = std::chrono::milliseconds(100);
  while (!interrupted_ && !ready()) {
    const Clock::time_point now = Clock::now();
    if (now >= deadline) return true;
    cv_.wait_until(lock, std::min(deadline, now + kSlice));
  }
  return !interrupted_;
}

void LoadRunner::OnCallDone(BenchCall* call, RequestRecord* record, ProgressBar* progress) {
  if (progress != nullptr) progress->OnRequestDone(record->success);
  std::lock_guard<std::mutex> lock(mu_);
  live_calls_.erase(call);
  --in_flight_;
  last_end_ = Clock::now();
  cv_.notify_all();
}

RunResult LoadRunner::Run(const RunPlan& plan, ProgressBar* progress) {
  std::deque<RequestRecord> records;  // a deque keeps each record's address while it grows
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop_sending =
      plan.duration_s ? start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(*plan.duration_s))
                      : Clock::time_point::max();
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_end_ = start;
  }
  if (progress != nullptr)
    progress->Start(plan.duration_s ? -1 : plan.num_requests, plan.duration_s);

  std::unique_lock<std::mutex> lock(mu_);
  for (int64_t i = 0; i < plan.num_requests && !interrupted_; ++i) {
    const double offset =
        i < static_cast<int64_t>(plan.send_offsets.size()) ? plan.send_offsets[i] : 0.0;
    const Clock::time_point send_at =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(offset));
    if (send_at >= stop_sending) break;
    if (!WaitUntil(lock, send_at, [] { return false; })) break;
    const bool slot_free = WaitUntil(lock, Clock::time_point::max(), [&] {
      return plan.max_concurrency <= 0 || in_flight_ < plan.max_concurrency;
    });
    if (!slot_free) break;
    if (Clock::now() >= stop_sending) break;

    const BenchPrompt& prompt = prompts_[i % prompts_.size()];
    RequestRecord& record = records.emplace_back();
    record.index = i;
    record.request_id = absl::StrCat(request_id_prefix_, next_request_number_++);
    record.prompt_len = prompt.prompt_len;
    record.max_tokens = prompt.output_len;
    record.scheduled_time = offset;
    BenchCall* call =
        calls_
            .emplace_back(backend_.NewCall(prompt, &record, start,
                                           [this, &record, progress](BenchCall* done) {
                                             OnCallDone(done, &record, progress);
                                           }))
            .get();
    live_calls_.insert(call);
    ++in_flight_;
    // A backend may finish a call inline on this thread (gRPC, for a call that fails at once),
    // and its callback takes mu_.
    lock.unlock();
    call->Start();
    lock.lock();
  }
  // Drain: every started call ends (an interrupt has already cancelled them).
  cv_.wait(lock, [&] { return in_flight_ == 0; });
  RunResult result;
  result.duration_s = std::chrono::duration<double>(last_end_ - start).count();
  result.interrupted = interrupted_;
  lock.unlock();
  if (progress != nullptr) progress->Finish();
  result.records.assign(std::make_move_iterator(records.begin()),
                        std::make_move_iterator(records.end()));
  return result;
}

}  // namespace moeserve::bench
