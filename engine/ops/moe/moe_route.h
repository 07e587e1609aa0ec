// MoE router: logits → the top-k experts of each token and their combine weights.
//
// The three rules of DeepSeek checkpoints (reference §3.3). Logits are fp32 (the router weight
// is bf16 in checkpoints, but HF computes F.linear(x.float(), W.float())). Selection ties go
// to the lower expert index, so routing is deterministic. Called by the MoE layer once per
// step for all its tokens.
#pragma once

#include <cstdint>

namespace moeserve::engine {

enum class RoutingRule {
  kSoftmaxGreedy,        // s = softmax(logits); top-k of all experts
  kSoftmaxGroupLimited,  // s = softmax; keep topk_group groups by their max s; top-k inside
  kSigmoidNoauxTc,       // s = σ(logits); s' = s + bias picks groups (top-2 sum) and experts
};

struct RoutingParams {
  RoutingRule rule = RoutingRule::kSoftmaxGreedy;
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t num_groups = 1;
  int64_t topk_groups = 1;
  bool renormalize = false;                // norm_topk_prob: w /= Σw + 1e-20
  float scaling = 1.0f;                    // routed_scaling_factor, applied after renormalisation
  const float* correction_bias = nullptr;  // [num_experts], kSigmoidNoauxTc only
};

// logits: [num_tokens, num_experts]. expert_ids, weights: [num_tokens, top_k], in descending
// order of the selection score.
void RouteCpu(const RoutingParams& params, const float* logits, int64_t num_tokens,
              int32_t* expert_ids, float* weights);

}  // namespace moeserve::engine
