#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/gemm.h"
#include "engine/ops/linear/weight_gemm.h"

namespace moeserve::engine {
namespace {

// Weight rows dequantized per GemmCpu call on the portable path: 64 × K fp32 stays in L2 for
// the K of DeepSeek's projections (7168 · 64 · 4 B = 1.8 MiB).
constexpr int64_t kPortableChunkRows = 64;

// Rows [row0, row0 + rows) of `w` as fp32, the values DequantizeFp8BlockWeight gives.
void DequantizeRows(const WeightMatrixView& w, int64_t row0, int64_t rows, float* out) {
  const int64_t cols = w.cols;
  if (w.format == WeightFormat::kBf16) {
    const uint16_t* src = static_cast<const uint16_t*>(w.data) + row0 * cols;
    for (int64_t i = 0; i < rows * cols; ++i) out[i] = Bf16ToFloat(src[i]);
    return;
  }
  const uint8_t* src = static_cast<const uint8_t*>(w.data) + row0 * cols;
  const int64_t col_blocks = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
  for (int64_t r = 0; r < rows; ++r) {
    const float* scales = w.scale_inv + ((row0 + r) / kFp8BlockSize) * col_blocks;
    for (int64_t c = 0; c < cols; ++c) {
      out[r * cols + c] = Fp8E4M3ToFloat(src[r * cols + c]) * scales[c / kFp8BlockSize];
    }
  }
}

void WeightGemmPortable(const float* x, int64_t ldx, const WeightMatrixView& w, float* y,
                        int64_t ldy, int64_t m, bool accumulate) {
  if (w.format == WeightFormat::kF32) {
    GemmCpu(x, ldx, static_cast<const float*>(w.data), y, ldy, m, w.rows, w.cols, accumulate);
    return;
  }
  // GemmCpu's arithmetic per element does not depend on which rows share its call, so chunking
  // the weight rows gives exactly the fp32 reference's result.
  std::vector<float> chunk(static_cast<size_t>(std::min(kPortableChunkRows, w.rows) * w.cols));
  for (int64_t row0 = 0; row0 < w.rows; row0 += kPortableChunkRows) {
    const int64_t rows = std::min(kPortableChunkRows, w.rows - row0);
    DequantizeRows(w, row0, rows, chunk.data());
    GemmCpu(x, ldx, chunk.data(), y + row0, ldy, m, rows, w.cols, accumulate);
  }
}

}  // namespace

const char* WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32:
      return "f32";
    case WeightFormat::kBf16:
      return "bf16";
    case WeightFormat::kFp8Block128:
      return "fp8-block128";
  }
  return "unknown";
}

int64_t WeightFormatBytes(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32:
      return 4;
    case WeightFormat::kBf16:
      return 2;
    case WeightFormat::kFp8Block128:
      return 1;
  }
  return 0;
}

bool WeightGemmRoundsInputsToBf16(WeightFormat format, CpuIsa isa) {
  if (isa != CpuIsa::kAvx512Bf16) return false;
  return format == WeightFormat::kBf16 ||
         (format == WeightFormat::kFp8Block128 && DetectedCpuFeatures().avx512_vbmi);
}

void WeightGemmCpu(const float* x, int64_t ldx, const WeightMatrixView& w, float* y, int64_t ldy,
                   int64_t m, bool accumulate, CpuIsa isa) {
  if (m == 0 || w.rows == 0) return;
  switch (isa) {
    case CpuIsa::kAvx512Bf16:
      WeightGemmAvx512Bf16(x, ldx, w, y, ldy, m, accumulate);
      return;
    case CpuIsa::kAvx512:
      WeightGemmAvx512(x, ldx, w, y, ldy, m, accumulate);
      return;
    case CpuIsa::kAvx2:
      WeightGemmAvx2(x, ldx, w, y, ldy, m, accumulate);
      return;
    case CpuIsa::kPortable:
      WeightGemmPortable(x, ldx, w, y, ldy, m, accumulate);
      return;
  }
}

}  // namespace moeserve::engine
