// moeserve-make-model: full-size presets have DeepSeek's real tensor shapes (reference §2.2),
// output is deterministic per seed, and FP8 checkpoints carry one scale per 128x128 block.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "engine/io/checkpoint.h"
#include "tools/make_model/checkpoint_maker.h"
#include "tools/make_model/model_presets.h"

namespace moeserve::tools {
namespace {

namespace fs = std::filesystem;

std::map<std::string, std::vector<int64_t>> Shapes(const std::string& preset) {
  auto config = PresetConfig(preset);
  EXPECT_TRUE(config.ok());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorSpec& spec : CheckpointTensorSpecs(*config)) shapes[spec.name] = spec.shape;
  return shapes;
}

TEST(MakeModelTest, V3SliceHasDeepseekV3Shapes) {
  auto shapes = Shapes("v3-slice");
  const std::string p = "model.layers.1.";
  using V = std::vector<int64_t>;
  EXPECT_EQ(shapes[p + "self_attn.q_a_proj.weight"], (V{1536, 7168}));
  EXPECT_EQ(shapes[p + "self_attn.q_b_proj.weight"], (V{24576, 1536}));
  EXPECT_EQ(shapes[p + "self_attn.kv_a_proj_with_mqa.weight"], (V{576, 7168}));
  EXPECT_EQ(shapes[p + "self_attn.kv_b_proj.weight"], (V{32768, 512}));
  EXPECT_EQ(shapes[p + "self_attn.o_proj.weight"], (V{7168, 16384}));
  EXPECT_EQ(shapes[p + "mlp.gate.weight"], (V{256, 7168}));
  EXPECT_EQ(shapes[p + "mlp.gate.e_score_correction_bias"], (V{256}));
  EXPECT_EQ(shapes[p + "mlp.experts.255.gate_proj.weight"], (V{2048, 7168}));
  EXPECT_EQ(shapes[p + "mlp.experts.0.down_proj.weight"], (V{7168, 2048}));
  EXPECT_EQ(shapes[p + "mlp.shared_experts.up_proj.weight"], (V{2048, 7168}));
  EXPECT_EQ(shapes["model.layers.0.mlp.gate_proj.weight"], (V{18432, 7168}));
  EXPECT_EQ(shapes["model.embed_tokens.weight"], (V{129280, 7168}));
  EXPECT_EQ(shapes["lm_head.weight"], (V{129280, 7168}));
}

TEST(MakeModelTest, V2LiteHasTheRealParameterCount) {
  // DeepSeek-V2-Lite has 15.7B parameters (model card).
  auto config = PresetConfig("v2-lite");
  ASSERT_TRUE(config.ok());
  int64_t params = 0;
  for (const TensorSpec& spec : CheckpointTensorSpecs(*config)) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    params += n;
  }
  EXPECT_NEAR(static_cast<double>(params) / 1e9, 15.7, 0.05);
  auto shapes = Shapes("v2-lite");
  EXPECT_EQ(shapes["model.layers.5.self_attn.q_proj.weight"], (std::vector<int64_t>{3072, 2048}));
  EXPECT_EQ(shapes["model.layers.5.mlp.shared_experts.gate_proj.weight"],
            (std::vector<int64_t>{2816, 2048}));
  EXPECT_EQ(shapes.count("model.layers.5.mlp.gate.e_score_correction_bias"), 0u);
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(MakeModelTest, DeterministicPerSeedAndFp8ScalesPerBlock) {
  auto config = PresetConfig("tiny-v3");
  ASSERT_TRUE(config.ok());
  const fs::path root = fs::path(::testing::TempDir()) / "moeserve_make_model_test";
  fs::remove_all(root);
  for (auto [name, seed] : {std::pair{"a", 7}, {"b", 7}, {"c", 8}}) {
    MakeCheckpointOptions options{.out_dir = (root / name).string(),
                                  .fp8 = true,
                                  .shards = 1,
                                  .seed = static_cast<uint64_t>(seed)};
    ASSERT_TRUE(MakeRandomCheckpoint(*config, options).ok());
  }
  EXPECT_EQ(ReadFile(root / "a/model.safetensors"), ReadFile(root / "b/model.safetensors"));
  EXPECT_NE(ReadFile(root / "a/model.safetensors"), ReadFile(root / "c/model.safetensors"));
  EXPECT_TRUE(fs::exists(root / "a/tokenizer.json"));

  auto checkpoint = engine::Checkpoint::Open((root / "a").string());
  ASSERT_TRUE(checkpoint.ok());
  auto scale = checkpoint->Get("model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv");
  ASSERT_TRUE(scale.ok());
  EXPECT_EQ(scale->info->shape, (std::vector<int64_t>{1, 2}));  // [128, 256] in 128x128 blocks
  auto norm = checkpoint->Get("model.layers.1.input_layernorm.weight");
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(norm->info->dtype, engine::DType::kBF16);  // norms are never FP8
  auto router = checkpoint->Get("model.layers.1.mlp.gate.weight");
  EXPECT_EQ(router->info->dtype, engine::DType::kBF16);
  auto bias = checkpoint->Get("model.layers.1.mlp.gate.e_score_correction_bias");
  EXPECT_EQ(bias->info->dtype, engine::DType::kF32);
  // Scales differ across blocks: realistic, not all-equal.
  auto kv_b = checkpoint->Get("model.layers.1.self_attn.kv_b_proj.weight_scale_inv");
  ASSERT_TRUE(kv_b.ok());
  const float* s = reinterpret_cast<const float*>(kv_b->bytes.data());
  EXPECT_NE(s[0], s[kv_b->info->num_elements() - 1]);
}

}  // namespace
}  // namespace moeserve::tools
