// SiLU·mul fused with FP8 re-quantization: the step between an MLP's two FP8 GEMMs on the GPU
// (reference §5.4 step 3). Reads the gate_up GEMM's bf16 output [rows, 2·width], computes
// a = silu(gate) · up in fp32 (silu_mul.h) and quantizes a per row per 128 channels
// (fp8_quant.h), writing E4M3 [rows, width] and the scales the down GEMM reads, so the
// activation never goes back to memory in bf16.
//
// Scales use the segmented layout of fp8_segmented_layout.h: with segment_offsets (device,
// num_segments + 1 entries, e.g. the MoE permutation's offsets) each segment gets its own
// N-major block; with segment_offsets == null the rows form one segment [0, max_rows), which is
// LaunchQuantizeActivationsFp8*'s [ceil(width / 128), max_rows] layout. Rows at or past the last
// offset are left untouched (their number is known only on the device).
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// gate_up: device [max_rows, 2 * width] bf16; q: device [max_rows, width] e4m3; scales: device
// [max_rows * ceil(width / 128)] fp32.
int LaunchSiluMulQuantizeFp8(const uint16_t* gate_up, int64_t max_rows, int64_t width,
                             const int32_t* segment_offsets, int64_t num_segments, uint8_t* q,
                             float* scales, void* stream);

}  // namespace moeserve::engine
