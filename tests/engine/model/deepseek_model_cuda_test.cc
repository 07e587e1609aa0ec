// The CUDA backend's whole forward (DeepseekModelCuda, loaded through LoadCudaRunner with its
// memory plan) against the CPU backend on the same FP8 weights: logits of a prefill step, then
// teacher-forced decode steps with a new prefill chunk mixed in, on tiny-v2-lite, tiny-v3 and
// the bundled kjv-v3-tiny. BF16 activations and a BF16 latent cache bound the logit error; the
// greedy choice must agree on ≥ 99 % of the tokens where the CPU's top two are not a near tie.
// Also: the device argmax equals the host one, and the engine serves through the CUDA
// StepModel and frees every KV block.
// Skips with the reason when there is no CUDA device.
#include "engine/model/deepseek_model_cuda.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "engine/model/deepseek_model.h"
#include "engine/runner/cuda_runner.h"
#include "engine/runner/cuda_step_model.h"
#include "engine/sampling/sampler.h"
#include "tests/testing/collecting_sink.h"
#include "tests/testing/cuda_model_cases.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/tensor_compare.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

using testing::Argmax;

constexpr int64_t kBlocksPerSeq = 4;
constexpr int64_t kPoolBlocks = 64;

std::vector<int32_t> Table(int64_t seq) {
  return testing::ShuffledBlockTable(seq, kBlocksPerSeq, kPoolBlocks);
}

// Top-1 minus top-2 logit.
float Margin(absl::Span<const float> row) {
  std::vector<float> sorted(row.begin(), row.end());
  std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
  return sorted[0] - sorted[1];
}

class DeepseekModelCudaTest : public testing::CudaTest,
                              public ::testing::WithParamInterface<testing::ModelCase> {
 protected:
  void SetUp() override {
    testing::CudaTest::SetUp();
    if (IsSkipped()) return;
    auto cpu = DeepseekModel::Load(GetParam().dir(), {.quantize_fp8 = true});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = *std::move(cpu);
    auto runner = LoadCudaRunner(GetParam().dir(), {.gpu_memory_utilization = 0.9,
                                                    .max_num_batched_tokens = 256,
                                                    .max_num_seqs = 16,
                                                    .max_model_len = kBlocksPerSeq * 64,
                                                    .max_num_kv_blocks = kPoolBlocks});
    ASSERT_TRUE(runner.ok()) << runner.status();
    ASSERT_EQ(runner->num_kv_blocks, kPoolBlocks);
    for (const std::string& line : runner->log_lines) std::cout << line << "\n";
    gpu_ = std::move(runner->model);
  }

  std::unique_ptr<DeepseekModel> cpu_;
  std::unique_ptr<StepModel> gpu_;
};

TEST_P(DeepseekModelCudaTest, LogitsAndGreedyChoicesMatchTheCpuBackend) {
  const int64_t vocab = cpu_->config().vocab_size;
  KvPages cpu_pages = cpu_->MakeKvPages(kPoolBlocks);
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int32_t> token(2, static_cast<int32_t>(vocab - 1));
  auto tokens = [&](int64_t n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = token(rng);
    return t;
  };

  // Prefill four sequences (one crosses a page), every token's logits.
  const std::vector<int64_t> prompt_lengths = {70, 5, 23, 1};
  ForwardBatchBuilder prefill;
  for (size_t s = 0; s < prompt_lengths.size(); ++s) {
    prefill.AddSequence(Table(static_cast<int64_t>(s)), 0, tokens(prompt_lengths[s]));
  }
  const ForwardBatch prefill_batch = std::move(prefill).Build();
  const ForwardOptions all{.logits_for = LogitsFor::kAllTokens};
  auto expected = cpu_->Forward(prefill_batch, cpu_pages, all);
  auto actual = gpu_->Forward(prefill_batch, all);
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_TRUE(actual.ok()) << actual.status();
  ASSERT_EQ(actual->size(), expected->size());
  EXPECT_LT(testing::MaxRelativeError(*actual, *expected), 5e-2);

  // Teacher-forced decode: both backends get the CPU's choice. At step 6 a fifth sequence
  // joins with a 40-token chunk, so steps mix decode and prefill.
  std::vector<int64_t> computed(prompt_lengths.begin(), prompt_lengths.end());
  std::vector<int32_t> next;
  for (size_t s = 0; s < computed.size(); ++s) {
    const int64_t row =
        std::accumulate(prompt_lengths.begin(), prompt_lengths.begin() + s + 1, int64_t{0}) - 1;
    next.push_back(Argmax(absl::MakeConstSpan(*expected).subspan(row * vocab, vocab)));
  }
  int64_t compared = 0, agreed = 0, decided = 0, decided_agreed = 0;
  double worst_error = 0.0;
  for (int step = 0; step < 24; ++step) {
    ForwardBatchBuilder builder;
    for (size_t s = 0; s < computed.size(); ++s) {
      builder.AddSequence(Table(static_cast<int64_t>(s)), computed[s], {next[s]});
    }
    const bool joins = step == 6;
    if (joins) builder.AddSequence(Table(4), 0, tokens(40));
    const ForwardBatch batch = std::move(builder).Build();
    auto cpu_logits = cpu_->Forward(batch, cpu_pages, {});
    auto gpu_logits = gpu_->Forward(batch, {});
    ASSERT_TRUE(cpu_logits.ok()) << cpu_logits.status();
    ASSERT_TRUE(gpu_logits.ok()) << gpu_logits.status();
    ASSERT_EQ(gpu_logits->size(), cpu_logits->size());
    worst_error = std::max(worst_error, testing::MaxRelativeError(*gpu_logits, *cpu_logits));
    for (size_t s = 0; s < computed.size(); ++s) ++computed[s];
    if (joins) computed.push_back(40);
    next.resize(computed.size());
    for (size_t s = 0; s < computed.size(); ++s) {
      const auto cpu_row = absl::MakeConstSpan(*cpu_logits).subspan(s * vocab, vocab);
      const auto gpu_row = absl::MakeConstSpan(*gpu_logits).subspan(s * vocab, vocab);
      const bool same = Argmax(cpu_row) == Argmax(gpu_row);
      ++compared;
      agreed += same;
      // A near tie (within the bf16 error of the logits) may go either way.
      if (Margin(cpu_row) > 0.05f * (1.0f + std::fabs(cpu_row[Argmax(cpu_row)]))) {
        ++decided;
        decided_agreed += same;
      }
      next[s] = Argmax(cpu_row);
    }
  }
  std::cout << GetParam().name << ": worst decode relative error " << worst_error
            << ", greedy agreement " << agreed << "/" << compared << " (" << decided_agreed << "/"
            << decided << " outside near ties)\n";
  EXPECT_LT(worst_error, 5e-2);
  ASSERT_GT(decided, compared / 2) << "too many near ties for the comparison to mean anything";
  EXPECT_GE(static_cast<double>(decided_agreed), 0.99 * static_cast<double>(decided));

  // The experts' token counts reached the host: every MoE layer routed top_k per token.
  const std::vector<int64_t> counts = gpu_->expert_token_counts();
  const ModelConfig& c = cpu_->config();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    int64_t sum = 0;
    for (int64_t e = 0; e < c.n_routed_experts; ++e) sum += counts[l * c.n_routed_experts + e];
    if (c.IsMoeLayer(l)) {
      EXPECT_GT(sum, 0) << "layer " << l;
      EXPECT_EQ(sum % c.num_experts_per_tok, 0) << "layer " << l;
    } else {
      EXPECT_EQ(sum, 0) << "layer " << l;
    }
  }
}

TEST_P(DeepseekModelCudaTest, DeviceArgmaxEqualsTheHostArgmaxOfTheLogits) {
  ForwardBatchBuilder builder;
  for (int64_t s = 0; s < 5; ++s) {
    std::vector<int32_t> prompt(static_cast<size_t>(1 + 29 * s));
    for (size_t i = 0; i < prompt.size(); ++i)
      prompt[i] = static_cast<int32_t>(2 + (i * 7 + s) % 300);
    builder.AddSequence(Table(s), 0, prompt);
  }
  const ForwardBatch batch = std::move(builder).Build();
  auto logits = gpu_->Forward(batch, {});
  ASSERT_TRUE(logits.ok()) << logits.status();
  auto ids = gpu_->ForwardArgmax(batch, {});  // rewrites the same slots with the same latents
  ASSERT_TRUE(ids.ok()) << ids.status();
  const int64_t vocab = cpu_->config().vocab_size;
  ASSERT_EQ(static_cast<int64_t>(ids->size()), batch.num_seqs());
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    EXPECT_EQ((*ids)[s], GreedyToken(absl::MakeConstSpan(*logits).subspan(s * vocab, vocab)))
        << "sequence " << s;
  }
}

// Decode steps replayed from CUDA graphs (padded to 2 and 4 sequences) give the eager step's
// logits: on capture, on replay, and for another batch of the same padded size.
TEST_P(DeepseekModelCudaTest, GraphReplayEqualsEagerDecode) {
  auto* step_model = dynamic_cast<CudaStepModel*>(gpu_.get());
  ASSERT_NE(step_model, nullptr);
  DeepseekModelCuda* model = &step_model->mutable_model();
  const int64_t vocab = cpu_->config().vocab_size;
  ForwardBatchBuilder prefill;
  const std::vector<int64_t> lengths = {90, 3, 40, 17};
  for (size_t s = 0; s < lengths.size(); ++s) {
    std::vector<int32_t> prompt(static_cast<size_t>(lengths[s]));
    for (size_t i = 0; i < prompt.size(); ++i)
      prompt[i] = static_cast<int32_t>(2 + (i * 13 + s) % 250);
    prefill.AddSequence(Table(static_cast<int64_t>(s)), 0, prompt);
  }
  ASSERT_TRUE(gpu_->Forward(std::move(prefill).Build(), {}).ok());

  // Decode batches over subsets of the sequences; each rewrites its own next slot identically
  // however often it runs, so eager and graph runs see the same cache.
  auto decode = [&](std::vector<int64_t> seqs) {
    ForwardBatchBuilder builder;
    for (int64_t s : seqs) builder.AddSequence(Table(s), lengths[s], {static_cast<int32_t>(7 + s)});
    return std::move(builder).Build();
  };
  const std::vector<std::vector<int64_t>> batches = {{0, 1, 2}, {3, 0}, {2, 3, 1}};
  std::vector<std::vector<float>> eager;
  ASSERT_TRUE(model->SetCudaGraphs({.batch_sizes = {}}).ok());
  for (const auto& seqs : batches) {
    auto logits = gpu_->Forward(decode(seqs), {});
    ASSERT_TRUE(logits.ok()) << logits.status();
    eager.push_back(*std::move(logits));
  }
  // Batches 0 and 2 both pad to 4: batch 2 replays the graph captured for batch 0.
  ASSERT_TRUE(model->SetCudaGraphs({.batch_sizes = {1, 2, 4}, .max_model_len = 256}).ok());
  for (int run = 0; run < 2; ++run) {
    for (size_t i = 0; i < batches.size(); ++i) {
      auto graphed = gpu_->Forward(decode(batches[i]), {});
      ASSERT_TRUE(graphed.ok()) << graphed.status();
      ASSERT_EQ(graphed->size(), eager[i].size());
      // The captured split plan differs from the eager one: fp32 combine order only.
      EXPECT_LT(testing::MaxRelativeError(*graphed, eager[i]), 1e-2)
          << "batch " << i << " run " << run;
      for (size_t r = 0; r < batches[i].size(); ++r) {
        const auto e = absl::MakeConstSpan(eager[i]).subspan(r * vocab, vocab);
        const auto g = absl::MakeConstSpan(*graphed).subspan(r * vocab, vocab);
        if (Margin(e) > 0.05f) {
          EXPECT_EQ(GreedyToken(g), GreedyToken(e)) << "row " << r;
        }
      }
    }
  }
  EXPECT_EQ(model->SetCudaGraphs({.batch_sizes = {4, 2}, .max_model_len = 256}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model->SetCudaGraphs({.batch_sizes = {64}, .max_model_len = 256}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(DeepseekModelCudaTest, RefusesBadBatchesBeforeAnyWork) {
  ForwardBatchBuilder builder;
  builder.AddSequence(Table(0), 0, {1, static_cast<int32_t>(cpu_->config().vocab_size)});
  auto logits = gpu_->Forward(std::move(builder).Build(), {});
  ASSERT_EQ(logits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(logits.status().message().find("outside the vocabulary"), absl::string_view::npos);
}

TEST_P(DeepseekModelCudaTest, EngineServesThroughTheCudaModelAndFreesEveryBlock) {
  EngineOptions options;
  options.num_kv_blocks = gpu_->num_kv_blocks();
  options.max_num_seqs = 8;
  options.max_num_batched_tokens = 64;  // the 100-token prompt is prefilled in chunks
  options.max_model_len = kBlocksPerSeq * 64;
  auto engine = Engine::Create(*gpu_, nullptr, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<moeserve::testing::CollectingSink> sinks(3);
  std::vector<RequestHandle> handles;
  for (size_t i = 0; i < sinks.size(); ++i) {
    GenerateRequest request;
    request.request_id = absl::StrCat("r", i);
    request.prompt_token_ids = std::vector<int32_t>(i == 0 ? 100 : 7 + i, 5 + i);
    request.stop.max_new_tokens = 12;
    request.stop.ignore_eos = true;
    auto handle = (*engine)->Submit(std::move(request), &sinks[i]);
    ASSERT_TRUE(handle.ok()) << handle.status();
    handles.push_back(*std::move(handle));
  }
  for (auto& sink : sinks) {
    ASSERT_TRUE(sink.WaitFinished(std::chrono::seconds(60)));
    EXPECT_EQ(sink.token_ids().size(), 12u);
  }
  const EngineStats stats = (*engine)->Stats();
  EXPECT_EQ(stats.num_kv_blocks_used, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Models, DeepseekModelCudaTest,
    ::testing::Values(testing::ModelCase{"tiny_v2_lite", testing::TinyV2LiteDir},
                      testing::ModelCase{"tiny_v3", testing::TinyV3Dir},
                      testing::ModelCase{"kjv_v3_tiny", testing::KjvV3TinyDir}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace moeserve::engine
