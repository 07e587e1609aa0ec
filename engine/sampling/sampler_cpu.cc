#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "engine/sampling/logits_processors.h"
#include "engine/sampling/radix_select.h"
#include "engine/sampling/sampler.h"

namespace moeserve::engine {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// The draw first finds the block of this many tokens that holds the target, then walks it.
constexpr size_t kDrawBlock = 1024;

bool Masked(float logit) { return !(logit > kNegInf); }  // -inf or NaN

// Index of the largest value, ties to the lower index; NaN never wins. 0 if all are NaN.
int32_t ArgmaxOf(absl::Span<const float> logits) {
  int32_t best = -1;
  float best_value = kNegInf;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    if (v > best_value || (best < 0 && v == kNegInf)) {
      best = static_cast<int32_t>(i);
      best_value = v;
    }
  }
  return std::max(best, 0);
}

// Step 5: the k-th largest unmasked logit (tokens tied with it are kept too), or -inf when
// fewer than k tokens are unmasked.
float TopKThreshold(absl::Span<const float> logits, int32_t k, RadixScratch& scratch) {
  const RadixCutoff cut = FindRadixCutoff(
      logits.size(), [&](size_t i) { return OrderedKey(logits[i]); },
      [&](size_t i) { return Masked(logits[i]) ? 0.0 : 1.0; }, static_cast<double>(k), scratch);
  return cut.found ? FromOrderedKey(cut.key) : kNegInf;
}

// Step 6 on the weights of the top-k survivors: zeroes every token after the smallest prefix, in
// descending weight with ties to the lower id, that holds `target` of the mass. The prefix ends
// at some weight w_c: all heavier tokens are kept, all lighter ones dropped, and of the tokens
// weighing exactly w_c the lowest ids are kept until the mass reaches the target.
void TopP(double target, absl::Span<float> w, RadixScratch& scratch) {
  const RadixCutoff cut = FindRadixCutoff(
      w.size(), [&](size_t i) { return OrderedKey(w[i]); },
      [&](size_t i) { return static_cast<double>(w[i]); }, target, scratch);
  if (!cut.found) return;  // rounding left the whole mass just short of target: keep all
  const float w_c = FromOrderedKey(cut.key);
  double mass = cut.mass_above;
  size_t last_tie = w.size();
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] != w_c) continue;
    last_tie = i;
    mass += w_c;
    if (mass >= target) break;
  }
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] < w_c || (w[i] == w_c && i > last_tie)) w[i] = 0.0f;
  }
}

// Sum of n floats in double, with four accumulators so the adds do not wait on each other.
double Sum(const float* x, size_t n) {
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) s[j] += x[i + j];
  }
  for (; i < n; ++i) s[0] += x[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// Sums per block of kDrawBlock weights; returns their total.
double BlockSums(absl::Span<const float> w, std::vector<double>& sums) {
  sums.resize((w.size() + kDrawBlock - 1) / kDrawBlock);
  double total = 0.0;
  for (size_t b = 0; b < sums.size(); ++b) {
    const size_t begin = b * kDrawBlock;
    sums[b] = Sum(w.data() + begin, std::min(w.size() - begin, kDrawBlock));
    total += sums[b];
  }
  return total;
}

// Steps 4-7 on processed logits. Leaves in ws.weights the unnormalised probabilities of the
// kept tokens (0 for the others; the most likely weighs 1) and in ws.block_sums their block
// sums; returns their total, 0 when every logit is -inf or NaN.
double KeptWeights(absl::Span<const float> logits, const SamplingParams& params,
                   SamplingWorkspace& ws) {
  float max_logit = kNegInf;
  for (float v : logits) max_logit = v > max_logit ? v : max_logit;
  std::vector<float>& w = ws.weights;
  w.resize(logits.size());
  if (max_logit == kNegInf) return 0.0;

  float threshold = kNegInf;
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < logits.size()) {
    threshold = TopKThreshold(logits, params.top_k, ws.radix);
  }
  // Temperature and the softmax numerator, exp((logit - max) / T). The max weighs exactly 1,
  // also when it is +inf.
  const float inv_temperature = 1.0f / params.temperature;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    float weight = 0.0f;
    if (v == max_logit) {
      weight = 1.0f;
    } else if (v >= threshold) {  // false for NaN
      weight = std::exp((v - max_logit) * inv_temperature);
    }
    w[i] = weight;
  }

  // min-p and top-p both keep a prefix of the same descending order, and min-p's threshold
  // (relative to p_max, which top-p never drops) does not depend on top-p; so min-p may run
  // first, provided top-p measures its mass against the top-k survivors' total.
  const double total = params.top_p < 1.0f ? Sum(w.data(), w.size()) : 0.0;
  if (params.min_p > 0.0f) {
    const float min_weight = params.min_p;  // min_p * p_max, with p_max's weight 1
    for (float& x : w) x = x < min_weight ? 0.0f : x;
  }
  if (params.top_p < 1.0f) {
    TopP(static_cast<double>(params.top_p) * total, absl::MakeSpan(w), ws.radix);
  }
  return BlockSums(w, ws.block_sums);
}

// Step 8: the first token, in id order, whose cumulative weight exceeds u * total.
int32_t Draw(absl::Span<const float> w, const std::vector<double>& block_sums, double total,
             double u) {
  const double target = u * total;
  double cumulative = 0.0;
  for (size_t b = 0; b < block_sums.size(); ++b) {
    if (cumulative + block_sums[b] <= target) {
      cumulative += block_sums[b];
      continue;
    }
    const size_t end = std::min(w.size(), (b + 1) * kDrawBlock);
    double within = cumulative;
    for (size_t i = b * kDrawBlock; i < end; ++i) {
      within += w[i];
      if (w[i] > 0.0f && within > target) return static_cast<int32_t>(i);
    }
    cumulative += block_sums[b];  // summing in another order fell short: go on
  }
  // Rounding put u * total at or past the end: the last token with weight.
  for (size_t i = w.size(); i-- > 0;) {
    if (w[i] > 0.0f) return static_cast<int32_t>(i);
  }
  return 0;
}

// log_softmax of the raw logits for the chosen token and the top n.
void FillLogprobs(absl::Span<const float> raw, int32_t n, SampledToken& out) {
  float max_logit = kNegInf;
  for (float v : raw) max_logit = v > max_logit ? v : max_logit;  // NaN never replaces the max
  double sum = 0.0;
  for (float v : raw) sum += std::exp(v - max_logit);
  const double log_normalizer = static_cast<double>(max_logit) + std::log(sum);
  const auto logprob = [&](float logit) {
    return static_cast<float>(static_cast<double>(logit) - log_normalizer);
  };
  out.logprob = logprob(raw[out.token_id]);

  // Top n by one scan with a small sorted buffer: ids arrive ascending, so a strictly larger
  // logit is needed to pass an entry, which puts ties in lower-id-first order.
  std::vector<TokenLogprob>& top = out.top_logprobs;
  top.clear();
  if (n <= 0) return;
  const size_t capacity = std::min(static_cast<size_t>(n), raw.size());
  top.reserve(capacity + 1);
  for (size_t i = 0; i < raw.size(); ++i) {
    const float v = raw[i];
    if (std::isnan(v)) continue;
    if (top.size() == capacity && !(v > top.back().logprob)) continue;
    const auto pos =
        std::find_if(top.begin(), top.end(), [v](const TokenLogprob& t) { return v > t.logprob; });
    top.insert(pos, {static_cast<int32_t>(i), v});
    if (top.size() > capacity) top.pop_back();
  }
  for (TokenLogprob& t : top) t.logprob = logprob(t.logprob);
}

// Steps 1-2: the logits the rest sees, copied only when something changes them.
absl::Span<const float> ProcessedLogits(absl::Span<const float> logits,
                                        const SamplingParams& params, const PenaltyContext& context,
                                        SamplingWorkspace& ws) {
  if (!HasLogitsProcessors(params)) return logits;
  ws.logits.assign(logits.begin(), logits.end());
  ApplyLogitsProcessors(params, context, absl::MakeSpan(ws.logits), &ws.penalty);
  return ws.logits;
}

}  // namespace

SampledToken SampleToken(absl::Span<const float> logits, const SamplingParams& params,
                         const PenaltyContext& context, SequenceRng& rng,
                         SamplingWorkspace& workspace) {
  const double u = rng.NextUniform();  // exactly one draw per token, greedy included
  const absl::Span<const float> processed = ProcessedLogits(logits, params, context, workspace);
  SampledToken out;
  if (params.greedy()) {
    out.token_id = ArgmaxOf(processed);
  } else {
    const double total = KeptWeights(processed, params, workspace);
    out.token_id =
        total > 0.0 ? Draw(workspace.weights, workspace.block_sums, total, u) : ArgmaxOf(processed);
  }
  if (params.num_logprobs >= 0) FillLogprobs(logits, params.num_logprobs, out);
  return out;
}

VerifiedToken VerifyDraftToken(absl::Span<const float> logits, const SamplingParams& params,
                               const PenaltyContext& context, int32_t draft, SequenceRng& rng,
                               SamplingWorkspace& workspace) {
  const double u = rng.NextUniform();
  const absl::Span<const float> processed = ProcessedLogits(logits, params, context, workspace);
  VerifiedToken out;
  const double total = params.greedy() ? 0.0 : KeptWeights(processed, params, workspace);
  const bool in_vocab = draft >= 0 && static_cast<size_t>(draft) < processed.size();
  if (total <= 0.0) {
    // Greedy, or nothing left to sample: SampleToken's answer is the argmax.
    out.token.token_id = ArgmaxOf(processed);
  } else if (in_vocab && u * total < static_cast<double>(workspace.weights[draft])) {
    out.token.token_id = draft;  // accepted with probability p(draft)
  } else {
    // Rejected: the residual max(0, p - one_hot(draft)) is p without the draft.
    if (in_vocab) workspace.weights[draft] = 0.0f;
    const double residual = BlockSums(workspace.weights, workspace.block_sums);
    const double v = rng.NextUniform();
    out.token.token_id = residual > 0.0 ? Draw(workspace.weights, workspace.block_sums, residual, v)
                                        : ArgmaxOf(processed);
  }
  out.accepted = out.token.token_id == draft;
  if (params.num_logprobs >= 0) FillLogprobs(logits, params.num_logprobs, out.token);
  return out;
}

SampledToken SampleToken(absl::Span<const float> logits, const SamplingParams& params,
                         const PenaltyContext& context, SequenceRng& rng) {
  SamplingWorkspace workspace;
  return SampleToken(logits, params, context, rng, workspace);
}

std::vector<TokenProbability> SamplingDistribution(absl::Span<const float> logits,
                                                   const SamplingParams& params,
                                                   const PenaltyContext& context) {
  SamplingWorkspace ws;
  const absl::Span<const float> processed = ProcessedLogits(logits, params, context, ws);
  const double total = params.greedy() ? 0.0 : KeptWeights(processed, params, ws);
  if (total <= 0.0) return {{ArgmaxOf(processed), 1.0}};
  std::vector<TokenProbability> out;
  for (size_t i = 0; i < ws.weights.size(); ++i) {
    if (ws.weights[i] > 0.0f) out.push_back({static_cast<int32_t>(i), ws.weights[i] / total});
  }
  return out;
}

std::vector<SampledToken> SampleBatch(absl::Span<const float> logits, int64_t vocab_size,
                                      absl::Span<const SamplingRow> rows) {
  const auto num_rows = static_cast<int64_t>(rows.size());
  std::vector<SampledToken> out(rows.size());
#pragma omp parallel if (num_rows > 1)
  {
    SamplingWorkspace workspace;
#pragma omp for schedule(dynamic)
    for (int64_t r = 0; r < num_rows; ++r) {
      const SamplingRow& row = rows[r];
      out[r] = SampleToken(logits.subspan(r * vocab_size, vocab_size), *row.params, row.context,
                           *row.rng, workspace);
    }
  }
  return out;
}

int32_t GreedyToken(absl::Span<const float> logits) { return ArgmaxOf(logits); }

bool NeedsOnlyArgmax(const SamplingParams& params) {
  return params.greedy() && params.num_logprobs < 0 && !HasLogitsProcessors(params);
}

}  // namespace moeserve::engine
