// SiLU-and-mul on the GPU; the contract is silu_mul.h's: out[t, i] = silu(g) · u with
// g = gate_up[t, i], u = gate_up[t, width + i], computed in fp32.
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// gate_up: device [num_tokens, 2 * width]; out: device [num_tokens, width]. bf16 = raw bits.
int LaunchSiluMulBf16(const uint16_t* gate_up, int64_t num_tokens, int64_t width, uint16_t* out,
                      void* stream);
int LaunchSiluMulF32(const float* gate_up, int64_t num_tokens, int64_t width, float* out,
                     void* stream);

}  // namespace moeserve::engine
