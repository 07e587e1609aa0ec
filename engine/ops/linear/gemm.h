// Dense fp32 GEMM in the nn.Linear convention: y[m, n] = Σ_k x[m, k] · w[n, k].
//
// Every projection of the CPU backend goes through here. The kernel is batch-invariant by
// construction: each output element is reduced over k in the same fixed order (8 lane
// partial sums, then a fixed tree) whatever M is and whichever thread computes it, so greedy
// output is bit-identical whether a sequence runs alone or in a batch (DESIGN.md §4). That
// property is why we do not hand these to a BLAS, whose kernels pick different reduction
// orders by shape.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// x: [m, k] with row stride ldx; w: [n, k] row-major (ld = k); y: [m, n] with row stride ldy.
// accumulate: y += x·wᵀ instead of y = x·wᵀ.
void GemmCpu(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m,
             int64_t n, int64_t k, bool accumulate = false);

}  // namespace moeserve::engine
