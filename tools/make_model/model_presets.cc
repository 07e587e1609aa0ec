#include "tools/make_model/model_presets.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moeserve::tools {
namespace {

using engine::Architecture;
using engine::ModelConfig;
using engine::RopeScaling;
using engine::ScoringFunc;
using engine::TopkMethod;

// The MLA geometry shared by every DeepSeek-V2/V3 checkpoint (reference §1).
void SetDeepseekMla(ModelConfig& c) {
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
}

RopeScaling Yarn(double mscale) {
  RopeScaling r;
  r.factor = 40.0;
  r.original_max_position_embeddings = 4096;
  r.beta_fast = 32.0;
  r.beta_slow = 1.0;
  r.mscale = mscale;
  r.mscale_all_dim = mscale;
  return r;
}

ModelConfig TinyBase(Architecture architecture) {
  ModelConfig c;
  c.architecture = architecture;
  c.model_type = architecture == Architecture::kDeepseekV2 ? "deepseek_v2" : "deepseek_v3";
  c.vocab_size = 512;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.moe_intermediate_size = 128;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.max_position_embeddings = 163840;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  SetDeepseekMla(c);
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 1;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  return c;
}

ModelConfig TinyV2Lite() {
  ModelConfig c = TinyBase(Architecture::kDeepseekV2);
  c.n_routed_experts = 8;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 2;
  c.topk_method = TopkMethod::kGreedy;
  c.scoring_func = ScoringFunc::kSoftmax;
  c.routed_scaling_factor = 1.0;
  // V2-Lite's YaRN: m = 1.2608 makes the softmax scale differ from 192^-1/2 by m² ≈ 1.59.
  c.rope_scaling = Yarn(0.707);
  return c;
}

ModelConfig TinyV2() {
  ModelConfig c = TinyBase(Architecture::kDeepseekV2);
  c.q_lora_rank = 192;
  c.n_routed_experts = 16;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 3;
  c.n_group = 4;
  c.topk_group = 2;
  c.topk_method = TopkMethod::kGroupLimitedGreedy;
  c.scoring_func = ScoringFunc::kSoftmax;
  c.routed_scaling_factor = 16.0;
  c.max_position_embeddings = 4096;
  return c;
}

ModelConfig TinyV3() {
  ModelConfig c = TinyBase(Architecture::kDeepseekV3);
  c.q_lora_rank = 256;
  c.n_routed_experts = 16;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 4;
  c.n_group = 4;
  c.topk_group = 2;
  c.topk_method = TopkMethod::kNoauxTc;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.num_nextn_predict_layers = 1;
  c.rope_scaling = Yarn(1.0);
  return c;
}

ModelConfig V2Lite() {
  ModelConfig c;
  c.architecture = Architecture::kDeepseekV2;
  c.model_type = "deepseek_v2";
  c.vocab_size = 102400;
  c.hidden_size = 2048;
  c.intermediate_size = 10944;
  c.moe_intermediate_size = 1408;
  c.num_hidden_layers = 27;
  c.num_attention_heads = 16;
  c.max_position_embeddings = 163840;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  SetDeepseekMla(c);
  c.n_routed_experts = 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.topk_method = TopkMethod::kGreedy;
  c.scoring_func = ScoringFunc::kSoftmax;
  c.routed_scaling_factor = 1.0;
  c.first_k_dense_replace = 1;
  c.rope_scaling = Yarn(0.707);
  // bos/eos of the tokenizer make-model writes (tokenizer_writer.h), not V2-Lite's own.
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  return c;
}

ModelConfig V3Slice() {
  ModelConfig c;
  c.architecture = Architecture::kDeepseekV3;
  c.model_type = "deepseek_v3";
  c.vocab_size = 129280;
  c.hidden_size = 7168;
  c.intermediate_size = 18432;
  c.moe_intermediate_size = 2048;
  c.num_hidden_layers = 3;  // one dense layer and two MoE layers of V3's 61
  c.num_attention_heads = 128;
  c.max_position_embeddings = 163840;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.q_lora_rank = 1536;
  SetDeepseekMla(c);
  c.n_routed_experts = 256;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 8;
  c.n_group = 8;
  c.topk_group = 4;
  c.topk_method = TopkMethod::kNoauxTc;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.first_k_dense_replace = 1;
  c.rope_scaling = Yarn(1.0);
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  return c;
}

}  // namespace

std::vector<std::string> PresetNames() {
  return {"tiny-v2-lite", "tiny-v2", "tiny-v3", "v2-lite", "v3-slice"};
}

absl::StatusOr<engine::ModelConfig> PresetConfig(const std::string& name) {
  if (name == "tiny-v2-lite") return TinyV2Lite();
  if (name == "tiny-v2") return TinyV2();
  if (name == "tiny-v3") return TinyV3();
  if (name == "v2-lite") return V2Lite();
  if (name == "v3-slice") return V3Slice();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown preset '", name, "'; known: ", absl::StrJoin(PresetNames(), ", ")));
}

}  // namespace moeserve::tools
