// The AVX-512-BF16 build of WeightGemmCpu for BF16 weights: x is rounded to bf16 once per call
// and every product pair goes through vdpbf16ps, 32 multiply-adds per instruction against the
// 16 of an fp32 FMA, with no widening of the weights. Compiled with -mavx512bf16 for this file
// only (engine/CMakeLists.txt); called only when CpuIsaAvailable(kAvx512Bf16). FP32 and FP8
// weights take the AVX-512 kernels unchanged.
//
// Numerics: bf16 × bf16 products are exact in fp32 and accumulate in fp32, so the only change
// from the AVX-512 path is x rounded to nearest-even bf16 (relative 2^-9 per element), as the
// GPU's BF16 activations are. Each output element is one accumulator chain over k in steps of
// 32, then a fixed lane tree: independent of M, of its tile position and of the thread, so the
// kernel is batch-invariant like the others.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {
namespace {

constexpr int kTileM = 4;
constexpr int kTileN = 4;
constexpr int64_t kPairs = 32;  // bf16 elements per vdpbf16ps operand

// Rows of x rounded to bf16, each padded with zeros to a multiple of 32 elements, so the
// micro-kernel never needs a masked x load.
void RoundRowsToBf16(const float* x, int64_t ldx, int64_t m, int64_t k, int64_t padded,
                     uint16_t* out) {
#pragma omp parallel for schedule(static) if (m * k > (1 << 16))
  for (int64_t i = 0; i < m; ++i) {
    const float* row = x + i * ldx;
    uint16_t* dst = out + i * padded;
    for (int64_t kk = 0; kk < padded; kk += kPairs) {
      const int64_t left = std::max<int64_t>(0, k - kk);
      const __mmask16 lo_mask = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
      const int64_t left_hi = std::max<int64_t>(0, left - 16);
      const __mmask16 hi_mask =
          left_hi >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left_hi) - 1);
      const __m512 lo = _mm512_maskz_loadu_ps(lo_mask, row + kk);
      const __m512 hi = _mm512_maskz_loadu_ps(hi_mask, row + kk + 16);
      _mm512_storeu_si512(dst + kk, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  }
}

template <int kRowsM>
void MicroTile(const uint16_t* xb, int64_t padded, const uint16_t* w, int64_t k, int64_t n0,
               int64_t rows_n, float* y, int64_t ldy, bool accumulate) {
  const uint16_t* wr[kTileN];
  for (int j = 0; j < kTileN; ++j) wr[j] = w + (n0 + std::min<int64_t>(j, rows_n - 1)) * k;
  __m512 acc[kRowsM][kTileN];
  for (int i = 0; i < kRowsM; ++i) {
    for (int j = 0; j < kTileN; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  auto step = [&](int64_t kk, __mmask32 mask, auto load_weights) {
    __m512bh xv[kRowsM];
    for (int i = 0; i < kRowsM; ++i) {
      xv[i] = (__m512bh)_mm512_loadu_si512(xb + i * padded + kk);
    }
    for (int j = 0; j < kTileN; ++j) {
      const __m512bh wv = load_weights(mask, wr[j] + kk);
      for (int i = 0; i < kRowsM; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
    }
  };
  const int64_t k_full = k - k % kPairs;
  for (int64_t kk = 0; kk < k_full; kk += kPairs) {
    step(kk, 0, [](__mmask32, const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); });
  }
  if (k_full < k) {
    // The weight tail is a masked load (zeros past k), matching x's zero padding.
    step(k_full, static_cast<__mmask32>((1u << (k - k_full)) - 1),
         [](__mmask32 mask, const uint16_t* p) {
           return (__m512bh)_mm512_maskz_loadu_epi16(mask, p);
         });
  }
  for (int i = 0; i < kRowsM; ++i) {
    for (int64_t j = 0; j < rows_n; ++j) {
      const float sum = _mm512_reduce_add_ps(acc[i][j]);
      float& out = y[i * ldy + n0 + j];
      out = accumulate ? out + sum : sum;
    }
  }
}

void GemmBf16AllTiles(const uint16_t* xb, int64_t padded, const WeightMatrixView& w, float* y,
                      int64_t ldy, int64_t m, bool accumulate) {
  const int64_t n = w.rows, k = w.cols;
  const uint16_t* weights = static_cast<const uint16_t*>(w.data);
  const int64_t n_tiles = (n + kTileN - 1) / kTileN;
  // As the fp32 kernels: parallel over weight rows, each thread streams its slice once.
#pragma omp parallel for schedule(static) if (m * n * k > (1 << 16))
  for (int64_t nt = 0; nt < n_tiles; ++nt) {
    const int64_t n0 = nt * kTileN;
    const int64_t rows_n = std::min<int64_t>(kTileN, n - n0);
    int64_t m0 = 0;
    for (; m0 + kTileM <= m; m0 += kTileM) {
      MicroTile<kTileM>(xb + m0 * padded, padded, weights, k, n0, rows_n, y + m0 * ldy, ldy,
                        accumulate);
    }
    const uint16_t* xt = xb + m0 * padded;
    float* yt = y + m0 * ldy;
    switch (m - m0) {
      case 3:
        MicroTile<3>(xt, padded, weights, k, n0, rows_n, yt, ldy, accumulate);
        break;
      case 2:
        MicroTile<2>(xt, padded, weights, k, n0, rows_n, yt, ldy, accumulate);
        break;
      case 1:
        MicroTile<1>(xt, padded, weights, k, n0, rows_n, yt, ldy, accumulate);
        break;
      default:
        break;
    }
  }
}

}  // namespace

void WeightGemmAvx512Bf16(const float* x, int64_t ldx, const WeightMatrixView& w, float* y,
                          int64_t ldy, int64_t m, bool accumulate) {
  if (w.format != WeightFormat::kBf16) {
    WeightGemmAvx512(x, ldx, w, y, ldy, m, accumulate);
    return;
  }
  if (m == 0 || w.rows == 0) return;
  const int64_t padded = (w.cols + kPairs - 1) / kPairs * kPairs;
  // One buffer per calling thread, reused across calls: the forward calls this per linear.
  thread_local std::vector<uint16_t> xb;
  xb.resize(static_cast<size_t>(m * padded));
  RoundRowsToBf16(x, ldx, m, w.cols, padded, xb.data());
  GemmBf16AllTiles(xb.data(), padded, w, y, ldy, m, accumulate);
}

}  // namespace moeserve::engine
