// Which routed (token, expert) pairs one expert-parallel rank computes, when every rank sees
// every token (the GPU forward's expert parallelism: docs/parallel.md).
//
// The router picks global expert ids; a rank holds some experts (possibly several replicas of
// a hot one, engine/parallel/expert_placement.h) in local slots. Pair (t, e) is computed by
// replica t mod replica_count[e] of expert e — the same choice as the CPU dispatch's
// PlanDispatch, with t the token's index in the step — so exactly one rank computes each pair
// and a hot expert's tokens spread over its replicas. MapToLocalSlots rewrites the router's ids
// into this rank's slot ids, -1 for pairs another rank computes (the MoE permutation drops
// them; their weight then contributes nothing here and the ranks' outputs are summed).
// Built by ExpertSlotsOnRank (engine/parallel/expert_placement.h); MoeLayerCuda runs the CUDA
// twin (expert_slots_cuda.h) between the router and the permutation.
#pragma once

#include <cstdint>
#include <vector>

namespace moeserve::engine {

struct LocalExpertSlots {
  int64_t num_experts = 0;             // the router's experts
  int64_t num_slots = 0;               // experts stored on this rank
  int64_t max_replicas = 0;            // row width of local_slot
  std::vector<int32_t> replica_count;  // [num_experts], each >= 1
  // [num_experts, max_replicas]: replica r of expert e sits in this slot here, or -1 elsewhere.
  std::vector<int32_t> local_slot;

  bool empty() const { return num_experts == 0; }
};

// local_ids[t·k + j] = slots.local_slot[e · max_replicas + t mod replica_count[e]] for
// e = expert_ids[t·k + j]; ids outside [0, num_experts) map to -1.
void MapToLocalSlotsCpu(const LocalExpertSlots& slots, const int32_t* expert_ids,
                        int64_t num_tokens, int64_t top_k, int32_t* local_ids);

}  // namespace moeserve::engine
