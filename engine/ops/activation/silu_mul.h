// SwiGLU gate: out[t, i] = silu(gate_up[t, i]) · gate_up[t, I + i], silu(z) = z·σ(z).
//
// The MLP and expert code fuse gate_proj and up_proj into one [2I, D] weight, so one GEMM
// yields [gate | up] per token and this op halves it (reference §3, §5.4 step 3).
#pragma once

#include <cstdint>

namespace moeserve::engine {

// gate_up: [num_tokens, 2 * width]; out: [num_tokens, width].
void SiluMulCpu(const float* gate_up, int64_t num_tokens, int64_t width, float* out);

}  // namespace moeserve::engine
