// Loading a checkpoint whose tensors disagree with config.json, or are damaged, fails with a
// message naming the tensor and the file; the MTP layer is recognised and kept out.
#include "engine/model/weight_loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/io/safetensors_writer.h"
#include "engine/model/deepseek_model.h"
#include "engine/model/linear.h"
#include "engine/ops/linear/fp8_quant.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

namespace fs = std::filesystem;

struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Copies a test checkpoint into a fresh single-file checkpoint after `mutate` edits its
// tensor list (and optionally its config.json text).
std::string MutatedCheckpoint(const std::string& preset, bool fp8, const std::string& tag,
                              const std::function<void(std::vector<OwnedTensor>&)>& mutate,
                              const std::function<void(std::string&)>& mutate_config = {}) {
  const std::string source = testing::TestCheckpointDir(preset, fp8);
  auto checkpoint = Checkpoint::Open(source);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  std::vector<OwnedTensor> tensors;
  for (const std::string& name : checkpoint->TensorNames()) {
    TensorView view = *checkpoint->Get(name);
    tensors.push_back({name, view.info->dtype, view.info->shape,
                       std::vector<uint8_t>(view.bytes.begin(), view.bytes.end())});
  }
  mutate(tensors);
  const fs::path dir = fs::path(::testing::TempDir()) / ("moeserve_loader_" + tag);
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ifstream config_in(source + "/config.json");
  std::string config((std::istreambuf_iterator<char>(config_in)), std::istreambuf_iterator<char>());
  if (mutate_config) mutate_config(config);
  std::ofstream(dir / "config.json") << config;
  std::vector<TensorToWrite> to_write;
  for (const OwnedTensor& t : tensors) to_write.push_back({t.name, t.dtype, t.shape, t.bytes});
  EXPECT_TRUE(WriteSafetensors((dir / "model.safetensors").string(), to_write).ok());
  return dir.string();
}

OwnedTensor* FindTensor(std::vector<OwnedTensor>& tensors, const std::string& name) {
  for (OwnedTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  ADD_FAILURE() << "no tensor " << name;
  return nullptr;
}

void ExpectLoadError(const std::string& dir, absl::StatusCode code,
                     const std::vector<std::string>& fragments) {
  auto model = DeepseekModel::Load(dir);
  ASSERT_FALSE(model.ok()) << "loading " << dir << " should have failed";
  EXPECT_EQ(model.status().code(), code) << model.status();
  const std::string message(model.status().message());
  for (const std::string& fragment : fragments) {
    EXPECT_NE(message.find(fragment), std::string::npos)
        << "message \"" << message << "\" should mention \"" << fragment << "\"";
  }
}

TEST(WeightLoaderTest, LoadsMainStackAndLeavesMtpLayerOut) {
  const std::string dir = testing::TestCheckpointDir("tiny-v3", false);
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok());
  // tiny-v3 has 3 layers and one MTP layer stored as layer 3.
  EXPECT_TRUE(checkpoint->Contains("model.layers.3.eh_proj.weight"));
  EXPECT_TRUE(checkpoint->Contains("model.layers.3.self_attn.kv_b_proj.weight"));
  auto config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok());
  auto weights = LoadModelWeights(*checkpoint, *config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->layers.size(), 3u);
  EXPECT_TRUE(weights->layers[0].dense_mlp.has_value());
  EXPECT_TRUE(weights->layers[1].moe.has_value());
  EXPECT_EQ(weights->layers[1].moe->experts.size(), 16u);
  EXPECT_EQ(weights->layers[1].moe->correction_bias.size(), 16u);
}

// With load_mtp the module comes in from model.layers.{num_hidden_layers}.*: its projections at
// their shapes, an MoE block, and its own cache layer; a tensor-parallel shard cuts its block.
TEST(WeightLoaderTest, LoadsTheMtpModuleWhenAsked) {
  const std::string dir = testing::TestCheckpointDir("tiny-v3", false);
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok());
  auto config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok());
  auto weights = LoadModelWeights(*checkpoint, *config, {.load_mtp = true});
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_EQ(weights->mtp.size(), 1u);
  const MtpWeights& mtp = weights->mtp[0];
  EXPECT_EQ(mtp.eh_proj.out_features, config->hidden_size);
  EXPECT_EQ(mtp.eh_proj.in_features, 2 * config->hidden_size);
  EXPECT_EQ(mtp.enorm.size(), static_cast<size_t>(config->hidden_size));
  EXPECT_EQ(mtp.head_norm.size(), static_cast<size_t>(config->hidden_size));
  EXPECT_TRUE(mtp.block.moe.has_value());

  auto model = DeepseekModel::Load(dir, {.load_mtp = true});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->num_mtp_modules(), 1);
  EXPECT_EQ((*model)->MakeKvPages(2).num_layers(), config->num_hidden_layers + 1);

  // A tensor-parallel shard holds the module's block cut like a main layer (half the heads of
  // o_proj's input, half of each expert's width) and eh_proj whole (parallel_model_test checks
  // the group's outputs); only the CUDA loader refuses a sharded module.
  const WeightShard half{.tp_rank = 1, .tp_size = 2, .split_routed_experts = true};
  auto sharded = LoadModelWeights(*checkpoint, *config, {.load_mtp = true}, half);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  ASSERT_EQ(sharded->mtp.size(), 1u);
  const MtpWeights& cut = sharded->mtp[0];
  EXPECT_EQ(cut.block.attention.o_proj.in_features, mtp.block.attention.o_proj.in_features / 2);
  EXPECT_EQ(cut.block.moe->experts[0].down.in_features,
            mtp.block.moe->experts[0].down.in_features / 2);
  EXPECT_EQ(DequantizeLinear(cut.eh_proj), DequantizeLinear(mtp.eh_proj));
  const absl::Status cuda = CheckMtpShard({.load_mtp = true}, half);
  EXPECT_EQ(cuda.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(cuda.message().find("CUDA"), std::string::npos) << cuda;
  EXPECT_TRUE(CheckMtpShard({.load_mtp = false}, half).ok());
}

// The streamed load hands every layer over in order, each equal to the whole load's, keeps
// the non-layer tensors, and stops at the first error its callback returns.
TEST(WeightLoaderTest, StreamedLoadEqualsTheWholeLoadLayerByLayer) {
  const std::string dir = testing::TestCheckpointDir("tiny-v2-lite", true);
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok());
  auto config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok());
  const WeightShard shard{.tp_rank = 1, .tp_size = 2};
  auto whole = LoadModelWeights(*checkpoint, *config, {}, shard);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ModelWeights non_layer;
  std::vector<int64_t> order;
  absl::Status status = LoadModelWeightsByLayer(
      *checkpoint, *config, {}, shard, non_layer, [&](int64_t index, DecoderLayerWeights&& layer) {
        const DecoderLayerWeights& expected = whole->layers[static_cast<size_t>(index)];
        EXPECT_EQ(layer.input_norm, expected.input_norm) << index;
        EXPECT_EQ(layer.attention.q_b_proj.has_value(), expected.attention.q_b_proj.has_value());
        EXPECT_EQ(DequantizeLinear(layer.attention.kv_b_proj),
                  DequantizeLinear(expected.attention.kv_b_proj))
            << index;
        EXPECT_EQ(DequantizeLinear(layer.attention.o_proj),
                  DequantizeLinear(expected.attention.o_proj))
            << index;
        EXPECT_EQ(layer.moe.has_value(), expected.moe.has_value()) << index;
        if (layer.moe.has_value()) {
          EXPECT_EQ(DequantizeLinear(layer.moe->experts.back().down),
                    DequantizeLinear(expected.moe->experts.back().down));
        } else {
          EXPECT_EQ(DequantizeLinear(StackedGateUp(*layer.dense_mlp)),
                    DequantizeLinear(StackedGateUp(*expected.dense_mlp)));
        }
        order.push_back(index);
        return absl::OkStatus();
      });
  ASSERT_TRUE(status.ok()) << status;
  std::vector<int64_t> expected_order(static_cast<size_t>(config->num_hidden_layers));
  std::iota(expected_order.begin(), expected_order.end(), 0);
  EXPECT_EQ(order, expected_order);
  EXPECT_TRUE(non_layer.layers.empty());
  EXPECT_EQ(non_layer.embed_tokens, whole->embed_tokens);
  EXPECT_EQ(DequantizeLinear(non_layer.lm_head), DequantizeLinear(whole->lm_head));

  int calls = 0;
  status = LoadModelWeightsByLayer(*checkpoint, *config, {}, {}, non_layer,
                                   [&](int64_t, DecoderLayerWeights&&) {
                                     ++calls;
                                     return absl::ResourceExhaustedError("device full");
                                   });
  EXPECT_EQ(status.message(), "device full");
  EXPECT_EQ(calls, 1);
}

TEST(WeightLoaderTest, Fp8WeightsDequantizeWithTheirBlockScales) {
  const std::string dir = testing::TestCheckpointDir("tiny-v3", true);
  auto checkpoint = Checkpoint::Open(dir);
  auto config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(checkpoint.ok() && config.ok());
  auto weights = LoadModelWeights(*checkpoint, *config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  // kv_a_proj_with_mqa is [576, 256]: rows 512..575 form a partial block using scale row 4.
  const std::string name = "model.layers.0.self_attn.kv_a_proj_with_mqa";
  TensorView w = *checkpoint->Get(name + ".weight");
  TensorView s = *checkpoint->Get(name + ".weight_scale_inv");
  ASSERT_EQ(s.info->shape, (std::vector<int64_t>{5, 2}));
  const LinearWeight& linear = weights->layers[0].attention.kv_a_proj;
  EXPECT_TRUE(linear.fp8);
  // Held as the checkpoint's bytes and scales by the fast kernels.
  EXPECT_EQ(linear.format, WeightFormat::kFp8Block128);
  EXPECT_TRUE(std::equal(linear.weight_fp8.begin(), linear.weight_fp8.end(), w.bytes.begin(),
                         w.bytes.end()));
  const std::vector<float> dequantized = DequantizeLinear(linear);
  for (int64_t row : {0, 127, 128, 511, 512, 575}) {
    for (int64_t col : {0, 127, 128, 255}) {
      const float scale = LoadAsFloat(s.bytes.data(), DType::kF32, (row / 128) * 2 + col / 128);
      const float expected = Fp8E4M3ToFloat(w.bytes[row * 256 + col]) * scale;
      EXPECT_EQ(dequantized[row * 256 + col], expected) << row << "," << col;
    }
  }
}

TEST(WeightLoaderTest, MissingTensorIsNamed) {
  const std::string dir = MutatedCheckpoint("tiny-v3", false, "missing", [](auto& tensors) {
    std::erase_if(tensors, [](const OwnedTensor& t) {
      return t.name == "model.layers.1.self_attn.kv_a_layernorm.weight";
    });
  });
  ExpectLoadError(dir, absl::StatusCode::kNotFound,
                  {"model.layers.1.self_attn.kv_a_layernorm.weight"});
}

TEST(WeightLoaderTest, ShapeNotMatchingConfigIsNamedWithBothShapes) {
  const std::string dir = MutatedCheckpoint("tiny-v2-lite", false, "shape", [](auto& tensors) {
    OwnedTensor* t = FindTensor(tensors, "model.layers.2.self_attn.o_proj.weight");
    t->shape = {t->shape[1], t->shape[0]};  // same bytes, transposed shape
  });
  ExpectLoadError(
      dir, absl::StatusCode::kInvalidArgument,
      {"model.layers.2.self_attn.o_proj.weight", "model.safetensors", "[512, 256]", "[256, 512]"});
}

TEST(WeightLoaderTest, ConfigDisagreeingWithTensorsIsAnError) {
  const std::string dir = MutatedCheckpoint(
      "tiny-v2", false, "config", [](auto&) {},
      [](std::string& config) {
        const size_t at = config.find("\"moe_intermediate_size\": 128");
        ASSERT_NE(at, std::string::npos);
        config.replace(at, 28, "\"moe_intermediate_size\": 256");
      });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument, {"experts.0.gate_proj.weight"});
}

TEST(WeightLoaderTest, NanInFp8ScalesIsAnError) {
  const std::string dir = MutatedCheckpoint("tiny-v3", true, "nan_scale", [](auto& tensors) {
    OwnedTensor* t = FindTensor(tensors, "model.layers.1.mlp.experts.3.down_proj.weight_scale_inv");
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(t->bytes.data() + 4, &nan, 4);
  });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  {"model.layers.1.mlp.experts.3.down_proj.weight_scale_inv", "non-finite"});
}

TEST(WeightLoaderTest, NanInFp8WeightIsAnError) {
  const std::string dir = MutatedCheckpoint("tiny-v3", true, "nan_fp8", [](auto& tensors) {
    OwnedTensor* t = FindTensor(tensors, "model.layers.1.mlp.experts.3.down_proj.weight");
    t->bytes[77] = 0xFF;  // e4m3 S.1111.111: NaN
  });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  {"model.layers.1.mlp.experts.3.down_proj.weight", "NaN", "element 77"});
}

// Issue 21, row 9: NaN weights were served silently (token 0 repeated). A NaN or infinity at a
// random element of a norm, the router or its bias is refused naming the tensor and element;
// one in a floating linear weight only with LoadOptions::check_all_weights (--check-weights).
void PoisonElement(OwnedTensor* t, int64_t element, float value) {
  ASSERT_TRUE(t->dtype == DType::kBF16 || t->dtype == DType::kF32) << DTypeName(t->dtype);
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if (t->dtype == DType::kF32) {
    std::memcpy(t->bytes.data() + 4 * element, &bits, 4);
  } else {
    const uint16_t high = static_cast<uint16_t>(bits >> 16);
    std::memcpy(t->bytes.data() + 2 * element, &high, 2);
  }
}

TEST(WeightLoaderTest, NonFiniteNormRouterAndBiasValuesAreErrors) {
  std::mt19937 random(std::random_device{}());
  const float kPoisons[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (const char* name :
       {"model.layers.1.input_layernorm.weight", "model.norm.weight",
        "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.gate.e_score_correction_bias"}) {
    SCOPED_TRACE(name);
    int64_t element = 0;
    const float poison = kPoisons[random() % 3];
    const std::string dir = MutatedCheckpoint("tiny-v3", false, "nonfinite", [&](auto& tensors) {
      OwnedTensor* t = FindTensor(tensors, name);
      const int64_t count =
          static_cast<int64_t>(t->bytes.size()) / (t->dtype == DType::kF32 ? 4 : 2);
      element = std::uniform_int_distribution<int64_t>(0, count - 1)(random);
      PoisonElement(t, element, poison);
    });
    ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                    {name, "non-finite", absl::StrCat("element ", element)});
  }
}

TEST(WeightLoaderTest, NonFiniteLinearWeightIsAnErrorWhenAllWeightsAreChecked) {
  std::mt19937 random(std::random_device{}());
  const std::string name = "model.layers.1.mlp.experts.2.up_proj.weight";
  int64_t element = 0;
  const std::string dir =
      MutatedCheckpoint("tiny-v3", false, "nonfinite_linear", [&](auto& tensors) {
        OwnedTensor* t = FindTensor(tensors, name);
        const int64_t count =
            static_cast<int64_t>(t->bytes.size()) / (t->dtype == DType::kF32 ? 4 : 2);
        element = std::uniform_int_distribution<int64_t>(0, count - 1)(random);
        PoisonElement(t, element, std::numeric_limits<float>::quiet_NaN());
      });
  EXPECT_TRUE(DeepseekModel::Load(dir).ok()) << "the default load does not scan linear weights";
  auto checked = DeepseekModel::Load(dir, LoadOptions{.check_all_weights = true});
  ASSERT_FALSE(checked.ok());
  const std::string message(checked.status().message());
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_NE(message.find(absl::StrCat("element ", element)), std::string::npos) << message;
}

TEST(WeightLoaderTest, Fp8WeightWithoutScaleIsAnError) {
  const std::string dir = MutatedCheckpoint("tiny-v3", true, "no_scale", [](auto& tensors) {
    std::erase_if(tensors, [](const OwnedTensor& t) {
      return t.name == "model.layers.0.self_attn.o_proj.weight_scale_inv";
    });
  });
  ExpectLoadError(dir, absl::StatusCode::kNotFound,
                  {"model.layers.0.self_attn.o_proj.weight_scale_inv"});
}

TEST(WeightLoaderTest, IntegerWeightIsAnError) {
  const std::string dir = MutatedCheckpoint("tiny-v3", false, "int_weight", [](auto& tensors) {
    OwnedTensor* t = FindTensor(tensors, "model.norm.weight");
    t->dtype = DType::kI16;  // same byte size as BF16
  });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument, {"model.norm.weight", "I16"});
}

TEST(WeightLoaderTest, TruncatedShardNamesTheFile) {
  const std::string source = testing::TestCheckpointDir("tiny-v3", false);
  const fs::path dir = fs::path(::testing::TempDir()) / "moeserve_loader_truncated";
  fs::remove_all(dir);
  fs::copy(source, dir);
  const fs::path shard = dir / "model-00002-of-00002.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 1000);
  ExpectLoadError(dir.string(), absl::StatusCode::kDataLoss, {"model-00002-of-00002.safetensors"});
}

// --quantization fp8 (LoadOptions::quantize_fp8) on a BF16 checkpoint: every decoder-layer
// linear holds exactly Dequantize(QuantizeFp8BlockWeight(the BF16 values)), per checkpoint
// tensor (gate_proj and up_proj separately, before they are fused), and is marked fp8;
// embeddings, lm_head, norms and the router keep their BF16 values. (moeserve-make-model --fp8
// quantizes its fp32 random values, not the BF16-rounded ones, so its checkpoint is not the
// reference here.)
std::vector<float> QuantizeRoundTrip(const float* w, int64_t rows, int64_t cols) {
  const Fp8BlockWeight q = QuantizeFp8BlockWeight(absl::MakeConstSpan(w, rows * cols), rows, cols);
  return DequantizeFp8BlockWeight(q.fp8, q.scale_inv, rows, cols);
}

void ExpectOnlineQuantized(const LinearWeight& plain, const LinearWeight& online,
                           const std::string& name, int64_t split_rows = 0) {
  SCOPED_TRACE(name);
  ASSERT_FALSE(plain.fp8);
  EXPECT_TRUE(online.fp8);
  const int64_t rows = plain.out_features, cols = plain.in_features;
  const std::vector<float> plain_values = DequantizeLinear(plain);
  std::vector<float> expected;
  if (split_rows == 0) {
    expected = QuantizeRoundTrip(plain_values.data(), rows, cols);
  } else {  // fused gate_up: gate and up were quantized as the checkpoint's two tensors
    expected = QuantizeRoundTrip(plain_values.data(), split_rows, cols);
    const std::vector<float> up =
        QuantizeRoundTrip(plain_values.data() + split_rows * cols, rows - split_rows, cols);
    expected.insert(expected.end(), up.begin(), up.end());
  }
  EXPECT_EQ(DequantizeLinear(online), expected);
  EXPECT_NE(DequantizeLinear(online), plain_values);  // quantization did change the values
}

void ExpectMlpOnlineQuantized(const MlpWeights& plain, const MlpWeights& online,
                              const std::string& name) {
  ExpectOnlineQuantized(StackedGateUp(plain), StackedGateUp(online), name + ".gate_up",
                        plain.width());
  ExpectOnlineQuantized(plain.down, online.down, name + ".down");
}

TEST(WeightLoaderTest, OnlineFp8QuantizationMatchesDeepSeekBlockRecipe) {
  const std::string dir = testing::TestCheckpointDir("tiny-v3", false);
  auto checkpoint = Checkpoint::Open(dir);
  auto config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(checkpoint.ok() && config.ok());
  auto plain = LoadModelWeights(*checkpoint, *config);
  auto online = LoadModelWeights(*checkpoint, *config, LoadOptions{.quantize_fp8 = true});
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(online.ok()) << online.status();

  EXPECT_EQ(online->embed_tokens, plain->embed_tokens);
  EXPECT_EQ(online->final_norm, plain->final_norm);
  EXPECT_FALSE(online->lm_head.fp8);
  EXPECT_EQ(DequantizeLinear(online->lm_head), DequantizeLinear(plain->lm_head));
  ASSERT_EQ(online->layers.size(), plain->layers.size());
  int64_t moe_layers = 0;
  for (size_t l = 0; l < plain->layers.size(); ++l) {
    const DecoderLayerWeights& p = plain->layers[l];
    const DecoderLayerWeights& o = online->layers[l];
    const std::string layer = "layer " + std::to_string(l);
    EXPECT_EQ(o.input_norm, p.input_norm);
    const MlaWeights& pa = p.attention;
    const MlaWeights& oa = o.attention;
    if (pa.q_a_proj.has_value()) {
      ExpectOnlineQuantized(*pa.q_a_proj, *oa.q_a_proj, layer + " q_a_proj");
      ExpectOnlineQuantized(*pa.q_b_proj, *oa.q_b_proj, layer + " q_b_proj");
    } else {
      ExpectOnlineQuantized(*pa.q_proj, *oa.q_proj, layer + " q_proj");
    }
    ExpectOnlineQuantized(pa.kv_a_proj, oa.kv_a_proj, layer + " kv_a_proj");
    ExpectOnlineQuantized(pa.kv_b_proj, oa.kv_b_proj, layer + " kv_b_proj");
    ExpectOnlineQuantized(pa.o_proj, oa.o_proj, layer + " o_proj");
    EXPECT_EQ(oa.kv_a_norm, pa.kv_a_norm);
    if (p.dense_mlp.has_value()) {
      ExpectMlpOnlineQuantized(*p.dense_mlp, *o.dense_mlp, layer + " mlp");
    }
    if (p.moe.has_value()) {
      ++moe_layers;
      EXPECT_EQ(o.moe->router, p.moe->router);
      EXPECT_EQ(o.moe->correction_bias, p.moe->correction_bias);
      ASSERT_EQ(o.moe->experts.size(), p.moe->experts.size());
      for (size_t e = 0; e < p.moe->experts.size(); ++e) {
        ExpectMlpOnlineQuantized(p.moe->experts[e], o.moe->experts[e],
                                 layer + " expert " + std::to_string(e));
      }
      if (p.moe->shared.has_value()) {
        ExpectMlpOnlineQuantized(*p.moe->shared, *o.moe->shared, layer + " shared");
      }
    }
  }
  EXPECT_GT(moe_layers, 0);
}

TEST(WeightLoaderTest, OnlineFp8QuantizedModelRuns) {
  const std::string dir = testing::TestCheckpointDir("tiny-v3", false);
  auto model = DeepseekModel::Load(dir, LoadOptions{.quantize_fp8 = true});
  ASSERT_TRUE(model.ok()) << model.status();
  KvPages pages = (*model)->MakeKvPages(4);
  ForwardBatchBuilder builder;
  const std::vector<int32_t> block_table = {0};
  const std::vector<int32_t> tokens = {1, 2, 3};
  builder.AddSequence(block_table, 0, tokens);
  const ForwardBatch batch = std::move(builder).Build();
  auto logits = (*model)->Forward(batch, pages);
  ASSERT_TRUE(logits.ok()) << logits.status();
  for (float v : *logits) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace moeserve::engine
