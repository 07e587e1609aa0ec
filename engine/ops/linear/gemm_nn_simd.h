// The GemmNnCpu micro-kernel shared by kernels_avx2.cc and kernels_avx512.cc (not a public
// header; included after `struct Simd`, see weight_gemm_simd.h). A tile is up to 4 rows of x ×
// 4 vectors of columns: 16 accumulators, each element one FMA chain over k in order. Columns
// past the last whole tile run the same chain with std::fma, which rounds exactly as the vector
// FMA does, so an element's value never depends on where its column falls. V is fp32 or BF16
// (uint16_t bits, widened exactly as it is loaded: the BF16 latent cache).

constexpr int kNnTileRows = 4;
constexpr int kNnTileVectors = 4;

inline Simd::V LoadValues(const float* p) { return Simd::Load(p); }
inline Simd::V LoadValues(const uint16_t* p) { return Simd::LoadBf16(p); }
inline float ValueAsFloat(float v) { return v; }
inline float ValueAsFloat(uint16_t v) { return Bf16ToFloat(v); }

template <int kRows, typename E>
void NnTile(const float* x, int64_t ldx, const E* v, int64_t ldv, float* y, int64_t ldy, int64_t k,
            bool accumulate) {
  using V = Simd::V;
  constexpr int kLanes = Simd::kLanes;
  V acc[kRows][kNnTileVectors];
  for (int i = 0; i < kRows; ++i) {
    for (int c = 0; c < kNnTileVectors; ++c) acc[i][c] = Simd::Zero();
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    V vv[kNnTileVectors];
    for (int c = 0; c < kNnTileVectors; ++c) vv[c] = LoadValues(v + kk * ldv + c * kLanes);
    for (int i = 0; i < kRows; ++i) {
      const V xv = Simd::Set1(x[i * ldx + kk]);
      for (int c = 0; c < kNnTileVectors; ++c) acc[i][c] = Simd::Fma(xv, vv[c], acc[i][c]);
    }
  }
  for (int i = 0; i < kRows; ++i) {
    for (int c = 0; c < kNnTileVectors; ++c) {
      alignas(64) float sums[kLanes];
      Simd::Store(sums, acc[i][c]);
      float* out = y + i * ldy + c * kLanes;
      for (int l = 0; l < kLanes; ++l) out[l] = accumulate ? out[l] + sums[l] : sums[l];
    }
  }
}

// Columns [n0, n) of rows [0, rows): the scalar form of the same chains.
template <typename E>
void NnColumnTail(const float* x, int64_t ldx, const E* v, int64_t ldv, float* y, int64_t ldy,
                  int64_t rows, int64_t n0, int64_t n, int64_t k, bool accumulate) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = n0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk)
        acc = std::fma(x[i * ldx + kk], ValueAsFloat(v[kk * ldv + j]), acc);
      y[i * ldy + j] = accumulate ? y[i * ldy + j] + acc : acc;
    }
  }
}

template <typename E>
void GemmNnAllTiles(const float* x, int64_t ldx, const E* v, int64_t ldv, float* y, int64_t ldy,
                    int64_t m, int64_t n, int64_t k, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  constexpr int64_t kTileCols = kNnTileVectors * Simd::kLanes;
  const int64_t col_tiles = n / kTileCols;
  const int64_t row_tiles = (m + kNnTileRows - 1) / kNnTileRows;
  // One item per (row tile, column tile), the columns past the last whole tile included.
  ParallelFor(row_tiles * (col_tiles + 1), m * n * k > (1 << 16), [&](int64_t item) {
    const int64_t rt = item / (col_tiles + 1), ct = item % (col_tiles + 1);
    const int64_t r0 = rt * kNnTileRows;
    const int64_t rows = std::min<int64_t>(kNnTileRows, m - r0);
    const float* xr = x + r0 * ldx;
    float* yr = y + r0 * ldy;
    if (ct == col_tiles) {  // the columns past the last whole tile
      NnColumnTail(xr, ldx, v, ldv, yr, ldy, rows, col_tiles * kTileCols, n, k, accumulate);
      return;
    }
    const int64_t c0 = ct * kTileCols;
    switch (rows) {
      case 4:
        NnTile<4>(xr, ldx, v + c0, ldv, yr + c0, ldy, k, accumulate);
        break;
      case 3:
        NnTile<3>(xr, ldx, v + c0, ldv, yr + c0, ldy, k, accumulate);
        break;
      case 2:
        NnTile<2>(xr, ldx, v + c0, ldv, yr + c0, ldy, k, accumulate);
        break;
      default:
        NnTile<1>(xr, ldx, v + c0, ldv, yr + c0, ldy, k, accumulate);
        break;
    }
  });
}
