// SplitAbsorbedWeights against a plain fp32 split of the dequantized kv_b_proj: every format
// keeps its values exactly, FP8 keeps one byte a weight when its head dimensions allow, and
// HeadRows views each head's rows with the right scales.
#include "engine/model/mla_absorbed_weights.h"

#include <gtest/gtest.h>

#include <vector>

#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/weight_gemm.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using testing::TestRng;

struct Dims {
  int64_t heads, nope, v, rank;
};

LinearWeight MakeKvB(const Dims& d, WeightFormat format, TestRng& rng) {
  LinearWeight w;
  w.out_features = d.heads * (d.nope + d.v);
  w.in_features = d.rank;
  w.format = format;
  const std::vector<float> values =
      rng.NormalFloats(static_cast<size_t>(w.out_features * w.in_features), 0.5);
  switch (format) {
    case WeightFormat::kF32:
      w.weight = values;
      break;
    case WeightFormat::kBf16:
      w.weight_bf16 = FloatsToBf16(values);
      break;
    case WeightFormat::kFp8Block128: {
      Fp8BlockWeight q = QuantizeFp8BlockWeight(values, w.out_features, w.in_features);
      w.weight_fp8 = std::move(q.fp8);
      w.scale_inv = std::move(q.scale_inv);
      w.fp8 = true;
      break;
    }
  }
  return w;
}

// W_UK[h]ᵀ and W_UV[h] of the fp32 values kv_b stands for, computed the obvious way.
void ExpectSplitMatches(const Dims& d, const MlaWeights& mla) {
  const std::vector<float> kv_b = DequantizeLinear(mla.kv_b_proj);
  const std::vector<float> uk_t = DequantizeLinear(mla.w_uk_t);
  const std::vector<float> uv = DequantizeLinear(mla.w_uv);
  ASSERT_EQ(mla.w_uk_t.out_features, d.heads * d.rank);
  ASSERT_EQ(mla.w_uk_t.in_features, d.nope);
  ASSERT_EQ(mla.w_uv.out_features, d.heads * d.v);
  ASSERT_EQ(mla.w_uv.in_features, d.rank);
  for (int64_t h = 0; h < d.heads; ++h) {
    for (int64_t r = 0; r < d.rank; ++r) {
      for (int64_t i = 0; i < d.nope; ++i) {
        ASSERT_EQ(uk_t[(h * d.rank + r) * d.nope + i], kv_b[(h * (d.nope + d.v) + i) * d.rank + r])
            << "W_UK head " << h;
      }
      for (int64_t j = 0; j < d.v; ++j) {
        ASSERT_EQ(uv[(h * d.v + j) * d.rank + r],
                  kv_b[(h * (d.nope + d.v) + d.nope + j) * d.rank + r])
            << "W_UV head " << h;
      }
    }
  }
}

TEST(MlaAbsorbedWeightsTest, EveryFormatKeepsItsValuesAndItsFormat) {
  const Dims d{.heads = 3, .nope = 128, .v = 128, .rank = 256};
  for (WeightFormat format :
       {WeightFormat::kF32, WeightFormat::kBf16, WeightFormat::kFp8Block128}) {
    SCOPED_TRACE(WeightFormatName(format));
    TestRng rng;
    MlaWeights mla;
    mla.kv_b_proj = MakeKvB(d, format, rng);
    SplitAbsorbedWeights(d.heads, d.nope, d.v, d.rank, mla);
    EXPECT_EQ(mla.w_uk_t.format, format);
    EXPECT_EQ(mla.w_uv.format, format);
    // No copy beyond kv_b_proj's own bytes.
    EXPECT_EQ(mla.w_uk_t.size_bytes() + mla.w_uv.size_bytes(), mla.kv_b_proj.size_bytes());
    ExpectSplitMatches(d, mla);
  }
}

TEST(MlaAbsorbedWeightsTest, Fp8HeadsSplittingAScaleBlockFallBackToFp32) {
  const Dims d{.heads = 2, .nope = 32, .v = 16, .rank = 64};
  EXPECT_FALSE(AbsorbedKeepsFormat(WeightFormat::kFp8Block128, d.nope, d.v, d.rank));
  TestRng rng;
  MlaWeights mla;
  mla.kv_b_proj = MakeKvB(d, WeightFormat::kFp8Block128, rng);
  SplitAbsorbedWeights(d.heads, d.nope, d.v, d.rank, mla);
  EXPECT_EQ(mla.w_uk_t.format, WeightFormat::kF32);
  EXPECT_EQ(mla.w_uv.format, WeightFormat::kF32);
  ExpectSplitMatches(d, mla);
}

// A GEMM through HeadRows(h) equals one on head h's rows of the dequantized matrix.
TEST(MlaAbsorbedWeightsTest, HeadRowsViewsOneHeadWithItsScales) {
  const Dims d{.heads = 3, .nope = 128, .v = 128, .rank = 256};
  TestRng rng;
  MlaWeights mla;
  mla.kv_b_proj = MakeKvB(d, WeightFormat::kFp8Block128, rng);
  SplitAbsorbedWeights(d.heads, d.nope, d.v, d.rank, mla);
  const std::vector<float> uv = DequantizeLinear(mla.w_uv);
  const std::vector<float> x = rng.NormalFloats(static_cast<size_t>(d.rank));
  for (int64_t h = 0; h < d.heads; ++h) {
    std::vector<float> got(static_cast<size_t>(d.v)), want(got.size());
    WeightGemmCpu(x.data(), d.rank, HeadRows(mla.w_uv, h, d.v), got.data(), d.v, 1, false,
                  CpuIsa::kPortable);
    const WeightMatrixView dense{WeightFormat::kF32, uv.data() + h * d.v * d.rank, nullptr, d.v,
                                 d.rank};
    WeightGemmCpu(x.data(), d.rank, dense, want.data(), d.v, 1, false, CpuIsa::kPortable);
    EXPECT_EQ(got, want) << "head " << h;
  }
}

}  // namespace
}  // namespace moeserve::engine
