#include "engine/ops/moe/expert_slots_cuda.h"

#include <cuda_runtime.h>

namespace moeserve::engine {
namespace {

__global__ void MapToLocalSlotsKernel(const int32_t* __restrict__ replica_count,
                                      const int32_t* __restrict__ local_slot, int64_t num_experts,
                                      int64_t max_replicas, const int32_t* __restrict__ expert_ids,
                                      int64_t entries, int64_t top_k, int32_t* local_ids,
                                      unsigned long long* expert_totals) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= entries) return;
  const int32_t e = expert_ids[i];
  int32_t slot = -1;
  if (e >= 0 && e < num_experts) {
    const int64_t token = i / top_k;
    slot = local_slot[e * max_replicas + token % replica_count[e]];
    if (expert_totals != nullptr) atomicAdd(&expert_totals[e], 1ull);
  }
  local_ids[i] = slot;
}

}  // namespace

int LaunchMapToLocalSlots(const int32_t* replica_count, const int32_t* local_slot,
                          int64_t num_experts, int64_t max_replicas, const int32_t* expert_ids,
                          int64_t num_tokens, int64_t top_k, int32_t* local_ids,
                          int64_t* expert_totals, void* stream) {
  const int64_t entries = num_tokens * top_k;
  if (entries <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const unsigned blocks = static_cast<unsigned>((entries + kThreads - 1) / kThreads);
  static_assert(sizeof(unsigned long long) == sizeof(int64_t));
  MapToLocalSlotsKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      replica_count, local_slot, num_experts, max_replicas, expert_ids, entries, top_k, local_ids,
      reinterpret_cast<unsigned long long*>(expert_totals));
  return cudaGetLastError();
}

}  // namespace moeserve::engine
