// Tests of GemmCpu (y = x·wᵀ) against a double-precision reference over shapes that exercise
// its tails (k not a multiple of the 8 lanes, m and n not multiples of the 4x4 tile), row
// strides, accumulation, and its batch-invariance guarantee (DESIGN.md §4).
#include "engine/ops/linear/gemm.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::MaxRelErrorAtMost;
using ::moeserve::engine::testing::TestRng;

constexpr float kSentinel = -12345.0f;  // marks y's stride padding, which must stay untouched

struct Shape {
  int64_t m, n, k, ldx, ldy;
};

std::string ToString(const Shape& s) {
  return "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
         " ldx=" + std::to_string(s.ldx) + " ldy=" + std::to_string(s.ldy);
}

// y[i, j] (+)= Σ_k x[i, k] w[j, k] in double; returns the m x n result densely.
std::vector<double> ReferenceGemm(const std::vector<float>& x, const std::vector<float>& w,
                                  const std::vector<float>& y0, const Shape& s, bool accumulate) {
  std::vector<double> y(static_cast<size_t>(s.m * s.n));
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      double sum = accumulate ? y0[i * s.ldy + j] : 0.0;
      for (int64_t kk = 0; kk < s.k; ++kk) {
        sum += static_cast<double>(x[i * s.ldx + kk]) * w[j * s.k + kk];
      }
      y[i * s.n + j] = sum;
    }
  }
  return y;
}

void CheckAgainstReference(TestRng& rng, const Shape& s, bool accumulate) {
  SCOPED_TRACE(ToString(s) + (accumulate ? " accumulate" : ""));
  const std::vector<float> x = rng.UniformFloats(static_cast<size_t>(s.m * s.ldx), -1.0, 1.0);
  const std::vector<float> w = rng.UniformFloats(static_cast<size_t>(s.n * s.k), -1.0, 1.0);
  std::vector<float> y = rng.UniformFloats(static_cast<size_t>(s.m * s.ldy), -1.0, 1.0);
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = s.n; j < s.ldy; ++j) y[i * s.ldy + j] = kSentinel;
  }
  const std::vector<double> expected = ReferenceGemm(x, w, y, s, accumulate);

  GemmCpu(x.data(), s.ldx, w.data(), y.data(), s.ldy, s.m, s.n, s.k, accumulate);

  std::vector<float> dense(static_cast<size_t>(s.m * s.n));
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) dense[i * s.n + j] = y[i * s.ldy + j];
    for (int64_t j = s.n; j < s.ldy; ++j) {
      ASSERT_EQ(y[i * s.ldy + j], kSentinel) << "padding overwritten at row " << i << " col " << j;
    }
  }
  EXPECT_TRUE(MaxRelErrorAtMost(dense, expected, 1e-5));
}

TEST(GemmCpuTest, MatchesDoubleReferenceOnOddShapes) {
  TestRng rng;
  const Shape shapes[] = {
      {1, 1, 1, 1, 1},           {1, 7, 5, 5, 7},        {3, 5, 7, 7, 5},
      {4, 4, 8, 8, 4},           {5, 9, 13, 13, 9},      {6, 3, 64, 64, 3},
      {7, 130, 129, 129, 130},   {13, 37, 200, 200, 37}, {33, 66, 576, 576, 66},
      {2, 515, 1031, 1031, 515},
  };
  for (const Shape& s : shapes) CheckAgainstReference(rng, s, /*accumulate=*/false);
}

TEST(GemmCpuTest, RandomShapesWithRowStrides) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  for (int trial = 0; trial < 40; ++trial) {
    Shape s;
    s.m = rng.Int(1, 23);
    s.n = rng.Int(1, 71);
    s.k = rng.Int(1, 300);
    s.ldx = s.k + rng.Int(0, 9);
    s.ldy = s.n + rng.Int(0, 9);
    CheckAgainstReference(rng, s, /*accumulate=*/trial % 2 == 1);
  }
}

TEST(GemmCpuTest, AccumulateAddsToExistingOutput) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  for (const Shape& s : {Shape{5, 6, 11, 16, 9}, Shape{17, 31, 257, 260, 40}}) {
    CheckAgainstReference(rng, s, /*accumulate=*/true);
  }
}

TEST(GemmCpuTest, LargeEnoughToRunInParallel) {
  // m·n·k well above the OpenMP threshold (2^16).
  TestRng rng(testing::kDefaultTestSeed + 3);
  CheckAgainstReference(rng, Shape{19, 203, 517, 520, 210}, /*accumulate=*/false);
  CheckAgainstReference(rng, Shape{64, 256, 512, 512, 256}, /*accumulate=*/true);
}

// Row r of an m-row product must be bit-identical to the same row computed alone: the
// reduction order may not depend on m, on the row's place in a tile, or on threading.
TEST(GemmCpuTest, BatchInvariance_RowOfBatchEqualsRowAloneBitForBit) {
  TestRng rng(testing::kDefaultTestSeed + 4);
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{67, 333}, {256, 1029}}) {
    const std::vector<float> w = rng.NormalFloats(static_cast<size_t>(n * k));
    for (const int64_t m : {1, 2, 3, 4, 5, 7, 8, 13, 33, 64}) {
      SCOPED_TRACE("m=" + std::to_string(m) + " n=" + std::to_string(n) +
                   " k=" + std::to_string(k));
      const std::vector<float> x = rng.NormalFloats(static_cast<size_t>(m * k));
      std::vector<float> batched(static_cast<size_t>(m * n));
      GemmCpu(x.data(), k, w.data(), batched.data(), n, m, n, k);
      for (int64_t r = 0; r < m; ++r) {
        std::vector<float> alone(static_cast<size_t>(n));
        GemmCpu(x.data() + r * k, k, w.data(), alone.data(), n, 1, n, k);
        ASSERT_EQ(std::memcmp(alone.data(), batched.data() + r * n, n * sizeof(float)), 0)
            << "row " << r;
      }
    }
  }
}

TEST(GemmCpuTest, BatchInvariance_HoldsWithAccumulate) {
  TestRng rng(testing::kDefaultTestSeed + 5);
  const int64_t m = 11;
  const int64_t n = 45;
  const int64_t k = 150;
  const std::vector<float> x = rng.NormalFloats(static_cast<size_t>(m * k));
  const std::vector<float> w = rng.NormalFloats(static_cast<size_t>(n * k));
  const std::vector<float> y0 = rng.NormalFloats(static_cast<size_t>(m * n));
  std::vector<float> batched = y0;
  GemmCpu(x.data(), k, w.data(), batched.data(), n, m, n, k, /*accumulate=*/true);
  for (int64_t r = 0; r < m; ++r) {
    std::vector<float> alone(y0.begin() + r * n, y0.begin() + (r + 1) * n);
    GemmCpu(x.data() + r * k, k, w.data(), alone.data(), n, 1, n, k, /*accumulate=*/true);
    ASSERT_EQ(std::memcmp(alone.data(), batched.data() + r * n, n * sizeof(float)), 0)
        << "row " << r;
  }
}

TEST(GemmCpuTest, EmptyShapesLeaveOutputAlone) {
  std::vector<float> y = {kSentinel, kSentinel};
  const std::vector<float> x = {1.0f, 2.0f};
  GemmCpu(x.data(), 2, x.data(), y.data(), 2, 0, 2, 2);
  GemmCpu(x.data(), 2, x.data(), y.data(), 2, 1, 0, 2);
  EXPECT_EQ(y[0], kSentinel);
  EXPECT_EQ(y[1], kSentinel);
}

}  // namespace
}  // namespace moeserve::engine
