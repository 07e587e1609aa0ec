// A BF16 matrix transpose on the GPU. The FP8 GEMM (gemm_cublaslt.h) calls it when cuBLASLt
// only offers the block-scaled algorithm with the activations as operand A, which yields Yᵀ.
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// out[c, r] = in[r, c]. in: device [rows, cols] bf16 bits; out: device [cols, rows]; the two
// must not overlap.
int LaunchTransposeBf16(const uint16_t* in, int64_t rows, int64_t cols, uint16_t* out,
                        void* stream);

}  // namespace moeserve::engine
