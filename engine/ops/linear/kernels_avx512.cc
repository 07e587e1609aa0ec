// The AVX-512 (F/BW/VL/DQ) builds of ops/linear's CPU kernels, WeightGemmCpu and GemmNnCpu: 16
// fp32 lanes. Compiled with -mavx512* for this file only (engine/CMakeLists.txt); called only
// when CpuIsaAvailable(kAvx512).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/gemm_nn.h"
#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {
namespace {

#include "engine/ops/cpu/simd_avx512.h"
#include "engine/ops/linear/gemm_nn_simd.h"
#include "engine/ops/linear/weight_gemm_simd.h"

}  // namespace

void WeightGemmAvx512(const float* x, int64_t ldx, const WeightMatrixView& w, float* y, int64_t ldy,
                      int64_t m, bool accumulate) {
  GemmDispatchFormat(x, ldx, w, y, ldy, m, accumulate);
}

void GemmNnAvx512(const float* x, int64_t ldx, const float* v, int64_t ldv, float* y, int64_t ldy,
                  int64_t m, int64_t n, int64_t k, bool accumulate) {
  GemmNnAllTiles(x, ldx, v, ldv, y, ldy, m, n, k, accumulate);
}

void GemmNnAvx512(const float* x, int64_t ldx, const uint16_t* v, int64_t ldv, float* y,
                  int64_t ldy, int64_t m, int64_t n, int64_t k, bool accumulate) {
  GemmNnAllTiles(x, ldx, v, ldv, y, ldy, m, n, k, accumulate);
}

}  // namespace moeserve::engine
