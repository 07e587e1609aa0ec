#include "engine/runner/cuda_runner.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/io/checkpoint.h"
#include "engine/model/cuda_model_weights.h"
#include "engine/model/deepseek_model_cuda.h"
#include "engine/model/model_config.h"
#include "engine/ops/cuda/check.h"
#include "engine/runner/forward_batch.h"
#include "engine/runner/memory_planner.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
absl::StatusOr<CudaRunner> LoadCudaRunner(const std::string& model_dir,
                                          const CudaRunnerOptions& options) {
  CudaRunner runner;
  MOESERVE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir + "/config.json"));
  LoadOptions load = options.load;
  if (config.fp8.has_value()) {
    runner.quantization = "fp8 (checkpoint)";
  } else {
    runner.quantization = "fp8 (online)";
    if (!load.quantize_fp8) {
      load.quantize_fp8 = true;
      runner.log_lines.push_back(
          "BF16 checkpoint: quantizing its linears to FP8 at load (the CUDA backend runs MoE "
          "experts as FP8 block-scaled GEMMs), as --quantization fp8 would");
    }
  }

  MOESERVE_ASSIGN_OR_RETURN(
      std::unique_ptr<CudaContext> context,
      CudaContext::Create({.device_index = options.device_index, .arena_bytes = 0}));
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<CublasLtGemm> gemm, CublasLtGemm::Create(*context));
  CudaModelWeights weights;
  {
    // The host copy (fp32) lives only until the upload is done.
    MOESERVE_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(model_dir));
    MOESERVE_ASSIGN_OR_RETURN(ModelWeights host, LoadModelWeights(checkpoint, config, load));
    MOESERVE_ASSIGN_OR_RETURN(weights, UploadModelWeights(*context, *gemm, config, host));
  }
  const CudaStepLimits limits{.max_num_batched_tokens = options.max_num_batched_tokens,
                              .max_num_seqs = options.max_num_seqs,
                              .max_model_len = options.max_model_len};
  const size_t arena_bytes =
      DeepseekModelCuda::ActivationBytes(config, weights, limits, context->device().num_sms);
  MOESERVE_RETURN_IF_ERROR(context->ReserveArena(arena_bytes));
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());

  size_t free_bytes = 0, total_bytes = 0;
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  MOESERVE_ASSIGN_OR_RETURN(
      KvMemoryPlan plan,
      PlanKvCache({.total_device_bytes = static_cast<int64_t>(total_bytes),
                   .used_device_bytes = static_cast<int64_t>(total_bytes - free_bytes),
                   .gpu_memory_utilization = options.gpu_memory_utilization,
                   .kv_bytes_per_block = DeepseekModelCuda::KvBytesPerBlock(config),
                   .max_model_len = options.max_model_len}));
  runner.log_lines.push_back(absl::StrCat(
      context->device().ToString(), ": weights ", FormatGiB(static_cast<int64_t>(weights.bytes)),
      ", activation arena ", FormatGiB(static_cast<int64_t>(arena_bytes)), " (largest step ",
      options.max_num_batched_tokens, " tokens, ", options.max_num_seqs, " sequences)"));
  runner.log_lines.push_back(plan.summary);
  if (options.max_num_kv_blocks > 0 && options.max_num_kv_blocks < plan.num_blocks) {
    plan.num_blocks = options.max_num_kv_blocks;
    runner.log_lines.push_back(absl::StrCat(
        "KV cache capped at ", plan.num_blocks, " blocks = ", plan.num_blocks * kKvBlockSize,
        " tokens by --kv-cache-tokens/--kv-cache-memory-bytes"));
  }
  MOESERVE_ASSIGN_OR_RETURN(
      std::unique_ptr<DeepseekModelCuda> model,
      DeepseekModelCuda::Create(std::move(context), std::move(gemm), std::move(config),
                                std::move(weights), plan.num_blocks));
  CudaGraphOptions graphs{.max_model_len = options.max_model_len};
  if (options.enforce_eager) graphs.batch_sizes.clear();
  MOESERVE_RETURN_IF_ERROR(model->SetCudaGraphs(graphs));
  runner.log_lines.push_back(
      graphs.batch_sizes.empty()
          ? std::string("decode steps run eagerly (--enforce-eager)")
          : absl::StrCat("decode steps of up to ", graphs.batch_sizes.back(),
                         " sequences replay CUDA graphs (padded to ",
                         absl::StrJoin(graphs.batch_sizes, ", "), "; captured on first use)"));
  runner.num_kv_blocks = plan.num_blocks;
  runner.model = std::move(model);
  return runner;
}

}  // namespace moeserve::engine
