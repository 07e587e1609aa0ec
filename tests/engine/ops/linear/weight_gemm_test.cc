// WeightGemmCpu (y = x·Wᵀ with W in fp32, BF16 or FP8 block-scaled) against GemmCpu on the
// matrix dequantized by the independent reference helpers (Bf16ToFloat,
// DequantizeFp8BlockWeight), for every instruction set this CPU has (the others skip, naming
// themselves):
//  * kPortable must equal the fp32 reference bit for bit (it is the reference backend's math);
//  * the SIMD paths must agree within 1e-5 of Σ|x·w| per element (only the fp32 summation
//    order differs); kAvx512Bf16 on BF16 (and, with VBMI, FP8) weights against GemmCpu on x
//    rounded to bf16 (its one intended difference, ~2^-9 relative, far outside that tolerance
//    if it were missing);
//  * every path is batch-invariant: a row computed alone equals the same row in a batch, bit for
//    bit, with and without accumulation;
//  * e4m3 conversion is exact for all 254 finite byte values, subnormals included.
// Shapes cover k tails (not a multiple of 8 or 16), n and m tails of the 4×4 tiles, partial
// 128-blocks of FP8 scales and row strides. Inputs are fresh random values.
#include "engine/ops/linear/weight_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/gemm.h"
#include "engine/ops/linear/weight_gemm_onednn.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::TestRng;

// A weight in one format plus the fp32 matrix it stands for.
struct TestWeight {
  WeightFormat format;
  int64_t rows, cols;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> fp8;
  std::vector<float> scale_inv;
  std::vector<float> dequantized;  // [rows, cols]

  WeightMatrixView view() const {
    WeightMatrixView v{format, nullptr, nullptr, rows, cols};
    switch (format) {
      case WeightFormat::kF32:
        v.data = f32.data();
        break;
      case WeightFormat::kBf16:
        v.data = bf16.data();
        break;
      case WeightFormat::kFp8Block128:
        v.data = fp8.data();
        v.scale_inv = scale_inv.data();
        break;
    }
    return v;
  }
};

TestWeight MakeWeight(TestRng& rng, WeightFormat format, int64_t rows, int64_t cols) {
  TestWeight t{format, rows, cols, {}, {}, {}, {}, {}};
  const std::vector<float> values = rng.NormalFloats(static_cast<size_t>(rows * cols), 0.5);
  switch (format) {
    case WeightFormat::kF32:
      t.f32 = values;
      t.dequantized = values;
      break;
    case WeightFormat::kBf16:
      t.bf16 = FloatsToBf16(values);
      t.dequantized = Bf16ToFloats(t.bf16);
      break;
    case WeightFormat::kFp8Block128: {
      Fp8BlockWeight q = QuantizeFp8BlockWeight(values, rows, cols);
      t.fp8 = std::move(q.fp8);
      t.scale_inv = std::move(q.scale_inv);
      t.dequantized = DequantizeFp8BlockWeight(t.fp8, t.scale_inv, rows, cols);
      break;
    }
  }
  return t;
}

struct Case {
  CpuIsa isa;
  WeightFormat format;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(CpuIsaName(info.param.isa)) + "_" +
         (info.param.format == WeightFormat::kF32    ? "f32"
          : info.param.format == WeightFormat::kBf16 ? "bf16"
                                                     : "fp8");
}

class WeightGemmTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!CpuIsaAvailable(GetParam().isa)) {
      GTEST_SKIP() << CpuIsaName(GetParam().isa) << " is not available on this CPU ("
                   << CpuFeaturesString() << ")";
    }
  }
};

// `actual` against the fp32 reference `expected` (GemmCpu on x_used and the dequantized W):
// stride padding untouched; each element bit-equal when `exact`, else within 1e-5 of Σ|x·w|
// (only the fp32 summation order differs).
void ExpectMatchesReference(const std::vector<float>& actual, const std::vector<float>& expected,
                            const std::vector<float>& y0, const std::vector<float>& x_used,
                            const TestWeight& w, int64_t m, int64_t n, int64_t k, int64_t ldx,
                            int64_t ldy, bool accumulate, bool exact) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < ldy; ++j) {
      const size_t at = static_cast<size_t>(i * ldy + j);
      if (j >= n) {
        ASSERT_EQ(actual[at], y0[at]) << "stride padding written at (" << i << ", " << j << ")";
        continue;
      }
      if (exact) {
        ASSERT_EQ(actual[at], expected[at]) << "(" << i << ", " << j << ")";
        continue;
      }
      double magnitude = accumulate ? std::fabs(y0[at]) : 0.0;
      for (int64_t kk = 0; kk < k; ++kk) {
        magnitude += std::fabs(x_used[i * ldx + kk] * w.dequantized[j * k + kk]);
      }
      ASSERT_LE(std::fabs(actual[at] - expected[at]), 1e-5 * magnitude + 1e-30)
          << "(" << i << ", " << j << "): " << actual[at] << " vs " << expected[at];
    }
  }
}

TEST_P(WeightGemmTest, MatchesFp32ReferenceOnDequantizedWeights) {
  const auto [isa, format] = GetParam();
  TestRng rng(testing::kDefaultTestSeed + static_cast<int>(format) * 7 + static_cast<int>(isa));
  struct Shape {
    int64_t m, n, k, ldx, ldy;
  };
  for (const Shape& s : {Shape{1, 1, 1, 1, 1}, Shape{1, 130, 300, 300, 130}, Shape{3, 5, 15, 20, 9},
                         Shape{4, 64, 16, 16, 64}, Shape{7, 257, 129, 140, 260},
                         Shape{37, 100, 2048, 2048, 100}, Shape{2, 9, 1408, 1500, 9}}) {
    for (const bool accumulate : {false, true}) {
      SCOPED_TRACE("m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                   " k=" + std::to_string(s.k) + (accumulate ? " accumulate" : ""));
      const TestWeight w = MakeWeight(rng, format, s.n, s.k);
      const std::vector<float> x = rng.UniformFloats(static_cast<size_t>(s.m * s.ldx), -1, 1);
      const std::vector<float> y0 = rng.UniformFloats(static_cast<size_t>(s.m * s.ldy), -1, 1);
      std::vector<float> expected = y0, actual = y0;
      const bool rounds_x = WeightGemmRoundsInputsToBf16(format, isa);
      const std::vector<float> x_used = rounds_x ? Bf16ToFloats(FloatsToBf16(x)) : x;
      GemmCpu(x_used.data(), s.ldx, w.dequantized.data(), expected.data(), s.ldy, s.m, s.n, s.k,
              accumulate);
      WeightGemmCpu(x.data(), s.ldx, w.view(), actual.data(), s.ldy, s.m, accumulate, isa);
      ExpectMatchesReference(actual, expected, y0, x_used, w, s.m, s.n, s.k, s.ldx, s.ldy,
                             accumulate, /*exact=*/isa == CpuIsa::kPortable);
    }
  }
}

TEST_P(WeightGemmTest, RowsAloneEqualRowsInABatch) {
  const auto [isa, format] = GetParam();
  TestRng rng(testing::kDefaultTestSeed + 100 + static_cast<int>(format));
  const int64_t m = 11, n = 70, k = 520;
  const TestWeight w = MakeWeight(rng, format, n, k);
  const std::vector<float> x = rng.UniformFloats(static_cast<size_t>(m * k), -1, 1);
  for (const bool accumulate : {false, true}) {
    const std::vector<float> y0 = rng.UniformFloats(static_cast<size_t>(m * n), -1, 1);
    std::vector<float> batched = y0;
    WeightGemmCpu(x.data(), k, w.view(), batched.data(), n, m, accumulate, isa);
    for (int64_t r = 0; r < m; ++r) {
      std::vector<float> alone(y0.begin() + r * n, y0.begin() + (r + 1) * n);
      WeightGemmCpu(x.data() + r * k, k, w.view(), alone.data(), n, 1, accumulate, isa);
      for (int64_t j = 0; j < n; ++j) {
        ASSERT_EQ(alone[j], batched[r * n + j]) << "row " << r << " column " << j;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsasAndFormats, WeightGemmTest,
                         ::testing::Values(Case{CpuIsa::kPortable, WeightFormat::kF32},
                                           Case{CpuIsa::kPortable, WeightFormat::kBf16},
                                           Case{CpuIsa::kPortable, WeightFormat::kFp8Block128},
                                           Case{CpuIsa::kAvx2, WeightFormat::kF32},
                                           Case{CpuIsa::kAvx2, WeightFormat::kBf16},
                                           Case{CpuIsa::kAvx2, WeightFormat::kFp8Block128},
                                           Case{CpuIsa::kAvx512, WeightFormat::kF32},
                                           Case{CpuIsa::kAvx512, WeightFormat::kBf16},
                                           Case{CpuIsa::kAvx512, WeightFormat::kFp8Block128},
                                           Case{CpuIsa::kAvx512Bf16, WeightFormat::kF32},
                                           Case{CpuIsa::kAvx512Bf16, WeightFormat::kBf16},
                                           Case{CpuIsa::kAvx512Bf16, WeightFormat::kFp8Block128}),
                         CaseName);

// Every finite e4m3 byte, as one weight row against unit x vectors: y[j] is exactly the
// weight value times its scale, which must equal Fp8E4M3ToFloat(byte) · scale for every ISA.
// oneDNN's matmul (weight_gemm_onednn.h), which `--cpu-kernels bf16` uses for BF16 GEMMs of at
// least kOneDnnMinRows rows: GemmCpu on bf16-rounded x within fp32 summation-order error, with
// row strides, accumulation and row counts around the threshold and beyond a prefill chunk.
TEST(WeightGemmOneDnnTest, MatchesFp32ReferenceOnBf16RoundedInputs) {
  if (!OneDnnGemmAvailable()) {
    GTEST_SKIP() << "oneDNN path unavailable: built without libdnnl-dev, or no AVX-512-BF16 ("
                 << CpuFeaturesString() << ")";
  }
  TestRng rng(testing::kDefaultTestSeed + 2026);
  struct Shape {
    int64_t m, n, k, ldx, ldy;
  };
  for (const Shape& s : {Shape{32, 64, 128, 128, 64}, Shape{33, 257, 129, 140, 260},
                         Shape{100, 576, 2048, 2048, 576}, Shape{513, 96, 1408, 1500, 100}}) {
    for (const bool accumulate : {false, true}) {
      SCOPED_TRACE("m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                   " k=" + std::to_string(s.k) + (accumulate ? " accumulate" : ""));
      const TestWeight w = MakeWeight(rng, WeightFormat::kBf16, s.n, s.k);
      const std::vector<float> x = rng.UniformFloats(static_cast<size_t>(s.m * s.ldx), -1, 1);
      const std::vector<float> y0 = rng.UniformFloats(static_cast<size_t>(s.m * s.ldy), -1, 1);
      std::vector<float> expected = y0, actual = y0;
      const std::vector<float> x_used = Bf16ToFloats(FloatsToBf16(x));
      GemmCpu(x_used.data(), s.ldx, w.dequantized.data(), expected.data(), s.ldy, s.m, s.n, s.k,
              accumulate);
      WeightGemmOneDnnBf16(x.data(), s.ldx, w.view(), actual.data(), s.ldy, s.m, accumulate);
      ExpectMatchesReference(actual, expected, y0, x_used, w, s.m, s.n, s.k, s.ldx, s.ldy,
                             accumulate, /*exact=*/false);
    }
  }
}

TEST(WeightGemmFp8Test, EveryFiniteE4m3ByteConvertsExactly) {
  std::vector<uint8_t> bytes;
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7F) != 0x7F) bytes.push_back(static_cast<uint8_t>(b));  // 0x7F, 0xFF are NaN
  }
  const int64_t rows = static_cast<int64_t>(bytes.size()), cols = 1;
  const std::vector<float> scale_inv = {0.375f, 0.75f};  // rows 0-127 and 128-253
  const WeightMatrixView view{WeightFormat::kFp8Block128, bytes.data(), scale_inv.data(), rows,
                              cols};
  const std::vector<float> x = {1.0f};
  for (const CpuIsa isa :
       {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    if (!CpuIsaAvailable(isa)) continue;
    SCOPED_TRACE(CpuIsaName(isa));
    std::vector<float> y(static_cast<size_t>(rows), std::nanf(""));
    WeightGemmCpu(x.data(), cols, view, y.data(), rows, 1, false, isa);
    for (int64_t r = 0; r < rows; ++r) {
      const float expected = Fp8E4M3ToFloat(bytes[r]) * scale_inv[r / 128];
      ASSERT_EQ(y[r], expected) << "byte 0x" << std::hex << int{bytes[r]};
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
