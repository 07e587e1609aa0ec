// The micro-kernel shared by kernels_avx2.cc and kernels_avx512.cc (not a public
// header). Each of those files includes its `struct Simd` (engine/ops/cpu/simd_*.h: vector type,
// lane count, loads, conversions, FMA, the horizontal sum) inside an anonymous namespace
// and then includes this file there, so each copy is compiled with its own target flags and the
// two never meet at link time.
//
// A tile is up to 4 rows of x × 4 weight rows: 16 accumulators of kLanes fp32 lanes. Each
// output element has its own accumulator chain over k in steps of kLanes (a zero-padded last
// step when k % kLanes != 0), then Simd::Reduce4's fixed lane tree (the same for each of its
// four sums): the arithmetic of an element depends on neither M nor its position in the tile
// nor the thread (batch invariance).
// Weight rows past the end are clamped to the last row and their results dropped; the x rows
// of a tile are a template parameter, so decode (M = 1) does no wasted FMAs.

constexpr int kTileM = 4;
constexpr int kTileN = 4;

template <WeightFormat kFormat>
struct WeightElement;
template <>
struct WeightElement<WeightFormat::kF32> {
  using Type = float;
};
template <>
struct WeightElement<WeightFormat::kBf16> {
  using Type = uint16_t;
};
template <>
struct WeightElement<WeightFormat::kFp8Block128> {
  using Type = uint8_t;
};

// kLanes weights of one row starting at column kk, as fp32 (without the FP8 scale; FP8 as its
// value times Simd::kE4m3Unit, which the scale multiplies back).
template <WeightFormat kFormat>
inline Simd::V LoadWeights(const typename WeightElement<kFormat>::Type* p) {
  if constexpr (kFormat == WeightFormat::kF32) {
    return Simd::Load(p);
  } else if constexpr (kFormat == WeightFormat::kBf16) {
    return Simd::LoadBf16(p);
  } else {
    return Simd::LoadE4m3(p);
  }
}

template <WeightFormat kFormat, int kRowsM>
void MicroTile(const float* x, int64_t ldx, const WeightMatrixView& w, int64_t n0, int64_t rows_n,
               float* y, int64_t ldy, bool accumulate) {
  using Element = typename WeightElement<kFormat>::Type;
  using V = Simd::V;
  constexpr int kLanes = Simd::kLanes;
  const int64_t k = w.cols;
  const int64_t col_blocks = (k + 127) / 128;  // FP8 scale blocks per row (reference §4)
  const Element* wr[kTileN];
  for (int j = 0; j < kTileN; ++j) {
    const int64_t row = n0 + std::min<int64_t>(j, rows_n - 1);
    wr[j] = static_cast<const Element*>(w.data) + row * k;
  }
  // The tile's rows share one 128-row scale block (n0 is a multiple of kTileN, which divides
  // 128), so the FP8 scale multiplies x once per step instead of each weight row.
  const float* scales =
      kFormat == WeightFormat::kFp8Block128 ? w.scale_inv + (n0 / 128) * col_blocks : nullptr;
  V acc[kRowsM][kTileN];
  for (int i = 0; i < kRowsM; ++i) {
    for (int j = 0; j < kTileN; ++j) acc[i][j] = Simd::Zero();
  }
  // One step of kLanes columns from the given x and weight pointers (the tail passes
  // zero-padded copies).
  auto step = [&](const float* const* xs, const Element* const* ws, int64_t kk) {
    V xv[kRowsM];
    for (int i = 0; i < kRowsM; ++i) xv[i] = Simd::Load(xs[i]);
    if constexpr (kFormat == WeightFormat::kFp8Block128) {
      // kk is a multiple of kLanes, which divides 128: one scale for the whole step.
      const V scale = Simd::Set1(scales[kk / 128] * (1.0f / Simd::kE4m3Unit));
      for (int i = 0; i < kRowsM; ++i) xv[i] = Simd::Mul(xv[i], scale);
    }
    for (int j = 0; j < kTileN; ++j) {
      const V wv = LoadWeights<kFormat>(ws[j]);
      for (int i = 0; i < kRowsM; ++i) acc[i][j] = Simd::Fma(xv[i], wv, acc[i][j]);
    }
  };
  const int64_t k_full = k - k % kLanes;
  constexpr int64_t kLineElements = 64 / sizeof(Element);
  for (int64_t kk = 0; kk < k_full; kk += kLanes) {
    const float* xs[kRowsM];
    const Element* ws[kTileN];
    for (int i = 0; i < kRowsM; ++i) xs[i] = x + i * ldx + kk;
    for (int j = 0; j < kTileN; ++j) ws[j] = wr[j] + kk;
    if (kk % kLineElements == 0) {
      // The same line of the next tile's rows (contiguous after these, and this thread's next
      // tile): the hardware prefetcher would find those streams only once the tile starts.
      for (int j = 0; j < kTileN; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(ws[j] + kTileN * k), _MM_HINT_T0);
      }
    }
    step(xs, ws, kk);
  }
  if (k_full < k) {
    const int64_t tail = k - k_full;
    alignas(64) float x_tail[kRowsM][kLanes] = {};
    alignas(64) Element w_tail[kTileN][kLanes] = {};
    const float* xs[kRowsM];
    const Element* ws[kTileN];
    for (int i = 0; i < kRowsM; ++i) {
      std::memcpy(x_tail[i], x + i * ldx + k_full, static_cast<size_t>(tail) * sizeof(float));
      xs[i] = x_tail[i];
    }
    for (int j = 0; j < kTileN; ++j) {
      std::memcpy(w_tail[j], wr[j] + k_full, static_cast<size_t>(tail) * sizeof(Element));
      ws[j] = w_tail[j];
    }
    step(xs, ws, k_full);
  }
  static_assert(kTileN == 4, "one Simd::Reduce4 per x row");
  for (int i = 0; i < kRowsM; ++i) {
    float sums[kTileN];
    Simd::Reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3], sums);
    for (int64_t j = 0; j < rows_n; ++j) {
      float& out = y[i * ldy + n0 + j];
      out = accumulate ? out + sums[j] : sums[j];
    }
  }
}

template <WeightFormat kFormat>
void GemmAllTiles(const float* x, int64_t ldx, const WeightMatrixView& w, float* y, int64_t ldy,
                  int64_t m, bool accumulate) {
  const int64_t n = w.rows;
  const int64_t n_tiles = (n + kTileN - 1) / kTileN;
  // Parallel over weight rows: each thread streams its slice of the weights once, and a tile's
  // 4 rows stay in cache across the x tiles.
  ParallelFor(n_tiles, m * n * w.cols > (1 << 16), [&](int64_t nt) {
    const int64_t n0 = nt * kTileN;
    const int64_t rows_n = std::min<int64_t>(kTileN, n - n0);
    int64_t m0 = 0;
    for (; m0 + kTileM <= m; m0 += kTileM) {
      MicroTile<kFormat, kTileM>(x + m0 * ldx, ldx, w, n0, rows_n, y + m0 * ldy, ldy, accumulate);
    }
    switch (m - m0) {
      case 3:
        MicroTile<kFormat, 3>(x + m0 * ldx, ldx, w, n0, rows_n, y + m0 * ldy, ldy, accumulate);
        break;
      case 2:
        MicroTile<kFormat, 2>(x + m0 * ldx, ldx, w, n0, rows_n, y + m0 * ldy, ldy, accumulate);
        break;
      case 1:
        MicroTile<kFormat, 1>(x + m0 * ldx, ldx, w, n0, rows_n, y + m0 * ldy, ldy, accumulate);
        break;
      default:
        break;
    }
  });
}

void GemmDispatchFormat(const float* x, int64_t ldx, const WeightMatrixView& w, float* y,
                        int64_t ldy, int64_t m, bool accumulate) {
  if (m == 0 || w.rows == 0) return;
  switch (w.format) {
    case WeightFormat::kF32:
      GemmAllTiles<WeightFormat::kF32>(x, ldx, w, y, ldy, m, accumulate);
      return;
    case WeightFormat::kBf16:
      GemmAllTiles<WeightFormat::kBf16>(x, ldx, w, y, ldy, m, accumulate);
      return;
    case WeightFormat::kFp8Block128:
      GemmAllTiles<WeightFormat::kFp8Block128>(x, ldx, w, y, ldy, m, accumulate);
      return;
  }
}
