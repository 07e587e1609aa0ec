// Tensor- and expert-parallel forward on thread ranks equals the single-rank forward:
// logits to fp32 tolerance (bit for bit when only experts are split, whose arithmetic does
// not change), greedy continuations identical, for tiny-v2-lite and tiny-v3; an expert
// placement with replicas changes nothing; an engine serving with TP=2 equals TP=1. The MTP
// module on a group equals the single rank's, and speculative decoding on a group streams what
// plain decoding does.
#include "engine/parallel/parallel_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "tests/testing/collecting_sink.h"
#include "tests/testing/tensor_compare.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

// Ranks and a single model compare to 2e-5: their sums differ in the last bits, which a BF16
// latent cache could round to neighbouring values, so these runs keep the cache in fp32.
const LoadOptions kFp32Cache{.kv_cache_dtype = DType::kF32};

struct Case {
  const char* preset;
  int tp;
  int ep;
  bool fp8 = false;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string name = absl::StrCat(info.param.preset, "_tp", info.param.tp, "_ep", info.param.ep,
                                  info.param.fp8 ? "_fp8" : "");
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

std::vector<std::vector<int32_t>> RandomPrompts(uint32_t seed, int64_t vocab) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> token(2, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<int32_t>> prompts;
  for (int64_t length : {70, 5, 23}) {  // one crosses a 64-token block
    std::vector<int32_t> p(static_cast<size_t>(length));
    for (auto& t : p) t = token(rng);
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// Drives a ParallelModel directly: one prefill step for all prompts (logits of every token),
// then greedy decode steps for all sequences together.
struct GenerationResult {
  std::vector<float> prefill_logits;
  std::vector<std::vector<int32_t>> generated;
  std::vector<float> decode_logits;          // of every decode step, concatenated
  std::vector<int64_t> expert_token_counts;  // after the run
};

GenerationResult Generate(ParallelModel& model, const std::vector<std::vector<int32_t>>& prompts,
                          int64_t steps, bool quantize) {
  const int64_t vocab = model.config().vocab_size;
  constexpr int64_t kBlocksPerSeq = 3;
  std::vector<KvPages> pages =
      model.MakeKvPages(kBlocksPerSeq * static_cast<int64_t>(prompts.size()));
  std::vector<std::vector<int32_t>> tables;
  for (size_t s = 0; s < prompts.size(); ++s) {
    std::vector<int32_t> t;
    for (int64_t b = 0; b < kBlocksPerSeq; ++b)
      t.push_back(static_cast<int32_t>(s * kBlocksPerSeq + b));
    tables.push_back(t);
  }
  GenerationResult run;
  ForwardBatchBuilder prefill;
  for (size_t s = 0; s < prompts.size(); ++s) prefill.AddSequence(tables[s], 0, prompts[s]);
  ForwardOptions all_tokens{.mla_form = MlaForm::kAuto,
                            .logits_for = LogitsFor::kAllTokens,
                            .quantize_activations = quantize};
  absl::StatusOr<std::vector<float>> logits =
      model.Forward(std::move(prefill).Build(), pages, all_tokens);
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (!logits.ok()) return run;
  run.prefill_logits = *logits;

  std::vector<int64_t> computed, last_row;
  int64_t row = 0;
  for (const auto& p : prompts) {
    computed.push_back(static_cast<int64_t>(p.size()));
    row += static_cast<int64_t>(p.size());
    last_row.push_back(row - 1);
  }
  run.generated.resize(prompts.size());
  std::vector<float> rows;
  for (int64_t i : last_row) {
    rows.insert(rows.end(), logits->begin() + i * vocab, logits->begin() + (i + 1) * vocab);
  }
  ForwardOptions last_token{.mla_form = MlaForm::kAuto,
                            .logits_for = LogitsFor::kLastTokenOfEachSequence,
                            .quantize_activations = quantize};
  for (int64_t step = 0; step < steps; ++step) {
    ForwardBatchBuilder decode;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const float* r = rows.data() + s * vocab;
      const int32_t next = static_cast<int32_t>(std::max_element(r, r + vocab) - r);
      run.generated[s].push_back(next);
      decode.AddSequence(tables[s], computed[s], std::vector<int32_t>{next});
      ++computed[s];
    }
    absl::StatusOr<std::vector<float>> step_logits =
        model.Forward(std::move(decode).Build(), pages, last_token);
    EXPECT_TRUE(step_logits.ok()) << step_logits.status();
    if (!step_logits.ok()) return run;
    rows = *step_logits;
    run.decode_logits.insert(run.decode_logits.end(), rows.begin(), rows.end());
  }
  run.expert_token_counts = model.expert_token_counts();
  return run;
}

class ParallelModelTest : public ::testing::TestWithParam<Case> {
 protected:
  std::string Dir() const {
    return moeserve::testing::TestCheckpointDir(GetParam().preset, GetParam().fp8);
  }

  std::unique_ptr<ParallelModel> LoadParallel(std::optional<ExpertPlacement> placement = {}) {
    auto model = ParallelModel::Load(Dir(), kFp32Cache,
                                     ParallelConfig{.tensor_parallel_size = GetParam().tp,
                                                    .expert_parallel_size = GetParam().ep},
                                     std::move(placement));
    EXPECT_TRUE(model.ok()) << model.status();
    return model.ok() ? *std::move(model) : nullptr;
  }

  GenerationResult SingleRank(bool quantize) {
    auto single = DeepseekModel::Load(Dir(), kFp32Cache);
    EXPECT_TRUE(single.ok()) << single.status();
    auto wrapped = ParallelModel::Wrap(**single);
    return Generate(*wrapped, RandomPrompts(11, (*single)->config().vocab_size), kSteps, quantize);
  }

  static constexpr int64_t kSteps = 12;
};

TEST_P(ParallelModelTest, EqualsSingleRank) {
  const bool quantize = GetParam().fp8;
  const GenerationResult reference = SingleRank(quantize);
  std::unique_ptr<ParallelModel> model = LoadParallel();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->world_size(), std::max(GetParam().tp, GetParam().ep));
  const GenerationResult run =
      Generate(*model, RandomPrompts(11, model->config().vocab_size), kSteps, quantize);
  ASSERT_EQ(run.prefill_logits.size(), reference.prefill_logits.size());
  ASSERT_EQ(run.decode_logits.size(), reference.decode_logits.size());
  if (GetParam().tp == 1) {
    // Only experts moved: every output element is computed by the same arithmetic.
    EXPECT_EQ(run.prefill_logits, reference.prefill_logits);
    EXPECT_EQ(run.decode_logits, reference.decode_logits);
  } else {
    // Partial sums over heads / widths are added in another order: fp32 rounding only.
    EXPECT_LT(testing::MaxRelativeError(run.prefill_logits, reference.prefill_logits), 2e-5);
    EXPECT_LT(testing::MaxRelativeError(run.decode_logits, reference.decode_logits), 2e-5);
  }
  EXPECT_EQ(run.generated, reference.generated);
  // Routing statistics count every token once, however the experts are spread.
  EXPECT_EQ(run.expert_token_counts, reference.expert_token_counts);
}

TEST_P(ParallelModelTest, ReplicatedPlacementEqualsContiguous) {
  if (GetParam().ep == 1) GTEST_SKIP() << "no expert parallelism";
  std::unique_ptr<ParallelModel> plain = LoadParallel();
  ASSERT_NE(plain, nullptr);
  const ModelConfig& c = plain->config();
  // Skewed counts: expert e gets ~1/(e+1) of the tokens; two extra slots per rank.
  const std::vector<bool> moe = MoeLayerMask(c);
  std::vector<int64_t> counts(static_cast<size_t>(c.num_hidden_layers * c.n_routed_experts));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      counts[l * c.n_routed_experts + e] =
          moe[l] ? 10000 / (1 + (e + 3 * l) % c.n_routed_experts) : 0;
    }
  }
  absl::StatusOr<ExpertPlacement> placement =
      ComputeBalancedPlacement(counts, moe, c.n_routed_experts, GetParam().ep,
                               static_cast<int>(c.n_routed_experts / GetParam().ep + 2));
  ASSERT_TRUE(placement.ok()) << placement.status();
  ASSERT_FALSE(placement->IsContiguousDefault());
  std::unique_ptr<ParallelModel> placed = LoadParallel(*placement);
  ASSERT_NE(placed, nullptr);
  const auto prompts = RandomPrompts(12, c.vocab_size);
  const GenerationResult a = Generate(*plain, prompts, 6, GetParam().fp8);
  const GenerationResult b = Generate(*placed, prompts, 6, GetParam().fp8);
  // The same expert computes a token wherever its replica sits.
  EXPECT_EQ(a.prefill_logits, b.prefill_logits);
  EXPECT_EQ(a.decode_logits, b.decode_logits);
  EXPECT_EQ(a.generated, b.generated);
}

INSTANTIATE_TEST_SUITE_P(Presets, ParallelModelTest,
                         ::testing::Values(Case{"tiny-v2-lite", 2, 1}, Case{"tiny-v2-lite", 4, 1},
                                           Case{"tiny-v2-lite", 1, 2}, Case{"tiny-v2-lite", 1, 4},
                                           Case{"tiny-v2-lite", 2, 2}, Case{"tiny-v3", 2, 1},
                                           Case{"tiny-v3", 4, 1}, Case{"tiny-v3", 1, 4},
                                           Case{"tiny-v3", 4, 4},
                                           Case{"tiny-v3", 1, 4, /*fp8=*/true}),
                         CaseName);

// The MTP module on a group: each rank holds its block cut like a main layer (heads and widths
// under TP, experts under EP); the target's hidden states and the module's logits and states
// equal the single rank's, to fp32 rounding under TP and bit for bit when only experts moved.
struct MtpOutputs {
  std::vector<float> target_hidden;  // ForwardWithHidden over the prompts, every token
  std::vector<float> pass_logits;    // the module over every prompt position, every row
  std::vector<float> pass_hidden;
  std::vector<float> draft_logits;  // then over two more positions, the last rows only
  std::vector<float> draft_hidden;
};

MtpOutputs RunMtp(ParallelModel& model, const std::vector<std::vector<int32_t>>& prompts) {
  MtpOutputs out;
  const int64_t hidden = model.config().hidden_size;
  constexpr int64_t kBlocksPerSeq = 3;
  std::vector<KvPages> pages =
      model.MakeKvPages(kBlocksPerSeq * static_cast<int64_t>(prompts.size()));
  std::vector<std::vector<int32_t>> tables(prompts.size());
  for (size_t s = 0; s < prompts.size(); ++s) {
    for (int64_t b = 0; b < kBlocksPerSeq; ++b) {
      tables[s].push_back(static_cast<int32_t>(s * kBlocksPerSeq + b));
    }
  }
  ForwardBatchBuilder target;
  for (size_t s = 0; s < prompts.size(); ++s) target.AddSequence(tables[s], 0, prompts[s]);
  const ForwardOptions absorbed{.mla_form = MlaForm::kAbsorbed};
  absl::StatusOr<ForwardOutput> verified =
      model.ForwardWithHidden(std::move(target).Build(), pages, absorbed);
  EXPECT_TRUE(verified.ok()) << verified.status();
  if (!verified.ok()) return out;
  out.target_hidden = verified->hidden;
  // The module at positions 0 .. n-2 of each prompt: token p + 1 and the state at p.
  ForwardBatchBuilder pass;
  std::vector<float> prev_hidden;
  int64_t first = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const auto n = static_cast<int64_t>(prompts[s].size());
    pass.AddSequence(tables[s], 0, std::vector<int32_t>(prompts[s].begin() + 1, prompts[s].end()));
    prev_hidden.insert(prev_hidden.end(), verified->hidden.begin() + first * hidden,
                       verified->hidden.begin() + (first + n - 1) * hidden);
    first += n;
  }
  ForwardOptions every_row = absorbed;
  every_row.logits_for = LogitsFor::kAllTokens;
  absl::StatusOr<ForwardOutput> all =
      model.ForwardMtp(0, std::move(pass).Build(), prev_hidden, pages, every_row);
  EXPECT_TRUE(all.ok()) << all.status();
  if (!all.ok()) return out;
  out.pass_logits = all->logits;
  out.pass_hidden = all->hidden;
  // Two more positions per sequence, drafting from the last: the first only writes its latents.
  ForwardBatchBuilder more;
  std::vector<float> more_hidden;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const auto n = static_cast<int64_t>(prompts[s].size());
    more.AddSequence(tables[s], n - 1, std::vector<int32_t>{prompts[s][0], prompts[s][1]});
    more_hidden.insert(more_hidden.end(), all->hidden.end() - 2 * hidden, all->hidden.end());
  }
  absl::StatusOr<ForwardOutput> drafted =
      model.ForwardMtp(0, std::move(more).Build(), more_hidden, pages, absorbed);
  EXPECT_TRUE(drafted.ok()) << drafted.status();
  if (!drafted.ok()) return out;
  out.draft_logits = drafted->logits;
  out.draft_hidden = drafted->hidden;
  return out;
}

class ParallelMtpTest : public ::testing::TestWithParam<Case> {};

TEST_P(ParallelMtpTest, ModuleOnAGroupEqualsSingleRank) {
  const std::string dir =
      moeserve::testing::TestCheckpointDir(GetParam().preset, GetParam().fp8, 1234, 1);
  LoadOptions options = kFp32Cache;
  options.load_mtp = true;
  auto single = DeepseekModel::Load(dir, options);
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_EQ((*single)->num_mtp_modules(), 1);
  auto wrapped = ParallelModel::Wrap(**single);
  const auto prompts = RandomPrompts(21, (*single)->config().vocab_size);
  const MtpOutputs reference = RunMtp(*wrapped, prompts);

  auto group = ParallelModel::Load(
      dir, options,
      ParallelConfig{.tensor_parallel_size = GetParam().tp, .expert_parallel_size = GetParam().ep});
  ASSERT_TRUE(group.ok()) << group.status();
  ASSERT_EQ((*group)->num_mtp_modules(), 1);
  const std::vector<int64_t> counts_before = (*group)->expert_token_counts();
  const MtpOutputs run = RunMtp(**group, prompts);
  ASSERT_FALSE(reference.draft_logits.empty());
  ASSERT_EQ(run.draft_logits.size(), reference.draft_logits.size());
  const std::pair<const std::vector<float>*, const std::vector<float>*> pairs[] = {
      {&run.target_hidden, &reference.target_hidden},
      {&run.pass_logits, &reference.pass_logits},
      {&run.pass_hidden, &reference.pass_hidden},
      {&run.draft_logits, &reference.draft_logits},
      {&run.draft_hidden, &reference.draft_hidden}};
  for (const auto& [actual, expected] : pairs) {
    ASSERT_EQ(actual->size(), expected->size());
    if (GetParam().tp == 1) {
      EXPECT_EQ(*actual, *expected);  // only experts moved
    } else {
      EXPECT_LT(testing::MaxRelativeError(*actual, *expected), 2e-5);
    }
  }
  // The module's routing is not counted with the main stack's (expert_token_counts).
  const std::vector<int64_t> main_counts = (*group)->expert_token_counts();
  int64_t routed = 0;
  for (size_t i = 0; i < main_counts.size(); ++i) routed += main_counts[i] - counts_before[i];
  int64_t prompt_tokens = 0;
  for (const auto& p : prompts) prompt_tokens += static_cast<int64_t>(p.size());
  const ModelConfig& c = (*group)->config();
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) moe_layers += c.IsMoeLayer(l) ? 1 : 0;
  EXPECT_EQ(routed, prompt_tokens * moe_layers * c.num_experts_per_tok);
}

INSTANTIATE_TEST_SUITE_P(Presets, ParallelMtpTest,
                         ::testing::Values(Case{"tiny-v3", 2, 1}, Case{"tiny-v3", 1, 4},
                                           Case{"tiny-v3", 2, 2}, Case{"tiny-v2-lite", 2, 2},
                                           Case{"tiny-v3", 1, 2, /*fp8=*/true}),
                         CaseName);

TEST(ParallelModelErrors, BadSizesNameTheFlag) {
  const std::string dir = moeserve::testing::TestCheckpointDir("tiny-v3", false);
  const struct {
    ParallelConfig parallel;
    std::string message;
  } cases[] = {
      {{.tensor_parallel_size = 3}, "--tensor-parallel-size 3 does not divide"},
      {{.tensor_parallel_size = 0}, "--tensor-parallel-size must be at least 1"},
      {{.expert_parallel_size = 3}, "--expert-parallel-size 3 does not divide"},
      {{.tensor_parallel_size = 2, .expert_parallel_size = 4}, "--expert-parallel-size 4 must be"},
      {{.tensor_parallel_size = 8}, "--tensor-parallel-size 8 does not divide"},
  };
  for (const auto& c : cases) {
    auto model = ParallelModel::Load(dir, kFp32Cache, c.parallel);
    ASSERT_FALSE(model.ok());
    EXPECT_NE(model.status().message().find(c.message), std::string::npos) << model.status();
  }
}

TEST(ParallelModelErrors, BadBatchLeavesTheGroupUsable) {
  auto model =
      ParallelModel::Load(moeserve::testing::TestCheckpointDir("tiny-v3", false), kFp32Cache,
                          {.tensor_parallel_size = 2, .expert_parallel_size = 2});
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<KvPages> pages = (*model)->MakeKvPages(2);
  ForwardBatchBuilder bad;
  bad.AddSequence(std::vector<int32_t>{0}, 0, std::vector<int32_t>{5, 100000});
  EXPECT_EQ((*model)->Forward(std::move(bad).Build(), pages).status().code(),
            absl::StatusCode::kInvalidArgument);
  ForwardBatchBuilder good;
  good.AddSequence(std::vector<int32_t>{0}, 0, std::vector<int32_t>{5, 6, 7});
  EXPECT_TRUE((*model)->Forward(std::move(good).Build(), pages).ok());
}

// An engine serving with tensor parallelism 2 (and experts spread over the same 2 ranks)
// streams the same greedy tokens as the single-rank engine.
TEST(ParallelEngineTest, TensorParallelTwoEqualsOne) {
  const std::string dir = moeserve::testing::TestCheckpointDir("tiny-v2-lite", false);
  auto single = DeepseekModel::Load(dir, kFp32Cache);
  ASSERT_TRUE(single.ok());
  std::vector<GenerateRequest> requests;
  std::mt19937 rng(99);
  for (int i = 0; i < 6; ++i) {
    GenerateRequest r;
    r.request_id = absl::StrCat("r", i);
    for (int k = 0; k < 5 + 17 * i; ++k)
      r.prompt_token_ids.push_back(2 + static_cast<int32_t>(rng() % 500));
    r.sampling.temperature = 0.0f;
    r.stop.max_new_tokens = 20;
    r.stop.ignore_eos = true;
    requests.push_back(r);
  }
  auto serve = [&](auto& model, const EngineOptions& options) {
    auto engine = Engine::Create(model, nullptr, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    std::vector<moeserve::testing::CollectingSink> sinks(requests.size());
    std::vector<RequestHandle> handles;
    for (size_t i = 0; i < requests.size(); ++i) {
      auto handle = (*engine)->Submit(requests[i], &sinks[i]);
      EXPECT_TRUE(handle.ok()) << handle.status();
      handles.push_back(*std::move(handle));
    }
    std::vector<std::vector<int32_t>> tokens;
    for (auto& sink : sinks) {
      EXPECT_TRUE(sink.WaitFinished());
      tokens.push_back(sink.token_ids());
    }
    const EngineStats stats = (*engine)->Stats();
    int64_t routed = 0;
    for (int64_t c : stats.expert_token_counts) routed += c;
    EXPECT_GT(routed, 0);
    return tokens;
  };
  EngineOptions options{.num_kv_blocks = 32, .max_num_batched_tokens = 64, .max_model_len = 1024};
  const auto expected = serve(**single, options);
  auto parallel =
      ParallelModel::Load(dir, kFp32Cache, {.tensor_parallel_size = 2, .expert_parallel_size = 2});
  ASSERT_TRUE(parallel.ok()) << parallel.status();
  options.tensor_parallel_size = 2;
  options.expert_parallel_size = 2;
  EXPECT_EQ(serve(**parallel, options), expected);

  options.tensor_parallel_size = 1;
  EXPECT_FALSE(Engine::Create(**parallel, nullptr, options).ok()) << "sizes must match the model";
}

// Speculative decoding on a group: the bundled model (whose trained module's drafts are mostly
// accepted) with TP = EP = 2 streams the same greedy tokens with k = 1 and 2 as without
// speculation on the same group, frees every KV block, and accepts drafts.
TEST(ParallelEngineTest, SpeculativeGreedyOnAGroupEqualsPlainDecoding) {
  const std::string dir = std::string(MOESERVE_SOURCE_DIR) + "/models/kjv-v3-tiny";
  LoadOptions options = kFp32Cache;
  options.load_mtp = true;
  auto group =
      ParallelModel::Load(dir, options, {.tensor_parallel_size = 2, .expert_parallel_size = 2});
  ASSERT_TRUE(group.ok()) << group.status();
  auto tokenizer = Tokenizer::Load(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<GenerateRequest> requests;
  const char* texts[] = {"In the beginning God created", "The LORD is my shepherd;",
                         "And Naomi said unto her two daughters in law,",
                         "Blessed are the poor in spirit:", "And David said to Saul,"};
  for (size_t i = 0; i < std::size(texts); ++i) {
    auto ids = (*tokenizer)->Encode(texts[i], /*add_special_tokens=*/true);
    ASSERT_TRUE(ids.ok()) << ids.status();
    GenerateRequest r;
    r.request_id = absl::StrCat("r", i);
    r.prompt_token_ids = *ids;
    r.sampling.temperature = 0.0f;
    r.stop.max_new_tokens = 24 + 6 * static_cast<int64_t>(i);
    r.stop.ignore_eos = true;
    requests.push_back(r);
  }
  auto serve = [&](int64_t k) {
    EngineOptions engine_options{.num_kv_blocks = 16,
                                 .max_num_seqs = 4,
                                 .max_num_batched_tokens = 48,
                                 .max_model_len = 512,
                                 .tensor_parallel_size = 2,
                                 .expert_parallel_size = 2};
    engine_options.speculative_tokens = k;
    auto engine = Engine::Create(**group, tokenizer->get(), engine_options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    std::vector<std::vector<int32_t>> tokens;
    if (!engine.ok()) return std::make_pair(tokens, EngineStats{});
    std::vector<moeserve::testing::CollectingSink> sinks(requests.size());
    std::vector<RequestHandle> handles;
    for (size_t i = 0; i < requests.size(); ++i) {
      auto handle = (*engine)->Submit(requests[i], &sinks[i]);
      EXPECT_TRUE(handle.ok()) << handle.status();
      if (handle.ok()) handles.push_back(*std::move(handle));
    }
    for (auto& sink : sinks) {
      EXPECT_TRUE(sink.WaitFinished());
      tokens.push_back(sink.token_ids());
    }
    (*engine)->Shutdown(ShutdownMode::kDrain);
    return std::make_pair(tokens, (*engine)->Stats());
  };
  const auto [plain, plain_stats] = serve(0);
  for (int64_t k : {1, 2}) {
    const auto [spec, stats] = serve(k);
    EXPECT_EQ(spec, plain) << "k " << k;
    EXPECT_EQ(stats.num_kv_blocks_used, 0) << "k " << k << ": KV blocks leaked";
    EXPECT_GT(stats.speculation.num_drafts, 0);
    // The trained module is right most of the time; far less means a broken group pass.
    EXPECT_GT(stats.speculation.num_accepted_tokens * 2, stats.speculation.num_draft_tokens)
        << "k " << k;
  }
}

}  // namespace
}  // namespace moeserve::engine
