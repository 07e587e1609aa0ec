#include "engine/model/model_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {
namespace {

using Json = nlohmann::json;

// gmock is not linked into unit tests; this is HasSubstr on a status message with a readable
// failure. (Debian's absl::string_view is not std::string_view, hence the copy.)
::testing::AssertionResult Contains(const absl::Status& status, std::string_view part) {
  const std::string text(status.message());
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// Copies of public configs (tests/data/configs/SOURCES.md), so CI needs no ../shared.
const std::string kConfigDir = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/configs/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

ModelConfig LoadOrDie(const std::string& name) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kConfigDir + name);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

TEST(ModelConfigTest, V2LiteConfigParsesToEveryReferenceValue) {
  const ModelConfig c = LoadOrDie("deepseek-v2-lite.config.json");
  EXPECT_EQ(c.architecture, Architecture::kDeepseekV2);
  EXPECT_EQ(c.model_type, "deepseek_v2");
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 27);
  EXPECT_EQ(c.first_k_dense_replace, 1);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_EQ(c.intermediate_size, 10944);
  EXPECT_EQ(c.moe_intermediate_size, 1408);
  EXPECT_EQ(c.n_routed_experts, 64);
  EXPECT_EQ(c.n_shared_experts, 2);
  EXPECT_EQ(c.shared_expert_intermediate_size(), 2816);
  EXPECT_EQ(c.num_experts_per_tok, 6);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSoftmax);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 1.0);
  EXPECT_EQ(c.num_attention_heads, 16);
  EXPECT_EQ(c.q_lora_rank, std::nullopt);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.qk_head_dim(), 192);
  EXPECT_EQ(c.kv_cache_dim(), 576);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 40.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale, 0.707);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale_all_dim, 0.707);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.vocab_size, 102400);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  EXPECT_FALSE(c.fp8.has_value());
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 100000);
  EXPECT_EQ(c.eos_token_id, 100001);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{100001});
}

TEST(ModelConfigTest, R1ConfigParsesToEveryReferenceV3Value) {
  const ModelConfig c = LoadOrDie("deepseek-r1.config.json");
  EXPECT_EQ(c.architecture, Architecture::kDeepseekV3);
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.first_k_dense_replace, 3);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.shared_expert_intermediate_size(), 2048);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.kv_cache_dim(), 576);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 40.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale_all_dim, 1.0);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  ASSERT_TRUE(c.fp8.has_value());
  EXPECT_EQ(c.fp8->weight_block_rows, 128);
  EXPECT_EQ(c.fp8->weight_block_cols, 128);
  EXPECT_TRUE(c.fp8->dynamic_activation);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 1);
}

TEST(ModelConfigTest, SoftmaxScaleUsesQkHeadDimAndYarnMscaleSquared) {
  const ModelConfig v2 = LoadOrDie("deepseek-v2-lite.config.json");
  const ModelConfig v3 = LoadOrDie("deepseek-r1.config.json");
  EXPECT_NEAR(v2.YarnMscaleAllDim(), 1.260804, 1e-6);
  EXPECT_NEAR(v2.SoftmaxScale(), 0.1147214, 1e-6);
  EXPECT_NEAR(v3.YarnMscaleAllDim(), 1.368888, 1e-6);
  EXPECT_NEAR(v3.SoftmaxScale(), 0.1352338, 1e-6);
  ModelConfig plain = v3;  // Moonlight-style: no YaRN means m = 1 and tau = 192^-1/2.
  plain.rope_scaling.reset();
  EXPECT_DOUBLE_EQ(plain.YarnMscaleAllDim(), 1.0);
  EXPECT_NEAR(plain.SoftmaxScale(), 0.0721688, 1e-6);
}

TEST(ModelConfigTest, IsMoeLayerStartsAtFirstKDenseReplace) {
  const ModelConfig v2 = LoadOrDie("deepseek-v2-lite.config.json");
  const ModelConfig v3 = LoadOrDie("deepseek-r1.config.json");
  const std::vector<bool> v2_expected = {false, true, true, true};
  const std::vector<bool> v3_expected = {false, false, false, true};
  for (int64_t layer = 0; layer < 4; ++layer) {
    EXPECT_EQ(v2.IsMoeLayer(layer), v2_expected[layer]) << "V2-Lite layer " << layer;
    EXPECT_EQ(v3.IsMoeLayer(layer), v3_expected[layer]) << "V3 layer " << layer;
  }
  ModelConfig every_other = v3;
  every_other.moe_layer_freq = 2;
  EXPECT_FALSE(every_other.IsMoeLayer(3));
  EXPECT_TRUE(every_other.IsMoeLayer(4));
  ModelConfig dense = v3;
  dense.n_routed_experts = 0;
  EXPECT_FALSE(dense.IsMoeLayer(10));
}

TEST(ModelConfigTest, TokenizerConfigsWithIntegersWiderThan64BitsParseAsJson) {
  for (const char* name : {"kimi-k2-instruct.tokenizer_config.json",
                           "deepseek-r1.tokenizer_config.json", "deepseek-v3.tokenizer_config.json",
                           "deepseek-coder-6.7b-instruct.tokenizer_config.json"}) {
    SCOPED_TRACE(name);
    const Json j = Json::parse(ReadFile(kConfigDir + name));
    ASSERT_TRUE(j.contains("model_max_length"));
    ASSERT_TRUE(j["model_max_length"].is_number());
    EXPECT_GT(j["model_max_length"].get<double>(), 1000.0);
  }
  // Kimi's 1000000000000000019884624838656 does not fit 64 bits: nlohmann keeps it as a double.
  const Json kimi = Json::parse(ReadFile(kConfigDir + "kimi-k2-instruct.tokenizer_config.json"));
  EXPECT_TRUE(kimi["model_max_length"].is_number_float());
  EXPECT_NEAR(kimi["model_max_length"].get<double>(), 1e30, 1e16);
}

TEST(ModelConfigTest, IntegersWiderThan64BitsAreIgnoredInUnknownFieldsAndRejectedInKnownOnes) {
  Json j = Json::parse(ReadFile(kConfigDir + "deepseek-r1.config.json"));
  const std::string huge = "1000000000000000019884624838656";
  std::string text = j.dump();
  text.insert(1, "\"model_max_length\": " + huge + ", \"big_unsigned\": 18446744073709551615, ");
  EXPECT_TRUE(ParseModelConfig(text, "wide.json").ok());

  j["vocab_size"] = 18446744073709551615ull;  // fits uint64, not int64
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump(), "wide.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(c.status(), "'vocab_size'"));

  text = j.dump();
  const size_t pos = text.find("18446744073709551615");
  text.replace(pos, 20, huge);
  c = ParseModelConfig(text, "wide.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(c.status(), "'vocab_size' must be a positive integer"));
}

TEST(ModelConfigTest, DeepSeekInferenceModelArgsConfigsAreRejectedClearly) {
  for (const char* name :
       {"config_16B.json", "config_236B.json", "config_671B.json", "config_v3.1.json"}) {
    SCOPED_TRACE(name);
    const std::string path = kConfigDir + "deepseek-v3-github-inference/" + name;
    absl::StatusOr<ModelConfig> c = LoadModelConfig(path);
    ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(c.status(), path));
    EXPECT_TRUE(Contains(c.status(), "'architectures'"));
    EXPECT_TRUE(Contains(c.status(), "'model_type'"));
    EXPECT_TRUE(Contains(c.status(), "ModelArgs"));
  }
}

TEST(ModelConfigTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadModelConfig(kConfigDir + "no-such.json").status().code(),
            absl::StatusCode::kNotFound);
}

// Issue 21, row 6: a FIFO at config.json hung the load forever; /dev/zero read without end.
TEST(ModelConfigTest, NonRegularFilesAreRefusedWithoutBlocking) {
  const std::string fifo = ::testing::TempDir() + "/config_fifo_" + std::to_string(getpid());
  unlink(fifo.c_str());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  absl::StatusOr<ModelConfig> c = LoadModelConfig(fifo);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(c.status(), "is a FIFO; expected a regular file"));
  unlink(fifo.c_str());
  c = LoadModelConfig("/dev/zero");
  EXPECT_TRUE(Contains(c.status(), "/dev/zero is a character device"));
  c = LoadModelConfig(kConfigDir);
  EXPECT_TRUE(Contains(c.status(), "is a directory"));
}

void ExpectRoundTrip(const ModelConfig& c) {
  const std::string text = ModelConfigToJson(c);
  absl::StatusOr<ModelConfig> back = ParseModelConfig(text, "roundtrip.json");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_TRUE(*back == c) << text;
  EXPECT_EQ(ModelConfigToJson(*back), text);
}

TEST(ModelConfigTest, RoundTripPreservesV2LikeConfigs) {
  const ModelConfig lite = LoadOrDie("deepseek-v2-lite.config.json");
  ExpectRoundTrip(lite);
  // The V2 (236B) router shape, which no real HF config in tests/data covers.
  ModelConfig v2 = lite;
  v2.hidden_size = 5120;
  v2.num_attention_heads = 128;
  v2.q_lora_rank = 1536;
  v2.n_routed_experts = 160;
  v2.n_group = 8;
  v2.topk_group = 3;
  v2.topk_method = TopkMethod::kGroupLimitedGreedy;
  v2.routed_scaling_factor = 16.0;
  v2.tie_word_embeddings = true;
  v2.bos_token_id.reset();
  v2.eos_token_id.reset();
  v2.eos_token_ids.clear();
  ExpectRoundTrip(v2);
}

TEST(ModelConfigTest, RoundTripPreservesV3LikeConfigs) {
  const ModelConfig r1 = LoadOrDie("deepseek-r1.config.json");
  ExpectRoundTrip(r1);
  // Kimi-K2-like: model_type kimi_k2, rope factor 32, an eos list and 1e-5 eps.
  ModelConfig k2 = r1;
  k2.model_type = "kimi_k2";
  k2.vocab_size = 163840;  // K2's: its eos ids below must lie inside the vocabulary
  k2.n_routed_experts = 384;
  k2.n_group = 1;
  k2.topk_group = 1;
  k2.routed_scaling_factor = 2.827;
  k2.rope_theta = 50000.0;
  k2.rope_scaling->factor = 32.0;
  k2.rope_scaling->beta_fast = 1.0;
  k2.rms_norm_eps = 1e-5;
  k2.fp8->weight_block_cols = 64;
  k2.eos_token_ids = {163586, 163585};
  k2.eos_token_id = 163586;
  ExpectRoundTrip(k2);
  // Moonlight-like: no YaRN, no quantization.
  ModelConfig moonlight = r1;
  moonlight.rope_scaling.reset();
  moonlight.fp8.reset();
  ExpectRoundTrip(moonlight);
}

TEST(ModelConfigTest, ToJsonWritesHfFieldNamesAndConstants) {
  const std::string text = ModelConfigToJson(LoadOrDie("deepseek-r1.config.json"));
  EXPECT_EQ(text.rfind("{\n  \"", 0), 0u) << "pretty-printed with a 2-space indent";
  const Json j = Json::parse(text);
  EXPECT_EQ(j["architectures"], Json::array({"DeepseekV3ForCausalLM"}));
  EXPECT_EQ(j["model_type"], "deepseek_v3");
  EXPECT_EQ(j["rope_scaling"]["type"], "yarn");
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "yarn");
  EXPECT_EQ(j["quantization_config"],
            Json::parse(R"({"activation_scheme":"dynamic","fmt":"e4m3","quant_method":"fp8",
                            "weight_block_size":[128,128]})"));
  EXPECT_EQ(j["torch_dtype"], "bfloat16");
  EXPECT_EQ(j["topk_method"], "noaux_tc");
  EXPECT_EQ(j["scoring_func"], "sigmoid");
  EXPECT_EQ(j["num_key_value_heads"], 128);
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_EQ(j["attention_bias"], false);
  EXPECT_EQ(j["rope_interleave"], true);
  // Every key of the original HF config that describes the model is written with the same value.
  const Json orig = Json::parse(ReadFile(kConfigDir + "deepseek-r1.config.json"));
  for (const char* key : {"bos_token_id",
                          "eos_token_id",
                          "first_k_dense_replace",
                          "hidden_size",
                          "intermediate_size",
                          "kv_lora_rank",
                          "max_position_embeddings",
                          "moe_intermediate_size",
                          "moe_layer_freq",
                          "n_group",
                          "n_routed_experts",
                          "n_shared_experts",
                          "norm_topk_prob",
                          "num_attention_heads",
                          "num_experts_per_tok",
                          "num_hidden_layers",
                          "num_nextn_predict_layers",
                          "q_lora_rank",
                          "qk_nope_head_dim",
                          "qk_rope_head_dim",
                          "rms_norm_eps",
                          "rope_theta",
                          "routed_scaling_factor",
                          "tie_word_embeddings",
                          "topk_group",
                          "use_cache",
                          "v_head_dim",
                          "vocab_size",
                          "initializer_range"}) {
    EXPECT_EQ(j[key], orig[key]) << key;
  }

  const Json v2 = Json::parse(ModelConfigToJson(LoadOrDie("deepseek-v2-lite.config.json")));
  EXPECT_EQ(v2["architectures"], Json::array({"DeepseekV2ForCausalLM"}));
  EXPECT_EQ(v2["topk_method"], "greedy");
  EXPECT_EQ(v2["scoring_func"], "softmax");
  EXPECT_TRUE(v2["q_lora_rank"].is_null());
  EXPECT_FALSE(v2.contains("quantization_config"));
  EXPECT_FALSE(v2.contains("rope_interleave"));
}

// A minimal config: only the required fields, so the HF defaults show.
Json MinimalConfig(const char* architecture) {
  return {{"architectures", {architecture}},
          {"vocab_size", 1000},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"moe_intermediate_size", 32},
          {"num_hidden_layers", 4},
          {"num_attention_heads", 2},
          {"max_position_embeddings", 256},
          {"q_lora_rank", nullptr},
          {"kv_lora_rank", 16},
          {"qk_nope_head_dim", 8},
          {"qk_rope_head_dim", 4},
          {"v_head_dim", 8},
          {"n_routed_experts", 8},
          {"num_experts_per_tok", 2}};
}

TEST(ModelConfigTest, AbsentFieldsTakeTheArchitecturesHfDefaults) {
  absl::StatusOr<ModelConfig> v2 =
      ParseModelConfig(MinimalConfig("DeepseekV2ForCausalLM").dump(), "min.json");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->model_type, "deepseek_v2");
  EXPECT_EQ(v2->topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(v2->scoring_func, ScoringFunc::kSoftmax);
  EXPECT_FALSE(v2->norm_topk_prob);
  EXPECT_EQ(v2->n_group, 1);
  EXPECT_EQ(v2->topk_group, 1);
  EXPECT_DOUBLE_EQ(v2->routed_scaling_factor, 1.0);
  EXPECT_EQ(v2->moe_layer_freq, 1);
  EXPECT_EQ(v2->first_k_dense_replace, 0);
  EXPECT_EQ(v2->num_nextn_predict_layers, 0);
  EXPECT_EQ(v2->n_shared_experts, 0);
  EXPECT_FALSE(v2->tie_word_embeddings);
  EXPECT_FALSE(v2->rope_scaling.has_value());
  EXPECT_FALSE(v2->fp8.has_value());
  EXPECT_FALSE(v2->bos_token_id.has_value());
  EXPECT_FALSE(v2->eos_token_id.has_value());

  Json v3_json = MinimalConfig("DeepseekV3ForCausalLM");
  v3_json["n_shared_experts"] = nullptr;  // HF-remote's None
  absl::StatusOr<ModelConfig> v3 = ParseModelConfig(v3_json.dump(), "min.json");
  ASSERT_TRUE(v3.ok()) << v3.status();
  EXPECT_EQ(v3->topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(v3->scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(v3->norm_topk_prob);
  EXPECT_EQ(v3->n_shared_experts, 0);
}

TEST(ModelConfigTest, ArchitectureFallsBackToModelType) {
  Json j = MinimalConfig("DeepseekV2ForCausalLM");
  j.erase("architectures");
  j["model_type"] = "kimi_k2";
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump(), "k2.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kDeepseekV3);
  EXPECT_EQ(c->model_type, "kimi_k2");
  j["model_type"] = "deepseek_v2";
  c = ParseModelConfig(j.dump(), "v2.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kDeepseekV2);
}

TEST(ModelConfigTest, EosTokenIdMayBeAList) {
  Json j = MinimalConfig("DeepseekV3ForCausalLM");
  j["eos_token_id"] = {7, 9};
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump(), "eos.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_id, 7);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{7, 9}));
}

struct BadConfig {
  const char* name;
  std::function<std::string()> text;
  std::vector<const char*> message_parts;  // each must appear in the error
};

std::function<std::string()> R1With(std::function<void(Json&)> edit) {
  return [edit] {
    Json j = Json::parse(ReadFile(kConfigDir + "deepseek-r1.config.json"));
    edit(j);
    return j.dump();
  };
}

TEST(ModelConfigTest, BadConfigsAreInvalidArgumentNamingTheField) {
  const std::vector<BadConfig> cases = {
      {"missing hidden_size",
       R1With([](Json& j) { j.erase("hidden_size"); }),
       {"bad.json: field 'hidden_size' must be a positive integer"}},
      {"string where int expected",
       R1With([](Json& j) { j["num_hidden_layers"] = "61"; }),
       {"'num_hidden_layers'"}},
      {"float where int expected",
       R1With([](Json& j) { j["kv_lora_rank"] = 512.5; }),
       {"'kv_lora_rank'"}},
      {"negative dim", R1With([](Json& j) { j["v_head_dim"] = -128; }), {"'v_head_dim'"}},
      {"bool as string",
       R1With([](Json& j) { j["norm_topk_prob"] = "true"; }),
       {"'norm_topk_prob'"}},
      {"unknown architecture",
       R1With([](Json& j) { j["architectures"] = {"LlamaForCausalLM"}; }),
       {"unsupported architecture 'LlamaForCausalLM'", "DeepseekV2ForCausalLM",
        "DeepseekV3ForCausalLM"}},
      {"unknown model_type",
       R1With([](Json& j) {
         j.erase("architectures");
         j["model_type"] = "llama";
       }),
       {"'model_type'", "llama"}},
      {"eos_token_id outside the vocabulary (issue 21, row 9)",
       R1With([](Json& j) { j["eos_token_id"] = 129280; }),
       {"'eos_token_id' (129280) is outside the vocabulary (vocab_size 129280)"}},
      {"an eos_token_id list entry outside the vocabulary",
       R1With([](Json& j) {
         j["eos_token_id"] = {1, 999999};
       }),
       {"'eos_token_id' (999999)"}},
      {"bos_token_id outside the vocabulary",
       R1With([](Json& j) { j["bos_token_id"] = 200000; }),
       {"'bos_token_id' (200000) is outside the vocabulary"}},
      {"top-k above experts",
       R1With([](Json& j) { j["num_experts_per_tok"] = 300; }),
       {"'num_experts_per_tok'", "'n_routed_experts'"}},
      {"experts not divisible by n_group",
       R1With([](Json& j) { j["n_group"] = 7; }),
       {"'n_routed_experts'", "'n_group'"}},
      {"topk_group above n_group",
       R1With([](Json& j) { j["topk_group"] = 9; }),
       {"'topk_group'", "'n_group'"}},
      {"noaux_tc with softmax",
       R1With([](Json& j) { j["scoring_func"] = "softmax"; }),
       {"noaux_tc", "'scoring_func'"}},
      {"noaux_tc with one expert per group",
       R1With([](Json& j) {
         j["n_group"] = 256;
         j["topk_group"] = 8;
       }),
       {"noaux_tc", "'n_group'"}},
      {"top-k above kept groups",
       R1With([](Json& j) {
         j["topk_group"] = 1;
         j["num_experts_per_tok"] = 40;
       }),
       {"'num_experts_per_tok'", "'topk_group'"}},
      {"unknown topk_method",
       R1With([](Json& j) { j["topk_method"] = "gready"; }),
       {"'topk_method'", "gready"}},
      {"unknown scoring_func",
       R1With([](Json& j) { j["scoring_func"] = "relu"; }),
       {"'scoring_func'", "relu"}},
      {"odd rope head dim",
       R1With([](Json& j) { j["qk_rope_head_dim"] = 63; }),
       {"'qk_rope_head_dim'"}},
      {"first_k_dense_replace above layers",
       R1With([](Json& j) { j["first_k_dense_replace"] = 62; }),
       {"'first_k_dense_replace'", "'num_hidden_layers'"}},
      {"moe_layer_freq zero",
       R1With([](Json& j) { j["moe_layer_freq"] = 0; }),
       {"'moe_layer_freq'"}},
      {"unknown rope type",
       R1With([](Json& j) { j["rope_scaling"]["type"] = "linear"; }),
       {"'rope_scaling.type'", "linear"}},
      {"rope_scaling without factor",
       R1With([](Json& j) { j["rope_scaling"].erase("factor"); }),
       {"'rope_scaling.factor'"}},
      {"non-fp8 quant_method",
       R1With([](Json& j) { j["quantization_config"]["quant_method"] = "bitsandbytes_4bit"; }),
       {"'quantization_config.quant_method'", "bitsandbytes_4bit"}},
      {"fp8 e5m2",
       R1With([](Json& j) { j["quantization_config"]["fmt"] = "e5m2"; }),
       {"'quantization_config.fmt'"}},
      {"fp8 zero block",
       R1With([](Json& j) {
         j["quantization_config"]["weight_block_size"] = {128, 0};
       }),
       {"'quantization_config.weight_block_size'"}},
      {"q_lora_rank missing", R1With([](Json& j) { j.erase("q_lora_rank"); }), {"'q_lora_rank'"}},
      {"eos as string", R1With([](Json& j) { j["eos_token_id"] = "</s>"; }), {"'eos_token_id'"}},
      {"malformed JSON text",
       [] { return std::string(R"({"hidden_size": 7168,)"); },
       {"bad.json", "not valid JSON"}},
      {"JSON array root",
       [] { return std::string("[1, 2, 3]"); },
       {"bad.json", "must be a JSON object"}},
      {"empty text", [] { return std::string(); }, {"bad.json", "not valid JSON"}},
  };
  for (const BadConfig& bad : cases) {
    SCOPED_TRACE(bad.name);
    absl::StatusOr<ModelConfig> c = ParseModelConfig(bad.text(), "bad.json");
    ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
    for (const char* part : bad.message_parts) {
      EXPECT_TRUE(Contains(c.status(), part));
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
