// How many KV blocks fit on the GPU: the memory plan of the CUDA backend (DESIGN.md §4).
//
// Order, as in vLLM's profile-then-allocate: the weights are uploaded and the activation arena
// for the largest step is reserved first; of the device memory that `--gpu-memory-utilization`
// allows, whatever is then still unused becomes the KV pool. Pure arithmetic on the figures
// cudaMemGetInfo reports, so the CPU test suite covers it. Called once by LoadCudaRunner.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace moeserve::engine {

struct KvMemoryPlanInput {
  int64_t total_device_bytes = 0;
  // In use once weights, GEMM workspace and the activation arena are allocated (by this
  // process and any other on the device: cudaMemGetInfo's total - free).
  int64_t used_device_bytes = 0;
  double gpu_memory_utilization = 0.9;  // (0, 1]
  int64_t kv_bytes_per_block = 0;       // all layers
  int64_t max_model_len = 0;            // one sequence of this length must fit
  // Headroom left outside the plan for the CUDA context, cuBLASLt's lazily created state and
  // fragmentation.
  int64_t reserve_bytes = int64_t{256} << 20;
};

struct KvMemoryPlan {
  int64_t num_blocks = 0;
  int64_t capacity_tokens = 0;
  int64_t kv_bytes = 0;
  int64_t budget_bytes = 0;  // total · utilization
  // "KV cache: 14,062 blocks = 899,968 tokens (61.8 GiB of 79.1 GiB; ...)" for the startup log.
  std::string summary;
};

// "61.80 GiB": byte counts in the memory plan's log lines.
std::string FormatGiB(int64_t bytes);

// InvalidArgument naming --gpu-memory-utilization when it is outside (0, 1];
// ResourceExhausted with the figures when the budget cannot hold one max_model_len sequence.
absl::StatusOr<KvMemoryPlan> PlanKvCache(const KvMemoryPlanInput& input);

}  // namespace moeserve::engine
