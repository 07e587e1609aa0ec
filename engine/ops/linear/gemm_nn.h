// y = x · V with V row-major [k, n] (no transpose): attention's P·V, where the rows of V are the
// keys' values, read in place from a strided cache or kv_b_proj output. The CPU MLA kernels
// (ops/attention/mla_*_cpu.cc) call it.
//
// Every output element is one fp32 fused-multiply-add chain over k = 0, 1, …, k − 1 (no lane
// split), so extra trailing terms with x = 0 leave it exactly unchanged (V finite): a query's
// result does not depend on how many masked keys share its call, which keeps attention
// batch- and chunk-invariant. Implementations: kPortable (std::fma, the reference), kAvx2,
// kAvx512 (kernels_avx*.cc); all round identically, tested in gemm_nn_test.cc.
#pragma once

#include <cstdint>

#include "engine/ops/cpu/cpu_features.h"

namespace moeserve::engine {

// x: [m, k] with row stride ldx; v: [k, n] with row stride ldv; y: [m, n] with row stride ldy.
// accumulate: y += x·V (the chain's sum is added to y once) instead of y = x·V.
void GemmNnCpu(const float* x, int64_t ldx, const float* v, int64_t ldv, float* y, int64_t ldy,
               int64_t m, int64_t n, int64_t k, bool accumulate, CpuIsa isa);

// The same with V in BF16 (uint16_t bits), each value widened exactly as it is read: the
// result equals GemmNnCpu on the widened matrix bit for bit.
void GemmNnCpu(const float* x, int64_t ldx, const uint16_t* v_bf16, int64_t ldv, float* y,
               int64_t ldy, int64_t m, int64_t n, int64_t k, bool accumulate, CpuIsa isa);

void GemmNnAvx2(const float* x, int64_t ldx, const float* v, int64_t ldv, float* y, int64_t ldy,
                int64_t m, int64_t n, int64_t k, bool accumulate);
void GemmNnAvx512(const float* x, int64_t ldx, const float* v, int64_t ldv, float* y, int64_t ldy,
                  int64_t m, int64_t n, int64_t k, bool accumulate);
void GemmNnAvx2(const float* x, int64_t ldx, const uint16_t* v, int64_t ldv, float* y, int64_t ldy,
                int64_t m, int64_t n, int64_t k, bool accumulate);
void GemmNnAvx512(const float* x, int64_t ldx, const uint16_t* v, int64_t ldv, float* y,
                  int64_t ldy, int64_t m, int64_t n, int64_t k, bool accumulate);

}  // namespace moeserve::engine
