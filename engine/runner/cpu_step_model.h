// The CPU backend behind the StepModel seam: a ParallelModel (one DeepseekModel, or a tensor/
// expert-parallel group of rank threads) and one set of host KV pages per rank.
//
// Created by the model runner when it is given a CPU model. Engine thread only.
#pragma once

#include <memory>
#include <vector>

#include "engine/batch/kv_pages.h"
#include "engine/model/deepseek_model.h"
#include "engine/parallel/parallel_model.h"
#include "engine/runner/step_model.h"

namespace moeserve::engine {

class CpuStepModel final : public StepModel {
 public:
  // `model` must outlive this object.
  CpuStepModel(const DeepseekModel& model, int64_t num_kv_blocks);
  CpuStepModel(ParallelModel& model, int64_t num_kv_blocks);

  const ModelConfig& config() const override { return model_.config(); }
  absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch,
                                             const ForwardOptions& options) override;
  // The MTP modules the model (every rank of a group) loaded.
  int64_t num_mtp_modules() const override { return model_.num_mtp_modules(); }
  absl::StatusOr<ForwardOutput> ForwardWithHidden(const ForwardBatch& batch,
                                                  const ForwardOptions& options) override;
  absl::StatusOr<ForwardOutput> ForwardMtp(const ForwardBatch& batch,
                                           absl::Span<const float> prev_hidden,
                                           const ForwardOptions& options) override;
  int64_t num_kv_blocks() const override { return pages_[0].num_blocks(); }
  int64_t kv_bytes_per_token() const override;
  std::vector<int64_t> expert_token_counts() const override { return model_.expert_token_counts(); }

 private:
  std::unique_ptr<ParallelModel> wrapped_;  // when constructed from a single DeepseekModel
  ParallelModel& model_;
  std::vector<KvPages> pages_;  // one per rank
};

}  // namespace moeserve::engine
