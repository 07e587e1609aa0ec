// Startup warmup: one short generation through the engine before the server reports SERVING,
// so the first client request does not pay for first-touch costs (page faults in the weights
// and the KV pages, thread pools, allocator growth) and a model that cannot run fails at
// startup rather than on a user's request.
//
// main.cc runs WarmUp between Engine::Create and health SERVING. The engine's metrics go
// through a GatedMetricsRecorder that drops per-request events until Enable, so the warmup
// request does not show in the request counters and latency histograms.
#pragma once

#include <atomic>

#include "absl/status/status.h"
#include "engine/engine.h"
#include "engine/metrics_recorder.h"
#include "engine/tokenizer/tokenizer.h"

namespace moeserve::server {

// Greedy, a short prompt and a few tokens (bounded by max_model_len); waits for the end and
// fails with the engine's error if the request fails.
absl::Status WarmUp(engine::Engine& engine, const engine::Tokenizer& tokenizer,
                    int64_t max_model_len);

// Forwards to `target` once enabled: the warmup's requests, steps and tokens are not the
// clients'. (Gauges do not miss anything: a scrape reads a fresh snapshot, and
// PrometheusMetrics::StartCountingFrom takes the warmup's cumulative counts as the baseline.)
class GatedMetricsRecorder : public engine::MetricsRecorder {
 public:
  explicit GatedMetricsRecorder(engine::MetricsRecorder* target) : target_(target) {}
  void Enable() { enabled_.store(true); }

  void OnFirstToken(double ttft_seconds) override {
    if (enabled_.load()) target_->OnFirstToken(ttft_seconds);
  }
  void OnInterTokenLatency(double seconds) override {
    if (enabled_.load()) target_->OnInterTokenLatency(seconds);
  }
  void OnRequestFinished(engine::FinishReason reason, const engine::Usage& usage,
                         const engine::RequestTimestamps& timestamps, int64_t max_tokens) override {
    if (enabled_.load()) target_->OnRequestFinished(reason, usage, timestamps, max_tokens);
  }
  void OnStep(const engine::EngineStats& stats) override {
    if (enabled_.load()) target_->OnStep(stats);
  }

 private:
  engine::MetricsRecorder* const target_;
  std::atomic<bool> enabled_{false};
};

}  // namespace moeserve::server
