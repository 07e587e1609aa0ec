// Tests of RmsNormCpu against a double-precision reference of y = w ⊙ x / sqrt(mean(x²) + eps)
// (reference §3), at DeepSeek's row widths, with in-place use and with rows small enough that
// eps matters.
#include "engine/ops/norm/rms_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

std::vector<double> ReferenceRmsNorm(const std::vector<float>& x, const std::vector<float>& w,
                                     double eps, int64_t rows) {
  const int64_t dim = static_cast<int64_t>(w.size());
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean_sq = 0.0;
    for (int64_t i = 0; i < dim; ++i)
      mean_sq += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    mean_sq /= static_cast<double>(dim);
    const double inv_rms = 1.0 / std::sqrt(mean_sq + eps);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = w[i] * (x[r * dim + i] * inv_rms);
  }
  return y;
}

struct Case {
  int64_t rows;
  int64_t dim;
  double x_stddev;  // small values make eps significant
  float eps;
};

TEST(RmsNormCpuTest, MatchesDoubleReference) {
  TestRng rng;
  // 7168: V3 hidden; 2048: V2-Lite hidden; 1536 and 512: q_a / kv_a latents; 576 and 1 odd.
  const Case cases[] = {
      {37, 2048, 1.0, 1e-6f}, {5, 576, 1.0, 1e-6f},   {3, 7168, 1.0, 1e-6f},
      {4, 1536, 30.0, 1e-5f}, {9, 512, 1e-3, 1e-6f},  {2, 64, 1e-3, 1e-5f},
      {1, 1, 1.0, 1e-6f},     {40, 1024, 1.0, 1e-6f},  // 40·1024 crosses the OpenMP threshold
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("rows=" + std::to_string(c.rows) + " dim=" + std::to_string(c.dim) +
                 " x_stddev=" + std::to_string(c.x_stddev) + " eps=" + std::to_string(c.eps));
    const std::vector<float> x = rng.NormalFloats(static_cast<size_t>(c.rows * c.dim), c.x_stddev);
    const std::vector<float> w = rng.UniformFloats(static_cast<size_t>(c.dim), 0.5, 1.5);
    std::vector<float> y(x.size());
    RmsNormCpu(x, w, c.eps, c.rows, absl::MakeSpan(y));
    EXPECT_TRUE(MaxRelErrorAtMost(y, ReferenceRmsNorm(x, w, c.eps, c.rows), 1e-6));
  }
}

TEST(RmsNormCpuTest, InPlaceEqualsOutOfPlace) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  const int64_t rows = 6;
  const int64_t dim = 512;
  const std::vector<float> x = rng.NormalFloats(static_cast<size_t>(rows * dim));
  const std::vector<float> w = rng.UniformFloats(static_cast<size_t>(dim), -2.0, 2.0);
  std::vector<float> y(x.size());
  RmsNormCpu(x, w, 1e-6f, rows, absl::MakeSpan(y));
  std::vector<float> in_place = x;
  RmsNormCpu(in_place, w, 1e-6f, rows, absl::MakeSpan(in_place));
  EXPECT_EQ(in_place, y);
}

TEST(RmsNormCpuTest, RowsAreNormalisedIndependently) {
  // Scaling one row must not change any other row's output.
  TestRng rng(testing::kDefaultTestSeed + 2);
  const int64_t rows = 4;
  const int64_t dim = 96;
  std::vector<float> x = rng.NormalFloats(static_cast<size_t>(rows * dim));
  const std::vector<float> w = rng.UniformFloats(static_cast<size_t>(dim), 0.5, 1.5);
  std::vector<float> before(x.size());
  RmsNormCpu(x, w, 1e-6f, rows, absl::MakeSpan(before));
  for (int64_t i = 0; i < dim; ++i) x[2 * dim + i] *= 1000.0f;
  std::vector<float> after(x.size());
  RmsNormCpu(x, w, 1e-6f, rows, absl::MakeSpan(after));
  for (int64_t r : {0, 1, 3}) {
    for (int64_t i = 0; i < dim; ++i) ASSERT_EQ(after[r * dim + i], before[r * dim + i]);
  }
  // And the scaled row's output is (nearly) scale invariant, since eps is negligible here.
  for (int64_t i = 0; i < dim; ++i) {
    EXPECT_NEAR(after[2 * dim + i], before[2 * dim + i], 1e-5);
  }
}

}  // namespace
}  // namespace moeserve::engine
