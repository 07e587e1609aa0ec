// Properties of the CPU forward pass that hold for any weights: the two MLA forms agree,
// chunking and batching do not change results, and the paged cache is read through the
// block table; each with the fp32 latent cache and, for some presets, the BF16 one the fast
// kernel sets serve with (which also stays within bf16 tolerance of fp32). Golden comparisons
// against transformers are in golden_test.cc.
#include "engine/model/deepseek_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "engine/ops/cpu/cpu_threads.h"
#include "engine/runner/offline_runner.h"
#include "tests/testing/tensor_compare.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

struct Preset {
  const char* name;
  bool fp8;
  DType kv_cache = DType::kF32;
};

void PrintTo(const Preset& preset, std::ostream* os) {
  *os << preset.name << (preset.fp8 ? " fp8" : "")
      << (preset.kv_cache == DType::kBF16 ? " bf16 cache" : "");
}

std::string PresetName(const ::testing::TestParamInfo<Preset>& info) {
  std::string name = info.param.name;
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name + (info.param.fp8 ? "_fp8" : "") +
         (info.param.kv_cache == DType::kBF16 ? "_bf16_cache" : "");
}

// The form comparisons check two computation orders against each other to 1e-5; with a BF16
// cache their last-bit differences in a latent may round to neighbouring bf16 values, which is
// the cache's precision, not an error of either form.
#define SKIP_WITH_BF16_CACHE()                                                         \
  if (GetParam().kv_cache == DType::kBF16) {                                           \
    GTEST_SKIP() << "compares two computation orders; a BF16 cache rounds them apart"; \
  }

std::vector<int32_t> RandomTokens(std::mt19937& rng, int64_t n, int64_t vocab) {
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = dist(rng);
  return ids;
}

class DeepseekModelTest : public ::testing::TestWithParam<Preset> {
 protected:
  void SetUp() override {
    auto model =
        DeepseekModel::Load(moeserve::testing::TestCheckpointDir(GetParam().name, GetParam().fp8),
                            {.kv_cache_dtype = GetParam().kv_cache});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    vocab_ = model_->config().vocab_size;
  }

  // Logits of every position of `prompt` from one prefill step.
  std::vector<float> PrefillAll(const std::vector<int32_t>& prompt, MlaForm form,
                                bool quantize = false) {
    OfflineRunner runner(*model_, 1, static_cast<int64_t>(prompt.size()));
    ForwardOptions options{
        .mla_form = form, .logits_for = LogitsFor::kAllTokens, .quantize_activations = quantize};
    auto logits = runner.Step({prompt}, options);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.ok() ? *logits : std::vector<float>();
  }

  std::unique_ptr<DeepseekModel> model_;
  int64_t vocab_ = 0;
  std::mt19937 rng_{20261123};
};

TEST_P(DeepseekModelTest, AbsorbedFormEqualsNaiveForm) {
  SKIP_WITH_BF16_CACHE();
  // Both forms over the same 70 tokens (crossing a 64-token block) in one step.
  const std::vector<int32_t> prompt = RandomTokens(rng_, 70, vocab_);
  const std::vector<float> naive = PrefillAll(prompt, MlaForm::kNaive);
  const std::vector<float> absorbed = PrefillAll(prompt, MlaForm::kAbsorbed);
  ASSERT_EQ(naive.size(), absorbed.size());
  EXPECT_LE(testing::MaxRelativeError(absorbed, naive), 1e-5);
}

TEST_P(DeepseekModelTest, AbsorbedDecodeStepsEqualNaivePrefill) {
  SKIP_WITH_BF16_CACHE();
  // Prefill 20 tokens, then decode 50 one at a time (absorbed form, reading the cache the
  // earlier steps wrote); each step's logits must match the one-shot naive prefill.
  const std::vector<int32_t> tokens = RandomTokens(rng_, 70, vocab_);
  const std::vector<float> reference = PrefillAll(tokens, MlaForm::kNaive);

  OfflineRunner runner(*model_, 1, 70, /*block_shuffle_seed=*/7);
  ForwardOptions options{.logits_for = LogitsFor::kLastTokenOfEachSequence,
                         .quantize_activations = false};
  auto first = runner.Step({{tokens.begin(), tokens.begin() + 20}}, options);
  ASSERT_TRUE(first.ok()) << first.status();
  for (int64_t p = 20; p < 70; ++p) {
    auto step = runner.Step({{tokens[p]}}, options);
    ASSERT_TRUE(step.ok()) << step.status();
    const std::vector<float> expected(reference.begin() + p * vocab_,
                                      reference.begin() + (p + 1) * vocab_);
    ASSERT_LE(testing::MaxRelativeError(*step, expected), 1e-5) << "position " << p;
  }
}

TEST_P(DeepseekModelTest, ChunkedPrefillEqualsOneShotPrefill) {
  const std::vector<int32_t> tokens = RandomTokens(rng_, 90, vocab_);
  const std::vector<float> reference = PrefillAll(tokens, MlaForm::kNaive);
  OfflineRunner runner(*model_, 1, 90);
  ForwardOptions options{.mla_form = MlaForm::kNaive,
                         .logits_for = LogitsFor::kAllTokens,
                         .quantize_activations = false};
  int64_t begin = 0;
  for (int64_t chunk : {5, 60, 1, 24}) {
    auto logits = runner.Step({{tokens.begin() + begin, tokens.begin() + begin + chunk}}, options);
    ASSERT_TRUE(logits.ok()) << logits.status();
    const std::vector<float> expected(reference.begin() + begin * vocab_,
                                      reference.begin() + (begin + chunk) * vocab_);
    EXPECT_LE(testing::MaxRelativeError(*logits, expected), 1e-5) << "chunk at " << begin;
    begin += chunk;
  }
}

TEST_P(DeepseekModelTest, BatchInvariance_GreedyLogitsBitIdenticalAloneAndBatched) {
  const std::vector<int32_t> target = RandomTokens(rng_, 13, vocab_);
  std::vector<std::vector<int32_t>> batch = {RandomTokens(rng_, 40, vocab_), target,
                                             RandomTokens(rng_, 3, vocab_)};
  ForwardOptions options;  // defaults: auto form, activation quantization on
  auto alone = GenerateGreedy(*model_, {target}, 6, options);
  auto together = GenerateGreedy(*model_, batch, 6, options);
  ASSERT_TRUE(alone.ok() && together.ok());
  EXPECT_EQ((*alone)[0], (*together)[1]);

  // Logits of the prefill step, bit for bit.
  OfflineRunner alone_runner(*model_, 1, 64), batch_runner(*model_, 3, 64, 99);
  auto a = alone_runner.Step({target}, options);
  auto b = batch_runner.Step(batch, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(std::memcmp(a->data(), b->data() + vocab_, vocab_ * sizeof(float)), 0);
}

// --threads changes who computes an output, never how: every kernel gives each output element to
// one thread with a fixed summation order, so logits are bit-identical on 1, 2 or 3 threads
// (3 splits the work unevenly), for a prefill of two prompts and the decode steps after it.
TEST_P(DeepseekModelTest, ThreadCountDoesNotChangeLogits) {
  const std::vector<std::vector<int32_t>> prompts = {RandomTokens(rng_, 37, vocab_),
                                                     RandomTokens(rng_, 5, vocab_)};
  const std::vector<std::vector<int32_t>> next = {RandomTokens(rng_, 1, vocab_),
                                                  RandomTokens(rng_, 1, vocab_)};
  auto run_on = [&](int threads) {
    std::vector<float> all;
    std::thread worker([&] {
      SetCpuThreadsOfThisThread(threads);
      EXPECT_EQ(CpuThreadsOfThisThread(), threads);
      OfflineRunner runner(*model_, 2, 64);
      for (const auto* step : {&prompts, &next, &next}) {
        auto logits = runner.Step(*step, ForwardOptions{});
        ASSERT_TRUE(logits.ok()) << logits.status();
        all.insert(all.end(), logits->begin(), logits->end());
      }
    });
    worker.join();
    return all;
  };
  const std::vector<float> one = run_on(1);
  ASSERT_FALSE(one.empty());
  for (int threads : {2, 3}) {
    const std::vector<float> many = run_on(threads);
    ASSERT_EQ(many.size(), one.size());
    EXPECT_EQ(std::memcmp(many.data(), one.data(), one.size() * sizeof(float)), 0)
        << threads << " threads";
  }
}

TEST_P(DeepseekModelTest, RejectsTokenOutsideVocabulary) {
  OfflineRunner runner(*model_, 1, 8);
  auto logits = runner.Step({{1, static_cast<int32_t>(vocab_)}}, ForwardOptions{});
  ASSERT_FALSE(logits.ok());
  EXPECT_EQ(logits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(logits.status().message()).find("outside the vocabulary"),
            std::string::npos);
}

// The BF16 cache against the fp32 one on the same weights: a prefill of 70 tokens (crossing a
// block) and 30 decode steps after it stay within bf16 tolerance, and the greedy token agrees at
// nearly every position (random tiny models have near-ties, so not at all of them).
TEST_P(DeepseekModelTest, Bf16CacheStaysWithinBf16ToleranceOfFp32Cache) {
  if (GetParam().kv_cache != DType::kBF16) GTEST_SKIP() << "runs on the BF16-cache presets";
  ASSERT_EQ(model_->kv_cache_dtype(), DType::kBF16);
  auto fp32 =
      DeepseekModel::Load(moeserve::testing::TestCheckpointDir(GetParam().name, GetParam().fp8),
                          {.kv_cache_dtype = DType::kF32});
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  const std::vector<int32_t> tokens = RandomTokens(rng_, 100, vocab_);
  const std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + 70);
  // Without FP8 activation rounding, whose 3-bit mantissa turns any perturbation into a jump.
  ForwardOptions all{.logits_for = LogitsFor::kAllTokens, .quantize_activations = false};
  ForwardOptions last{.quantize_activations = false};
  OfflineRunner bf16_runner(*model_, 1, 100), fp32_runner(**fp32, 1, 100);
  std::vector<float> bf16_logits, fp32_logits;
  for (int64_t p = 70; p <= 100; ++p) {
    const bool prefill = p == 70;
    const std::vector<std::vector<int32_t>> step = {prefill ? prompt
                                                            : std::vector<int32_t>{tokens[p - 1]}};
    auto b = bf16_runner.Step(step, prefill ? all : last);
    auto f = fp32_runner.Step(step, prefill ? all : last);
    ASSERT_TRUE(b.ok() && f.ok());
    bf16_logits.insert(bf16_logits.end(), b->begin(), b->end());
    fp32_logits.insert(fp32_logits.end(), f->begin(), f->end());
  }
  const double error = testing::MaxRelativeError(bf16_logits, fp32_logits);
  EXPECT_LE(error, 2e-2);
  EXPECT_GT(error, 0.0) << "the BF16 cache should round something";
  const int64_t rows = static_cast<int64_t>(fp32_logits.size()) / vocab_;
  int64_t same = 0;
  for (int64_t r = 0; r < rows; ++r) {
    auto argmax = [&](const std::vector<float>& v) {
      return std::max_element(v.begin() + r * vocab_, v.begin() + (r + 1) * vocab_) - v.begin();
    };
    same += argmax(bf16_logits) == argmax(fp32_logits) ? 1 : 0;
  }
  EXPECT_GE(same, rows * 95 / 100) << same << " of " << rows << " greedy tokens agree";
}

INSTANTIATE_TEST_SUITE_P(Presets, DeepseekModelTest,
                         ::testing::Values(Preset{"tiny-v2-lite", false}, Preset{"tiny-v2", false},
                                           Preset{"tiny-v3", false}, Preset{"tiny-v3", true},
                                           Preset{"tiny-v2-lite", false, DType::kBF16},
                                           Preset{"tiny-v3", true, DType::kBF16}),
                         PresetName);

// `--cpu-kernels bf16 --deterministic` keeps batch invariance: a sequence's logits are
// bit-identical alone and batched with others, like every other kernel set's. (Without
// --deterministic its GEMMs of many rows run on oneDNN; see the next test.)
TEST(DeepseekModelBf16KernelsTest, BatchInvariance_LogitsBitIdenticalAloneAndBatched) {
  auto model = DeepseekModel::Load(moeserve::testing::TestCheckpointDir("tiny-v3", false),
                                   {.cpu_kernels = CpuKernels::kFastBf16, .deterministic = true});
  ASSERT_TRUE(model.ok()) << model.status();
  std::mt19937 rng(20261205);
  const int64_t vocab = (*model)->config().vocab_size;
  const std::vector<int32_t> target = RandomTokens(rng, 13, vocab);
  const std::vector<std::vector<int32_t>> batch = {RandomTokens(rng, 40, vocab), target,
                                                   RandomTokens(rng, 3, vocab)};
  OfflineRunner alone_runner(**model, 1, 64), batch_runner(**model, 3, 64, 99);
  auto a = alone_runner.Step({target}, ForwardOptions{});
  auto b = batch_runner.Step(batch, ForwardOptions{});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(std::memcmp(a->data(), b->data() + vocab, vocab * sizeof(float)), 0);
  auto alone = GenerateGreedy(**model, {target}, 6, ForwardOptions{});
  auto together = GenerateGreedy(**model, batch, 6, ForwardOptions{});
  ASSERT_TRUE(alone.ok() && together.ok());
  EXPECT_EQ((*alone)[0], (*together)[1]);
}

// Without --deterministic, `--cpu-kernels bf16` runs BF16 GEMMs of at least kOneDnnMinRows rows
// on oneDNN: same bf16-rounded inputs, another fp32 summation order. Prefill logits of a batch
// (56 rows per GEMM) agree with the deterministic kernels to bf16 tolerance, and greedy picks
// the same tokens.
TEST(DeepseekModelBf16KernelsTest, OneDnnGemmsAgreeWithTheDeterministicKernels) {
  const LoadOptions fast{.cpu_kernels = CpuKernels::kFastBf16};
  if (!UsesLibraryGemm(fast)) {
    GTEST_SKIP() << "oneDNN GEMMs not in use here (built without libdnnl-dev, or no "
                    "AVX-512-BF16: "
                 << CpuFeaturesString() << ")";
  }
  auto library = DeepseekModel::Load(moeserve::testing::TestCheckpointDir("tiny-v3", false), fast);
  auto deterministic =
      DeepseekModel::Load(moeserve::testing::TestCheckpointDir("tiny-v3", false),
                          {.cpu_kernels = CpuKernels::kFastBf16, .deterministic = true});
  ASSERT_TRUE(library.ok() && deterministic.ok());
  std::mt19937 rng(std::random_device{}());
  const int64_t vocab = (*library)->config().vocab_size;
  const std::vector<std::vector<int32_t>> batch = {
      RandomTokens(rng, 40, vocab), RandomTokens(rng, 13, vocab), RandomTokens(rng, 3, vocab)};
  const ForwardOptions all{.logits_for = LogitsFor::kAllTokens};
  OfflineRunner a_runner(**library, 3, 64), b_runner(**deterministic, 3, 64);
  auto a = a_runner.Step(batch, all);
  auto b = b_runner.Step(batch, all);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  // Per row, the largest logit difference. This random tiny MoE amplifies any rounding
  // difference when a token's expert choice is close (the exact `fast` kernels and the
  // deterministic bf16 ones differ the same way on some rows), so most rows, not all, must
  // agree to bf16 tolerance; a broken GEMM would move every row. The trained bundled model's
  // test (kjv_v3_tiny_test: perplexity and greedy agreement) covers the rest.
  float max_abs = 0;
  std::vector<float> row_diff;
  int64_t same = 0;
  for (size_t row = 0; row * vocab < a->size(); ++row) {
    const float* ra = a->data() + row * vocab;
    const float* rb = b->data() + row * vocab;
    float diff = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      max_abs = std::max(max_abs, std::fabs(rb[v]));
      diff = std::max(diff, std::fabs(ra[v] - rb[v]));
    }
    row_diff.push_back(diff);
    same += std::max_element(ra, ra + vocab) - ra == std::max_element(rb, rb + vocab) - rb;
  }
  const int64_t rows = static_cast<int64_t>(row_diff.size());
  EXPECT_GT(*std::max_element(row_diff.begin(), row_diff.end()), 0.0f)
      << "oneDNN did not run (bit-identical to our kernels)";
  std::sort(row_diff.begin(), row_diff.end());
  EXPECT_LE(row_diff[rows / 2], 2e-2f * max_abs) << "median row";
  EXPECT_GE(same, rows * 9 / 10);
}

TEST(DeepseekModelFp8Test, ActivationQuantizationPerturbsButKeepsLogits) {
  // With FP8 weights, rounding activations through e4m3 (about 3.6% RMS error per value,
  // compounded over ~6 quantized linears per layer and occasional routing flips) must move the
  // logits, so the switch works, while every position keeps the same logit direction.
  auto model = DeepseekModel::Load(moeserve::testing::TestCheckpointDir("tiny-v3", true));
  ASSERT_TRUE(model.ok()) << model.status();
  const int64_t vocab = (*model)->config().vocab_size;
  std::mt19937 rng(5);
  const std::vector<int32_t> prompt = RandomTokens(rng, 17, vocab);
  ForwardOptions on{.logits_for = LogitsFor::kAllTokens, .quantize_activations = true};
  ForwardOptions off{.logits_for = LogitsFor::kAllTokens, .quantize_activations = false};
  OfflineRunner r1(**model, 1, 17), r2(**model, 1, 17);
  auto quantized = r1.Step({prompt}, on);
  auto exact = r2.Step({prompt}, off);
  ASSERT_TRUE(quantized.ok() && exact.ok());
  EXPECT_GT(testing::MaxRelativeError(*quantized, *exact), 1e-4);
  double cosine_sum = 0.0;
  for (size_t p = 0; p < prompt.size(); ++p) {
    double dot = 0.0, norm_q = 0.0, norm_e = 0.0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double q = (*quantized)[p * vocab + v], e = (*exact)[p * vocab + v];
      dot += q * e;
      norm_q += q * q;
      norm_e += e * e;
    }
    cosine_sum += dot / std::sqrt(norm_q * norm_e);
  }
  EXPECT_GT(cosine_sum / prompt.size(), 0.9);
}

}  // namespace
}  // namespace moeserve::engine
