// The MoE router on the GPU; the contract is moe_route.h's RouteCpu (all three rules, group
// masking, the correction bias used only for selection, renormalisation, then the scaling
// factor; ties to the lower expert index).
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

#include "engine/ops/moe/moe_route.h"

namespace moeserve::engine {

// params.correction_bias must be a DEVICE pointer [num_experts] (or null). logits: device
// [num_tokens, num_experts] fp32; expert_ids, weights: device [num_tokens, top_k], in descending
// order of the selection score. Needs num_experts % num_groups == 0, num_groups <= 256 and
// 2 <= num_experts / num_groups for kSigmoidNoauxTc (top-2 sum), as every DeepSeek config has.
int LaunchRouteCuda(const RoutingParams& params, const float* logits, int64_t num_tokens,
                    int32_t* expert_ids, float* weights, void* stream);

}  // namespace moeserve::engine
