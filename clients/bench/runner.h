// Drives one run: sends the dataset's requests on the arrival schedule, holds at most
// --max-concurrency in flight, and collects a RequestRecord per request.
//
// The calling thread is the dispatcher: it sleeps until each send time, waits for a free
// concurrency slot (so under a limit a request's start_time can trail its scheduled time, as
// with vLLM's semaphore), and starts a call of the backend (backend.h: gRPC or an OpenAI-compatible
// HTTP server); the backend's threads finish the calls. Run() returns when every started call
// has ended. Interrupt() (any thread, e.g. on Ctrl-C) stops sending and cancels what is in
// flight; the partial run is returned.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "clients/bench/backend.h"
#include "clients/bench/dataset.h"
#include "clients/bench/progress_bar.h"
#include "clients/bench/request_record.h"

namespace moeserve::bench {

struct RunPlan {
  int64_t num_requests = 0;          // an upper bound when duration_s is set
  std::vector<double> send_offsets;  // seconds from the start, per request; empty = all at t=0
  std::optional<double> duration_s;  // stop sending after this long (then drain)
  int64_t max_concurrency = 0;       // 0 = no limit
};

struct RunResult {
  std::vector<RequestRecord> records;  // in send order
  double duration_s = 0.0;  // start of the run to the last response (vLLM's benchmark_duration)
  bool interrupted = false;
};

class LoadRunner {
 public:
  // `backend` and `prompts` must outlive the runner. Request ids are <prefix><n>.
  LoadRunner(BenchBackend& backend, const std::vector<BenchPrompt>& prompts,
             std::string request_id_prefix = "bench-");
  ~LoadRunner();
  LoadRunner(const LoadRunner&) = delete;
  LoadRunner& operator=(const LoadRunner&) = delete;

  // Request i uses prompt i % prompts.size(). `progress` may be null.
  RunResult Run(const RunPlan& plan, ProgressBar* progress);

  void Interrupt();

 private:
  void OnCallDone(BenchCall* call, RequestRecord* record, ProgressBar* progress);
  // Waits until `deadline`, or until `ready` (with mu_ held) is true; false if interrupted.
  template <typename Predicate>
  bool WaitUntil(std::unique_lock<std::mutex>& lock, Clock::time_point deadline, Predicate ready);

  BenchBackend& backend_;
  const std::vector<BenchPrompt>& prompts_;
  const std::string request_id_prefix_;
  std::atomic<bool> interrupted_{false};
  // Request ids are <prefix><n> with n counting across every Run() of this runner: the server
  // may still hold a finished request's id for a moment after its stream ended, so a sweep
  // must never reuse one. Dispatcher thread only.
  int64_t next_request_number_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<BenchCall*> live_calls_ ABSL_GUARDED_BY(mu_);  // for Interrupt's cancel
  // Every call of every run, freed with the runner: long after each OnDone has returned.
  std::vector<std::unique_ptr<BenchCall>> calls_ ABSL_GUARDED_BY(mu_);
  Clock::time_point last_end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moeserve::bench
