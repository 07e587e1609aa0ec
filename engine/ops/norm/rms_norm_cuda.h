// CUDA RMSNorm over bf16 rows with fp32 statistics; the contract is rms_norm.h's.
// Header is plain C++ (no CUDA headers) so host code and tests can call the launcher.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// x, y: device [num_rows, dim] bf16 (raw uint16 bits; may alias); weight: device [dim] bf16.
// Returns the cudaError_t of the launch as an int (0 = success); `stream` is a cudaStream_t.
int LaunchRmsNormBf16(const uint16_t* x, const uint16_t* weight, float eps, int64_t num_rows,
                      int64_t dim, uint16_t* y, void* stream);

// Fused residual add + RMSNorm, the decoder layer's "h = h + sublayer(a); b = RMSNorm(h)":
// residual ← bf16(residual + x), then y = RMSNorm(residual) with fp32 statistics over the
// stored (bf16-rounded) residual, so the result equals RmsNormCpu on what the next layer reads.
// residual, x, y: device [num_rows, dim] bf16 (y may alias x, not residual); weight: [dim].
int LaunchFusedAddRmsNormBf16(uint16_t* residual, const uint16_t* x, const uint16_t* weight,
                              float eps, int64_t num_rows, int64_t dim, uint16_t* y,
                              void* stream);

}  // namespace moeserve::engine
