// The MoE feed-forward with routed experts partitioned over expert-parallel ranks.
//
// Every rank enters with the same tokens (the residual stream is replicated after attention's
// all-reduce) and takes an even, contiguous share of them: it routes its share, dispatches the
// (token, expert) pairs to the ranks holding a replica of each expert (moe_dispatch.h), runs
// the experts in its own slots on what it received, gets its outputs back and combines them
// with the routing weights. The shared experts run on the share too when they are replicated
// (tensor_parallel_size 1) and the shares are all-gathered; with tensor parallelism the shared
// experts are split over the ranks and one all-reduce adds both. Called by DeepseekModel.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "engine/model/model_config.h"
#include "engine/model/weights.h"
#include "engine/parallel/expert_placement.h"
#include "engine/parallel/parallel_config.h"

namespace moeserve::engine {

// x: [rows, hidden], identical on every rank; out: [rows, hidden] (overwritten), identical on
// every rank afterwards. moe.experts are this rank's slots (moe.slot_experts their logical
// ids, as placed by `layer`). expert_token_counts ([n_routed_experts], may be null) gets the
// routing of this rank's share of tokens added.
absl::Status ExpertParallelMoeForward(const ModelConfig& config, const MoeWeights& moe,
                                      const LayerPlacement& layer, const RankContext& rank,
                                      const float* x, int64_t rows, bool quantize_activations,
                                      float* out, int64_t* expert_token_counts);

}  // namespace moeserve::engine
