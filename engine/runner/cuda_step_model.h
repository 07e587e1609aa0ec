// One GPU's DeepseekModelCuda behind the StepModel seam the engine runs.
//
// The model (engine/model) knows nothing of the runner's seam, so the runner adapts it here, as
// CpuStepModel adapts the CPU model; a model-parallel group is CudaRankGroup instead. Created by
// LoadCudaRunner for a single GPU; engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "engine/model/deepseek_model_cuda.h"
#include "engine/runner/step_model.h"

namespace moeserve::engine {

class CudaStepModel final : public StepModel {
 public:
  explicit CudaStepModel(std::unique_ptr<DeepseekModelCuda> model) : model_(std::move(model)) {}

  const ModelConfig& config() const override { return model_->config(); }
  absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch,
                                             const ForwardOptions& options) override {
    return model_->Forward(batch, options);
  }
  // The argmax runs on the device; only [num_seqs] ids are copied back.
  absl::StatusOr<std::vector<int32_t>> ForwardArgmax(const ForwardBatch& batch,
                                                     const ForwardOptions& options) override {
    return model_->ForwardArgmax(batch, options);
  }
  int64_t num_mtp_modules() const override { return model_->num_mtp_modules(); }
  absl::StatusOr<ForwardOutput> ForwardWithHidden(const ForwardBatch& batch,
                                                  const ForwardOptions& options) override {
    return model_->ForwardWithHidden(batch, options);
  }
  absl::StatusOr<ForwardOutput> ForwardMtp(const ForwardBatch& batch,
                                           absl::Span<const float> prev_hidden,
                                           const ForwardOptions& options) override {
    return model_->ForwardMtp(0, batch, prev_hidden, options);
  }
  int64_t num_kv_blocks() const override { return model_->num_kv_blocks(); }
  // The model itself, for what StepModel does not carry (tests read its capture failures and
  // set its CUDA graph options).
  const DeepseekModelCuda& model() const { return *model_; }
  DeepseekModelCuda& mutable_model() { return *model_; }
  int64_t kv_bytes_per_token() const override { return model_->kv_bytes_per_token(); }
  std::vector<int64_t> expert_token_counts() const override {
    return model_->expert_token_counts();
  }

 private:
  std::unique_ptr<DeepseekModelCuda> model_;
};

}  // namespace moeserve::engine
