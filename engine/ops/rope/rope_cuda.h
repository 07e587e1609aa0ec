// RoPE on interleaved pairs on the GPU; the contract is rope.h's ApplyRopeInterleavedCpu.
// The YaRN table (MakeRopeTable) is built once on the host and its inv_freq copied to the
// device; angles p·inv_freq_i are formed in fp32 and cos/sin taken with full-precision cosf/sinf
// like the CPU twin, then multiplied by attention_scaling.
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// inv_freq: device [rotary_dim / 2] fp32; positions: device [num_tokens] int32 (absolute,
// 0-based). Rotates in place, per token t and head h, the rotary_dim values at
// x + t * token_stride + h * head_stride (strides in elements).
int LaunchRopeInterleavedBf16(const float* inv_freq, int64_t rotary_dim, float attention_scaling,
                              const int32_t* positions, int64_t num_tokens, int64_t num_heads,
                              int64_t token_stride, int64_t head_stride, uint16_t* x,
                              void* stream);
int LaunchRopeInterleavedF32(const float* inv_freq, int64_t rotary_dim, float attention_scaling,
                             const int32_t* positions, int64_t num_tokens, int64_t num_heads,
                             int64_t token_stride, int64_t head_stride, float* x, void* stream);

}  // namespace moeserve::engine
