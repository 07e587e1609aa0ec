// VerifyDraftToken keeps the target distribution: over many seeded trials the verified token is
// distributed as SampleToken's (chi-square against SamplingDistribution), the draft is accepted
// with probability p(draft), and the same test rejects a deliberately wrong rule (resampling
// from p instead of the residual p - q after a rejection).
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/sampling/sampler.h"
#include "gtest/gtest.h"
#include "tests/testing/goodness_of_fit.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::ChiSquareCritical999;
using ::moeserve::engine::testing::Fit;
using ::moeserve::engine::testing::GoodnessOfFit;

constexpr int kVocab = 10;
constexpr int64_t kTrials = 20000;

std::vector<float> RandomLogits(uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> logits(kVocab);
  for (float& x : logits) x = dist(gen);
  return logits;
}

std::vector<double> Probabilities(const std::vector<float>& logits, const SamplingParams& params,
                                  const PenaltyContext& context) {
  std::vector<double> p(kVocab, 0.0);
  for (const TokenProbability& t : SamplingDistribution(logits, params, context)) {
    p[t.token_id] = t.probability;
  }
  return p;
}

int32_t Argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct Trials {
  std::vector<int64_t> counts = std::vector<int64_t>(kVocab, 0);
  int64_t accepted = 0;
};

Trials RunVerifier(const std::vector<float>& logits, const SamplingParams& params,
                   const PenaltyContext& context, int32_t draft, uint64_t seed) {
  Trials t;
  SequenceRng rng(seed);
  SamplingWorkspace ws;
  for (int64_t i = 0; i < kTrials; ++i) {
    const VerifiedToken v = VerifyDraftToken(logits, params, context, draft, rng, ws);
    ++t.counts[v.token.token_id];
    t.accepted += v.accepted ? 1 : 0;
    EXPECT_EQ(v.accepted, v.token.token_id == draft);
  }
  return t;
}

// Accepts the draft with probability p(draft) but resamples from p itself on rejection, so the
// draft's mass becomes p + (1 - p) p: the classic mistake the residual distribution avoids.
std::vector<int64_t> RunWrongRule(const std::vector<float>& logits, const SamplingParams& params,
                                  const PenaltyContext& context, int32_t draft, uint64_t seed) {
  const std::vector<double> p = Probabilities(logits, params, context);
  std::vector<int64_t> counts(kVocab, 0);
  SequenceRng rng(seed);
  for (int64_t i = 0; i < kTrials; ++i) {
    if (rng.NextUniform() < p[draft]) {
      ++counts[draft];
    } else {
      ++counts[SampleToken(logits, params, context, rng).token_id];
    }
  }
  return counts;
}

struct Case {
  const char* name;
  SamplingParams params;
  int draft_rank;  // 0: the most likely token, kVocab - 1: the least
};

SamplingParams Params(float temperature, int32_t top_k, float top_p, float penalty) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.repetition_penalty = penalty;
  return p;
}

class SpeculativeVerifyTest : public ::testing::TestWithParam<Case> {};

TEST_P(SpeculativeVerifyTest, VerifiedTokensFollowTheTargetDistribution) {
  const Case& c = GetParam();
  const std::vector<float> logits = RandomLogits(7);
  const std::vector<int32_t> prompt = {1, 3};
  const std::vector<int32_t> generated = {3, 5};
  const PenaltyContext context{prompt, generated};
  std::vector<int32_t> order(kVocab);
  for (int i = 0; i < kVocab; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const int32_t draft = order[c.draft_rank];

  const std::vector<double> p = Probabilities(logits, c.params, context);
  const Trials t = RunVerifier(logits, c.params, context, draft, /*seed=*/99);
  const Fit fit = GoodnessOfFit(t.counts, p, kTrials);
  ASSERT_GE(fit.dof, 1);
  EXPECT_LT(fit.statistic, ChiSquareCritical999(fit.dof)) << "dof " << fit.dof;
  EXPECT_EQ(fit.impossible_draws, 0);
  // Acceptance is Bernoulli(p(draft)): within 5 standard deviations.
  const double sd = std::sqrt(p[draft] * (1 - p[draft]) * kTrials);
  EXPECT_NEAR(static_cast<double>(t.accepted), p[draft] * kTrials, 5 * sd + 1) << p[draft];
}

INSTANTIATE_TEST_SUITE_P(Cases, SpeculativeVerifyTest,
                         ::testing::Values(Case{"LikelyDraft", Params(1.0f, -1, 1.0f, 1.0f), 0},
                                           Case{"MiddleDraft", Params(0.8f, -1, 1.0f, 1.0f), 3},
                                           Case{"DraftOutsideTopK", Params(1.0f, 4, 1.0f, 1.0f), 6},
                                           Case{"TopPAndPenalty", Params(1.3f, -1, 0.9f, 1.4f), 1}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// The chi-square test has the power to tell the right rule from the wrong one on these inputs.
TEST(SpeculativeVerifyPowerTest, ResamplingFromTheTargetInsteadOfTheResidualIsRejected) {
  const std::vector<float> logits = RandomLogits(7);
  const SamplingParams params = Params(1.0f, -1, 1.0f, 1.0f);
  const PenaltyContext context{};
  const int32_t draft = Argmax(logits);
  const std::vector<double> p = Probabilities(logits, params, context);
  ASSERT_GT(p[draft], 0.15);
  const Fit wrong = GoodnessOfFit(RunWrongRule(logits, params, context, draft, 99), p, kTrials);
  EXPECT_GT(wrong.statistic, ChiSquareCritical999(wrong.dof));
  const Fit right =
      GoodnessOfFit(RunVerifier(logits, params, context, draft, 99).counts, p, kTrials);
  EXPECT_LT(right.statistic, ChiSquareCritical999(right.dof));
}

TEST(SpeculativeVerifyGreedyTest, AcceptsExactlyTheArgmaxAndDrawsOncePerToken) {
  const std::vector<float> logits = RandomLogits(11);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  const int32_t best = Argmax(logits);
  SamplingWorkspace ws;
  for (int32_t draft = 0; draft < kVocab; ++draft) {
    SequenceRng rng(5);
    const VerifiedToken v = VerifyDraftToken(logits, greedy, {}, draft, rng, ws);
    EXPECT_EQ(v.token.token_id, best);
    EXPECT_EQ(v.accepted, draft == best);
    EXPECT_EQ(rng.counter(), 1u);
  }
}

TEST(SpeculativeVerifyGreedyTest, RejectionDrawsTwiceAcceptanceOnce) {
  const std::vector<float> logits = RandomLogits(13);
  const SamplingParams params = Params(1.0f, -1, 1.0f, 1.0f);
  SamplingWorkspace ws;
  int64_t seen_accept = 0;
  int64_t seen_reject = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    SequenceRng rng(seed);
    const VerifiedToken v = VerifyDraftToken(logits, params, {}, Argmax(logits), rng, ws);
    EXPECT_EQ(rng.counter(), v.accepted ? 1u : 2u);
    (v.accepted ? seen_accept : seen_reject)++;
  }
  EXPECT_GT(seen_accept, 0);
  EXPECT_GT(seen_reject, 0);
}

TEST(SpeculativeVerifyLogprobsTest, AreTheTargetModelsRawLogprobs) {
  const std::vector<float> logits = RandomLogits(17);
  SamplingParams params = Params(0.9f, -1, 1.0f, 1.0f);
  params.num_logprobs = 3;
  SamplingWorkspace ws;
  SequenceRng rng(3);
  const VerifiedToken v = VerifyDraftToken(logits, params, {}, 2, rng, ws);
  double normalizer = 0.0;
  for (float x : logits) normalizer += std::exp(static_cast<double>(x));
  EXPECT_NEAR(v.token.logprob, logits[v.token.token_id] - std::log(normalizer), 1e-5);
  ASSERT_EQ(v.token.top_logprobs.size(), 3u);
  EXPECT_EQ(v.token.top_logprobs[0].token_id, Argmax(logits));
}

}  // namespace
}  // namespace moeserve::engine
