// Tests of SiluMulCpu: out = silu(gate) · up over the fused [gate | up] layout, against a
// double-precision reference, including large-magnitude gates.
#include "engine/ops/activation/silu_mul.h"

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

std::vector<double> ReferenceSiluMul(const std::vector<float>& gate_up, int64_t tokens,
                                     int64_t width) {
  std::vector<double> out(static_cast<size_t>(tokens * width));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < width; ++i) {
      const double g = gate_up[t * 2 * width + i];
      const double u = gate_up[t * 2 * width + width + i];
      out[t * width + i] = g / (1.0 + std::exp(-g)) * u;
    }
  }
  return out;
}

TEST(SiluMulCpuTest, MatchesDoubleReference) {
  TestRng rng;
  // 18432 / 2048 / 1408 / 10944: V3 dense and expert, V2-Lite expert and dense widths.
  for (const auto& [tokens, width] :
       {std::pair<int64_t, int64_t>{3, 18432}, {7, 2048}, {5, 1408}, {2, 10944}, {1, 1}, {33, 3}}) {
    SCOPED_TRACE("tokens=" + std::to_string(tokens) + " width=" + std::to_string(width));
    const std::vector<float> gate_up =
        rng.NormalFloats(static_cast<size_t>(tokens * 2 * width), 3.0);
    std::vector<float> out(static_cast<size_t>(tokens * width));
    SiluMulCpu(gate_up.data(), tokens, width, out.data());
    EXPECT_TRUE(MaxRelErrorAtMost(out, ReferenceSiluMul(gate_up, tokens, width), 1e-6));
    // Element-wise too: silu is smooth, so each output is within a few ulps of its reference.
    const std::vector<double> ref = ReferenceSiluMul(gate_up, tokens, width);
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], ref[i], 1e-6 * std::fabs(ref[i]) + 1e-30) << "element " << i;
    }
  }
}

TEST(SiluMulCpuTest, ExtremeGatesStayFinite) {
  // silu(z) → z for large z and → 0 (from below) for very negative z; no inf/NaN on the way.
  const std::vector<float> gate_up = {100.0f, -100.0f, -1000.0f, 1e4f,  0.5f,   // gates
                                      2.0f,   3.0f,    4.0f,     -1.0f, 1.0f};  // ups
  std::vector<float> out(5);
  SiluMulCpu(gate_up.data(), 1, 5, out.data());
  const std::vector<double> ref = ReferenceSiluMul(gate_up, 1, 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(std::isfinite(out[i])) << i;
    EXPECT_NEAR(out[i], ref[i], 1e-6 * std::fabs(ref[i]) + 1e-30) << i;
  }
}

}  // namespace
}  // namespace moeserve::engine
