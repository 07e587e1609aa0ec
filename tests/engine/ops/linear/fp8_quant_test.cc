// Tests of the DeepSeek FP8 block quantization (reference §4) against naive formulas written
// here: weight dequantization with partial edge blocks, weight quantization (scale = amax/448
// per 128x128 block) and its round trip, and per-token-per-128-channel activation quantization
// including a partial last group and all-zero groups.
#include "engine/ops/linear/fp8_quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ops/dtype.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::TestRng;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string ShapeName(int64_t rows, int64_t cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

// Random E4M3 codes, never NaN (0x7f / 0xff).
std::vector<uint8_t> RandomFp8Codes(TestRng& rng, size_t n) {
  std::vector<uint8_t> codes(n);
  for (uint8_t& c : codes) {
    do {
      c = static_cast<uint8_t>(rng.Bits() & 0xff);
    } while ((c & 0x7f) == 0x7f);
  }
  return codes;
}

TEST(DequantizeFp8BlockWeightTest, MatchesNaiveFormulaIncludingPartialEdgeBlocks) {
  TestRng rng;
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{200, 300},
                                   {576, 256},
                                   {128, 128},
                                   {1, 1},
                                   {129, 257},
                                   {1000, 300}}) {  // the last is above the OpenMP threshold
    SCOPED_TRACE(ShapeName(rows, cols));
    const std::vector<uint8_t> fp8 = RandomFp8Codes(rng, static_cast<size_t>(rows * cols));
    const int64_t scale_rows = CeilDiv(rows, 128);
    const int64_t scale_cols = CeilDiv(cols, 128);
    std::vector<float> scale_inv(static_cast<size_t>(scale_rows * scale_cols));
    for (float& s : scale_inv) s = static_cast<float>(std::exp2(rng.Uniform(-14.0, -2.0)));

    const std::vector<float> w = DequantizeFp8BlockWeight(fp8, scale_inv, rows, cols);

    ASSERT_EQ(w.size(), static_cast<size_t>(rows * cols));
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        // A product of two floats is exact in double, so one rounding to float matches fp32.
        const float expected =
            static_cast<float>(static_cast<double>(Fp8E4M3ToFloat(fp8[i * cols + j])) *
                               scale_inv[(i / 128) * scale_cols + j / 128]);
        ASSERT_EQ(w[i * cols + j], expected) << "at (" << i << ", " << j << ")";
      }
    }
  }
}

TEST(DequantizeFp8BlockWeightTest, EdgeRowsUseTheContainingBlocksScale) {
  // kv_a_proj_with_mqa's shape: rows 512..575 use scale_inv[4, :] (reference §4). With every
  // code = 1.0 the output is the scale map itself.
  const int64_t rows = 576;
  const int64_t cols = 300;
  const std::vector<uint8_t> ones(static_cast<size_t>(rows * cols), 0x38);
  std::vector<float> scale_inv(5 * 3);
  for (int64_t bi = 0; bi < 5; ++bi) {
    for (int64_t bj = 0; bj < 3; ++bj) scale_inv[bi * 3 + bj] = 1.0f + bi * 10 + bj;
  }
  const std::vector<float> w = DequantizeFp8BlockWeight(ones, scale_inv, rows, cols);
  EXPECT_EQ(w[575 * cols + 299], 43.0f);  // block (4, 2), both partial
  EXPECT_EQ(w[512 * cols + 0], 41.0f);
  EXPECT_EQ(w[511 * cols + 256], 33.0f);
  EXPECT_EQ(w[0 * cols + 255], 2.0f);
}

TEST(DequantizeFp8BlockWeightTest, HonoursNonDefaultBlockShape) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  const int64_t rows = 70;
  const int64_t cols = 45;
  const int64_t block_rows = 32;
  const int64_t block_cols = 16;
  const std::vector<uint8_t> fp8 = RandomFp8Codes(rng, static_cast<size_t>(rows * cols));
  const int64_t scale_cols = CeilDiv(cols, block_cols);
  const std::vector<float> scale_inv =
      rng.UniformFloats(static_cast<size_t>(CeilDiv(rows, block_rows) * scale_cols), 0.5, 2.0);
  const std::vector<float> w =
      DequantizeFp8BlockWeight(fp8, scale_inv, rows, cols, block_rows, block_cols);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      ASSERT_EQ(w[i * cols + j], Fp8E4M3ToFloat(fp8[i * cols + j]) *
                                     scale_inv[(i / block_rows) * scale_cols + j / block_cols])
          << "at (" << i << ", " << j << ")";
    }
  }
}

// Random weights whose magnitude differs from block to block by up to 10^5.
std::vector<float> RandomBlockyWeight(TestRng& rng, int64_t rows, int64_t cols) {
  const int64_t block_cols = CeilDiv(cols, 128);
  std::vector<double> block_scale(static_cast<size_t>(CeilDiv(rows, 128) * block_cols));
  for (double& s : block_scale) s = std::pow(10.0, rng.Uniform(-3.0, 2.0));
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      w[i * cols + j] =
          static_cast<float>(rng.Normal() * block_scale[(i / 128) * block_cols + j / 128]);
    }
  }
  return w;
}

TEST(QuantizeFp8BlockWeightTest, ScaleIsBlockAmaxOver448AndRoundTripIsWithinFp8Precision) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  for (const auto& [rows, cols] :
       {std::pair<int64_t, int64_t>{200, 300}, {576, 256}, {256, 128}, {3, 5}}) {
    SCOPED_TRACE(ShapeName(rows, cols));
    const std::vector<float> w = RandomBlockyWeight(rng, rows, cols);
    const Fp8BlockWeight q = QuantizeFp8BlockWeight(w, rows, cols);
    const int64_t scale_rows = CeilDiv(rows, 128);
    const int64_t scale_cols = CeilDiv(cols, 128);
    ASSERT_EQ(q.fp8.size(), static_cast<size_t>(rows * cols));
    ASSERT_EQ(q.scale_inv.size(), static_cast<size_t>(scale_rows * scale_cols));
    const std::vector<float> back = DequantizeFp8BlockWeight(q.fp8, q.scale_inv, rows, cols);

    for (int64_t bi = 0; bi < scale_rows; ++bi) {
      for (int64_t bj = 0; bj < scale_cols; ++bj) {
        SCOPED_TRACE("block (" + std::to_string(bi) + ", " + std::to_string(bj) + ")");
        float amax = 0.0f;
        for (int64_t i = bi * 128; i < std::min(rows, (bi + 1) * 128); ++i) {
          for (int64_t j = bj * 128; j < std::min(cols, (bj + 1) * 128); ++j) {
            amax = std::max(amax, std::fabs(w[i * cols + j]));
          }
        }
        const float scale = q.scale_inv[bi * scale_cols + bj];
        EXPECT_EQ(scale, amax / 448.0f);
        // E4M3 keeps 3 mantissa bits: half an ulp is 2^-4 of the value; below the normals the
        // absolute step is 2^-9·scale, far smaller. Both are bounded by 2^-4·amax.
        for (int64_t i = bi * 128; i < std::min(rows, (bi + 1) * 128); ++i) {
          for (int64_t j = bj * 128; j < std::min(cols, (bj + 1) * 128); ++j) {
            const double x = w[i * cols + j];
            const double err = std::fabs(back[i * cols + j] - x);
            ASSERT_LE(err, std::ldexp(amax, -4)) << "at (" << i << ", " << j << ")";
            ASSERT_LE(err, std::ldexp(std::fabs(x), -4) + std::ldexp(scale, -10) * 1.0001)
                << "at (" << i << ", " << j << ")";
            if (std::fabs(x) == amax) {
              EXPECT_EQ(q.fp8[i * cols + j] & 0x7f, 0x7e);  // the block max maps to ±448
              EXPECT_NEAR(back[i * cols + j], x, 1e-6 * amax);
            }
          }
        }
      }
    }
  }
}

TEST(QuantizeFp8BlockWeightTest, AllZeroBlockDequantizesToZeroWithFiniteScale) {
  TestRng rng(testing::kDefaultTestSeed + 3);
  const int64_t rows = 130;
  const int64_t cols = 140;
  std::vector<float> w = rng.NormalFloats(static_cast<size_t>(rows * cols));
  for (int64_t i = 128; i < rows; ++i) {
    for (int64_t j = 128; j < cols; ++j) w[i * cols + j] = 0.0f;  // block (1, 1)
  }
  const Fp8BlockWeight q = QuantizeFp8BlockWeight(w, rows, cols);
  ASSERT_EQ(q.scale_inv.size(), 4u);
  EXPECT_TRUE(std::isfinite(q.scale_inv[3]));
  EXPECT_GT(q.scale_inv[3], 0.0f);
  const std::vector<float> back = DequantizeFp8BlockWeight(q.fp8, q.scale_inv, rows, cols);
  for (int64_t i = 128; i < rows; ++i) {
    for (int64_t j = 128; j < cols; ++j) EXPECT_EQ(back[i * cols + j], 0.0f);
  }
}

// ---------- Activations.

// Naive act_quant: per row, per group of 128 channels (the last may be narrower).
void ReferenceActivationQuant(const std::vector<float>& x, int64_t rows, int64_t cols,
                              std::vector<uint8_t>& q, std::vector<float>& scales) {
  const int64_t groups = CeilDiv(cols, 128);
  q.assign(static_cast<size_t>(rows * cols), 0);
  scales.assign(static_cast<size_t>(rows * groups), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      float amax = 0.0f;
      const int64_t end = std::min(cols, (g + 1) * 128);
      for (int64_t j = g * 128; j < end; ++j) amax = std::max(amax, std::fabs(x[r * cols + j]));
      const float s = std::max(amax, 1e-4f) / 448.0f;
      scales[r * groups + g] = s;
      for (int64_t j = g * 128; j < end; ++j) q[r * cols + j] = FloatToFp8E4M3(x[r * cols + j] / s);
    }
  }
}

TEST(QuantizeActivationsFp8Test, PerTokenPer128ChannelsWithPartialLastGroup) {
  TestRng rng(testing::kDefaultTestSeed + 4);
  const int64_t rows = 6;
  const int64_t cols = 300;  // groups of 128, 128, 44
  const int64_t groups = 3;
  std::vector<float> x = rng.NormalFloats(static_cast<size_t>(rows * cols), 3.0);
  for (int64_t j = 128; j < 256; ++j) x[2 * cols + j] = 0.0f;  // row 2, group 1: all zero
  for (int64_t j = 256; j < 300; ++j) {
    x[3 * cols + j] = static_cast<float>(rng.Uniform(-5e-5, 5e-5));  // below the amax floor
  }
  for (int64_t j = 0; j < 128; ++j) x[4 * cols + j] *= 1e3f;  // one loud group

  std::vector<uint8_t> q(static_cast<size_t>(rows * cols));
  std::vector<float> scales(static_cast<size_t>(rows * groups));
  QuantizeActivationsFp8(x, rows, cols, absl::MakeSpan(q), absl::MakeSpan(scales));

  std::vector<uint8_t> q_ref;
  std::vector<float> scales_ref;
  ReferenceActivationQuant(x, rows, cols, q_ref, scales_ref);
  EXPECT_EQ(scales, scales_ref);
  EXPECT_EQ(q, q_ref);

  EXPECT_EQ(scales[2 * groups + 1], 1e-4f / 448.0f);  // all-zero group: floored scale...
  for (int64_t j = 128; j < 256; ++j) {
    EXPECT_EQ(Fp8E4M3ToFloat(q[2 * cols + j]), 0.0f);  // ...and zero outputs
  }
  EXPECT_EQ(scales[3 * groups + 2], 1e-4f / 448.0f);
  EXPECT_EQ(kFp8ActivationAmaxFloor, 1e-4f);

  // Round trip within E4M3 precision of the group's amax.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) {
      const float s = scales[r * groups + j / 128];
      const double back = static_cast<double>(Fp8E4M3ToFloat(q[r * cols + j])) * s;
      ASSERT_LE(std::fabs(back - x[r * cols + j]), 448.0 * s * 0x1p-4)
          << "at (" << r << ", " << j << ")";
    }
  }
}

TEST(RoundTripActivationsFp8Test, EqualsQuantizeThenDequantize) {
  TestRng rng(testing::kDefaultTestSeed + 5);
  // 300 x 300 crosses the OpenMP threshold; 3 x 7168 is V3's hidden size.
  for (const auto& [rows, cols] :
       {std::pair<int64_t, int64_t>{300, 300}, {3, 7168}, {1, 1}, {5, 129}}) {
    SCOPED_TRACE(ShapeName(rows, cols));
    const int64_t groups = CeilDiv(cols, 128);
    std::vector<float> x = rng.NormalFloats(static_cast<size_t>(rows * cols), 2.0);
    if (cols > 128) {
      for (int64_t j = 0; j < 128; ++j) x[j] = 0.0f;  // one all-zero group
    }
    std::vector<uint8_t> q(static_cast<size_t>(rows * cols));
    std::vector<float> scales(static_cast<size_t>(rows * groups));
    QuantizeActivationsFp8(x, rows, cols, absl::MakeSpan(q), absl::MakeSpan(scales));

    std::vector<float> round_trip = x;
    RoundTripActivationsFp8(absl::MakeSpan(round_trip), rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) {
        ASSERT_EQ(round_trip[r * cols + j],
                  Fp8E4M3ToFloat(q[r * cols + j]) * scales[r * groups + j / 128])
            << "at (" << r << ", " << j << ")";
      }
    }
    if (cols > 128) {
      for (int64_t j = 0; j < 128; ++j) ASSERT_EQ(round_trip[j], 0.0f);
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
