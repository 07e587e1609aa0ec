// The inference engine as a library: thread-safe Submit/Cancel/Stats/Shutdown in front of one
// engine thread that owns all mutable engine state (DESIGN.md §3).
//
// Callers (the gRPC server, tools, tests) submit validated requests with a TokenSink; events
// arrive on the engine thread. Submission never blocks on the model: requests queue in a
// bounded inbox and are refused with ResourceExhausted when too many are pending.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "engine/engine_loop.h"
#include "engine/engine_options.h"
#include "engine/engine_stats.h"
#include "engine/request.h"

namespace moeserve::engine {

class Engine;

// Returned by Submit. Move-only; destroying it cancels the request if it is still running
// (so a caller that goes away never leaks KV blocks). Cancelling is asynchronous: the engine
// still delivers the request's final event (finish reason "abort") to the sink afterwards, so
// the sink must live until that final event has arrived (or the engine has shut down), not
// merely as long as the handle.
class RequestHandle {
 public:
  RequestHandle() = default;
  RequestHandle(Engine* engine, std::string request_id)
      : engine_(engine), request_id_(std::move(request_id)) {}
  RequestHandle(RequestHandle&& other) noexcept { *this = std::move(other); }
  RequestHandle& operator=(RequestHandle&& other) noexcept;
  RequestHandle(const RequestHandle&) = delete;
  RequestHandle& operator=(const RequestHandle&) = delete;
  ~RequestHandle();

  const std::string& request_id() const { return request_id_; }
  void Cancel();
  // Forget the request without cancelling it (it runs to completion).
  void Detach() { engine_ = nullptr; }

 private:
  Engine* engine_ = nullptr;
  std::string request_id_;
};

enum class ShutdownMode {
  kDrain,  // refuse new requests, finish the ones in flight
  kAbort,  // end every request now with finish reason "abort"
};

class Engine {
 public:
  // `model`, `tokenizer` (may be null: events then carry no text) and `metrics` (may be null)
  // must outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const DeepseekModel& model,
                                                        const Tokenizer* tokenizer,
                                                        const EngineOptions& options,
                                                        MetricsRecorder* metrics = nullptr);
  // A model split over ranks (ParallelModel::Load); options' tensor/expert parallel sizes
  // must match it. `model` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(ParallelModel& model,
                                                        const Tokenizer* tokenizer,
                                                        const EngineOptions& options,
                                                        MetricsRecorder* metrics = nullptr);
  // A backend's model with its own KV pool (the CUDA backend, engine/runner/cuda_runner.h):
  // options.num_kv_blocks must equal model.num_kv_blocks(). `model` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(StepModel& model,
                                                        const Tokenizer* tokenizer,
                                                        const EngineOptions& options,
                                                        MetricsRecorder* metrics = nullptr);
  ~Engine();  // Shutdown(kAbort) unless already shut down

  // InvalidArgument (field named) for requests the engine can never run, AlreadyExists for a
  // live request id, ResourceExhausted when the queue is full, Unavailable after Shutdown.
  absl::StatusOr<RequestHandle> Submit(GenerateRequest request, TokenSink* sink);
  // Ends a request with finish reason "abort" at the next step; unknown ids are ignored.
  void Cancel(const std::string& request_id);
  EngineStats Stats() const;
  // Blocks until the engine thread has exited. Idempotent.
  void Shutdown(ShutdownMode mode);

  const EngineOptions& options() const { return options_; }

 private:
  Engine(const DeepseekModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
         MetricsRecorder* metrics);
  Engine(ParallelModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
         MetricsRecorder* metrics);
  Engine(StepModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
         MetricsRecorder* metrics);
  void Start();  // the part of construction after loop_ exists
  static absl::Status ValidateOptions(const EngineOptions& options);
  // speculative_tokens > 0 needs an MTP module.
  static absl::Status ValidateSpeculation(const EngineOptions& options, int64_t num_mtp_modules);
  absl::Status Validate(const GenerateRequest& request) const;
  void Run();  // the engine thread

  // Constant after construction.
  const ModelConfig& config_;
  const EngineOptions options_;

  // Engine thread only.
  EngineLoop loop_;

  // State below is protected by mu_.
  mutable std::mutex mu_;
  std::condition_variable wake_;
  struct Submission {
    GenerateRequest request;
    TokenSink* sink;
  };
  std::vector<Submission> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancels_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> live_request_ids_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  std::optional<ShutdownMode> shutdown_ ABSL_GUARDED_BY(mu_);
  EngineStats stats_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace moeserve::engine
