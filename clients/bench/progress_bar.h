// A live progress line on a terminal while a run is in flight: done/total, failures, the
// completion rate and an ETA (for a --duration run, elapsed/duration instead of a count).
//
// The runner calls Start, then OnRequestDone from gRPC callback threads (atomic counters only,
// never blocking them), then Finish. A ticker thread redraws the line a few times a second on
// stderr, and only when stderr is a TTY (or when forced, for tests), so logs and pipes stay
// clean. Render() is the pure formatting, unit-tested.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace moeserve::bench {

class ProgressBar {
 public:
  // `out` null disables drawing (counters still work). `label` prefixes the line.
  ProgressBar(std::FILE* out, std::string label);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Whether `file` is an interactive terminal (where a progress bar belongs).
  static bool IsTerminal(std::FILE* file);

  // `total` < 0 when unknown (a --duration run, then `duration_s` drives the bar).
  void Start(int64_t total, std::optional<double> duration_s);
  void OnRequestDone(bool success);
  void Finish();

  // The line for `done` of `total` (or of `duration_s`) after `elapsed_s`, `width` columns.
  static std::string Render(const std::string& label, int64_t done, int64_t failed, int64_t total,
                            std::optional<double> duration_s, double elapsed_s, int width = 30);

 private:
  void Draw(bool final_line);
  void TickerLoop();

  std::FILE* const out_;
  const std::string label_;
  std::atomic<int64_t> done_{0};
  std::atomic<int64_t> failed_{0};
  int64_t total_ = -1;
  std::optional<double> duration_s_;
  std::chrono::steady_clock::time_point start_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread ticker_;
};

}  // namespace moeserve::bench
