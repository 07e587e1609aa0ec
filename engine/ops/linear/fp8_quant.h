// DeepSeek FP8 block-scaled quantization (reference §4), CPU reference.
//
// Weights: W[i, j] = fp8[i, j] · scale_inv[i / 128, j / 128]; partial edge blocks use the
// scale of the block that contains them. Activations: per token per 128 channels,
// s = max(amax, 1e-4) / 448, q = e4m3(x / s). The CPU backend dequantizes weights once at load
// and, before each FP8 linear, rounds activations through e4m3 and back, so its numerics are
// those of the GPU's fp8 GEMM (Σ_b (Σ_{k∈b} q_x·q_w) · s_x · s_w) up to fp32 summation order.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moeserve::engine {

// Activation groups and weight blocks are 128 wide (reference §4, weight_block_size).
inline constexpr int64_t kFp8BlockSize = 128;
// Lower bound on a group's amax so an all-zero group gets a finite scale (kernel.py act_quant).
inline constexpr float kFp8ActivationAmaxFloor = 1e-4f;

// fp8: [rows, cols] E4M3 bytes; scale_inv: [ceil(rows/block_rows), ceil(cols/block_cols)] fp32.
// Returns the dequantized [rows, cols] fp32 matrix.
std::vector<float> DequantizeFp8BlockWeight(absl::Span<const uint8_t> fp8,
                                            absl::Span<const float> scale_inv, int64_t rows,
                                            int64_t cols, int64_t block_rows = kFp8BlockSize,
                                            int64_t block_cols = kFp8BlockSize);

// Quantizes x: [rows, cols] per row per 128 channels (the last group may be narrower).
// q: [rows, cols] E4M3 bytes; scales: [rows, ceil(cols/128)] fp32, row-major (K-major).
void QuantizeActivationsFp8(absl::Span<const float> x, int64_t rows, int64_t cols,
                            absl::Span<uint8_t> q, absl::Span<float> scales);

// In place x ← dequant(quant(x)): what an FP8 GEMM sees of its input.
void RoundTripActivationsFp8(absl::Span<float> x, int64_t rows, int64_t cols);

// Quantizes a [rows, cols] fp32 weight with 128x128 blocks, scale = amax/448 per block
// (DeepSeek's recipe; used by moeserve-make-model --fp8). Returns {fp8 bytes, scale_inv}.
struct Fp8BlockWeight {
  std::vector<uint8_t> fp8;      // [rows, cols]
  std::vector<float> scale_inv;  // [ceil(rows/128), ceil(cols/128)]
};
Fp8BlockWeight QuantizeFp8BlockWeight(absl::Span<const float> w, int64_t rows, int64_t cols);

}  // namespace moeserve::engine
