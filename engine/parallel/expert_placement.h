// Which expert-parallel rank holds which routed experts, per MoE layer (EPLB-style).
//
// Each rank has the same number of expert slots; every logical expert sits in at least one slot,
// hot experts in several (redundant replicas). A token routed to expert e goes to replica
// (global token index mod number of replicas of e), a deterministic choice that spreads a hot
// expert's tokens evenly. Without a placement file the layout is the contiguous partition
// (rank r holds experts [r·E/W, (r+1)·E/W)).
//
// Used by ParallelModel (which experts each rank loads, where tokens are dispatched), the
// server (`--expert-placement FILE`) and tools/expert_placement (which computes a placement
// from the per-(layer, expert) token counts the engine collects).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/ops/moe/expert_slots.h"

namespace moeserve::engine {

// One MoE layer's layout: rank_experts[r] = the logical experts in rank r's slots.
struct LayerPlacement {
  std::vector<std::vector<int32_t>> rank_experts;

  // Replicas of each logical expert as (rank, slot) pairs, ascending rank then slot.
  struct Replica {
    int32_t rank;
    int32_t slot;
  };
  std::vector<std::vector<Replica>> ReplicasByExpert(int64_t num_experts) const;
};

struct ExpertPlacement {
  int64_t num_experts = 0;
  int num_ranks = 0;
  // [num_layers]; layers that are not MoE layers have empty rank_experts.
  std::vector<LayerPlacement> layers;

  bool IsContiguousDefault() const;
};

// Rank `rank`'s view of the layer when every rank sees every token (the GPU expert
// parallelism): for each expert its replicas in ReplicasByExpert's order, so the replica that
// computes token t is the one the CPU dispatch (PlanDispatch) picks for it.
LocalExpertSlots ExpertSlotsOnRank(const LayerPlacement& layer, int64_t num_experts, int rank);

// The contiguous partition for the given MoE layers (is_moe_layer[l]); num_experts % num_ranks
// must be 0.
ExpertPlacement ContiguousPlacement(const std::vector<bool>& is_moe_layer, int64_t num_experts,
                                    int num_ranks);

// The layout of an MTP module's MoE layer (model.layers.{num_hidden_layers + m}) under expert
// parallelism: always the contiguous partition. Placement files and EPLB cover the main stack,
// whose routing the engine counts; the module is one layer beside it.
LayerPlacement MtpLayerPlacement(int64_t num_experts, int num_ranks);

// Every MoE layer laid out, every expert id in range and present at least once, no expert twice
// on one rank, every rank the same number of slots; non-MoE layers empty. Messages name the
// layer, rank and expert.
absl::Status ValidatePlacement(const ExpertPlacement& placement,
                               const std::vector<bool>& is_moe_layer, int64_t num_experts,
                               int num_ranks);

// JSON (format "moeserve-expert-placement/v1"):
//   {"format": ..., "num_experts": E, "num_ranks": W,
//    "layers": [{"layer": 1, "rank_experts": [[0, 5, 7], [1, 2, 5], ...]}, ...]}
// Layers not listed get the contiguous partition. Parsing is strict: unknown keys, wrong types
// and out-of-range values are InvalidArgument naming the file and the field.
std::string PlacementToJson(const ExpertPlacement& placement);
absl::StatusOr<ExpertPlacement> ParsePlacementJson(const std::string& text,
                                                   const std::string& source,
                                                   const std::vector<bool>& is_moe_layer);
absl::StatusOr<ExpertPlacement> LoadPlacementFile(const std::string& path,
                                                  const std::vector<bool>& is_moe_layer);

// EPLB's two steps for one layer: give the extra slots one by one to the expert with the
// highest load per replica, then pack replicas heaviest first onto the least-loaded rank with a
// free slot that does not hold the expert yet. counts: [num_experts] tokens per expert.
LayerPlacement BalanceLayer(absl::Span<const int64_t> counts, int num_ranks, int slots_per_rank);

// counts: [num_layers, num_experts] (zero rows for dense layers, as EngineStats holds them).
// slots_per_rank >= ceil(num_experts / num_ranks).
absl::StatusOr<ExpertPlacement> ComputeBalancedPlacement(absl::Span<const int64_t> counts,
                                                         const std::vector<bool>& is_moe_layer,
                                                         int64_t num_experts, int num_ranks,
                                                         int slots_per_rank);

// Tokens each rank processes when the layer's counts are spread over the replicas of each
// expert: [num_ranks]. And max / mean of that (1.0 = perfect balance).
std::vector<double> RankLoads(const LayerPlacement& layer, absl::Span<const int64_t> counts);
double MaxOverMeanLoad(const LayerPlacement& layer, absl::Span<const int64_t> counts);

}  // namespace moeserve::engine
