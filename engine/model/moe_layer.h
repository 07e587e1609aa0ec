// The MoE feed-forward: route → per-expert SwiGLU on its tokens → weighted sum, + shared experts.
//
// Each token's routed outputs are added in ascending expert order, so its result does not
// depend on which other tokens share the batch (batch invariance, DESIGN.md §4).
#pragma once

#include <cstdint>

#include "engine/model/model_config.h"
#include "engine/model/weights.h"
#include "engine/ops/moe/moe_route.h"

namespace moeserve::engine {

RoutingParams MakeRoutingParams(const ModelConfig& config, const MoeWeights& moe);

// x: [rows, hidden]; out: [rows, hidden] (overwritten). expert_token_counts, if not null, is
// [n_routed_experts] and gets the number of tokens routed to each expert added to it.
void MoeForward(const ModelConfig& config, const MoeWeights& moe, const float* x, int64_t rows,
                bool quantize_activations, float* out, int64_t* expert_token_counts = nullptr);

}  // namespace moeserve::engine
