// A grouped FP8 GEMM over the MoE permutation's expert segments that needs no host
// synchronisation: the segment boundaries are read on the device, so the launch depends only on
// sizes the host already knows and the MoE layer can be captured in a CUDA graph (decode).
//
// For every expert e and every row r of its segment [offsets[e], offsets[e + 1]):
//   Y[r, j] = Σ_b (Σ_{k∈b} X[r, k] · W_e[j, k]) · s_x(r, b) · s_w(e, j / 128, b)
// with X in E4M3 and its scales in the segmented layout (fp8_segmented_layout.h), W_e one slice
// of a stacked [E, N, K] E4M3 weight with [E, ceil(N/128), scale_stride] block scales (DeepSeek's
// weight_scale_inv, reference §4), fp32 accumulation and bf16 Y [rows, N].
//
// CUDA cores, not tensor cores: each warp streams one weight row once per 8 segment rows, so
// the kernel runs at memory speed while segments are short (decode, a few rows per expert) and
// falls far behind cuBLASLt for prefill-sized segments, where MoeLayerCuda keeps the per-expert
// cuBLASLt loop. Plain C++ header; `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// x: device [rows, k] e4m3, rows >= offsets[num_experts]; x_scales: device segmented
// [rows · ceil(k / 128)]; offsets: device [num_experts + 1]; w: device [num_experts, n, k]
// e4m3; w_scales: device [num_experts, ceil(n / 128), w_scale_stride]; y: device [rows, n]
// bf16 (only segment rows are written). Needs k % 16 == 0, 16-B aligned x and w, and
// w_scale_stride >= ceil(k / 128).
int LaunchMoeGroupedFp8Gemm(const uint8_t* x, const float* x_scales, const int32_t* offsets,
                            int64_t num_experts, const uint8_t* w, const float* w_scales, int64_t n,
                            int64_t k, int64_t w_scale_stride, uint16_t* y, void* stream);

// The same contract on tensor cores (moe_grouped_gemm_mma_cuda.cu): 64-row × 128-column tiles,
// mma.sync e4m3 with per-128-K promotion, for segments of any length (prefill). max_rows: the
// rows of x (an upper bound on offsets[num_experts], MoePermutedRowsUpperBound), which sizes
// the grid without reading the offsets on the host. Needs k % 16 == 0, 16-B aligned x and w,
// and ceil(max_rows / 64) + num_experts <= 65535.
int LaunchMoeGroupedFp8GemmMma(const uint8_t* x, const float* x_scales, const int32_t* offsets,
                               int64_t num_experts, int64_t max_rows, const uint8_t* w,
                               const float* w_scales, int64_t n, int64_t k, int64_t w_scale_stride,
                               uint16_t* y, void* stream);

}  // namespace moeserve::engine
