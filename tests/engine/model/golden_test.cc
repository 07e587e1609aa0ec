// The CPU forward pass against Hugging Face transformers (tools/oracle/make_golden.py):
// prefill logits for prompts of several lengths within 1e-4 relative error, and identical
// 16-token greedy continuations, for each tiny preset (the FP8 one with activation
// quantization off, since the oracle dequantizes the weights and runs in fp32).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "engine/io/npy.h"
#include "engine/model/deepseek_model.h"
#include "engine/runner/offline_runner.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

constexpr double kMaxRelativeError = 1e-4;
constexpr char kRegenerateHint[] =
    "if moeserve-make-model or the oracle changed on purpose, regenerate the goldens with "
    "tools/oracle/regenerate_goldens.sh";

struct GoldenCase {
  const char* golden_name;
  const char* preset;
  bool fp8;
};

void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.golden_name; }

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {
 protected:
  void SetUp() override {
    const std::string dir =
        std::string(MOESERVE_SOURCE_DIR) + "/tests/golden/" + GetParam().golden_name;
    std::ifstream in(dir + "/manifest.json");
    ASSERT_TRUE(in) << "missing " << dir << "/manifest.json";
    manifest_ = nlohmann::json::parse(in);
    auto logits = ReadNpyFloat32(dir + "/" + manifest_["logits_file"].get<std::string>());
    ASSERT_TRUE(logits.ok()) << logits.status();
    golden_logits_ = *std::move(logits);
    auto model = DeepseekModel::Load(testing::TestCheckpointDir(GetParam().preset, GetParam().fp8),
                                     // The fp32 cache: the configuration pinned to transformers.
                                     {.kv_cache_dtype = DType::kF32});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
  }

  nlohmann::json manifest_;
  NpyArray golden_logits_;
  std::unique_ptr<DeepseekModel> model_;
};

TEST_P(GoldenTest, PrefillLogitsMatchTransformers) {
  const auto prompts = manifest_["prompts"].get<std::vector<std::vector<int32_t>>>();
  const int64_t vocab = model_->config().vocab_size;
  ASSERT_EQ(golden_logits_.shape.size(), 3u);
  ASSERT_EQ(golden_logits_.shape[0], static_cast<int64_t>(prompts.size()));
  ASSERT_EQ(golden_logits_.shape[2], vocab);
  const int64_t max_len = golden_logits_.shape[1];

  // All prompts in one batched prefill; the oracle ran each alone.
  OfflineRunner runner(*model_, static_cast<int64_t>(prompts.size()), max_len);
  ForwardOptions options{.logits_for = LogitsFor::kAllTokens, .quantize_activations = false};
  auto logits = runner.Step(prompts, options);
  ASSERT_TRUE(logits.ok()) << logits.status();

  int64_t row = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    double max_diff = 0.0, max_ref = 0.0;
    for (size_t p = 0; p < prompts[s].size(); ++p, ++row) {
      const float* ours = logits->data() + row * vocab;
      const float* ref = golden_logits_.data.data() + (s * max_len + p) * vocab;
      for (int64_t v = 0; v < vocab; ++v) {
        max_diff = std::max(max_diff, std::fabs(static_cast<double>(ours[v]) - ref[v]));
        max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[v])));
      }
    }
    const double relative = max_diff / max_ref;
    std::printf("[ golden   ] %s prompt %zu (%zu tokens): max relative error %.3g\n",
                GetParam().golden_name, s, prompts[s].size(), relative);
    EXPECT_LE(relative, kMaxRelativeError)
        << "prompt " << s << " of length " << prompts[s].size() << "; " << kRegenerateHint;
  }
}

TEST_P(GoldenTest, GreedyContinuationMatchesTransformers) {
  const auto prompts = manifest_["prompts"].get<std::vector<std::vector<int32_t>>>();
  std::vector<std::vector<int32_t>> greedy_prompts;
  std::vector<std::vector<int32_t>> expected;
  for (const auto& g : manifest_["greedy"]) {
    greedy_prompts.push_back(prompts[g["prompt_index"].get<size_t>()]);
    expected.push_back(g["tokens"].get<std::vector<int32_t>>());
  }
  ASSERT_FALSE(expected.empty());
  const int64_t num_tokens = static_cast<int64_t>(expected[0].size());
  ForwardOptions options{.quantize_activations = false};
  auto generated = GenerateGreedy(*model_, greedy_prompts, num_tokens, options);
  ASSERT_TRUE(generated.ok()) << generated.status();
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*generated)[i], expected[i])
        << "greedy prompt " << i
        << " (smallest top-1/top-2 margin in the oracle: " << manifest_["greedy"][i]["min_margin"]
        << "); " << kRegenerateHint;
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, GoldenTest,
                         ::testing::Values(GoldenCase{"tiny-v2-lite", "tiny-v2-lite", false},
                                           GoldenCase{"tiny-v2", "tiny-v2", false},
                                           GoldenCase{"tiny-v3", "tiny-v3", false},
                                           GoldenCase{"tiny-v3-fp8", "tiny-v3", true}),
                         [](const auto& info) {
                           std::string name = info.param.golden_name;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace moeserve::engine
