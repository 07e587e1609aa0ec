#include "engine/runner/memory_planner.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/batch/forward_batch.h"

namespace moeserve::engine {
std::string FormatGiB(int64_t bytes) {
  return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (1 << 30));
}

absl::StatusOr<KvMemoryPlan> PlanKvCache(const KvMemoryPlanInput& in) {
  if (!(in.gpu_memory_utilization > 0.0 && in.gpu_memory_utilization <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--gpu-memory-utilization must be in (0, 1], got ", in.gpu_memory_utilization));
  }
  if (in.total_device_bytes <= 0 || in.used_device_bytes < 0 || in.kv_bytes_per_block <= 0 ||
      in.max_model_len <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PlanKvCache: total_device_bytes=", in.total_device_bytes,
        " used_device_bytes=", in.used_device_bytes, " kv_bytes_per_block=", in.kv_bytes_per_block,
        " max_model_len=", in.max_model_len));
  }
  KvMemoryPlan plan;
  plan.budget_bytes = static_cast<int64_t>(
      std::floor(static_cast<double>(in.total_device_bytes) * in.gpu_memory_utilization));
  const int64_t available =
      std::max<int64_t>(0, plan.budget_bytes - in.used_device_bytes - in.reserve_bytes);
  plan.num_blocks = available / in.kv_bytes_per_block;
  const int64_t needed_blocks = (in.max_model_len + kKvBlockSize - 1) / kKvBlockSize;
  if (plan.num_blocks < needed_blocks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "not enough GPU memory for the KV cache: --gpu-memory-utilization ",
        in.gpu_memory_utilization, " allows ", FormatGiB(plan.budget_bytes), " of ",
        FormatGiB(in.total_device_bytes), ", of which weights and activations use ",
        FormatGiB(in.used_device_bytes), " (+", FormatGiB(in.reserve_bytes),
        " headroom), leaving room for ", plan.num_blocks * kKvBlockSize,
        " tokens; one sequence of --max-model-len ", in.max_model_len, " needs ",
        needed_blocks * kKvBlockSize, ". Raise --gpu-memory-utilization or lower --max-model-len"));
  }
  plan.capacity_tokens = plan.num_blocks * kKvBlockSize;
  plan.kv_bytes = plan.num_blocks * in.kv_bytes_per_block;
  plan.summary = absl::StrCat(
      "KV cache: ", plan.num_blocks, " blocks = ", plan.capacity_tokens, " tokens (",
      FormatGiB(plan.kv_bytes), "; budget ", FormatGiB(plan.budget_bytes), " of ",
      FormatGiB(in.total_device_bytes), " at --gpu-memory-utilization ", in.gpu_memory_utilization,
      ", weights + activations ", FormatGiB(in.used_device_bytes), ")");
  return plan;
}

}  // namespace moeserve::engine
