#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/goodness_of_fit.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::ChiSquareCritical999;
using ::moeserve::engine::testing::Fit;
using ::moeserve::engine::testing::GoodnessOfFit;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

std::vector<float> UniformLogits(int vocab, uint32_t seed, float lo = -3.0f, float hi = 3.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = dist(gen);
  return logits;
}

std::vector<float> NormalLogits(int vocab, uint32_t seed, float sigma) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = dist(gen);
  return logits;
}

// ---------------------------------------------------------------------------------------------
// The analytic distribution, computed from the definitions in double precision with full sorts.

struct Analytic {
  std::vector<double> probs;  // [vocab]
  // The smallest distance of any truncation decision from its threshold; a tiny margin means
  // float rounding could legitimately flip a token in or out, so tests require it to be large.
  double margin = std::numeric_limits<double>::infinity();
};

std::vector<double> NaivePenalized(const std::vector<float>& raw, const SamplingParams& p,
                                   const std::vector<int32_t>& prompt,
                                   const std::vector<int32_t>& generated) {
  std::vector<double> l(raw.begin(), raw.end());
  for (const auto& [id, bias] : p.logit_bias) l[id] += bias;
  std::set<int32_t> seen(prompt.begin(), prompt.end());
  seen.insert(generated.begin(), generated.end());
  for (int32_t t : seen)
    l[t] = l[t] > 0 ? l[t] / p.repetition_penalty : l[t] * p.repetition_penalty;
  std::map<int32_t, int> counts;
  for (int32_t t : generated) ++counts[t];
  for (const auto& [t, n] : counts) l[t] -= p.frequency_penalty * n + p.presence_penalty;
  return l;
}

Analytic AnalyticDistribution(const std::vector<float>& raw, const SamplingParams& p,
                              const std::vector<int32_t>& prompt = {},
                              const std::vector<int32_t>& generated = {}) {
  const std::vector<double> l = NaivePenalized(raw, p, prompt, generated);
  const int n = static_cast<int>(l.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  Analytic out;
  out.probs.assign(n, 0.0);
  if (p.temperature < kGreedyTemperature) {
    out.probs[order[0]] = 1.0;
    return out;
  }
  std::vector<bool> alive(n, true);
  if (p.top_k > 0 && p.top_k < n) {
    const double kth = l[order[p.top_k - 1]];
    for (int i = 0; i < n; ++i) alive[i] = l[i] >= kth;
    out.margin = std::min(out.margin, kth - l[order[p.top_k]]);
  }
  std::vector<double> q(n, 0.0);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    if (alive[i]) sum += q[i] = std::exp((l[i] - l[order[0]]) / p.temperature);
  }
  for (double& x : q) x /= sum;
  if (p.top_p < 1.0f) {
    double before = 0.0;
    bool done = false;
    for (int i : order) {
      if (!alive[i]) continue;
      if (done) {
        alive[i] = false;
        continue;
      }
      const double after = before + q[i];
      if (after >= p.top_p) {
        done = true;
        out.margin = std::min({out.margin, p.top_p - before, after - p.top_p});
      }
      before = after;
    }
  }
  if (p.min_p > 0.0f) {
    const double q_max = q[order[0]];
    for (int i = 0; i < n; ++i) {
      if (!alive[i]) continue;
      out.margin = std::min(out.margin, std::abs(q[i] / q_max - p.min_p));
      alive[i] = q[i] >= p.min_p * q_max;
    }
  }
  double kept = 0.0;
  for (int i = 0; i < n; ++i) kept += alive[i] ? q[i] : 0.0;
  for (int i = 0; i < n; ++i) out.probs[i] = alive[i] ? q[i] / kept : 0.0;
  return out;
}

std::vector<int64_t> Histogram(const std::vector<float>& logits, const SamplingParams& params,
                               const std::vector<int32_t>& prompt,
                               const std::vector<int32_t>& generated, uint64_t seed,
                               int64_t draws) {
  std::vector<int64_t> counts(logits.size(), 0);
  SequenceRng rng(seed);
  SamplingWorkspace workspace;
  for (int64_t i = 0; i < draws; ++i) {
    ++counts[SampleToken(logits, params, {prompt, generated}, rng, workspace).token_id];
  }
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Statistical tests: 20,000 draws over 12 tokens against the analytic distribution.

constexpr int kSmallVocab = 12;
constexpr int64_t kDraws = 20000;

struct StatCase {
  std::string name;
  SamplingParams params;
  std::vector<int32_t> prompt;
  std::vector<int32_t> generated;
  uint32_t logits_seed = 1;
};

SamplingParams Params(float temperature, int32_t top_k, float top_p, float min_p) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

std::vector<StatCase> StatCases() {
  SamplingParams penalized = Params(1.2f, -1, 1.0f, 0.0f);
  penalized.repetition_penalty = 1.3f;
  penalized.frequency_penalty = 0.5f;
  penalized.presence_penalty = 0.3f;
  penalized.logit_bias = {{2, 1.5f}, {5, -2.0f}};
  return {
      {"Temperature0_7", Params(0.7f, -1, 1.0f, 0.0f)},
      {"Temperature1_5", Params(1.5f, -1, 1.0f, 0.0f)},
      {"TopK3", Params(1.0f, 3, 1.0f, 0.0f)},
      {"TopP0_8", Params(1.0f, -1, 0.8f, 0.0f)},
      {"MinP0_2", Params(1.0f, -1, 1.0f, 0.2f)},
      {"Combined", Params(0.8f, 8, 0.9f, 0.05f), {}, {}, 3},
      {"PenaltiesAndBias", penalized, {1, 4, 4}, {4, 7, 7, 9, 0}},
      {"PenaltiesWithTruncation",
       [&] {
         SamplingParams p = penalized;
         p.top_k = 6;
         p.top_p = 0.85f;
         return p;
       }(),
       {1, 4},
       {4, 7, 7, 9},
       5},
  };
}

class SamplerStatisticsTest : public ::testing::TestWithParam<StatCase> {};

TEST_P(SamplerStatisticsTest, ChiSquareAgainstAnalyticDistribution) {
  const StatCase& c = GetParam();
  const std::vector<float> logits = UniformLogits(kSmallVocab, c.logits_seed);
  const Analytic analytic = AnalyticDistribution(logits, c.params, c.prompt, c.generated);
  ASSERT_GT(analytic.margin, 1e-3) << "pick other logits: a threshold is too close to call";
  if (c.params.top_k > 0 || c.params.top_p < 1.0f || c.params.min_p > 0.0f) {
    ASSERT_GT(std::count(analytic.probs.begin(), analytic.probs.end(), 0.0), 0)
        << "the truncation must drop something to be tested";
  }
  const std::vector<int64_t> counts =
      Histogram(logits, c.params, c.prompt, c.generated, /*seed=*/2024, kDraws);
  const Fit fit = GoodnessOfFit(counts, analytic.probs, kDraws);
  ASSERT_GE(fit.dof, 1);
  EXPECT_LT(fit.statistic, ChiSquareCritical999(fit.dof)) << "dof " << fit.dof;
  EXPECT_EQ(fit.impossible_draws, 0);
  // The sampler's own distribution agrees with the analytic one too.
  const std::vector<TokenProbability> dist =
      SamplingDistribution(logits, c.params, {c.prompt, c.generated});
  std::vector<double> probs(kSmallVocab, 0.0);
  for (const TokenProbability& t : dist) probs[t.token_id] = t.probability;
  for (int i = 0; i < kSmallVocab; ++i) EXPECT_NEAR(probs[i], analytic.probs[i], 1e-6) << i;
}

INSTANTIATE_TEST_SUITE_P(Cases, SamplerStatisticsTest, ::testing::ValuesIn(StatCases()),
                         [](const ::testing::TestParamInfo<StatCase>& info) {
                           return info.param.name;
                         });

// The test has power: draws at temperature 0.7 are rejected against the temperature-1 law.
TEST(SamplerStatisticsPowerTest, WrongDistributionIsRejected) {
  const std::vector<float> logits = UniformLogits(kSmallVocab, 1);
  const std::vector<int64_t> counts =
      Histogram(logits, Params(0.7f, -1, 1.0f, 0.0f), {}, {}, 2024, kDraws);
  const Fit fit = GoodnessOfFit(
      counts, AnalyticDistribution(logits, Params(1.0f, -1, 1.0f, 0.0f)).probs, kDraws);
  EXPECT_GT(fit.statistic, ChiSquareCritical999(fit.dof));
}

TEST(ChiSquareCriticalTest, WilsonHilfertyIsCloseToTheTable) {
  // Beyond the table: the exact 0.999 quantiles for 20 and 50 dof are 45.315 and 86.661;
  // Wilson-Hilferty is within 0.3%, on the conservative (larger) side.
  EXPECT_NEAR(ChiSquareCritical999(20), 45.315, 0.003 * 45.315);
  EXPECT_NEAR(ChiSquareCritical999(50), 86.661, 0.003 * 86.661);
  EXPECT_NEAR(ChiSquareCritical999(10), 29.588, 1e-9);
}

// ---------------------------------------------------------------------------------------------
// The sampler's distribution on a DeepSeek-V3-sized vocabulary against the analytic one:
// exercises the nth_element top-k and the chunked top-p sort at full size.

constexpr int kLargeVocab = 129280;

struct LargeCase {
  std::string name;
  SamplingParams params;
  bool flat = false;  // near-uniform logits: the top-p set is most of the vocabulary
};

std::vector<LargeCase> LargeCases() {
  return {
      {"TemperatureOnly", Params(1.0f, -1, 1.0f, 0.0f)},
      {"TopP0_9", Params(0.6f, -1, 0.9f, 0.0f)},
      {"TopK50", Params(1.0f, 50, 1.0f, 0.0f)},
      {"TopK1", Params(1.0f, 1, 1.0f, 0.0f)},
      {"TopKTopPMinP", Params(0.9f, 50, 0.9f, 0.05f)},
      {"MinP0_1", Params(1.3f, -1, 1.0f, 0.1f)},
      {"TopPMinP", Params(1.0f, -1, 0.97f, 0.01f)},
      {"TinyTopPKeepsOnlyTheArgmax", Params(1.0f, -1, 1e-6f, 0.0f)},
      {"FlatTopP0_95", Params(1.0f, -1, 0.95f, 0.0f), true},
  };
}

class SamplerLargeVocabTest : public ::testing::TestWithParam<LargeCase> {};

TEST_P(SamplerLargeVocabTest, DistributionMatchesAnalytic) {
  const LargeCase& c = GetParam();
  const std::vector<float> logits =
      c.flat ? UniformLogits(kLargeVocab, 11, 0.0f, 0.05f) : NormalLogits(kLargeVocab, 11, 2.5f);
  const Analytic analytic = AnalyticDistribution(logits, c.params);
  ASSERT_GT(analytic.margin, 1e-7) << "pick other logits: a threshold is too close to call";
  const std::vector<TokenProbability> dist = SamplingDistribution(logits, c.params, {});
  size_t expected_size = 0;
  for (double q : analytic.probs) expected_size += q > 0.0 ? 1 : 0;
  ASSERT_EQ(dist.size(), expected_size);
  double sum = 0.0;
  for (size_t i = 0; i < dist.size(); ++i) {
    if (i > 0) {
      ASSERT_LT(dist[i - 1].token_id, dist[i].token_id);
    }
    const double expected = analytic.probs[dist[i].token_id];
    ASSERT_NEAR(dist[i].probability, expected, 1e-5 * expected) << "token " << dist[i].token_id;
    sum += dist[i].probability;
  }
  EXPECT_NEAR(sum, 1.0, 1e-9);
  // Draws land in the kept set.
  std::vector<bool> kept(kLargeVocab, false);
  for (const TokenProbability& t : dist) kept[t.token_id] = true;
  SequenceRng rng(5);
  SamplingWorkspace workspace;
  for (int i = 0; i < 50; ++i) {
    const int32_t id = SampleToken(logits, c.params, {}, rng, workspace).token_id;
    ASSERT_TRUE(kept[id]) << id;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, SamplerLargeVocabTest, ::testing::ValuesIn(LargeCases()),
                         [](const ::testing::TestParamInfo<LargeCase>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// Greedy.

SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

int32_t Sample(const std::vector<float>& logits, const SamplingParams& params,
               const PenaltyContext& context = {}, uint64_t seed = 0) {
  SequenceRng rng(seed);
  return SampleToken(logits, params, context, rng).token_id;
}

TEST(SamplerGreedyTest, IsTheArgmaxOfRandomLogits) {
  for (uint32_t seed = 0; seed < 50; ++seed) {
    const std::vector<float> logits = NormalLogits(5000, seed, 3.0f);
    const auto expected = std::max_element(logits.begin(), logits.end()) - logits.begin();
    EXPECT_EQ(Sample(logits, Greedy(), {}, seed), expected) << seed;
  }
}

TEST(SamplerGreedyTest, TiesGoToTheLowerId) {
  EXPECT_EQ(Sample({0.0f, 2.0f, 1.0f, 2.0f, 2.0f}, Greedy()), 1);
  EXPECT_EQ(Sample({-kInf, -kInf, -kInf}, Greedy()), 0);
  EXPECT_EQ(Sample({3.0f, 3.0f}, Greedy()), 0);
}

TEST(SamplerGreedyTest, NanNeverWins) {
  EXPECT_EQ(Sample({kNan, 1.0f, kNan, 5.0f}, Greedy()), 3);
  EXPECT_EQ(Sample({kNan, kNan}, Greedy()), 0);
}

TEST(SamplerGreedyTest, GreedyTokenIsSampleTokensAnswerWhenOnlyTheArgmaxIsNeeded) {
  for (uint32_t seed = 0; seed < 50; ++seed) {
    std::vector<float> logits = NormalLogits(3000, seed, 2.0f);
    if (seed % 5 == 0) logits[seed] = kNan;
    if (seed % 7 == 0) logits[2 * seed + 1] = logits[2 * seed];  // a tie
    ASSERT_TRUE(NeedsOnlyArgmax(Greedy()));
    EXPECT_EQ(GreedyToken(logits), Sample(logits, Greedy(), {}, seed)) << seed;
  }
  EXPECT_EQ(GreedyToken(std::vector<float>{kNan, kNan}), 0);
  EXPECT_EQ(GreedyToken(std::vector<float>{0.0f, 2.0f, 2.0f}), 1);
}

TEST(SamplerGreedyTest, NeedsOnlyArgmaxExcludesEverythingThatChangesTheAnswer) {
  SamplingParams p = Greedy();
  EXPECT_TRUE(NeedsOnlyArgmax(p));
  SamplingParams random;
  random.temperature = 0.7f;
  EXPECT_FALSE(NeedsOnlyArgmax(random));
  p.num_logprobs = 0;
  EXPECT_FALSE(NeedsOnlyArgmax(p));
  p = Greedy();
  p.logit_bias = {{1, 1.0f}};
  EXPECT_FALSE(NeedsOnlyArgmax(p));
  for (auto penalty : {&SamplingParams::frequency_penalty, &SamplingParams::presence_penalty}) {
    p = Greedy();
    p.*penalty = 0.5f;
    EXPECT_FALSE(NeedsOnlyArgmax(p));
  }
  p = Greedy();
  p.repetition_penalty = 1.1f;
  EXPECT_FALSE(NeedsOnlyArgmax(p));
}

TEST(SamplerGreedyTest, UsesTheProcessedLogits) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.5f, 0.0f};
  SamplingParams p = Greedy();
  p.repetition_penalty = 2.0f;  // token 1 seen: 3 / 2 = 1.5 < 2.5
  EXPECT_EQ(Sample(logits, p, {{}, std::vector<int32_t>{1}}), 2);
  SamplingParams biased = Greedy();
  biased.logit_bias = {{3, 5.0f}};
  EXPECT_EQ(Sample(logits, biased), 3);
  SamplingParams freq = Greedy();
  freq.frequency_penalty = 0.3f;  // token 1 generated twice: 3 - 0.6 = 2.4 < 2.5
  const std::vector<int32_t> generated = {1, 1};
  EXPECT_EQ(Sample(logits, freq, {{}, generated}), 2);
}

TEST(SamplerGreedyTest, TinyTemperatureAndTopK1AreGreedy) {
  const std::vector<float> logits = NormalLogits(1000, 3, 1.0f);
  const int32_t argmax = Sample(logits, Greedy());
  SamplingParams tiny;
  tiny.temperature = 1e-6f;
  SamplingParams top1;
  top1.top_k = 1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    EXPECT_EQ(Sample(logits, tiny, {}, seed), argmax);
    EXPECT_EQ(Sample(logits, top1, {}, seed), argmax);
  }
}

TEST(SamplerTest, MaskedAndInfiniteLogits) {
  SamplingParams p;
  // -inf tokens are never drawn; a +inf token always is.
  for (uint64_t seed = 0; seed < 100; ++seed) {
    const int32_t id = Sample({-kInf, 0.0f, -kInf, 0.5f, kNan}, p, {}, seed);
    EXPECT_TRUE(id == 1 || id == 3) << id;
    EXPECT_EQ(Sample({0.0f, 100.0f, kInf, 1.0f}, p, {}, seed), 2);
  }
  // Nothing drawable: falls back to the argmax rule instead of failing.
  EXPECT_EQ(Sample({-kInf, -kInf}, p), 0);
  EXPECT_EQ(Sample({kNan, kNan, kNan}, p), 0);
}

TEST(SamplerTest, TopKTiesAtTheKthValueAreKept) {
  SamplingParams p;
  p.top_k = 2;
  const std::vector<TokenProbability> dist =
      SamplingDistribution({1.0f, 3.0f, 2.0f, 2.0f, 0.0f}, p, {});
  ASSERT_EQ(dist.size(), 3u);
  EXPECT_EQ(dist[0].token_id, 1);
  EXPECT_EQ(dist[1].token_id, 2);
  EXPECT_EQ(dist[2].token_id, 3);
  EXPECT_DOUBLE_EQ(dist[1].probability, dist[2].probability);
}

TEST(SamplerTest, TopPTiesAtTheBoundaryKeepTheLowerIds) {
  // Four equally likely tokens: half the mass is exactly two of them, the lowest ids.
  SamplingParams p;
  p.top_p = 0.5f;
  std::vector<TokenProbability> dist = SamplingDistribution({0.0f, 0.0f, 0.0f, 0.0f}, p, {});
  ASSERT_EQ(dist.size(), 2u);
  EXPECT_EQ(dist[0].token_id, 0);
  EXPECT_EQ(dist[1].token_id, 1);
  EXPECT_DOUBLE_EQ(dist[0].probability, 0.5);
  p.top_p = 0.6f;  // needs a third
  dist = SamplingDistribution({0.0f, 0.0f, 0.0f, 0.0f}, p, {});
  ASSERT_EQ(dist.size(), 3u);
  EXPECT_EQ(dist[2].token_id, 2);
  // A more likely token comes before the tie: weights 0.5, 1, 0.5, 0.5 (mass 2.5).
  const std::vector<float> logits = {-1.0f, std::log(2.0f) - 1.0f, -1.0f, -1.0f};
  p.top_p = 0.3f;  // 0.75 of weight: token 1 alone
  dist = SamplingDistribution(logits, p, {});
  ASSERT_EQ(dist.size(), 1u);
  EXPECT_EQ(dist[0].token_id, 1);
  p.top_p = 0.5f;  // 1.25: token 1, then the lowest id of the tie
  dist = SamplingDistribution(logits, p, {});
  ASSERT_EQ(dist.size(), 2u);
  EXPECT_EQ(dist[0].token_id, 0);
  EXPECT_EQ(dist[1].token_id, 1);
}

TEST(SamplerTest, TopPAlwaysKeepsTheMostLikelyToken) {
  SamplingParams p;
  p.top_p = 1e-6f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    EXPECT_EQ(Sample({0.1f, 0.3f, 0.2f}, p, {}, seed), 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Determinism and independence of sequences.

SamplingParams Nucleus() {
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  return p;
}

// A fresh row of logits per step, as a model would give.
std::vector<int32_t> Generate(uint64_t seed, const SamplingParams& params, int steps) {
  SequenceRng rng(seed);
  std::vector<int32_t> tokens;
  for (int s = 0; s < steps; ++s) {
    tokens.push_back(SampleToken(NormalLogits(1000, s, 1.0f), params, {{}, tokens}, rng).token_id);
  }
  return tokens;
}

TEST(SamplerDeterminismTest, SameSeedGivesTheSameTokens) {
  EXPECT_EQ(Generate(42, Nucleus(), 100), Generate(42, Nucleus(), 100));
  SamplingParams penalized = Nucleus();
  penalized.repetition_penalty = 1.2f;
  penalized.frequency_penalty = 0.4f;
  EXPECT_EQ(Generate(7, penalized, 100), Generate(7, penalized, 100));
}

TEST(SamplerDeterminismTest, DifferentSeedsGiveDifferentTokens) {
  const std::vector<int32_t> a = Generate(1, Nucleus(), 100);
  const std::vector<int32_t> b = Generate(2, Nucleus(), 100);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i] ? 1 : 0;
  EXPECT_LT(same, 50);
}

TEST(SamplerDeterminismTest, InterleavedSequenceDoesNotChangeDraws) {
  const std::vector<int32_t> alone = Generate(42, Nucleus(), 100);
  SequenceRng rng_a(42);
  SequenceRng rng_b(42);  // even the same seed: the generators are separate objects
  SamplingParams b_params;
  b_params.top_k = 5;
  b_params.num_logprobs = 3;
  SamplingWorkspace shared;  // and one workspace for both
  std::vector<int32_t> a_tokens;
  std::vector<int32_t> b_tokens;
  for (int s = 0; s < 100; ++s) {
    for (int extra = 0; extra < s % 3; ++extra) {
      b_tokens.push_back(
          SampleToken(NormalLogits(300, 1000 + s, 2.0f), b_params, {{}, b_tokens}, rng_b, shared)
              .token_id);
    }
    a_tokens.push_back(
        SampleToken(NormalLogits(1000, s, 1.0f), Nucleus(), {{}, a_tokens}, rng_a, shared)
            .token_id);
  }
  EXPECT_EQ(a_tokens, alone);
}

TEST(SamplerDeterminismTest, EveryCallConsumesExactlyOneDraw) {
  const std::vector<float> logits = NormalLogits(100, 1, 1.0f);
  for (const SamplingParams& p : {Greedy(), Nucleus(), Params(1.0f, 1, 1.0f, 0.0f)}) {
    SequenceRng rng(9);
    SampleToken(logits, p, {}, rng);
    SampleToken(logits, p, {}, rng);
    EXPECT_EQ(rng.counter(), 2u);
  }
  // So a sequence resumed from (seed, counter) continues exactly.
  const std::vector<int32_t> full = Generate(3, Nucleus(), 20);
  SequenceRng resumed(3, 10);
  std::vector<int32_t> tokens(full.begin(), full.begin() + 10);
  for (int s = 10; s < 20; ++s) {
    tokens.push_back(
        SampleToken(NormalLogits(1000, s, 1.0f), Nucleus(), {{}, tokens}, resumed).token_id);
  }
  EXPECT_EQ(tokens, full);
}

TEST(SamplerDeterminismTest, BatchMatchesRowByRow) {
  constexpr int kRows = 6;
  constexpr int kVocab = 2000;
  std::vector<float> logits;
  for (int r = 0; r < kRows; ++r) {
    const std::vector<float> row = NormalLogits(kVocab, 100 + r, 2.0f);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  std::vector<SamplingParams> params(kRows);
  params[0] = Greedy();
  params[1] = Nucleus();
  params[2] = Params(0.7f, 20, 1.0f, 0.0f);
  params[3] = Params(1.1f, -1, 1.0f, 0.1f);
  params[4].repetition_penalty = 1.5f;
  params[4].presence_penalty = 1.0f;
  params[4].num_logprobs = 4;
  params[5] = Params(0.5f, 40, 0.8f, 0.02f);
  params[5].logit_bias = {{10, 3.0f}};
  params[5].num_logprobs = 0;
  const std::vector<int32_t> prompt = {1, 2, 3};
  const std::vector<int32_t> generated = {5, 5, 8};
  std::vector<SequenceRng> batch_rngs;
  std::vector<SequenceRng> row_rngs;
  for (int r = 0; r < kRows; ++r) {
    batch_rngs.emplace_back(1000 + r, r);
    row_rngs.emplace_back(1000 + r, r);
  }
  std::vector<SamplingRow> rows(kRows);
  for (int r = 0; r < kRows; ++r) rows[r] = {&params[r], {prompt, generated}, &batch_rngs[r]};
  for (int step = 0; step < 5; ++step) {
    const std::vector<SampledToken> batch = SampleBatch(logits, kVocab, rows);
    ASSERT_EQ(batch.size(), static_cast<size_t>(kRows));
    for (int r = 0; r < kRows; ++r) {
      const SampledToken alone =
          SampleToken(absl::MakeConstSpan(logits).subspan(r * kVocab, kVocab), params[r],
                      {prompt, generated}, row_rngs[r]);
      EXPECT_EQ(batch[r].token_id, alone.token_id) << "row " << r;
      EXPECT_EQ(batch[r].logprob, alone.logprob) << "row " << r;
      EXPECT_EQ(batch[r].top_logprobs.size(), alone.top_logprobs.size()) << "row " << r;
      EXPECT_EQ(batch_rngs[r].counter(), row_rngs[r].counter());
    }
  }
}

TEST(SamplerDeterminismTest, ReusedWorkspaceMatchesFreshCalls) {
  SamplingWorkspace workspace;
  std::vector<SamplingParams> params = {Nucleus(), Greedy(), Params(1.0f, 7, 0.9f, 0.1f)};
  params[0].repetition_penalty = 1.3f;
  params[1].frequency_penalty = 1.0f;
  params[2].presence_penalty = -0.5f;
  for (int s = 0; s < 60; ++s) {
    const int vocab = 200 + 100 * (s % 3);
    const std::vector<float> logits = NormalLogits(vocab, s, 1.5f);
    const std::vector<int32_t> history = {static_cast<int32_t>(s % 17), 3, 3, 150};
    const SamplingParams& p = params[s % params.size()];
    SequenceRng a(s);
    SequenceRng b(s);
    EXPECT_EQ(SampleToken(logits, p, {history, history}, a, workspace).token_id,
              SampleToken(logits, p, {history, history}, b).token_id)
        << s;
  }
}

// ---------------------------------------------------------------------------------------------
// Logprobs: log_softmax of the raw logits.

std::vector<double> LogSoftmax(const std::vector<float>& logits) {
  const double m = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(x - m);
  std::vector<double> out;
  for (float x : logits) out.push_back(x - m - std::log(sum));
  return out;
}

TEST(SamplerLogprobsTest, ChosenAndTopNAreRawLogSoftmax) {
  const std::vector<float> logits = NormalLogits(5000, 21, 3.0f);
  const std::vector<double> expected = LogSoftmax(logits);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  // Processing changes what is drawn, never the reported logprobs.
  SamplingParams p = Params(0.5f, 10, 0.9f, 0.0f);
  p.repetition_penalty = 1.5f;
  p.frequency_penalty = 0.7f;
  p.logit_bias = {{order[0], -50.0f}, {17, 20.0f}};
  p.num_logprobs = 7;
  const std::vector<int32_t> history = {order[1], order[2], 17};
  SequenceRng rng(77);
  for (int i = 0; i < 20; ++i) {
    const SampledToken t = SampleToken(logits, p, {history, history}, rng);
    EXPECT_NEAR(t.logprob, expected[t.token_id], 1e-5);
    ASSERT_EQ(t.top_logprobs.size(), 7u);
    for (int k = 0; k < 7; ++k) {
      EXPECT_EQ(t.top_logprobs[k].token_id, order[k]) << k;
      EXPECT_NEAR(t.top_logprobs[k].logprob, expected[order[k]], 1e-5) << k;
      if (k > 0) {
        EXPECT_GE(t.top_logprobs[k - 1].logprob, t.top_logprobs[k].logprob);
      }
    }
  }
}

TEST(SamplerLogprobsTest, TiedTopLogprobsListTheLowerIdFirst) {
  SamplingParams p;
  p.num_logprobs = 3;
  SequenceRng rng(1);
  const SampledToken t = SampleToken({1.0f, 5.0f, 0.0f, 5.0f, 5.0f, 4.0f}, p, {}, rng);
  ASSERT_EQ(t.top_logprobs.size(), 3u);
  EXPECT_EQ(t.top_logprobs[0].token_id, 1);
  EXPECT_EQ(t.top_logprobs[1].token_id, 3);
  EXPECT_EQ(t.top_logprobs[2].token_id, 4);
}

TEST(SamplerLogprobsTest, NumLogprobsSelectsWhatIsReturned) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f};
  const std::vector<double> expected = LogSoftmax(logits);
  SamplingParams p = Greedy();
  SequenceRng rng(1);
  p.num_logprobs = -1;
  SampledToken t = SampleToken(logits, p, {}, rng);
  EXPECT_EQ(t.token_id, 1);
  EXPECT_EQ(t.logprob, 0.0f);
  EXPECT_TRUE(t.top_logprobs.empty());
  p.num_logprobs = 0;
  t = SampleToken(logits, p, {}, rng);
  EXPECT_NEAR(t.logprob, expected[1], 1e-6);
  EXPECT_TRUE(t.top_logprobs.empty());
  p.num_logprobs = 20;  // more than the vocabulary: all of it
  t = SampleToken(logits, p, {}, rng);
  ASSERT_EQ(t.top_logprobs.size(), 3u);
  EXPECT_EQ(t.top_logprobs[0].token_id, 1);
  EXPECT_EQ(t.top_logprobs[1].token_id, 0);
  EXPECT_EQ(t.top_logprobs[2].token_id, 2);
  EXPECT_NEAR(t.top_logprobs[2].logprob, expected[2], 1e-6);
}

}  // namespace
}  // namespace moeserve::engine
