// Tests of the RoPE frequency tables (plain and YaRN, reference §3.2) against a double
// reference of the published formula, and of ApplyRopeInterleavedCpu against a direct
// reference of the interleaved-pair rotation: strides, heads, the neox-pairing trap, and the
// relative-position property that attention relies on.
#include "engine/ops/rope/rope.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

// DeepSeek-V3 rope_scaling (config.json): yarn, factor 40, original 4096, betas 32 / 1.
YarnParams V3Yarn() {
  YarnParams y;
  y.factor = 40.0;
  y.original_max_position_embeddings = 4096;
  y.beta_fast = 32.0;
  y.beta_slow = 1.0;
  y.mscale = 1.0;
  y.mscale_all_dim = 1.0;
  return y;
}

// inv_freq from reference §3.2, all in double.
std::vector<double> ReferenceInvFreq(int64_t dim, double base, const std::optional<YarnParams>& y) {
  std::vector<double> inv(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) inv[i] = std::pow(base, -2.0 * i / dim);
  if (!y || y->factor <= 1.0) return inv;
  const auto corr = [&](double n) {
    return dim * std::log(y->original_max_position_embeddings / (2 * std::numbers::pi * n)) /
           (2 * std::log(base));
  };
  const double low = std::max(std::floor(corr(y->beta_fast)), 0.0);
  double high = std::min(std::ceil(corr(y->beta_slow)), static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    inv[i] = inv[i] / y->factor * ramp + inv[i] * (1 - ramp);
  }
  return inv;
}

TEST(MakeRopeTableTest, DeepSeekV3Yarn) {
  const RopeTable table = MakeRopeTable(64, 10000.0, V3Yarn());
  ASSERT_EQ(table.inv_freq.size(), 32u);
  EXPECT_EQ(table.rotary_dim(), 64);
  EXPECT_EQ(table.inv_freq[0], 1.0f);
  for (int i = 0; i <= 10; ++i) {  // below the ramp (low = 10): unscaled
    EXPECT_NEAR(table.inv_freq[i], std::pow(10000.0, -2.0 * i / 64), 1e-6 * table.inv_freq[i]) << i;
  }
  for (int i = 23; i < 32; ++i) {  // above the ramp (high = 23): divided by the factor
    EXPECT_NEAR(table.inv_freq[i], std::pow(10000.0, -2.0 * i / 64) / 40, 1e-6 * table.inv_freq[i])
        << i;
  }
  EXPECT_NEAR(table.inv_freq[31], 3.33e-6, 0.01e-6);
  // The whole table, ramp included, against the double formula.
  EXPECT_TRUE(MaxRelErrorAtMost(table.inv_freq, ReferenceInvFreq(64, 10000.0, V3Yarn()), 1e-6));
  for (int i = 11; i < 23; ++i) {  // inside the ramp: strictly between the two ends
    const double plain = std::pow(10000.0, -2.0 * i / 64);
    EXPECT_LT(table.inv_freq[i], plain * (1 - 1e-6)) << i;
    EXPECT_GT(table.inv_freq[i], plain / 40 * (1 + 1e-6)) << i;
  }
  EXPECT_EQ(table.attention_scaling, 1.0f);
}

TEST(MakeRopeTableTest, OtherYarnConfigsMatchFormula) {
  // Kimi K2 (factor 32, base 50000: low 19, high 20) and V2-Lite (mscale 0.707 both).
  YarnParams k2 = V3Yarn();
  k2.factor = 32.0;
  const RopeTable k2_table = MakeRopeTable(64, 50000.0, k2);
  EXPECT_TRUE(MaxRelErrorAtMost(k2_table.inv_freq, ReferenceInvFreq(64, 50000.0, k2), 1e-6));
  EXPECT_EQ(k2_table.attention_scaling, 1.0f);

  YarnParams v2 = V3Yarn();
  v2.mscale = 0.707;
  v2.mscale_all_dim = 0.707;
  const RopeTable v2_table = MakeRopeTable(64, 10000.0, v2);
  EXPECT_TRUE(MaxRelErrorAtMost(v2_table.inv_freq, ReferenceInvFreq(64, 10000.0, v2), 1e-6));
  EXPECT_FLOAT_EQ(v2_table.attention_scaling, 1.0f);
}

TEST(MakeRopeTableTest, AttentionScalingIsRatioOfMscales) {
  YarnParams y = V3Yarn();
  y.mscale = 1.0;
  y.mscale_all_dim = 0.0;  // m(40, 0) = 1
  const RopeTable table = MakeRopeTable(64, 10000.0, y);
  EXPECT_NEAR(table.attention_scaling, 0.1 * std::log(40.0) + 1.0, 1e-6);
  EXPECT_NEAR(YarnMscale(40.0, 1.0), 1.368888, 1e-6);
  EXPECT_EQ(YarnMscale(1.0, 1.0), 1.0);
  EXPECT_EQ(YarnMscale(0.5, 0.707), 1.0);
}

TEST(MakeRopeTableTest, WithoutYarnIsPlainInverseFrequencies) {
  for (const std::optional<YarnParams>& yarn :
       {std::optional<YarnParams>(), std::optional<YarnParams>(YarnParams())}) {
    // YarnParams() has factor 1: no scaling either.
    const RopeTable table = MakeRopeTable(64, 10000.0, yarn);
    ASSERT_EQ(table.inv_freq.size(), 32u);
    for (int i = 0; i < 32; ++i) {
      EXPECT_NEAR(table.inv_freq[i], std::pow(10000.0, -2.0 * i / 64), 1e-6 * table.inv_freq[i])
          << i;
    }
    EXPECT_EQ(table.attention_scaling, 1.0f);
  }
  const RopeTable small = MakeRopeTable(8, 500.0, std::nullopt);
  EXPECT_TRUE(MaxRelErrorAtMost(small.inv_freq, ReferenceInvFreq(8, 500.0, std::nullopt), 1e-6));
}

// Direct reference of reference §3.2: y[2i] = x[2i]cos − x[2i+1]sin, y[2i+1] = x[2i]sin +
// x[2i+1]cos, angle p·θ_i computed in fp32 (as the reference prescribes), cos/sin in double.
void ReferenceRopeInterleaved(const RopeTable& t, int32_t position, const float* x, double* y) {
  for (size_t i = 0; i < t.inv_freq.size(); ++i) {
    const double angle = static_cast<float>(position) * t.inv_freq[i];  // fp32 product
    const double c = std::cos(angle) * t.attention_scaling;
    const double s = std::sin(angle) * t.attention_scaling;
    y[2 * i] = x[2 * i] * c - x[2 * i + 1] * s;
    y[2 * i + 1] = x[2 * i] * s + x[2 * i + 1] * c;
  }
}

// The neox pairing (i, i + d/2) that the checkpoint layout must NOT be rotated with.
void ReferenceRopeNeox(const RopeTable& t, int32_t position, const float* x, double* y) {
  const size_t half = t.inv_freq.size();
  for (size_t i = 0; i < half; ++i) {
    const double angle = static_cast<float>(position) * t.inv_freq[i];
    y[i] = x[i] * std::cos(angle) - x[i + half] * std::sin(angle);
    y[i + half] = x[i] * std::sin(angle) + x[i + half] * std::cos(angle);
  }
}

struct Layout {
  int64_t num_tokens, num_heads, token_stride, head_stride;
  int64_t base_offset;  // where the first vector starts in the buffer
};

TEST(ApplyRopeInterleavedCpuTest, MatchesDirectReferenceAcrossHeadsAndStrides) {
  TestRng rng;
  YarnParams scaled = V3Yarn();
  scaled.mscale_all_dim = 0.0;  // attention_scaling ≠ 1 so the multiplier is checked too
  const RopeTable tables[] = {MakeRopeTable(64, 10000.0, V3Yarn()),
                              MakeRopeTable(64, 10000.0, scaled),
                              MakeRopeTable(16, 10000.0, std::nullopt)};
  // q_pe: 192-float heads with the rope part at offset 128; k_pe: one 64-vector per 576-float
  // latent at offset 512;
  // plus packed and padded layouts; 40 x 16 crosses the OpenMP threshold.
  const Layout layouts[] = {{5, 4, 4 * 192, 192, 128},
                            {7, 1, 576, 0, 512},
                            {3, 3, 200, 64, 0},
                            {1, 1, 64, 64, 0},
                            {40, 16, 16 * 70, 70, 3}};
  for (const RopeTable& table : tables) {
    const int64_t dim = table.rotary_dim();
    for (const Layout& l : layouts) {
      if (l.head_stride != 0 && l.head_stride < dim) continue;
      SCOPED_TRACE("dim=" + std::to_string(dim) + " tokens=" + std::to_string(l.num_tokens) +
                   " heads=" + std::to_string(l.num_heads) +
                   " token_stride=" + std::to_string(l.token_stride) +
                   " head_stride=" + std::to_string(l.head_stride) +
                   " scaling=" + std::to_string(table.attention_scaling));
      const int64_t size = l.base_offset + (l.num_tokens - 1) * l.token_stride +
                           (l.num_heads - 1) * l.head_stride + dim + 5;  // +5: trailing floats
      std::vector<float> x = rng.NormalFloats(static_cast<size_t>(size));
      std::vector<int32_t> positions(static_cast<size_t>(l.num_tokens));
      for (int32_t& p : positions) p = static_cast<int32_t>(rng.Int(0, 163839));  // V3 max ctx
      positions[0] = 0;

      // Expected: every rotated element per the formula, every other element untouched.
      std::vector<double> expected(x.begin(), x.end());
      for (int64_t t = 0; t < l.num_tokens; ++t) {
        for (int64_t h = 0; h < l.num_heads; ++h) {
          const int64_t offset = l.base_offset + t * l.token_stride + h * l.head_stride;
          ReferenceRopeInterleaved(table, positions[t], x.data() + offset,
                                   expected.data() + offset);
        }
      }
      const std::vector<float> before = x;
      ApplyRopeInterleavedCpu(table, positions.data(), l.num_tokens, l.num_heads, l.token_stride,
                              l.head_stride, x.data() + l.base_offset);
      EXPECT_TRUE(MaxRelErrorAtMost(x, expected, 2e-6));
      // Position 0 (token 0) is the identity times attention_scaling.
      for (int64_t d = 0; d < dim; ++d) {
        EXPECT_FLOAT_EQ(x[l.base_offset + d], before[l.base_offset + d] * table.attention_scaling);
      }
    }
  }
}

TEST(ApplyRopeInterleavedCpuTest, PairsAdjacentChannelsNotNeoxHalves) {
  const RopeTable table = MakeRopeTable(64, 10000.0, V3Yarn());
  const int32_t position = 3;
  // A unit vector on channel 0: interleaved rotation moves it into channel 1; neox would move
  // it into channel 32.
  std::vector<float> e0(64, 0.0f);
  e0[0] = 1.0f;
  ApplyRopeInterleavedCpu(table, &position, 1, 1, 64, 64, e0.data());
  EXPECT_NEAR(e0[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(e0[1], std::sin(3.0), 1e-6);
  EXPECT_EQ(e0[32], 0.0f);

  // On random data the two pairings give clearly different results; the op matches only the
  // interleaved one.
  TestRng rng;
  const std::vector<float> x = rng.NormalFloats(64);
  std::vector<double> interleaved(64);
  std::vector<double> neox(64);
  ReferenceRopeInterleaved(table, position, x.data(), interleaved.data());
  ReferenceRopeNeox(table, position, x.data(), neox.data());
  std::vector<float> y = x;
  ApplyRopeInterleavedCpu(table, &position, 1, 1, 64, 64, y.data());
  EXPECT_TRUE(MaxRelErrorAtMost(y, interleaved, 1e-6));
  EXPECT_GT(testing::CompareTensors(y, neox).max_rel, 0.1);
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0.0;
  for (size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * b[i];
  return sum;
}

// <rope(q, p1), rope(k, p2)> depends on p1 − p2 only: the property MLA's decoupled rope part
// relies on (attention_scaling = 1 here, as in every published config).
TEST(ApplyRopeInterleavedCpuTest, ScoresDependOnlyOnRelativePosition) {
  TestRng rng;
  const RopeTable table = MakeRopeTable(64, 10000.0, V3Yarn());
  const auto rotated_dot = [&](const std::vector<float>& q, const std::vector<float>& k, int32_t pq,
                               int32_t pk) {
    std::vector<float> qr = q;
    std::vector<float> kr = k;
    ApplyRopeInterleavedCpu(table, &pq, 1, 1, 64, 64, qr.data());
    ApplyRopeInterleavedCpu(table, &pk, 1, 1, 64, 64, kr.data());
    return Dot(qr, kr);
  };
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<float> q = rng.NormalFloats(64);
    const std::vector<float> k = rng.NormalFloats(64);
    const double norm = std::sqrt(Dot(q, q) * Dot(k, k));
    const int32_t p1 = static_cast<int32_t>(rng.Int(0, 500));
    const int32_t p2 = static_cast<int32_t>(rng.Int(0, 500));
    const double base = rotated_dot(q, k, p1, p2);
    for (int32_t shift : {1, 7, 100, 1000}) {
      EXPECT_NEAR(rotated_dot(q, k, p1 + shift, p2 + shift), base, 1e-4 * norm)
          << "p1=" << p1 << " p2=" << p2 << " shift=" << shift;
    }
    // Not a vacuous property: changing the distance changes the score.
    double largest_change = 0.0;
    for (int32_t d : {1, 2, 3, 5, 8}) {
      largest_change = std::max(largest_change, std::fabs(rotated_dot(q, k, p1 + d, p2) - base));
    }
    EXPECT_GT(largest_change, 1e-2 * norm) << "p1=" << p1 << " p2=" << p2;
  }
}

}  // namespace
}  // namespace moeserve::engine
