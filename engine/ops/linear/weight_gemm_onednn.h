// y = x · Wᵀ for BF16 weights on oneDNN's matmul (AVX-512-BF16 brgemm kernels), for GEMMs with
// many rows: prefill chunks, batched decode, experts with many tokens.
//
// Measured against our own kernels on DeepSeek-V2-Lite's shapes (moeserve-bench-library-gemm,
// docs/performance.md): at 32 to 512 rows oneDNN 2.6 reaches 135–210 GMAC/s on 2 cores with the
// weights in place, our vdpbf16ps kernels 85–155; below ~16 rows ours are faster (and decode
// at batch 1 is bandwidth-bound anyway). So `--cpu-kernels bf16` hands linears of at least
// kOneDnnMinRows rows to it (engine/model/linear.cc).
//
// Numerics: x is rounded to bf16 (as WeightGemmAvx512Bf16 does) and products accumulate in
// fp32, but the reduction order is oneDNN's and may change with the number of rows: results are
// within fp32 summation-order error of WeightGemmAvx512Bf16, not bit-identical alone and
// batched. `--deterministic` turns it off (LoadOptions::deterministic). oneDNN runs on the
// process's OpenMP runtime (Debian builds it with libgomp, as we are), so its threads are ours.
// Tested against the portable kernel in weight_gemm_onednn_test.cc.
#pragma once

#include <cstdint>

#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {

inline constexpr int64_t kOneDnnMinRows = 32;

// Built with oneDNN, and the CPU has AVX-512-BF16 (where oneDNN's bf16 matmul is fast; without
// it oneDNN would emulate and lose to our kernels).
bool OneDnnGemmAvailable();

// WeightGemmCpu's contract for w.format == kBf16 (x: [m, w.cols], stride ldx; y: [m, w.rows],
// stride ldy; accumulate: y += x·Wᵀ), with the numerics above. Requires OneDnnGemmAvailable().
void WeightGemmOneDnnBf16(const float* x, int64_t ldx, const WeightMatrixView& w, float* y,
                          int64_t ldy, int64_t m, bool accumulate);

}  // namespace moeserve::engine
