// DeepSeek FP8 quantization on the GPU; the contract is fp8_quant.h's.
//
// Activation quantization writes its scales TRANSPOSED relative to QuantizeActivationsFp8's
// [T, L]: scales[kb * padded_rows + t], the "N-major" VEC128_32F layout cuBLASLt wants for the
// B operand of Y = X·Wᵀ (reference §5.3), so the GEMM reads them with no copy. Rows
// [rows, padded_rows) are padding for cuBLASLt's multiple-of-4 rule: q = 0 there and the scale
// is finite, so the padded outputs are zero and ignored.
// The dequantize kernels serve the BF16 fallback GEMM (gemm_cublaslt.h) on GPUs or shapes where
// cuBLASLt has no block-scaled FP8 algorithm.
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// x: device [rows, cols] (bf16 bits or fp32), row-major; q: device [padded_rows, cols] e4m3;
// scales: device [ceil(cols / 128), padded_rows] fp32. padded_rows >= rows.
int LaunchQuantizeActivationsFp8Bf16(const uint16_t* x, int64_t rows, int64_t padded_rows,
                                     int64_t cols, uint8_t* q, float* scales, void* stream);
int LaunchQuantizeActivationsFp8F32(const float* x, int64_t rows, int64_t padded_rows, int64_t cols,
                                    uint8_t* q, float* scales, void* stream);

// out[i, j] = bf16(fp8[i, j] · scale_inv[(i / 128) * scale_ld + j / 128]).
// fp8: device [rows, cols]; scale_inv: device, row stride scale_ld >= ceil(cols / 128).
int LaunchDequantizeFp8BlockWeightBf16(const uint8_t* fp8, const float* scale_inv, int64_t scale_ld,
                                       int64_t rows, int64_t cols, uint16_t* out, void* stream);

// out[t, k] = bf16(q[t, k] · scales[(k / 128) * padded_rows + t]), the inverse of the above.
int LaunchDequantizeActivationsFp8Bf16(const uint8_t* q, const float* scales, int64_t padded_rows,
                                       int64_t cols, uint16_t* out, void* stream);

}  // namespace moeserve::engine
