#include "engine/runner/cpu_step_model.h"

namespace moeserve::engine {

CpuStepModel::CpuStepModel(const DeepseekModel& model, int64_t num_kv_blocks)
    : wrapped_(ParallelModel::Wrap(model)),
      model_(*wrapped_),
      pages_(model_.MakeKvPages(num_kv_blocks)) {}

CpuStepModel::CpuStepModel(ParallelModel& model, int64_t num_kv_blocks)
    : model_(model), pages_(model_.MakeKvPages(num_kv_blocks)) {}

int64_t CpuStepModel::kv_bytes_per_token() const {
  return pages_[0].num_layers() * pages_[0].kv_dim() * pages_[0].element_bytes();
}

absl::StatusOr<std::vector<float>> CpuStepModel::Forward(const ForwardBatch& batch,
                                                         const ForwardOptions& options) {
  return model_.Forward(batch, pages_, options);
}

absl::StatusOr<ForwardOutput> CpuStepModel::ForwardWithHidden(const ForwardBatch& batch,
                                                              const ForwardOptions& options) {
  if (num_mtp_modules() == 0) return StepModel::ForwardWithHidden(batch, options);
  return model_.ForwardWithHidden(batch, pages_, options);
}

absl::StatusOr<ForwardOutput> CpuStepModel::ForwardMtp(const ForwardBatch& batch,
                                                       absl::Span<const float> prev_hidden,
                                                       const ForwardOptions& options) {
  if (num_mtp_modules() == 0) return StepModel::ForwardMtp(batch, prev_hidden, options);
  return model_.ForwardMtp(0, batch, prev_hidden, pages_, options);
}

}  // namespace moeserve::engine
