// The architecture of a DeepSeek-V2/V3-family checkpoint, parsed from its config.json.
//
// Every field of reference §1 is read from the file (Kimi-K2 and Moonlight variants disagree
// on details, so nothing is assumed from the model name). Derived values (head dims, softmax
// scale, which layers are MoE) are computed once here so the model code never re-derives them.
// Created by the weight loader and by moeserve-make-model; immutable afterwards.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/ops/rope/rope.h"

namespace moeserve::engine {

enum class Architecture { kDeepseekV2, kDeepseekV3 };

// How the router picks experts (reference §3.3).
enum class TopkMethod {
  kGreedy,              // V2-Lite: softmax, top-k over all experts
  kGroupLimitedGreedy,  // V2: softmax, keep topk_group groups by their max score
  kNoauxTc,             // V3: sigmoid + correction bias for selection only, groups by top-2 sum
};
enum class ScoringFunc { kSoftmax, kSigmoid };

// The config.json spellings ("DeepseekV3ForCausalLM", "noaux_tc", "sigmoid").
std::string_view ArchitectureName(Architecture architecture);
std::string_view TopkMethodName(TopkMethod method);
std::string_view ScoringFuncName(ScoringFunc func);

// rope_scaling of type yarn (the only kind DeepSeek checkpoints use); absent means plain RoPE.
using RopeScaling = YarnParams;

struct Fp8Quantization {
  int64_t weight_block_rows = 128;  // weight_block_size[0]
  int64_t weight_block_cols = 128;  // weight_block_size[1]
  bool dynamic_activation = true;   // activation_scheme "dynamic"

  bool operator==(const Fp8Quantization&) const = default;
};

struct ModelConfig {
  Architecture architecture = Architecture::kDeepseekV3;
  std::string model_type;  // "deepseek_v2", "deepseek_v3", "kimi_k2"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense MLP width
  int64_t moe_intermediate_size = 0;  // per routed expert
  int64_t num_hidden_layers = 0;
  int64_t num_nextn_predict_layers = 0;  // MTP layers stored after the main stack
  int64_t num_attention_heads = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;  // YaRN when present
  bool tie_word_embeddings = false;

  // MLA (reference §3.1). q_lora_rank is null for V2-Lite: q comes from q_proj directly.
  std::optional<int64_t> q_lora_rank;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // MoE (reference §3.3).
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  TopkMethod topk_method = TopkMethod::kGreedy;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;

  std::optional<Fp8Quantization> fp8;  // quantization_config with quant_method "fp8"

  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;  // the first of eos_token_ids
  // Every id of an `eos_token_id` list (HF allows int or list). Parsing fills both fields;
  // ModelConfigToJson writes a list only when this holds more than one id.
  std::vector<int64_t> eos_token_ids;

  bool operator==(const ModelConfig&) const = default;

  // --- Derived values.
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Elements per token per layer in the latent KV cache: [c_kv | k_pe] (576 for DeepSeek).
  int64_t kv_cache_dim() const { return kv_lora_rank + qk_rope_head_dim; }
  // HF-remote: layer_idx >= first_k_dense_replace && layer_idx % moe_layer_freq == 0.
  bool IsMoeLayer(int64_t layer) const;
  // Width of the fused shared-expert MLP: n_shared_experts * moe_intermediate_size.
  int64_t shared_expert_intermediate_size() const {
    return n_shared_experts * moe_intermediate_size;
  }
  // YaRN attention-magnitude factor m(factor, mscale_all_dim) (1 without YaRN).
  double YarnMscaleAllDim() const;
  // Softmax scale tau = qk_head_dim^-1/2 * m^2 (reference §3.1, never 576^-1/2).
  double SoftmaxScale() const;
};

// Parses the text of a config.json. `source` names the file in error messages.
// Unknown architectures, missing required fields and inconsistent values are errors
// that name the field.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// Serialises back to HF config.json form (used by moeserve-make-model); round-trips through
// ParseModelConfig.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace moeserve::engine
