// MoeForward on random FP8 experts (tiny-v3's shape: 16 experts, top 4, one shared expert):
// a token alone takes the across-experts path (whole experts on different threads) and 40
// tokens at once the split-GEMM path; each token's output must be bit-identical on both (batch
// invariance), and both must match a plain double-precision sum of the routed and shared
// experts' SwiGLU outputs with the same routing.
#include "engine/model/moe_layer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/model/dense_mlp.h"
#include "engine/ops/moe/moe_route.h"
#include "tests/testing/fp8_linear.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using testing::TestRng;

constexpr int64_t kHidden = 256, kWidth = 128, kExperts = 16, kTopK = 4, kTokens = 40;

LinearWeight RandomFp8(int64_t rows, int64_t cols, TestRng& rng) {
  const double a = std::sqrt(3.0 / static_cast<double>(cols));
  return testing::Fp8Linear(rng.UniformFloats(static_cast<size_t>(rows * cols), -a, a), rows, cols,
                            BestCpuIsa());
}

MlpWeights RandomMlp(TestRng& rng) {
  MlpWeights mlp;
  mlp.gate_up = RandomFp8(2 * kWidth, kHidden, rng);
  mlp.down = RandomFp8(kHidden, kWidth, rng);
  return mlp;
}

TEST(MoeForwardTest, AloneEqualsBatchedBitForBitAndMatchesAPlainSum) {
  TestRng rng;
  ModelConfig config;
  config.hidden_size = kHidden;
  config.moe_intermediate_size = kWidth;
  config.n_routed_experts = kExperts;
  config.n_shared_experts = 1;
  config.num_experts_per_tok = kTopK;
  config.n_group = 4;
  config.topk_group = 2;
  config.topk_method = TopkMethod::kNoauxTc;
  config.scoring_func = ScoringFunc::kSigmoid;
  config.norm_topk_prob = true;
  config.routed_scaling_factor = 2.5;
  MoeWeights moe;
  moe.router = rng.NormalFloats(static_cast<size_t>(kExperts * kHidden), 1.0 / 16);
  moe.correction_bias = rng.NormalFloats(static_cast<size_t>(kExperts), 0.1);
  for (int64_t e = 0; e < kExperts; ++e) moe.experts.push_back(RandomMlp(rng));
  moe.shared = RandomMlp(rng);
  const std::vector<float> x = rng.NormalFloats(static_cast<size_t>(kTokens * kHidden));

  std::vector<float> batched(x.size());
  MoeForward(config, moe, x.data(), kTokens, /*quantize_activations=*/true, batched.data());
  std::vector<float> alone(static_cast<size_t>(kHidden));
  for (int64_t t = 0; t < kTokens; ++t) {
    MoeForward(config, moe, x.data() + t * kHidden, 1, true, alone.data());
    ASSERT_EQ(std::memcmp(alone.data(), batched.data() + t * kHidden, kHidden * sizeof(float)), 0)
        << "token " << t;
  }

  // The plain sum: each (token, expert) through MlpForward alone, accumulated in double.
  std::vector<float> logits(static_cast<size_t>(kTokens * kExperts));
  for (int64_t t = 0; t < kTokens; ++t) {
    for (int64_t e = 0; e < kExperts; ++e) {
      double dot = 0.0;
      for (int64_t d = 0; d < kHidden; ++d) {
        dot += static_cast<double>(x[t * kHidden + d]) * moe.router[e * kHidden + d];
      }
      logits[t * kExperts + e] = static_cast<float>(dot);
    }
  }
  std::vector<int32_t> ids(static_cast<size_t>(kTokens * kTopK));
  std::vector<float> weights(ids.size());
  RouteCpu(MakeRoutingParams(config, moe), logits.data(), kTokens, ids.data(), weights.data());
  std::vector<float> y(static_cast<size_t>(kHidden));
  double max_error = 0.0, max_value = 0.0;
  for (int64_t t = 0; t < kTokens; ++t) {
    std::vector<double> want(static_cast<size_t>(kHidden), 0.0);
    for (int64_t i = 0; i < kTopK; ++i) {
      MlpForward(moe.experts[ids[t * kTopK + i]], x.data() + t * kHidden, 1, true, y.data());
      for (int64_t d = 0; d < kHidden; ++d) want[d] += weights[t * kTopK + i] * double{y[d]};
    }
    MlpForward(*moe.shared, x.data() + t * kHidden, 1, true, y.data());
    for (int64_t d = 0; d < kHidden; ++d) {
      want[d] += y[d];
      max_error = std::max(max_error, std::abs(want[d] - batched[t * kHidden + d]));
      max_value = std::max(max_value, std::abs(want[d]));
    }
  }
  EXPECT_LT(max_error / max_value, 1e-5);
}

}  // namespace
}  // namespace moeserve::engine
