// Executes a scheduled step on the CPU backend: ScheduledBatch → ForwardBatch → logits →
// sampled tokens.
//
// Owns the KV pages (their block ids come from the scheduler's KvCacheManager; the two are
// sized from the same EngineOptions::num_kv_blocks) and the sampling workspace. Engine
// thread only. With tensor/expert parallelism it drives the ParallelModel's rank threads,
// one Forward per step, and holds one set of KV pages per rank.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine_options.h"
#include "engine/model/deepseek_model.h"
#include "engine/parallel/parallel_model.h"
#include "engine/runner/kv_pages.h"
#include "engine/sampling/sampler.h"
#include "engine/scheduler/scheduled_batch.h"

namespace moeserve::engine {

// One sampled token per ScheduledSequence whose `samples` is set, in batch order.
struct StepOutput {
  std::vector<Sequence*> sequences;
  std::vector<SampledToken> tokens;
};

class ModelRunner {
 public:
  ModelRunner(const DeepseekModel& model, const EngineOptions& options);
  // `model` (any number of ranks) must outlive the runner.
  ModelRunner(ParallelModel& model, const EngineOptions& options);

  absl::StatusOr<StepOutput> Execute(const ScheduledBatch& batch);

  const ModelConfig& config() const { return model_.config(); }
  // Summed over ranks; [num_layers, n_routed_experts].
  std::vector<int64_t> expert_token_counts() const { return model_.expert_token_counts(); }
  // Of one rank's copy of the latent cache.
  int64_t kv_bytes_per_token() const;

 private:
  std::unique_ptr<ParallelModel> wrapped_;  // when constructed from a single DeepseekModel
  ParallelModel& model_;
  const EngineOptions options_;
  std::vector<KvPages> pages_;  // one per rank
};

}  // namespace moeserve::engine
