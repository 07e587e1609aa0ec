// Tests of RouteCpu against a naive router written here for each rule of reference §3.3
// (softmax greedy, group-limited greedy, sigmoid noaux_tc with correction bias), at the
// published DeepSeek shapes, plus constructed cases: group masking changing the choice, the
// bias changing the choice but not the weights, masked groups never chosen, ties to the lower
// index.
#include "engine/ops/moe/moe_route.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::TestRng;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

struct Routed {
  std::vector<int32_t> ids;       // descending selection score, ties to the lower index
  std::vector<double> weights;    // aligned with ids
  std::vector<double> selection;  // per expert, after bias and group masking
  std::vector<bool> group_kept;
};

// Indices sorted by descending value, ties to the lower index (a full stable sort, unlike the
// op's partial sort).
std::vector<int32_t> RankDescending(const std::vector<double>& values) {
  std::vector<int32_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return values[a] > values[b]; });
  return order;
}

// One token, in double, straight from reference §3.3.
Routed ReferenceRoute(const RoutingParams& p, const float* logits) {
  const int64_t n = p.num_experts;
  std::vector<double> scores(static_cast<size_t>(n));
  if (p.rule == RoutingRule::kSigmoidNoauxTc) {
    for (int64_t e = 0; e < n; ++e) scores[e] = 1.0 / (1.0 + std::exp(-double{logits[e]}));
  } else {
    const double max_logit = *std::max_element(logits, logits + n);
    double sum = 0.0;
    for (int64_t e = 0; e < n; ++e) sum += std::exp(logits[e] - max_logit);
    for (int64_t e = 0; e < n; ++e) scores[e] = std::exp(logits[e] - max_logit) / sum;
  }
  Routed r;
  r.selection = scores;
  if (p.correction_bias != nullptr) {
    for (int64_t e = 0; e < n; ++e) r.selection[e] += p.correction_bias[e];
  }
  r.group_kept.assign(static_cast<size_t>(p.num_groups), true);
  if (p.rule != RoutingRule::kSoftmaxGreedy && p.num_groups > 1) {
    const int64_t size = n / p.num_groups;
    std::vector<double> group_score(static_cast<size_t>(p.num_groups));
    for (int64_t g = 0; g < p.num_groups; ++g) {
      std::vector<double> members(r.selection.begin() + g * size,
                                  r.selection.begin() + (g + 1) * size);
      std::sort(members.begin(), members.end(), std::greater<>());
      group_score[g] =
          p.rule == RoutingRule::kSigmoidNoauxTc ? members[0] + members[1] : members[0];
    }
    const std::vector<int32_t> group_rank = RankDescending(group_score);
    r.group_kept.assign(static_cast<size_t>(p.num_groups), false);
    for (int64_t i = 0; i < p.topk_groups; ++i) r.group_kept[group_rank[i]] = true;
    for (int64_t e = 0; e < n; ++e) {
      if (!r.group_kept[e / size]) r.selection[e] = kNegInf;
    }
  }
  const std::vector<int32_t> rank = RankDescending(r.selection);
  r.ids.assign(rank.begin(), rank.begin() + p.top_k);
  double sum = 0.0;
  for (int32_t e : r.ids) {
    r.weights.push_back(scores[e]);
    sum += scores[e];
  }
  for (double& w : r.weights) {
    if (p.renormalize) w /= sum + 1e-20;
    w *= p.scaling;
  }
  return r;
}

struct RouteOutput {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

RouteOutput Route(const RoutingParams& p, const std::vector<float>& logits) {
  const int64_t tokens = static_cast<int64_t>(logits.size()) / p.num_experts;
  RouteOutput out;
  out.ids.assign(static_cast<size_t>(tokens * p.top_k), -1);
  out.weights.assign(static_cast<size_t>(tokens * p.top_k), std::nanf(""));
  RouteCpu(p, logits.data(), tokens, out.ids.data(), out.weights.data());
  return out;
}

// Same expert set as the reference, listed in descending selection score (ties by index), and
// each expert's weight within 1e-6 (relative to max(1, |weight|)) of the reference's.
void ExpectMatchesReference(const RoutingParams& p, const std::vector<float>& logits) {
  const int64_t tokens = static_cast<int64_t>(logits.size()) / p.num_experts;
  const RouteOutput out = Route(p, logits);
  for (int64_t t = 0; t < tokens; ++t) {
    SCOPED_TRACE("token " + std::to_string(t));
    const Routed ref = ReferenceRoute(p, logits.data() + t * p.num_experts);
    const int32_t* ids = out.ids.data() + t * p.top_k;
    const float* weights = out.weights.data() + t * p.top_k;
    const std::set<int32_t> got(ids, ids + p.top_k);
    const std::set<int32_t> want(ref.ids.begin(), ref.ids.end());
    ASSERT_EQ(got, want);
    ASSERT_EQ(got.size(), static_cast<size_t>(p.top_k)) << "duplicate expert";
    for (int64_t i = 0; i < p.top_k; ++i) {
      if (i + 1 < p.top_k) {
        const double a = ref.selection[ids[i]];
        const double b = ref.selection[ids[i + 1]];
        EXPECT_TRUE(a > b || (a == b && ids[i] < ids[i + 1]))
            << "order at " << i << ": expert " << ids[i] << " then " << ids[i + 1];
      }
      const int64_t j = std::find(ref.ids.begin(), ref.ids.end(), ids[i]) - ref.ids.begin();
      EXPECT_NEAR(weights[i], ref.weights[j], 1e-6 * std::max(1.0, std::fabs(ref.weights[j])))
          << "expert " << ids[i];
    }
  }
}

std::vector<float> RandomBias(TestRng& rng, int64_t n) {
  return rng.UniformFloats(static_cast<size_t>(n), -0.3, 0.3);
}

// ---------- Published configurations vs the reference.

TEST(RouteCpuTest, SoftmaxGreedyV2Lite) {
  TestRng rng;
  RoutingParams p;  // V2-Lite: 64 experts, top 6, no renormalisation, scaling 1
  p.rule = RoutingRule::kSoftmaxGreedy;
  p.num_experts = 64;
  p.top_k = 6;
  ExpectMatchesReference(p, rng.NormalFloats(100 * 64, 2.0));
  p.renormalize = true;  // and the renormalised variant
  p.scaling = 1.5f;
  ExpectMatchesReference(p, rng.NormalFloats(100 * 64, 2.0));
}

TEST(RouteCpuTest, SoftmaxGroupLimitedV2) {
  TestRng rng(testing::kDefaultTestSeed + 1);
  RoutingParams p;  // V2: 160 experts in 8 groups, keep 3, top 6, scaling 16
  p.rule = RoutingRule::kSoftmaxGroupLimited;
  p.num_experts = 160;
  p.top_k = 6;
  p.num_groups = 8;
  p.topk_groups = 3;
  p.scaling = 16.0f;
  ExpectMatchesReference(p, rng.NormalFloats(100 * 160, 2.0));
}

TEST(RouteCpuTest, SigmoidNoauxTcV3) {
  TestRng rng(testing::kDefaultTestSeed + 2);
  RoutingParams p;  // V3: 256 experts in 8 groups, keep 4, top 8, renormalise, scaling 2.5
  p.rule = RoutingRule::kSigmoidNoauxTc;
  p.num_experts = 256;
  p.top_k = 8;
  p.num_groups = 8;
  p.topk_groups = 4;
  p.renormalize = true;
  p.scaling = 2.5f;
  const std::vector<float> bias = RandomBias(rng, 256);
  p.correction_bias = bias.data();
  ExpectMatchesReference(p, rng.NormalFloats(100 * 256, 1.5));
  p.correction_bias = nullptr;  // without a bias the rule is plain sigmoid group routing
  ExpectMatchesReference(p, rng.NormalFloats(20 * 256, 1.5));
}

TEST(RouteCpuTest, SigmoidNoauxTcSingleGroupK2AndMoonlight) {
  TestRng rng(testing::kDefaultTestSeed + 3);
  RoutingParams p;  // K2: 384 experts, one group, top 8, renormalise, scaling 2.827
  p.rule = RoutingRule::kSigmoidNoauxTc;
  p.num_experts = 384;
  p.top_k = 8;
  p.renormalize = true;
  p.scaling = 2.827f;
  std::vector<float> bias = RandomBias(rng, 384);
  p.correction_bias = bias.data();
  ExpectMatchesReference(p, rng.NormalFloats(50 * 384, 1.5));
  p.num_experts = 64;  // Moonlight: 64 experts, top 6, scaling 2.446
  p.top_k = 6;
  p.scaling = 2.446f;
  bias = RandomBias(rng, 64);
  p.correction_bias = bias.data();
  ExpectMatchesReference(p, rng.NormalFloats(50 * 64, 1.5));
}

// ---------- Constructed cases.

float Logit(double probability) {
  return static_cast<float>(std::log(probability / (1.0 - probability)));
}

TEST(RouteCpuTest, GroupMaskingChangesTheChoice_NoauxTc) {
  // 4 groups of 4. Group 0 holds the single best expert but its top-2 sum loses the vote to
  // groups 1 and 2, so the global top-2 {0, 4} becomes {4, 5}.
  RoutingParams p;
  p.rule = RoutingRule::kSigmoidNoauxTc;
  p.num_experts = 16;
  p.top_k = 2;
  p.num_groups = 4;
  p.topk_groups = 2;
  const std::vector<float> logits = {4,   -4,  -4, -4, 1,  1,  -4, -4,   // sums: 1.00, 1.46
                                     0.5, 0.5, -4, -4, -4, -4, -4, -4};  // 1.24, 0.04
  const RouteOutput grouped = Route(p, logits);
  EXPECT_EQ(grouped.ids, (std::vector<int32_t>{4, 5}));
  ExpectMatchesReference(p, logits);

  p.num_groups = 1;  // no group limit: the global top-2
  p.topk_groups = 1;
  EXPECT_EQ(Route(p, logits).ids, (std::vector<int32_t>{0, 4}));
  ExpectMatchesReference(p, logits);
}

TEST(RouteCpuTest, GroupMaskingChangesTheChoice_GroupLimited) {
  // Group score = the max: groups 1 (3.1) and 2 (3.05) beat group 0 (3.0), whose members are
  // nonetheless 3rd-5th best overall. The third pick must come from a kept group.
  RoutingParams p;
  p.rule = RoutingRule::kSoftmaxGroupLimited;
  p.num_experts = 16;
  p.top_k = 3;
  p.num_groups = 4;
  p.topk_groups = 2;
  const std::vector<float> logits = {3.0f,  2.9f, 2.8f, -5, 3.1f, -5, -5, -5,
                                     3.05f, -5,   -5,   -4, -5,   -5, -5, -5};
  EXPECT_EQ(Route(p, logits).ids, (std::vector<int32_t>{4, 8, 11}));
  ExpectMatchesReference(p, logits);

  p.rule = RoutingRule::kSoftmaxGreedy;
  EXPECT_EQ(Route(p, logits).ids, (std::vector<int32_t>{4, 8, 0}));
  ExpectMatchesReference(p, logits);
}

TEST(RouteCpuTest, BiasChangesTheChoiceButNeverTheWeights) {
  // Unbiased scores [0.7, 0.6, 0.5, 0.2]; biased [0.7, 0.85, 0.8, 0.2]: the bias swaps expert 0
  // out for expert 2, but the weights stay the unbiased sigmoid scores.
  const std::vector<float> logits = {Logit(0.7), Logit(0.6), Logit(0.5), Logit(0.2)};
  const std::vector<float> bias = {0.0f, 0.25f, 0.3f, 0.0f};
  RoutingParams p;
  p.rule = RoutingRule::kSigmoidNoauxTc;
  p.num_experts = 4;
  p.top_k = 2;

  const RouteOutput unbiased = Route(p, logits);
  EXPECT_EQ(unbiased.ids, (std::vector<int32_t>{0, 1}));
  p.correction_bias = bias.data();
  const RouteOutput biased = Route(p, logits);
  EXPECT_EQ(biased.ids, (std::vector<int32_t>{1, 2}));
  const double s1 = 1.0 / (1.0 + std::exp(-double{logits[1]}));
  const double s2 = 1.0 / (1.0 + std::exp(-double{logits[2]}));
  EXPECT_NEAR(biased.weights[0], s1, 1e-6);           // 0.6, not 0.85
  EXPECT_NEAR(biased.weights[1], s2, 1e-6);           // 0.5, not 0.8
  EXPECT_EQ(biased.weights[0], unbiased.weights[1]);  // expert 1 weighs the same either way
  ExpectMatchesReference(p, logits);

  // With V3's renormalisation and scaling the weights are the unbiased scores renormalised.
  p.renormalize = true;
  p.scaling = 2.5f;
  const RouteOutput scaled = Route(p, logits);
  EXPECT_EQ(scaled.ids, (std::vector<int32_t>{1, 2}));
  EXPECT_NEAR(scaled.weights[0], 2.5 * s1 / (s1 + s2), 1e-6);
  EXPECT_NEAR(scaled.weights[1], 2.5 * s2 / (s1 + s2), 1e-6);
  ExpectMatchesReference(p, logits);
}

TEST(RouteCpuTest, MaskedGroupsExpertsNeverAppear) {
  TestRng rng(testing::kDefaultTestSeed + 4);
  for (const RoutingRule rule : {RoutingRule::kSigmoidNoauxTc, RoutingRule::kSoftmaxGroupLimited}) {
    SCOPED_TRACE(rule == RoutingRule::kSigmoidNoauxTc ? "noaux_tc" : "group_limited");
    RoutingParams p;
    p.rule = rule;
    p.num_experts = 256;
    p.top_k = 8;
    p.num_groups = 8;
    p.topk_groups = 4;
    const std::vector<float> bias = RandomBias(rng, 256);
    if (rule == RoutingRule::kSigmoidNoauxTc) p.correction_bias = bias.data();
    const int64_t tokens = 200;
    const std::vector<float> logits = rng.NormalFloats(static_cast<size_t>(tokens * 256), 1.5);
    const RouteOutput out = Route(p, logits);
    int64_t tokens_where_mask_mattered = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      const Routed ref = ReferenceRoute(p, logits.data() + t * 256);
      for (int64_t i = 0; i < p.top_k; ++i) {
        ASSERT_TRUE(ref.group_kept[out.ids[t * p.top_k + i] / 32])
            << "token " << t << " chose expert " << out.ids[t * p.top_k + i]
            << " of a masked group";
      }
      // Would an unrestricted top-k have picked a masked group's expert?
      RoutingParams flat = p;
      flat.num_groups = 1;
      flat.topk_groups = 1;
      const Routed unrestricted = ReferenceRoute(flat, logits.data() + t * 256);
      for (int32_t e : unrestricted.ids) {
        if (!ref.group_kept[e / 32]) {
          ++tokens_where_mask_mattered;
          break;
        }
      }
    }
    EXPECT_GT(tokens_where_mask_mattered, 0) << "the masking never mattered: test is vacuous";
  }
}

TEST(RouteCpuTest, MaskedGroupsLoseEvenWhenBiasedScoresAreNegative) {
  // Masking must be −inf, not 0 (HF's fill): with s' = s + bias < 0 everywhere, a group masked
  // to 0 would beat every kept expert (reference §3.3).
  TestRng rng(testing::kDefaultTestSeed + 5);
  RoutingParams p;
  p.rule = RoutingRule::kSigmoidNoauxTc;
  p.num_experts = 16;
  p.top_k = 3;
  p.num_groups = 4;
  p.topk_groups = 2;
  p.renormalize = true;
  const std::vector<float> bias(16, -1.0f);
  p.correction_bias = bias.data();
  const std::vector<float> logits = rng.NormalFloats(30 * 16);
  ExpectMatchesReference(p, logits);
  const RouteOutput out = Route(p, logits);
  for (int64_t t = 0; t < 30; ++t) {
    const Routed ref = ReferenceRoute(p, logits.data() + t * 16);
    for (int64_t i = 0; i < p.top_k; ++i) {
      EXPECT_TRUE(ref.group_kept[out.ids[t * p.top_k + i] / 4]) << "token " << t;
    }
  }
}

TEST(RouteCpuTest, TiesGoToTheLowerIndex) {
  RoutingParams p;
  p.rule = RoutingRule::kSoftmaxGreedy;
  p.num_experts = 16;
  p.top_k = 4;
  const RouteOutput all_equal = Route(p, std::vector<float>(16, 0.25f));
  EXPECT_EQ(all_equal.ids, (std::vector<int32_t>{0, 1, 2, 3}));
  for (float w : all_equal.weights) EXPECT_NEAR(w, 1.0 / 16, 1e-7);

  p.num_experts = 6;
  p.top_k = 2;
  EXPECT_EQ(Route(p, {0, 2, 1, 2, 2, 1}).ids, (std::vector<int32_t>{1, 3}));
  p.top_k = 4;
  EXPECT_EQ(Route(p, {0, 2, 1, 2, 2, 1}).ids, (std::vector<int32_t>{1, 3, 4, 2}));

  // Tied group votes keep the lower groups; tied experts inside them go lowest first.
  p.rule = RoutingRule::kSigmoidNoauxTc;
  p.num_experts = 8;
  p.num_groups = 4;
  p.topk_groups = 2;
  p.top_k = 3;
  EXPECT_EQ(Route(p, std::vector<float>(8, 0.5f)).ids, (std::vector<int32_t>{0, 1, 2}));
  p.rule = RoutingRule::kSoftmaxGroupLimited;
  EXPECT_EQ(Route(p, {0, 1, 1, 0, 0, 1, 1, 0}).ids, (std::vector<int32_t>{1, 2, 0}));
}

// A NaN logit (a diverged activation) reads as −inf: the routing equals the reference's on the
// same logits with −inf in place of each NaN, so a NaN expert never beats a finite one; a row
// of NaN routes to the lowest experts with zero weight instead of spreading NaN.
TEST(RouteCpuTest, NanLogitsReadAsMinusInfinity) {
  TestRng rng(testing::kDefaultTestSeed + 9);
  RoutingParams v3;
  v3.rule = RoutingRule::kSigmoidNoauxTc;
  v3.num_experts = 256;
  v3.top_k = 8;
  v3.num_groups = 8;
  v3.topk_groups = 4;
  v3.renormalize = true;
  v3.scaling = 2.5f;
  const std::vector<float> bias = RandomBias(rng, 256);
  v3.correction_bias = bias.data();
  RoutingParams v2;
  v2.rule = RoutingRule::kSoftmaxGroupLimited;
  v2.num_experts = 160;
  v2.top_k = 6;
  v2.num_groups = 8;
  v2.topk_groups = 3;
  RoutingParams v2_lite;
  v2_lite.rule = RoutingRule::kSoftmaxGreedy;
  v2_lite.num_experts = 64;
  v2_lite.top_k = 6;
  for (const RoutingParams& p : {v3, v2, v2_lite}) {
    SCOPED_TRACE(std::to_string(p.num_experts) + " experts");
    const int64_t tokens = 50;
    std::vector<float> with_nan = rng.NormalFloats(static_cast<size_t>(tokens * p.num_experts));
    std::vector<float> with_neg_inf = with_nan;
    for (size_t i = 0; i < with_nan.size(); ++i) {
      if (rng.Uniform(0.0, 1.0) < 0.3) {
        with_nan[i] = std::numeric_limits<float>::quiet_NaN();
        with_neg_inf[i] = -std::numeric_limits<float>::infinity();
      }
    }
    ExpectMatchesReference(p, with_neg_inf);
    const RouteOutput nan_out = Route(p, with_nan);
    const RouteOutput inf_out = Route(p, with_neg_inf);
    EXPECT_EQ(nan_out.ids, inf_out.ids);
    EXPECT_EQ(nan_out.weights, inf_out.weights);
    for (size_t i = 0; i < nan_out.ids.size(); ++i) {
      const int64_t token = static_cast<int64_t>(i) / p.top_k;
      ASSERT_FALSE(std::isnan(with_nan[token * p.num_experts + nan_out.ids[i]])) << "slot " << i;
    }

    const RouteOutput all_nan =
        Route(p, std::vector<float>(static_cast<size_t>(p.num_experts),
                                    std::numeric_limits<float>::quiet_NaN()));
    const std::set<int32_t> distinct(all_nan.ids.begin(), all_nan.ids.end());
    EXPECT_EQ(distinct.size(), static_cast<size_t>(p.top_k));
    for (const int32_t id : all_nan.ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, p.num_experts);
    }
    for (const float w : all_nan.weights) EXPECT_TRUE(std::isfinite(w)) << w;
  }
}

}  // namespace
}  // namespace moeserve::engine
