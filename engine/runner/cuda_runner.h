// Loads a checkpoint onto a GPU and returns the StepModel the engine runs: the `--device cuda`
// path of the server (and of tools and benchmarks that want the whole served model).
//
// Steps, each logged: read config.json and the weights on the host (a BF16 checkpoint is
// quantized to FP8 at load, as `--quantization fp8`, because MoE experts run as FP8
// block-scaled GEMMs); upload them (CudaModelWeights) and free the host copy; reserve the
// activation arena for the largest step; give the memory `--gpu-memory-utilization` still
// allows to the KV pool (memory_planner.h). The engine's EngineOptions::num_kv_blocks must then
// be set to the result's num_kv_blocks. Builds without CUDA return FailedPrecondition.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/weight_loader.h"
#include "engine/runner/step_model.h"

namespace moeserve::engine {

struct CudaRunnerOptions {
  int device_index = 0;
  double gpu_memory_utilization = 0.9;
  LoadOptions load;
  // The largest step (EngineOptions of the same names).
  int64_t max_num_batched_tokens = 0;
  int64_t max_num_seqs = 0;
  int64_t max_model_len = 0;
  // Upper bound on the KV pool (0: whatever the memory plan allows).
  int64_t max_num_kv_blocks = 0;
  // `--enforce-eager`: no CUDA graphs for decode steps.
  bool enforce_eager = false;
};

struct CudaRunner {
  std::unique_ptr<StepModel> model;
  int64_t num_kv_blocks = 0;
  std::string quantization;  // "fp8 (checkpoint)", "fp8 (online)"
  // For the startup log: weights, arena and the KV plan with its capacity in tokens.
  std::vector<std::string> log_lines;
};

absl::StatusOr<CudaRunner> LoadCudaRunner(const std::string& model_dir,
                                          const CudaRunnerOptions& options);

}  // namespace moeserve::engine
