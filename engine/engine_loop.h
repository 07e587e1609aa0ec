// One engine step as named stages: schedule → execute → commit → emit (ARCHITECTURE.md §4.4).
//
// Owns the Scheduler (sequences, KV blocks) and the ModelRunner (weights' user, KV pages).
// Engine thread only; Engine feeds it new sequences and cancellations between steps.
#pragma once

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine_options.h"
#include "engine/engine_stats.h"
#include "engine/metrics_recorder.h"
#include "engine/runner/model_runner.h"
#include "engine/scheduler/scheduler.h"
#include "engine/tokenizer/tokenizer.h"

namespace moeserve::engine {

class EngineLoop {
 public:
  // `metrics` may be null; it must outlive the loop.
  EngineLoop(const DeepseekModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
             MetricsRecorder* metrics = nullptr);
  EngineLoop(ParallelModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
             MetricsRecorder* metrics = nullptr);
  EngineLoop(StepModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
             MetricsRecorder* metrics = nullptr);

  // Called with a request's id just before its final event is delivered, so that the id can be
  // reused as soon as the caller sees the end of the stream.
  void SetRequestEndedCallback(std::function<void(const std::string&)> callback) {
    request_ended_ = std::move(callback);
  }

  // Starts a request (already validated by Engine::Submit).
  void AddRequest(GenerateRequest request, TokenSink* sink);
  // Ends a live request with finish reason `abort`; unknown ids are ignored (already done).
  // Returns whether it was live.
  bool AbortRequest(const std::string& request_id);
  void AbortAll();

  // Runs one step if there is work. The step's events (and those of AbortRequest/AbortAll)
  // are held until DeliverEvents, so that the caller can publish the stats of the step first:
  // a client that has seen a request's final event then never scrapes it as still running.
  void RunOnce();
  // Hands the held events to their sinks, in the order they were made.
  void DeliverEvents();

  bool HasWork() const { return scheduler_.HasWork(); }
  void FillStats(EngineStats& stats) const;
  const Scheduler& scheduler() const { return scheduler_; }

 private:
  void EndSequence(Sequence* sequence, TokenEvent final_event);
  // Adds a step's verified drafts to the speculative-decoding counters.
  void CountSpeculation(const ScheduledBatch& batch, absl::Span<const int64_t> accepted_drafts);
  // First-token or inter-token latency of a token just appended to `s`.
  void RecordTokenLatency(Sequence& s);

  // Queues `event` for `sink` (delivered by DeliverEvents).
  void Emit(TokenSink* sink, TokenEvent event);

  const Tokenizer* tokenizer_;
  MetricsRecorder* metrics_;
  std::function<void(const std::string&)> request_ended_;
  Scheduler scheduler_;
  ModelRunner runner_;
  int64_t next_arrival_number_ = 0;
  std::mt19937_64 seed_source_{std::random_device{}()};
  int64_t total_steps_ = 0;
  int64_t total_generated_tokens_ = 0;
  StepStats last_step_;
  SpeculativeStats speculation_;
  std::vector<std::pair<TokenSink*, TokenEvent>> pending_events_;
};

}  // namespace moeserve::engine
