// Loads a checkpoint onto a GPU and returns the StepModel the engine runs: the `--device cuda`
// path of the server (and of tools and benchmarks that want the whole served model).
//
// Steps, each logged: read config.json; stream the weights onto the device a layer at a time
// (a BF16 checkpoint is quantized to FP8 at load, as `--quantization fp8`, because MoE experts
// run as FP8 block-scaled GEMMs; CudaModelWeights); reserve the
// activation arena for the largest step; give the memory `--gpu-memory-utilization` still
// allows to the KV pool (memory_planner.h). The engine's EngineOptions::num_kv_blocks must then
// be set to the result's num_kv_blocks. Builds without CUDA return FailedPrecondition.
//
// With a parallel size above 1 the model is split over this node's GPUs, one rank each
// (CudaRankGroup, cuda_rank_group.h): every rank loads only its shard, joins one NCCL
// communicator, plans its KV pool, and the group keeps the smallest pool any rank can hold.
// Across nodes (nnodes > 1) node 0 calls LoadCudaRunner and serves; every other node calls
// RunCudaFollowerNode, which loads its ranks and runs the steps node 0 announces.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/weight_loader.h"
#include "engine/parallel/expert_placement.h"
#include "engine/parallel/parallel_config.h"
#include "engine/runner/step_model.h"

namespace moeserve::engine {

struct CudaRunnerOptions {
  int device_index = 0;  // the GPU; with model parallelism this node's first (ranks take the next)
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

  // Model parallelism (docs/parallel.md). world = parallel.world_size() ranks, world / nnodes
  // per node, one GPU each from device_index on; this process is node `node_rank` and holds
  // global ranks [node_rank · world/nnodes, ...). `rendezvous` ("file:PATH" or
  // "tcp:HOST:PORT", node 0's address) spreads the NCCL id when nnodes > 1. `placement`: the
  // expert layout (default: contiguous).
  ParallelConfig parallel;
  std::optional<ExpertPlacement> placement;
  int nnodes = 1;
  int node_rank = 0;
  std::string rendezvous;
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

// How a single-GPU runner's model has executed so far (DeepseekModelCuda::forward_counts and
// capture_failures), for a benchmark to report beside its timings: forward passes that replayed
// a CUDA graph, those run eagerly, and the graphs whose capture failed. Zeros for any other
// StepModel (a rank group, or a build without CUDA).
struct CudaExecutionCounts {
  int64_t graphed_forwards = 0;
  int64_t eager_forwards = 0;
  std::vector<std::string> capture_failures;
};
CudaExecutionCounts CudaExecutionCountsOf(const StepModel& model);

// A node other than 0 (options.node_rank > 0): loads this node's ranks, then runs the steps
// node 0 announces until node 0 shuts down (OK) or a rank fails. `log` receives the startup
// lines as LoadCudaRunner's log_lines.
absl::Status RunCudaFollowerNode(const std::string& model_dir, const CudaRunnerOptions& options,
                                 const std::function<void(const std::string&)>& log);

}  // namespace moeserve::engine
