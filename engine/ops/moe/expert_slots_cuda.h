// MapToLocalSlotsCpu on the GPU (expert_slots.h), plus the routing statistics it is the natural
// place for: under expert parallelism the permutation counts only local slots, so the global
// per-expert token counts are taken here, from the router's ids.
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// replica_count: device [num_experts]; local_slot: device [num_experts, max_replicas];
// expert_ids, local_ids: device [num_tokens, top_k]. expert_totals: device int64 [num_experts]
// to which each in-range id adds 1, or null.
int LaunchMapToLocalSlots(const int32_t* replica_count, const int32_t* local_slot,
                          int64_t num_experts, int64_t max_replicas, const int32_t* expert_ids,
                          int64_t num_tokens, int64_t top_k, int32_t* local_ids,
                          int64_t* expert_totals, void* stream);

}  // namespace moeserve::engine
