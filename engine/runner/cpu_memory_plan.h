// Whether a model fits in host memory: the memory plan of the CPU backend (DESIGN.md §4).
//
// The CUDA backend sizes its KV pool from what is left after weights and activations
// (memory_planner.h); the CPU backend's KV cache is sized by a flag, so its plan is a check made
// before any weight is read: weights as they will be held (EstimateWeightBytes) + the KV cache +
// the activations of the largest step + headroom must fit in the memory this process can still
// get (MemAvailable, or the cgroup's limit if that is lower). A model that does not fit is a
// startup error naming both figures, instead of std::bad_alloc mid-load or the OOM killer.
// The server calls PlanCpuMemory before ParallelModel::Load.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_loader.h"

namespace moeserve::engine {

// The memory this process can still allocate without swapping or hitting its cgroup limit.
struct HostMemory {
  int64_t available_bytes = 0;
  std::string source;  // "MemAvailable" or "cgroup memory.max"
};
// Reads /proc/meminfo and, under cgroup v2, the process's memory.max - memory.current.
// Unavailable when neither can be read.
absl::StatusOr<HostMemory> ReadHostMemory();

// Scratch the CPU forward allocates for its largest step: per-token activations of
// max_num_batched_tokens tokens, one sequence's context materialized for MLA's naive prefill
// (K and V of every head over max_model_len positions, and one head's scores), and the logits
// of max_num_seqs sequences. An upper bound, not a measurement.
int64_t EstimateCpuActivationBytes(const ModelConfig& config, int64_t max_num_batched_tokens,
                                   int64_t max_num_seqs, int64_t max_model_len);

struct CpuMemoryPlanInput {
  int64_t weight_bytes = 0;
  int64_t kv_cache_bytes = 0;
  int64_t activation_bytes = 0;
  HostMemory host;
  // What the activation figure follows, for the error message: "config.json's vocab_size
  // 102400 and hidden_size 2048, --max-num-batched-tokens 2048, ...".
  std::string activation_basis;
  // Tokenizer, gRPC, allocator slack and the thread stacks outside the three figures above.
  int64_t reserve_bytes = int64_t{512} << 20;
};

struct CpuMemoryPlan {
  int64_t needed_bytes = 0;
  // "memory plan: weights 2.61 GiB + KV cache 0.25 GiB + activations 0.31 GiB + headroom
  // 0.50 GiB = 3.67 GiB of 21.80 GiB available (MemAvailable)" for the startup log.
  std::string summary;
};

// ResourceExhausted with every figure, and what to change, when the plan does not fit.
absl::StatusOr<CpuMemoryPlan> PlanCpuMemory(const CpuMemoryPlanInput& input);

// What the server serves a CPU model with: the figures its activations and KV cache scale by.
struct CpuServingShape {
  int64_t num_kv_blocks = 0;
  int64_t kv_bytes_per_block = 0;  // all layers, at the CPU cache's dtype
  int64_t max_num_batched_tokens = 0;
  int64_t max_num_seqs = 0;
  int64_t max_model_len = 0;
  int world_size = 1;  // rank threads: each holds its own KV pages and step scratch
};

// The whole check for the checkpoint in model_dir: reads its headers (no weight bytes) and this
// machine's free memory, then PlanCpuMemory.
absl::StatusOr<CpuMemoryPlan> PlanCpuModelMemory(const std::string& model_dir,
                                                 const ModelConfig& config, const LoadOptions& load,
                                                 const CpuServingShape& shape);

}  // namespace moeserve::engine
