#include <algorithm>
#include <cmath>

#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"

namespace moeserve::engine {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

std::vector<float> DequantizeFp8BlockWeight(absl::Span<const uint8_t> fp8,
                                            absl::Span<const float> scale_inv, int64_t rows,
                                            int64_t cols, int64_t block_rows, int64_t block_cols) {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  const int64_t scale_cols = CeilDiv(cols, block_cols);
  ParallelFor(rows, rows * cols > (1 << 18), [&](int64_t i) {
    const float* scale_row = scale_inv.data() + (i / block_rows) * scale_cols;
    for (int64_t j = 0; j < cols; ++j) {
      w[i * cols + j] = Fp8E4M3ToFloat(fp8[i * cols + j]) * scale_row[j / block_cols];
    }
  });
  return w;
}

void QuantizeActivationsFp8(absl::Span<const float> x, int64_t rows, int64_t cols,
                            absl::Span<uint8_t> q, absl::Span<float> scales) {
  const int64_t groups = CeilDiv(cols, kFp8BlockSize);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * kFp8BlockSize;
      const int64_t end = std::min(cols, begin + kFp8BlockSize);
      float amax = kFp8ActivationAmaxFloor;
      for (int64_t j = begin; j < end; ++j) amax = std::max(amax, std::fabs(x[r * cols + j]));
      const float scale = amax / kFp8E4M3Max;
      scales[r * groups + g] = scale;
      for (int64_t j = begin; j < end; ++j)
        q[r * cols + j] = FloatToFp8E4M3(x[r * cols + j] / scale);
    }
  }
}

void RoundTripActivationsFp8(absl::Span<float> x, int64_t rows, int64_t cols) {
  const int64_t groups = CeilDiv(cols, kFp8BlockSize);
  ParallelFor(rows, rows * cols > (1 << 16), [&](int64_t r) {
    std::vector<uint8_t> q(static_cast<size_t>(cols));
    std::vector<float> scales(static_cast<size_t>(groups));
    float* row = x.data() + r * cols;
    QuantizeActivationsFp8(absl::MakeConstSpan(row, cols), 1, cols, absl::MakeSpan(q),
                           absl::MakeSpan(scales));
    for (int64_t j = 0; j < cols; ++j) row[j] = Fp8E4M3ToFloat(q[j]) * scales[j / kFp8BlockSize];
  });
}

Fp8BlockWeight QuantizeFp8BlockWeight(absl::Span<const float> w, int64_t rows, int64_t cols) {
  const int64_t block_rows = CeilDiv(rows, kFp8BlockSize);
  const int64_t block_cols = CeilDiv(cols, kFp8BlockSize);
  Fp8BlockWeight out;
  out.fp8.resize(static_cast<size_t>(rows * cols));
  out.scale_inv.resize(static_cast<size_t>(block_rows * block_cols));
  for (int64_t bi = 0; bi < block_rows; ++bi) {
    for (int64_t bj = 0; bj < block_cols; ++bj) {
      const int64_t i_end = std::min(rows, (bi + 1) * kFp8BlockSize);
      const int64_t j_end = std::min(cols, (bj + 1) * kFp8BlockSize);
      float amax = 0.0f;
      for (int64_t i = bi * kFp8BlockSize; i < i_end; ++i) {
        for (int64_t j = bj * kFp8BlockSize; j < j_end; ++j) {
          amax = std::max(amax, std::fabs(w[i * cols + j]));
        }
      }
      // An all-zero block keeps scale 1 so dequantization stays exact (and finite).
      const float scale = amax > 0.0f ? amax / kFp8E4M3Max : 1.0f;
      out.scale_inv[bi * block_cols + bj] = scale;
      for (int64_t i = bi * kFp8BlockSize; i < i_end; ++i) {
        for (int64_t j = bj * kFp8BlockSize; j < j_end; ++j) {
          out.fp8[i * cols + j] = FloatToFp8E4M3(w[i * cols + j] / scale);
        }
      }
    }
  }
  return out;
}

}  // namespace moeserve::engine
