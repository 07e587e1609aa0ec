// Executes a scheduled step: ScheduledBatch → ForwardBatch → logits (StepModel, on the CPU or
// a GPU) → sampled tokens; with EngineOptions::speculative_tokens the MtpSpeculator's
// draft-verify-draft step instead.
//
// Given a CPU model, it creates the CpuStepModel that owns the host KV pages; given a
// StepModel (the CUDA backend), it uses that model's device KV pool. Either way the pool's
// block ids are the scheduler's KvCacheManager's, both sized by EngineOptions::num_kv_blocks.
// Engine thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine_options.h"
#include "engine/model/deepseek_model.h"
#include "engine/parallel/parallel_model.h"
#include "engine/runner/mtp_speculator.h"
#include "engine/runner/step_model.h"
#include "engine/runner/step_output.h"
#include "engine/sampling/sampler.h"
#include "engine/scheduler/scheduled_batch.h"

namespace moeserve::engine {

class ModelRunner {
 public:
  ModelRunner(const DeepseekModel& model, const EngineOptions& options);
  // `model` (any number of ranks) must outlive the runner.
  ModelRunner(ParallelModel& model, const EngineOptions& options);
  // A backend's model with its own KV pool of options.num_kv_blocks blocks; must outlive the
  // runner.
  ModelRunner(StepModel& model, const EngineOptions& options);
  ~ModelRunner();

  absl::StatusOr<StepOutput> Execute(const ScheduledBatch& batch);

  const ModelConfig& config() const { return model_.config(); }
  // Summed over ranks; [num_layers, n_routed_experts].
  std::vector<int64_t> expert_token_counts() const { return model_.expert_token_counts(); }
  // Of one rank's copy of the latent cache.
  int64_t kv_bytes_per_token() const { return model_.kv_bytes_per_token(); }

 private:
  // Takes ownership of a CPU backend made by the constructors above.
  ModelRunner(std::unique_ptr<StepModel> owned, const EngineOptions& options);

  std::unique_ptr<StepModel> owned_;  // the CpuStepModel made for a CPU model
  StepModel& model_;
  const EngineOptions options_;
  std::unique_ptr<MtpSpeculator> speculator_;  // when options.speculative_tokens > 0
};

}  // namespace moeserve::engine
