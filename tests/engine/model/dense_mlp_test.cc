// MlpForward with gate_proj and up_proj held apart (an FP8 width that is not a multiple of 128,
// MlpWeights) against the same MLP stacked and dequantized to fp32.
#include "engine/model/dense_mlp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/model/linear.h"
#include "engine/ops/linear/fp8_quant.h"
#include "tests/testing/fp8_linear.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using testing::TestRng;

LinearWeight RandomFp8(int64_t rows, int64_t cols, CpuIsa isa, TestRng& rng) {
  return testing::Fp8Linear(rng.NormalFloats(static_cast<size_t>(rows * cols), 0.1), rows, cols,
                            isa);
}

TEST(DenseMlpTest, GateAndUpHeldApartEqualTheStackedMlp) {
  constexpr int64_t kHidden = 256, kWidth = 192, kRows = 5;  // 192: not a multiple of 128
  for (CpuIsa isa : {CpuIsa::kPortable, BestCpuIsa()}) {
    SCOPED_TRACE(CpuIsaName(isa));
    TestRng rng;
    MlpWeights apart;
    apart.gate_up = RandomFp8(kWidth, kHidden, isa, rng);
    apart.up = RandomFp8(kWidth, kHidden, isa, rng);
    apart.down = RandomFp8(kHidden, kWidth, isa, rng);
    ASSERT_FALSE(CanStackRows(apart.gate_up, *apart.up));

    MlpWeights stacked;
    stacked.gate_up = StackedGateUp(apart);
    ASSERT_EQ(stacked.gate_up.format, WeightFormat::kF32);  // the fp32 fallback
    stacked.gate_up.isa = isa;
    stacked.down = apart.down;

    const std::vector<float> x = rng.NormalFloats(static_cast<size_t>(kRows * kHidden));
    std::vector<float> got(static_cast<size_t>(kRows * kHidden));
    std::vector<float> want(got.size());
    MlpForward(apart, x.data(), kRows, /*quantize_activations=*/false, got.data());
    MlpForward(stacked, x.data(), kRows, /*quantize_activations=*/false, want.data());
    for (size_t i = 0; i < got.size(); ++i) {
      // Same weights; the FP8 kernels scale x by the block scale before the dot product
      // ((x*s)*w rather than x*(w*s)), so only rounding may differ.
      ASSERT_NEAR(got[i], want[i], 1e-5f * (1.0f + std::abs(want[i]))) << i;
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
