#include <algorithm>

#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/linear/gemm.h"

namespace moeserve::engine {
namespace {

// 8 fp32 lanes (two SSE or one AVX register); the compiler maps the vector extension to
// whatever the target has, the arithmetic per lane is the same either way.
typedef float Lanes __attribute__((vector_size(32)));
constexpr int kLanes = 8;
constexpr int kTileM = 4;  // rows of x per micro-tile
constexpr int kTileN = 4;  // rows of w per micro-tile: 16 accumulators of 8 lanes

inline Lanes LoadLanes(const float* p) {
  Lanes v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// The fixed reduction of one accumulator: lanes paired as ((0+4)+(2+6)) + ((1+5)+(3+7)).
inline float ReduceLanes(Lanes v) {
  return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

// Computes a tile of up to 4x4 outputs. Out-of-range rows are clamped to the last valid row
// and their results dropped, so every element sees exactly the same arithmetic.
void MicroTile(const float* x, int64_t ldx, const float* w, int64_t k, int64_t rows_m,
               int64_t rows_n, float* y, int64_t ldy, bool accumulate) {
  const float* xr[kTileM];
  const float* wr[kTileN];
  for (int i = 0; i < kTileM; ++i) xr[i] = x + std::min<int64_t>(i, rows_m - 1) * ldx;
  for (int j = 0; j < kTileN; ++j) wr[j] = w + std::min<int64_t>(j, rows_n - 1) * k;

  Lanes acc[kTileM][kTileN] = {};
  const int64_t k_vec = k - k % kLanes;
  for (int64_t kk = 0; kk < k_vec; kk += kLanes) {
    Lanes xv[kTileM];
    for (int i = 0; i < kTileM; ++i) xv[i] = LoadLanes(xr[i] + kk);
    for (int j = 0; j < kTileN; ++j) {
      const Lanes wv = LoadLanes(wr[j] + kk);
      for (int i = 0; i < kTileM; ++i) acc[i][j] += xv[i] * wv;
    }
  }
  for (int i = 0; i < rows_m; ++i) {
    for (int j = 0; j < rows_n; ++j) {
      float sum = ReduceLanes(acc[i][j]);
      for (int64_t kk = k_vec; kk < k; ++kk) sum += xr[i][kk] * wr[j][kk];
      float& out = y[i * ldy + j];
      out = accumulate ? out + sum : sum;
    }
  }
}

}  // namespace

void GemmCpu(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m,
             int64_t n, int64_t k, bool accumulate) {
  if (m == 0 || n == 0) return;
  const int64_t n_tiles = (n + kTileN - 1) / kTileN;
  // Parallel over rows of w: each thread streams its slice of the weights once per x tile,
  // and the slice stays in cache across the x tiles.
  ParallelFor(n_tiles, m * n * k > (1 << 16), [&](int64_t nt) {
    const int64_t n0 = nt * kTileN;
    const int64_t rows_n = std::min<int64_t>(kTileN, n - n0);
    for (int64_t m0 = 0; m0 < m; m0 += kTileM) {
      const int64_t rows_m = std::min<int64_t>(kTileM, m - m0);
      MicroTile(x + m0 * ldx, ldx, w + n0 * k, k, rows_m, rows_n, y + m0 * ldy + n0, ldy,
                accumulate);
    }
  });
}

}  // namespace moeserve::engine
