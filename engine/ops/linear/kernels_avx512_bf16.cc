// The AVX-512-BF16 build of WeightGemmCpu for BF16 and FP8 weights: x is rounded to bf16 once
// per call and every product pair goes through vdpbf16ps, 32 multiply-adds per instruction
// against the 16 of an fp32 FMA. BF16 weights need no widening. e4m3 weights become bf16 by
// byte lookup (two vpermi2b for 64 weights, AVX-512-VBMI), which costs a third of the integer
// work of the AVX-512 kernel's widening to fp32; each 128-column block's partial sums are
// multiplied by the block scale once. Compiled with -mavx512bf16 -mavx512vbmi for this file
// only (engine/CMakeLists.txt); called only when CpuIsaAvailable(kAvx512Bf16), and for FP8
// only when the CPU has VBMI (Cooper Lake has not). Other weights take the AVX-512 kernels.
//
// Numerics: bf16 × bf16 products are exact in fp32 (every finite e4m3 value, subnormals
// included, is a normal bf16, so the lookup is exact too) and accumulate in fp32: the only
// change from the AVX-512 path is x rounded to nearest-even bf16 (relative 2^-9 per element),
// as the GPU's BF16 activations are. Each output element is one accumulator chain over k, then
// a fixed lane tree: independent of M, of its tile position and of the thread, so the kernel is
// batch-invariant like the others.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/ops/cpu/cpu_features.h"
#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {
namespace {

#include "engine/ops/cpu/simd_avx512.h"

constexpr int kTileM = 4;
constexpr int kTileN = 4;
constexpr int64_t kPairs = 32;  // bf16 elements per vdpbf16ps operand

// Rows of x rounded to bf16, each padded with zeros to a multiple of 32 elements, so the
// micro-kernel never needs a masked x load.
void RoundRowsToBf16(const float* x, int64_t ldx, int64_t m, int64_t k, int64_t padded,
                     uint16_t* out) {
  ParallelFor(m, m * k > (1 << 16), [&](int64_t i) {
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
  });
}

// Each output's sum by Simd::Reduce4's fixed tree, four outputs per pass.
template <int kRowsM, int kRowsN = kTileN>
void StoreTile(const __m512 (&acc)[kRowsM][kRowsN], int64_t rows_n, int64_t n0, float* y,
               int64_t ldy, bool accumulate) {
  static_assert(kRowsN % 4 == 0);
  for (int i = 0; i < kRowsM; ++i) {
    float sums[kRowsN];
    for (int j = 0; j < kRowsN; j += 4) {
      Simd::Reduce4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3], sums + j);
    }
    for (int64_t j = 0; j < rows_n; ++j) {
      float& out = y[i * ldy + n0 + j];
      out = accumulate ? out + sums[j] : sums[j];
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
      // One line of the next tile's rows ahead, as in MicroTileFp8.
      _mm_prefetch(reinterpret_cast<const char*>(wr[j] + kk + kTileN * k), _MM_HINT_T0);
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
  StoreTile<kRowsM>(acc, rows_n, n0, y, ldy, accumulate);
}

void GemmBf16AllTiles(const uint16_t* xb, int64_t padded, const WeightMatrixView& w, float* y,
                      int64_t ldy, int64_t m, bool accumulate) {
  const int64_t n = w.rows, k = w.cols;
  const uint16_t* weights = static_cast<const uint16_t*>(w.data);
  const int64_t n_tiles = (n + kTileN - 1) / kTileN;
  // As the fp32 kernels: parallel over weight rows, each thread streams its slice once.
  ParallelFor(n_tiles, m * n * k > (1 << 16), [&](int64_t nt) {
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
  });
}

// ---- FP8 (e4m3 + 128×128 block scales) ----

constexpr int64_t kChunk = 64;  // e4m3 bytes converted at once: two vdpbf16ps operands

// e4m3 → bf16 by lookup: vpermi2b indexes 128 bytes with the low seven bits (the magnitude;
// the sign bit is ignored), so the bf16's high byte is table[magnitude] | sign and its low byte
// another table's entry. NaN (0x7F) maps to 0; the loader refuses it.
struct E4m3Tables {
  __m512i high0, high1, low0, low1;
};

const E4m3Tables& Tables() {
  static const E4m3Tables tables = [] {
    alignas(64) uint8_t high[128], low[128];
    for (int magnitude = 0; magnitude < 128; ++magnitude) {
      const float value =
          magnitude == 0x7F ? 0.0f : Fp8E4M3ToFloat(static_cast<uint8_t>(magnitude));
      uint32_t bits;
      std::memcpy(&bits, &value, sizeof(bits));
      // Exact: an e4m3 value has at most four significant bits, a bf16 eight.
      high[magnitude] = static_cast<uint8_t>(bits >> 24);
      low[magnitude] = static_cast<uint8_t>(bits >> 16);
    }
    return E4m3Tables{_mm512_load_si512(high), _mm512_load_si512(high + 64), _mm512_load_si512(low),
                      _mm512_load_si512(low + 64)};
  }();
  return tables;
}

// 64 e4m3 bytes → two vectors of 32 bf16. vpunpck{l,h}bw interleave per 128-bit lane, so the
// first holds bytes 0–7, 16–23, 32–39, 48–55 and the second the others; x is stored in the
// same order (RoundRowsToBf16Interleaved), which leaves every product pair intact.
inline void E4m3ToBf16(__m512i bytes, const E4m3Tables& t, __m512bh& first, __m512bh& second) {
  const __m512i high = _mm512_ternarylogic_epi32(  // table | (bytes & 0x80)
      _mm512_permutex2var_epi8(t.high0, bytes, t.high1), bytes,
      _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);
  const __m512i low = _mm512_permutex2var_epi8(t.low0, bytes, t.low1);
  first = (__m512bh)_mm512_unpacklo_epi8(low, high);
  second = (__m512bh)_mm512_unpackhi_epi8(low, high);
}

// As RoundRowsToBf16, padded to a multiple of 64, each 64 reordered as E4m3ToBf16 orders the
// weights.
void RoundRowsToBf16Interleaved(const float* x, int64_t ldx, int64_t m, int64_t k, int64_t padded,
                                uint16_t* out) {
  alignas(64) static constexpr uint16_t kFirst[32] = {0,  1,  2,  3,  4,  5,  6,  7,  16, 17, 18,
                                                      19, 20, 21, 22, 23, 32, 33, 34, 35, 36, 37,
                                                      38, 39, 48, 49, 50, 51, 52, 53, 54, 55};
  const __m512i first_index = _mm512_load_si512(kFirst);
  const __m512i second_index = _mm512_add_epi16(first_index, _mm512_set1_epi16(8));
  RoundRowsToBf16(x, ldx, m, k, padded, out);
  ParallelFor(m, m * k > (1 << 16), [&](int64_t i) {
    uint16_t* row = out + i * padded;
    for (int64_t kk = 0; kk < padded; kk += kChunk) {
      const __m512i a = _mm512_loadu_si512(row + kk);
      const __m512i b = _mm512_loadu_si512(row + kk + 32);
      _mm512_storeu_si512(row + kk, _mm512_permutex2var_epi16(a, first_index, b));
      _mm512_storeu_si512(row + kk + 32, _mm512_permutex2var_epi16(a, second_index, b));
    }
  });
}

// The tile's weight rows share one 128-row scale block (n0 is a multiple of kRowsN, which
// divides 128): `scales` is that block row of scale_inv.
template <int kRowsM, int kRowsN>
void MicroTileFp8(const uint16_t* xb, int64_t padded, const uint8_t* w, int64_t k, int64_t n0,
                  int64_t rows_n, const float* scales, float* y, int64_t ldy, bool accumulate) {
  const E4m3Tables& tables = Tables();
  const uint8_t* wr[kRowsN];
  for (int j = 0; j < kRowsN; ++j) wr[j] = w + (n0 + std::min<int64_t>(j, rows_n - 1)) * k;
  __m512 acc[kRowsM][kRowsN];
  for (int i = 0; i < kRowsM; ++i) {
    for (int j = 0; j < kRowsN; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  for (int64_t block = 0; block * 128 < k; ++block) {
    __m512 partial[kRowsM][kRowsN];
    for (int i = 0; i < kRowsM; ++i) {
      for (int j = 0; j < kRowsN; ++j) partial[i][j] = _mm512_setzero_ps();
    }
    const int64_t end = std::min<int64_t>(k, (block + 1) * 128);
    for (int64_t kk = block * 128; kk < end; kk += kChunk) {
      const int64_t left = end - kk;
      // Past k the weights load as zero bytes (e4m3 zero), matching x's zero padding.
      const __mmask64 mask = left >= kChunk ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
      __m512bh x_first[kRowsM], x_second[kRowsM];
      for (int i = 0; i < kRowsM; ++i) {
        x_first[i] = (__m512bh)_mm512_loadu_si512(xb + i * padded + kk);
        x_second[i] = (__m512bh)_mm512_loadu_si512(xb + i * padded + kk + 32);
      }
      for (int j = 0; j < kRowsN; ++j) {
        // The same bytes of the next tile's rows (contiguous after these; the thread's next
        // tile): the hardware prefetcher would only find those streams after the tile starts.
        _mm_prefetch(reinterpret_cast<const char*>(wr[j] + kk + kRowsN * k), _MM_HINT_T0);
        const __m512i bytes = left >= kChunk ? _mm512_loadu_si512(wr[j] + kk)
                                             : _mm512_maskz_loadu_epi8(mask, wr[j] + kk);
        __m512bh w_first, w_second;
        E4m3ToBf16(bytes, tables, w_first, w_second);
        for (int i = 0; i < kRowsM; ++i) {
          partial[i][j] = _mm512_dpbf16_ps(partial[i][j], x_first[i], w_first);
          partial[i][j] = _mm512_dpbf16_ps(partial[i][j], x_second[i], w_second);
        }
      }
    }
    const __m512 scale = _mm512_set1_ps(scales[block]);
    for (int i = 0; i < kRowsM; ++i) {
      for (int j = 0; j < kRowsN; ++j) {
        acc[i][j] = _mm512_fmadd_ps(partial[i][j], scale, acc[i][j]);
      }
    }
  }
  StoreTile<kRowsM, kRowsN>(acc, rows_n, n0, y, ldy, accumulate);
}

// Tiles of 8 weight rows: a single x row takes all 8 at once (8 streams in flight), pairs of x
// rows take them 4 at a time (the accumulators of a 2×8 tile would not fit the registers).
void GemmFp8AllTiles(const uint16_t* xb, int64_t padded, const WeightMatrixView& w, float* y,
                     int64_t ldy, int64_t m, bool accumulate) {
  constexpr int64_t kRowsPerTile = 8;
  const int64_t n = w.rows, k = w.cols;
  const int64_t col_blocks = (k + 127) / 128;
  const uint8_t* weights = static_cast<const uint8_t*>(w.data);
  const int64_t n_tiles = (n + kRowsPerTile - 1) / kRowsPerTile;
  ParallelFor(n_tiles, m * n * k > (1 << 16), [&](int64_t nt) {
    const int64_t n0 = nt * kRowsPerTile;
    const int64_t rows_n = std::min<int64_t>(kRowsPerTile, n - n0);
    const float* scales = w.scale_inv + (n0 / 128) * col_blocks;
    int64_t m0 = 0;
    for (; m0 + 2 <= m; m0 += 2) {
      for (int64_t half = 0; half < rows_n; half += 4) {
        MicroTileFp8<2, 4>(xb + m0 * padded, padded, weights, k, n0 + half,
                           std::min<int64_t>(4, rows_n - half), scales, y + m0 * ldy, ldy,
                           accumulate);
      }
    }
    if (m0 < m) {
      MicroTileFp8<1, 8>(xb + m0 * padded, padded, weights, k, n0, rows_n, scales, y + m0 * ldy,
                         ldy, accumulate);
    }
  });
}

}  // namespace

void WeightGemmAvx512Bf16(const float* x, int64_t ldx, const WeightMatrixView& w, float* y,
                          int64_t ldy, int64_t m, bool accumulate) {
  if (!WeightGemmRoundsInputsToBf16(w.format, CpuIsa::kAvx512Bf16)) {
    WeightGemmAvx512(x, ldx, w, y, ldy, m, accumulate);
    return;
  }
  if (m == 0 || w.rows == 0) return;
  const bool fp8 = w.format == WeightFormat::kFp8Block128;
  const int64_t step = fp8 ? kChunk : kPairs;
  const int64_t padded = (w.cols + step - 1) / step * step;
  // One buffer per calling thread, reused across calls: the forward calls this per linear.
  thread_local std::vector<uint16_t> xb;
  xb.resize(static_cast<size_t>(m * padded));
  if (fp8) {
    RoundRowsToBf16Interleaved(x, ldx, m, w.cols, padded, xb.data());
    GemmFp8AllTiles(xb.data(), padded, w, y, ldy, m, accumulate);
  } else {
    RoundRowsToBf16(x, ldx, m, w.cols, padded, xb.data());
    GemmBf16AllTiles(xb.data(), padded, w, y, ldy, m, accumulate);
  }
}

}  // namespace moeserve::engine
