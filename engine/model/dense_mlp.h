// The SwiGLU MLP: down(silu(gate(x)) ⊙ up(x)). Used for the dense layers, each routed
// expert and the fused shared experts.
#pragma once

#include <cstdint>

#include "engine/model/weights.h"

namespace moeserve::engine {

// x: [rows, hidden]; out: [rows, hidden]. accumulate: out += mlp(x).
void MlpForward(const MlpWeights& mlp, const float* x, int64_t rows, bool quantize_activations,
                float* out, bool accumulate = false);

}  // namespace moeserve::engine
