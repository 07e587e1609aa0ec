// Expert-parallel token exchange: dispatch (tokens to the ranks holding their experts) and
// combine (results back, weighted by the router), both by variable all-to-all with the counts
// exchanged first.
//
// A rank starts with its own tokens and their routing (expert ids and weights, [n, top_k]).
// PlanDispatch picks one replica of each chosen expert (global token index mod replicas, so
// the choice is deterministic) and orders the send buffer by destination rank. After
// DispatchTokens every rank holds the rows sent to it with the local slot each must run
// through; the caller runs its experts on them, ReturnResults sends the outputs back in the
// same order, and CombineResults adds each token's top_k outputs in ascending expert order —
// the order the single-rank MoE uses, so an expert-parallel MoE equals it bit for bit.
// Used by expert_parallel_moe.cc; tested on its own with random routing.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/parallel/communicator.h"
#include "engine/parallel/expert_placement.h"

namespace moeserve::engine {

struct DispatchPlan {
  std::vector<int64_t> send_counts;  // [world] rows to each rank
  // One entry per (token, k) pair in send order (grouped by destination rank):
  std::vector<int32_t> token;  // local token index
  std::vector<int32_t> pick;   // k, the position among the token's top_k choices
  std::vector<int32_t> slot;   // slot on the destination rank
};

// expert_ids: [num_tokens, top_k]; replicas: LayerPlacement::ReplicasByExpert;
// first_global_token: the global index of this rank's token 0 (for the replica choice).
DispatchPlan PlanDispatch(const int32_t* expert_ids, int64_t num_tokens, int64_t top_k,
                          int64_t first_global_token,
                          const std::vector<std::vector<LayerPlacement::Replica>>& replicas,
                          int world_size);

struct DispatchedTokens {
  std::vector<int64_t> recv_counts;  // [world] rows from each rank
  std::vector<float> rows;           // [Σ recv_counts, hidden]
  std::vector<int32_t> slots;        // [Σ recv_counts] local slot of each row
  int64_t num_rows() const { return static_cast<int64_t>(slots.size()); }
};

// x: [num_tokens, hidden], this rank's tokens. Collective: every rank calls it.
absl::StatusOr<DispatchedTokens> DispatchTokens(Communicator& comm, const DispatchPlan& plan,
                                                const float* x, int64_t hidden);

// results: [received.num_rows(), hidden] in received order. Returns [plan.token.size(), hidden]
// in send order. Collective.
absl::StatusOr<std::vector<float>> ReturnResults(Communicator& comm, const DispatchPlan& plan,
                                                 const DispatchedTokens& received,
                                                 const float* results, int64_t hidden);

// out[t] = Σ_k weights[t, k] · returned[row of (t, k)], k in ascending expert id order,
// starting from zero. out: [num_tokens, hidden] (overwritten).
void CombineResults(const DispatchPlan& plan, const int32_t* expert_ids, const float* weights,
                    int64_t num_tokens, int64_t top_k, const std::vector<float>& returned,
                    int64_t hidden, float* out);

}  // namespace moeserve::engine
