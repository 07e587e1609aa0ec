// What the engine reports to a metrics backend, at the transitions where it happens.
//
// The server implements it with Prometheus (server/prometheus_metrics); the engine calls it on
// the engine thread, so implementations must be cheap and must not block. Intervals follow
// vLLM's definitions (ecosystem.md §2.1): queue = queued → first scheduled, prefill =
// scheduled → first token, decode = first → last token; TTFT and end-to-end start at arrival.
#pragma once

#include "engine/engine_stats.h"
#include "engine/request.h"

namespace moeserve::engine {

class MetricsRecorder {
 public:
  virtual ~MetricsRecorder() = default;

  // A request produced its first token; ttft = first_token - queued.
  virtual void OnFirstToken(double ttft_seconds) = 0;
  // The gap between two consecutive tokens of one request.
  virtual void OnInterTokenLatency(double seconds) = 0;
  // A request ended (any reason); timestamps.finished is set. max_tokens: the request's
  // max_new_tokens (what it asked for, as vLLM's request_params_max_tokens reports).
  virtual void OnRequestFinished(FinishReason reason, const Usage& usage,
                                 const RequestTimestamps& timestamps, int64_t max_tokens) = 0;
  // After every engine step, with a fresh snapshot (gauges, cumulative counters, the step).
  virtual void OnStep(const EngineStats& stats) = 0;
};

}  // namespace moeserve::engine
