#include <cmath>
#include <vector>

#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/gemm_nn.h"

namespace moeserve::engine {
namespace {

float AsFloat(float v) { return v; }
float AsFloat(uint16_t v) { return Bf16ToFloat(v); }

template <typename E>
void GemmNnPortable(const float* x, int64_t ldx, const E* v, int64_t ldv, float* y, int64_t ldy,
                    int64_t m, int64_t n, int64_t k, bool accumulate) {
  ParallelFor(m, m * n * k > (1 << 16), [&](int64_t i) {
    std::vector<float> acc(static_cast<size_t>(n), 0.0f);
    for (int64_t kk = 0; kk < k; ++kk) {
      const float xv = x[i * ldx + kk];
      const E* row = v + kk * ldv;
      for (int64_t j = 0; j < n; ++j) acc[j] = std::fma(xv, AsFloat(row[j]), acc[j]);
    }
    float* out = y + i * ldy;
    for (int64_t j = 0; j < n; ++j) out[j] = accumulate ? out[j] + acc[j] : acc[j];
  });
}

template <typename E>
void Dispatch(const float* x, int64_t ldx, const E* v, int64_t ldv, float* y, int64_t ldy,
              int64_t m, int64_t n, int64_t k, bool accumulate, CpuIsa isa) {
  if (m <= 0 || n <= 0) return;
  switch (isa) {
    case CpuIsa::kAvx512Bf16:  // no BF16 dot product here: the fp32 AVX-512 kernel
    case CpuIsa::kAvx512:
      GemmNnAvx512(x, ldx, v, ldv, y, ldy, m, n, k, accumulate);
      return;
    case CpuIsa::kAvx2:
      GemmNnAvx2(x, ldx, v, ldv, y, ldy, m, n, k, accumulate);
      return;
    case CpuIsa::kPortable:
      GemmNnPortable(x, ldx, v, ldv, y, ldy, m, n, k, accumulate);
      return;
  }
}

}  // namespace

void GemmNnCpu(const float* x, int64_t ldx, const float* v, int64_t ldv, float* y, int64_t ldy,
               int64_t m, int64_t n, int64_t k, bool accumulate, CpuIsa isa) {
  Dispatch(x, ldx, v, ldv, y, ldy, m, n, k, accumulate, isa);
}

void GemmNnCpu(const float* x, int64_t ldx, const uint16_t* v_bf16, int64_t ldv, float* y,
               int64_t ldy, int64_t m, int64_t n, int64_t k, bool accumulate, CpuIsa isa) {
  Dispatch(x, ldx, v_bf16, ldv, y, ldy, m, n, k, accumulate, isa);
}

}  // namespace moeserve::engine
