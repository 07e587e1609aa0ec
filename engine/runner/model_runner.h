// Executes a scheduled step on the CPU backend: ScheduledBatch → ForwardBatch → logits →
// sampled tokens.
//
// Owns the KV pages (their block ids come from the scheduler's KvCacheManager; the two are
// sized from the same EngineOptions::num_kv_blocks) and the sampling workspace. Engine
// thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine_options.h"
#include "engine/model/deepseek_model.h"
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

  absl::StatusOr<StepOutput> Execute(const ScheduledBatch& batch);

  const DeepseekModel& model() const { return model_; }
  int64_t kv_bytes_per_token() const;

 private:
  const DeepseekModel& model_;
  const EngineOptions options_;
  KvPages pages_;
};

}  // namespace moeserve::engine
