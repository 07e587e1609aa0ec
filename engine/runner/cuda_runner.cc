#include "engine/runner/cuda_runner.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/batch/forward_batch.h"
#include "engine/io/checkpoint.h"
#include "engine/model/cuda_model_weights.h"
#include "engine/model/deepseek_model_cuda.h"
#include "engine/model/model_config.h"
#include "engine/ops/cuda/check.h"
#include "engine/ops/moe/moe_layer_cuda.h"
#include "engine/parallel/nccl_communicator.h"
#include "engine/runner/cuda_rank_group.h"
#include "engine/runner/cuda_step_model.h"
#include "engine/runner/memory_planner.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

// What every rank (or the single GPU) needs, decided once from config.json.
struct LoadPlan {
  ModelConfig config;
  LoadOptions load;
  std::string quantization;
  std::vector<std::string> log_lines;
};

absl::StatusOr<LoadPlan> PlanLoad(const std::string& model_dir, const CudaRunnerOptions& options) {
  LoadPlan plan;
  MOESERVE_ASSIGN_OR_RETURN(plan.config, LoadModelConfig(model_dir + "/config.json"));
  plan.load = options.load;
  if (plan.config.fp8.has_value()) {
    plan.quantization = "fp8 (checkpoint)";
  } else {
    plan.quantization = "fp8 (online)";
    if (!plan.load.quantize_fp8) {
      plan.load.quantize_fp8 = true;
      plan.log_lines.push_back(
          "BF16 checkpoint: quantizing its linears to FP8 at load (the CUDA backend runs MoE "
          "experts as FP8 block-scaled GEMMs), as --quantization fp8 would");
    }
  }
  return plan;
}

// One GPU's weights on the device and its arena reserved: everything before the KV plan.
struct LoadedRank {
  std::unique_ptr<CudaContext> context;
  std::unique_ptr<CublasLtGemm> gemm;
  CudaModelWeights weights;
  size_t arena_bytes = 0;
};

// The rank's device context and GEMM handle: what the communicator needs before any weight.
absl::StatusOr<LoadedRank> OpenRank(int device) {
  LoadedRank rank;
  MOESERVE_ASSIGN_OR_RETURN(rank.context,
                            CudaContext::Create({.device_index = device, .arena_bytes = 0}));
  MOESERVE_ASSIGN_OR_RETURN(rank.gemm, CublasLtGemm::Create(*rank.context));
  return rank;
}

// Weights streamed onto the device a layer at a time (the host holds one layer's fp32 copy),
// then the activation arena for the largest step.
absl::Status LoadRankWeights(LoadedRank& rank, const std::string& model_dir, const LoadPlan& plan,
                             const CudaRunnerOptions& options, const WeightShard& shard,
                             const CudaWeightShard& cuda_shard) {
  {
    MOESERVE_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(model_dir));
    MOESERVE_ASSIGN_OR_RETURN(
        rank.weights, LoadCudaModelWeights(*rank.context, *rank.gemm, checkpoint, plan.config,
                                           plan.load, shard, cuda_shard));
  }
  const CudaStepLimits limits{.max_num_batched_tokens = options.max_num_batched_tokens,
                              .max_num_seqs = options.max_num_seqs,
                              .max_model_len = options.max_model_len};
  rank.arena_bytes = DeepseekModelCuda::ActivationBytes(plan.config, rank.weights, limits,
                                                        rank.context->device().num_sms);
  return rank.context->ReserveArena(rank.arena_bytes);
}

// The KV pool this device can hold now (call after everything else is allocated on it).
absl::StatusOr<KvMemoryPlan> PlanDeviceKv(const ModelConfig& config, int64_t mtp_modules,
                                          const CudaRunnerOptions& options) {
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  size_t free_bytes = 0, total_bytes = 0;
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  return PlanKvCache({.total_device_bytes = static_cast<int64_t>(total_bytes),
                      .used_device_bytes = static_cast<int64_t>(total_bytes - free_bytes),
                      .gpu_memory_utilization = options.gpu_memory_utilization,
                      .kv_bytes_per_block = DeepseekModelCuda::KvBytesPerBlock(config, mtp_modules),
                      .max_model_len = options.max_model_len});
}

int64_t CappedBlocks(int64_t planned, const CudaRunnerOptions& options) {
  return options.max_num_kv_blocks > 0 ? std::min(planned, options.max_num_kv_blocks) : planned;
}

std::string DeviceLine(const LoadedRank& rank, const CudaRunnerOptions& options) {
  return absl::StrCat(rank.context->device().ToString(), ": weights ",
                      FormatGiB(static_cast<int64_t>(rank.weights.bytes)), ", activation arena ",
                      FormatGiB(static_cast<int64_t>(rank.arena_bytes)), " (largest step ",
                      options.max_num_batched_tokens, " tokens, ", options.max_num_seqs,
                      " sequences)");
}

// Create + CUDA graphs; the model owns the rank's context, GEMM and weights from here on.
absl::StatusOr<std::unique_ptr<DeepseekModelCuda>> FinishRank(LoadedRank rank,
                                                              const ModelConfig& config,
                                                              int64_t num_kv_blocks,
                                                              const CudaRunnerOptions& options,
                                                              NcclCommunicator* comm) {
  MOESERVE_ASSIGN_OR_RETURN(
      std::unique_ptr<DeepseekModelCuda> model,
      DeepseekModelCuda::Create(std::move(rank.context), std::move(rank.gemm), config,
                                std::move(rank.weights), num_kv_blocks));
  if (comm != nullptr) MOESERVE_RETURN_IF_ERROR(model->SetRankGroup(comm, options.parallel));
  CudaGraphOptions graphs{.max_model_len = options.max_model_len,
                          .max_num_batched_tokens = options.max_num_batched_tokens,
                          .max_num_seqs = options.max_num_seqs};
  if (options.enforce_eager) graphs.batch_sizes.clear();
  MOESERVE_RETURN_IF_ERROR(model->SetCudaGraphs(graphs));
  return model;
}

std::string GraphLine(const CudaRunnerOptions& options) {
  if (options.enforce_eager) return "every step runs eagerly (--enforce-eager)";
  const CudaGraphOptions graphs;
  return absl::StrCat("decode steps of up to ", graphs.batch_sizes.back(),
                      " sequences, and speculative verification and MTP steps of up to ",
                      MoeLayerCuda::kGroupedMaxTokens,
                      " tokens, replay CUDA graphs (sequences padded to ",
                      absl::StrJoin(graphs.batch_sizes, ", "), "; captured on first use)");
}

absl::StatusOr<CudaRunner> LoadSingleGpu(const std::string& model_dir,
                                         const CudaRunnerOptions& options, LoadPlan plan) {
  CudaRunner runner;
  runner.quantization = plan.quantization;
  runner.log_lines = std::move(plan.log_lines);
  MOESERVE_ASSIGN_OR_RETURN(LoadedRank rank, OpenRank(options.device_index));
  MOESERVE_RETURN_IF_ERROR(LoadRankWeights(rank, model_dir, plan, options, {}, {}));
  MOESERVE_ASSIGN_OR_RETURN(
      KvMemoryPlan kv,
      PlanDeviceKv(plan.config, static_cast<int64_t>(rank.weights.mtp.size()), options));
  runner.log_lines.push_back(DeviceLine(rank, options));
  runner.log_lines.push_back(kv.summary);
  const int64_t blocks = CappedBlocks(kv.num_blocks, options);
  if (blocks < kv.num_blocks) {
    runner.log_lines.push_back(
        absl::StrCat("KV cache capped at ", blocks, " blocks = ", blocks * kKvBlockSize,
                     " tokens by --kv-cache-tokens/--kv-cache-memory-bytes"));
  }
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<DeepseekModelCuda> model,
                            FinishRank(std::move(rank), plan.config, blocks, options, nullptr));
  runner.model = std::make_unique<CudaStepModel>(std::move(model));
  runner.log_lines.push_back(GraphLine(options));
  runner.num_kv_blocks = blocks;
  return runner;
}

// What every node must agree on to run the same steps: the group's shape, the limits that size
// arenas, pools and CUDA graphs, the placement and the model (FNV-1a over a canonical string;
// every node runs the same build).
int64_t GroupFingerprint(const CudaRunnerOptions& o,
                         const std::optional<ExpertPlacement>& placement,
                         const ModelConfig& config) {
  const std::string canonical =
      absl::StrCat("tp=", o.parallel.tensor_parallel_size, " ep=", o.parallel.expert_parallel_size,
                   " nnodes=", o.nnodes, " eager=", o.enforce_eager, " len=", o.max_model_len,
                   " tokens=", o.max_num_batched_tokens, " seqs=", o.max_num_seqs,
                   " kv_cap=", o.max_num_kv_blocks, " fp8=", o.load.quantize_fp8,
                   " layers=", config.num_hidden_layers, " vocab=", config.vocab_size,
                   " hidden=", config.hidden_size, " experts=", config.n_routed_experts,
                   " placement=", placement.has_value() ? PlacementToJson(*placement) : "none");
  uint64_t hash = 1469598103934665603ull;
  for (const unsigned char c : canonical) hash = (hash ^ c) * 1099511628211ull;
  return static_cast<int64_t>(hash >> 1);
}

// One all-reduce of the largest activation a step sends ([max tokens, hidden] bf16), so NCCL's
// lazily created connections and buffers exist before the KV plan reads the free memory.
absl::Status WarmUpAllReduce(NcclCommunicator& comm, CudaContext& context,
                             const ModelConfig& config, const CudaRunnerOptions& options) {
  const int64_t count = std::max<int64_t>(options.max_num_batched_tokens, 1) * config.hidden_size;
  MOESERVE_ASSIGN_OR_RETURN(DeviceBuffer data,
                            DeviceBuffer::Allocate(static_cast<size_t>(count) * 2));
  MOESERVE_RETURN_IF_ERROR(data.Fill(0));
  MOESERVE_RETURN_IF_ERROR(comm.AllReduceSum(data.data(), count, CommDataType::kBfloat16));
  return context.Synchronize();
}

// The load's agreement, reached by every rank whatever happened to it: an AllGather of (ok,
// KV blocks it can hold, fingerprint). Returns the group's pool size (the smallest), or the
// rank's own error, or the first failed rank's number, or a fingerprint mismatch naming node
// 0's and this node's options.
absl::StatusOr<int64_t> AgreeOnLoad(NcclCommunicator& comm, CudaContext& context,
                                    const absl::Status& loaded, int64_t blocks,
                                    int64_t fingerprint) {
  const int world = comm.world_size();
  const int64_t mine[3] = {loaded.ok() ? 1 : 0, blocks, fingerprint};
  MOESERVE_ASSIGN_OR_RETURN(DeviceBuffer device_mine, DeviceBuffer::Allocate(sizeof(mine)));
  MOESERVE_ASSIGN_OR_RETURN(DeviceBuffer device_all,
                            DeviceBuffer::Allocate(static_cast<size_t>(world) * sizeof(mine)));
  const cudaStream_t stream = static_cast<cudaStream_t>(context.stream());
  // On the communicator's stream: a plain cudaMemcpy would not order before it.
  MOESERVE_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(device_mine.data(), mine, sizeof(mine), cudaMemcpyHostToDevice, stream));
  MOESERVE_RETURN_IF_ERROR(
      comm.AllGather(device_mine.data(), 3, device_all.data(), CommDataType::kInt64));
  std::vector<int64_t> all(static_cast<size_t>(world) * 3);
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(all.data(), device_all.data(), all.size() * 8,
                                                cudaMemcpyDeviceToHost, stream));
  MOESERVE_RETURN_IF_ERROR(context.Synchronize());
  if (!loaded.ok()) return loaded;
  int64_t smallest = blocks;
  for (int r = 0; r < world; ++r) {
    if (all[r * 3] != 1) {
      return absl::AbortedError(absl::StrCat("rank ", r,
                                             " of the group failed to load (its "
                                             "node's log says why)"));
    }
    if (all[r * 3 + 2] != all[2]) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rank ", r,
          " was started with other options than rank 0 (parallel sizes, "
          "--max-model-len, --max-num-batched-tokens, --max-num-seqs, KV caps, --enforce-eager, "
          "--quantization, --expert-placement or the model): every node needs the same flags"));
    }
    smallest = std::min(smallest, all[r * 3 + 1]);
  }
  return smallest;
}

// This node's ranks of a model-parallel group, loaded on their GPUs in parallel and joined in
// one NCCL communicator (collective with the other nodes' LoadLocalRanks).
struct LocalRanks {
  std::vector<CudaRank> ranks;
  std::unique_ptr<RankThreadPool> pool;
  int64_t num_kv_blocks = 0;
};

absl::StatusOr<LocalRanks> LoadLocalRanks(const std::string& model_dir,
                                          const CudaRunnerOptions& options, LoadPlan& plan) {
  const ParallelConfig& parallel = options.parallel;
  MOESERVE_RETURN_IF_ERROR(ValidateParallelConfig(parallel, plan.config));
  const int world = parallel.world_size();
  if (options.nnodes < 1 || world % options.nnodes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nnodes ", options.nnodes, " does not divide the group of ", world, " ranks"));
  }
  if (options.node_rank < 0 || options.node_rank >= options.nnodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--node-rank ", options.node_rank, " outside [0, ", options.nnodes, ")"));
  }
  const int local_ranks = world / options.nnodes;
  int devices = 0;
  MOESERVE_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&devices));
  if (options.device_index < 0 || devices < options.device_index + local_ranks) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a group of ", world, " ranks over ", options.nnodes, " node(s) needs ", local_ranks,
        " GPUs on this node from device ", options.device_index, "; it has ", devices));
  }
  std::optional<ExpertPlacement> placement = options.placement;
  if (parallel.expert_parallel_size > 1 && !placement.has_value()) {
    placement = ContiguousPlacement(MoeLayerMask(plan.config), plan.config.n_routed_experts,
                                    parallel.expert_parallel_size);
  }
  MOESERVE_ASSIGN_OR_RETURN(std::string nccl_id,
                            options.nnodes == 1
                                ? NewNcclUniqueId()
                                : ShareNcclUniqueId(options.rendezvous, options.node_rank,
                                                    options.nnodes, std::chrono::minutes(10)));

  LocalRanks out;
  out.ranks.resize(static_cast<size_t>(local_ranks));
  // OpenMP threads split over the ranks: the host-side conversion of each rank's layers uses them.
  out.pool = std::make_unique<RankThreadPool>(local_ranks);
  std::vector<int64_t> group_blocks(static_cast<size_t>(local_ranks));
  std::vector<std::string> device_lines(static_cast<size_t>(local_ranks));
  const int64_t fingerprint = GroupFingerprint(options, placement, plan.config);
  const std::vector<absl::Status> statuses = out.pool->Run([&](int local) -> absl::Status {
    const int global = options.node_rank * local_ranks + local;
    const int device = options.device_index + local;
    CudaRank& mine = out.ranks[static_cast<size_t>(local)];
    mine.device = device;
    // The communicator first: after it, a rank that fails still meets its peers in the
    // agreement below instead of leaving them blocked in a collective.
    MOESERVE_ASSIGN_OR_RETURN(LoadedRank rank, OpenRank(device));
    MOESERVE_ASSIGN_OR_RETURN(mine.comm,
                              NcclCommunicator::Create({.rank = global,
                                                        .world_size = world,
                                                        .device = device,
                                                        .unique_id = nccl_id,
                                                        .stream = rank.context->stream()}));
    const RankContext context{
        .rank = global, .parallel = parallel, .placement = placement ? &*placement : nullptr};
    int64_t capped_blocks = 0;
    const absl::Status loaded = [&]() -> absl::Status {
      MOESERVE_ASSIGN_OR_RETURN(WeightShard shard, WeightShardFor(context, plan.config));
      // Without tensor parallelism the shared experts run whole on rank 0 only.
      const CudaWeightShard cuda_shard{
          .placement = context.placement,
          .ep_rank = context.ep_rank(),
          .shared_experts = parallel.tensor_parallel_size > 1 || global == 0};
      MOESERVE_RETURN_IF_ERROR(LoadRankWeights(rank, model_dir, plan, options, shard, cuda_shard));
      // NCCL sets up its connections and buffers on first use: before the KV plan measures.
      MOESERVE_RETURN_IF_ERROR(WarmUpAllReduce(*mine.comm, *rank.context, plan.config, options));
      MOESERVE_ASSIGN_OR_RETURN(KvMemoryPlan kv,
                                PlanDeviceKv(plan.config, /*mtp_modules=*/0, options));
      device_lines[static_cast<size_t>(local)] =
          absl::StrCat("rank ", global, ": ", DeviceLine(rank, options), "; ", kv.summary);
      capped_blocks = CappedBlocks(kv.num_blocks, options);
      return absl::OkStatus();
    }();
    MOESERVE_ASSIGN_OR_RETURN(
        int64_t group_blocks_min,
        AgreeOnLoad(*mine.comm, *rank.context, loaded, capped_blocks, fingerprint));
    group_blocks[static_cast<size_t>(local)] = group_blocks_min;
    MOESERVE_ASSIGN_OR_RETURN(mine.model, FinishRank(std::move(rank), plan.config, group_blocks_min,
                                                     options, mine.comm.get()));
    return absl::OkStatus();
  });
  for (const absl::Status& s : statuses) MOESERVE_RETURN_IF_ERROR(s);
  for (std::string& line : device_lines) plan.log_lines.push_back(std::move(line));
  out.num_kv_blocks = group_blocks[0];
  plan.log_lines.push_back(
      absl::StrCat("model split over ", world, " GPUs (", options.nnodes, " node(s), this is node ",
                   options.node_rank, "): tensor parallel ", parallel.tensor_parallel_size,
                   ", expert parallel ", parallel.expert_parallel_size,
                   "; every rank holds the latent cache "
                   "of ",
                   out.num_kv_blocks, " blocks = ", out.num_kv_blocks * kKvBlockSize, " tokens"));
  plan.log_lines.push_back(GraphLine(options));
  return out;
}

}  // namespace

CudaExecutionCounts CudaExecutionCountsOf(const StepModel& model) {
  const auto* step_model = dynamic_cast<const CudaStepModel*>(&model);
  if (step_model == nullptr) return {};
  const DeepseekModelCuda& cuda = step_model->model();
  CudaExecutionCounts counts{.graphed_forwards = cuda.forward_counts().graphed,
                             .eager_forwards = cuda.forward_counts().eager};
  for (const absl::Status& failure : cuda.capture_failures()) {
    counts.capture_failures.push_back(failure.ToString());
  }
  return counts;
}

absl::StatusOr<CudaRunner> LoadCudaRunner(const std::string& model_dir,
                                          const CudaRunnerOptions& options) {
  MOESERVE_ASSIGN_OR_RETURN(LoadPlan plan, PlanLoad(model_dir, options));
  if (options.parallel.world_size() == 1 && options.nnodes == 1) {
    return LoadSingleGpu(model_dir, options, std::move(plan));
  }
  if (options.node_rank != 0) {
    return absl::InvalidArgumentError(
        "only node 0 serves; the other nodes run RunCudaFollowerNode");
  }
  MOESERVE_ASSIGN_OR_RETURN(LocalRanks local, LoadLocalRanks(model_dir, options, plan));
  CudaRunner runner;
  runner.quantization = plan.quantization;
  runner.log_lines = std::move(plan.log_lines);
  runner.num_kv_blocks = local.num_kv_blocks;
  runner.model = std::make_unique<CudaRankGroup>(std::move(local.ranks), std::move(local.pool),
                                                 /*announce_steps=*/options.nnodes > 1);
  return runner;
}

absl::Status RunCudaFollowerNode(const std::string& model_dir, const CudaRunnerOptions& options,
                                 const std::function<void(const std::string&)>& log) {
  if (options.node_rank < 1) {
    return absl::InvalidArgumentError("RunCudaFollowerNode is for --node-rank 1 and above");
  }
  MOESERVE_ASSIGN_OR_RETURN(LoadPlan plan, PlanLoad(model_dir, options));
  MOESERVE_ASSIGN_OR_RETURN(LocalRanks local, LoadLocalRanks(model_dir, options, plan));
  for (const std::string& line : plan.log_lines) log(line);
  log(absl::StrCat("node ", options.node_rank, " follows node 0's steps"));
  absl::Status status = CudaRankGroup::Follow(local.ranks, *local.pool);
  // Free each shard on its own device.
  (void)local.pool->Run([&](int i) -> absl::Status {
    MOESERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(local.ranks[static_cast<size_t>(i)].device));
    local.ranks[static_cast<size_t>(i)].model.reset();
    local.ranks[static_cast<size_t>(i)].comm.reset();
    return absl::OkStatus();
  });
  return status;
}

}  // namespace moeserve::engine
