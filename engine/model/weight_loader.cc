#include "engine/model/weight_loader.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

bool IsFloatingDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
}

// Reads named tensors out of a checkpoint, checking shapes against the config.
class TensorFetcher {
 public:
  TensorFetcher(const Checkpoint& checkpoint, const ModelConfig& config,
                const LoadOptions& options)
      : checkpoint_(checkpoint), config_(config), options_(options) {}

  // A norm, embedding or router tensor: must be F32/BF16/F16 of exactly `shape`.
  absl::StatusOr<std::vector<float>> Dense(const std::string& name,
                                           const std::vector<int64_t>& shape) {
    absl::StatusOr<TensorView> view = Fetch(name, shape);
    if (!view.ok()) return view.status();
    if (!IsFloatingDType(view->info->dtype)) {
      return Error(*view, absl::StrCat("has dtype ", DTypeName(view->info->dtype),
                                       "; expected F32, BF16 or F16"));
    }
    return ToFloat(*view);
  }

  // A linear weight [out, in]: floating, or F8_E4M3 with its block scales. `quantizable`:
  // whether LoadOptions::quantize_fp8 applies (false for lm_head).
  absl::StatusOr<LinearWeight> Linear(const std::string& prefix, int64_t out, int64_t in,
                                      bool quantizable = true) {
    const std::string name = prefix + ".weight";
    absl::StatusOr<TensorView> view = Fetch(name, {out, in});
    if (!view.ok()) return view.status();
    LinearWeight linear;
    linear.out_features = out;
    linear.in_features = in;
    if (IsFloatingDType(view->info->dtype)) {
      linear.weight = ToFloat(*view);
      if (quantizable && options_.quantize_fp8) {
        // Online quantization: what an FP8 checkpoint of these exact values would hold.
        const Fp8BlockWeight quantized = QuantizeFp8BlockWeight(linear.weight, out, in);
        linear.weight = DequantizeFp8BlockWeight(quantized.fp8, quantized.scale_inv, out, in);
        linear.fp8 = true;
      }
      return linear;
    }
    if (view->info->dtype != DType::kF8E4M3) {
      return Error(*view, absl::StrCat("has dtype ", DTypeName(view->info->dtype),
                                       "; expected F8_E4M3, F32, BF16 or F16"));
    }
    const int64_t block_rows = config_.fp8 ? config_.fp8->weight_block_rows : kFp8BlockSize;
    const int64_t block_cols = config_.fp8 ? config_.fp8->weight_block_cols : kFp8BlockSize;
    const std::string scale_name = prefix + ".weight_scale_inv";
    absl::StatusOr<TensorView> scale =
        Fetch(scale_name, {CeilDiv(out, block_rows), CeilDiv(in, block_cols)});
    if (!scale.ok()) return scale.status();
    if (scale->info->dtype != DType::kF32) {
      return Error(*scale,
                   absl::StrCat("has dtype ", DTypeName(scale->info->dtype), "; expected F32"));
    }
    std::vector<float> scales = ToFloat(*scale);
    for (size_t i = 0; i < scales.size(); ++i) {
      if (!std::isfinite(scales[i])) {
        return Error(*scale, absl::StrCat("has a non-finite scale at index ", i));
      }
    }
    linear.weight = DequantizeFp8BlockWeight(view->bytes, scales, out, in, block_rows, block_cols);
    linear.fp8 = true;
    return linear;
  }

 private:
  absl::StatusOr<TensorView> Fetch(const std::string& name, const std::vector<int64_t>& shape) {
    absl::StatusOr<TensorView> view = checkpoint_.Get(name);
    if (!view.ok()) return view.status();
    if (view->info->shape != shape) {
      return Error(*view, absl::StrCat("has shape ", ShapeString(view->info->shape),
                                       " but config.json implies ", ShapeString(shape)));
    }
    return view;
  }

  static absl::Status Error(const TensorView& view, const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", view.info->name, "' in ", view.file->path(), " ", what));
  }

  static std::vector<float> ToFloat(const TensorView& view) {
    const int64_t n = view.info->num_elements();
    std::vector<float> out(static_cast<size_t>(n));
    const DType dtype = view.info->dtype;
    const uint8_t* data = view.bytes.data();
#pragma omp parallel for if (n > (1 << 18))
    for (int64_t i = 0; i < n; ++i) out[i] = LoadAsFloat(data, dtype, i);
    return out;
  }

  const Checkpoint& checkpoint_;
  const ModelConfig& config_;
  const LoadOptions& options_;
};

// gate_proj and up_proj stacked into one [2 * width, hidden] matrix.
absl::StatusOr<MlpWeights> LoadMlp(TensorFetcher& fetch, const std::string& prefix, int64_t hidden,
                                   int64_t width) {
  LinearWeight gate, up;
  MlpWeights mlp;
  MOESERVE_ASSIGN_OR_RETURN(gate, fetch.Linear(prefix + ".gate_proj", width, hidden));
  MOESERVE_ASSIGN_OR_RETURN(up, fetch.Linear(prefix + ".up_proj", width, hidden));
  MOESERVE_ASSIGN_OR_RETURN(mlp.down, fetch.Linear(prefix + ".down_proj", hidden, width));
  mlp.gate_up.out_features = 2 * width;
  mlp.gate_up.in_features = hidden;
  mlp.gate_up.fp8 = gate.fp8 && up.fp8;
  mlp.gate_up.weight = std::move(gate.weight);
  mlp.gate_up.weight.insert(mlp.gate_up.weight.end(), up.weight.begin(), up.weight.end());
  return mlp;
}

// Splits kv_b_proj [H * (nope + v), c] per head into W_UK[h]ᵀ and W_UV[h] (reference §3.1).
void SplitAbsorbedWeights(const ModelConfig& c, MlaWeights& mla) {
  const int64_t heads = c.num_attention_heads, nope = c.qk_nope_head_dim, v = c.v_head_dim;
  const int64_t rank = c.kv_lora_rank;
  mla.w_uk_t.resize(static_cast<size_t>(heads * rank * nope));
  mla.w_uv.resize(static_cast<size_t>(heads * v * rank));
  for (int64_t h = 0; h < heads; ++h) {
    const float* head = mla.kv_b_proj.weight.data() + h * (nope + v) * rank;
    for (int64_t d = 0; d < nope; ++d) {
      for (int64_t r = 0; r < rank; ++r) {
        mla.w_uk_t[(h * rank + r) * nope + d] = head[d * rank + r];
      }
    }
    std::copy(head + nope * rank, head + (nope + v) * rank, mla.w_uv.begin() + h * v * rank);
  }
}

absl::StatusOr<MlaWeights> LoadMla(TensorFetcher& fetch, const ModelConfig& c,
                                   const std::string& prefix) {
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  MlaWeights mla;
  if (c.q_lora_rank.has_value()) {
    const int64_t rank = *c.q_lora_rank;
    MOESERVE_ASSIGN_OR_RETURN(mla.q_a_proj, fetch.Linear(prefix + ".q_a_proj", rank, hidden));
    MOESERVE_ASSIGN_OR_RETURN(mla.q_a_norm, fetch.Dense(prefix + ".q_a_layernorm.weight", {rank}));
    MOESERVE_ASSIGN_OR_RETURN(mla.q_b_proj,
                              fetch.Linear(prefix + ".q_b_proj", heads * c.qk_head_dim(), rank));
  } else {
    MOESERVE_ASSIGN_OR_RETURN(mla.q_proj,
                              fetch.Linear(prefix + ".q_proj", heads * c.qk_head_dim(), hidden));
  }
  MOESERVE_ASSIGN_OR_RETURN(mla.kv_a_proj,
                            fetch.Linear(prefix + ".kv_a_proj_with_mqa", c.kv_cache_dim(), hidden));
  MOESERVE_ASSIGN_OR_RETURN(mla.kv_a_norm,
                            fetch.Dense(prefix + ".kv_a_layernorm.weight", {c.kv_lora_rank}));
  MOESERVE_ASSIGN_OR_RETURN(
      mla.kv_b_proj, fetch.Linear(prefix + ".kv_b_proj",
                                  heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank));
  MOESERVE_ASSIGN_OR_RETURN(mla.o_proj,
                            fetch.Linear(prefix + ".o_proj", hidden, heads * c.v_head_dim));
  SplitAbsorbedWeights(c, mla);
  return mla;
}

absl::StatusOr<MoeWeights> LoadMoe(TensorFetcher& fetch, const ModelConfig& c,
                                   const std::string& prefix) {
  const int64_t hidden = c.hidden_size, experts = c.n_routed_experts;
  MoeWeights moe;
  MOESERVE_ASSIGN_OR_RETURN(moe.router, fetch.Dense(prefix + ".gate.weight", {experts, hidden}));
  if (c.topk_method == TopkMethod::kNoauxTc) {
    MOESERVE_ASSIGN_OR_RETURN(moe.correction_bias,
                              fetch.Dense(prefix + ".gate.e_score_correction_bias", {experts}));
  }
  moe.experts.reserve(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) {
    MlpWeights expert;
    MOESERVE_ASSIGN_OR_RETURN(expert, LoadMlp(fetch, absl::StrCat(prefix, ".experts.", e), hidden,
                                              c.moe_intermediate_size));
    moe.experts.push_back(std::move(expert));
  }
  if (c.n_shared_experts > 0) {
    MOESERVE_ASSIGN_OR_RETURN(moe.shared, LoadMlp(fetch, prefix + ".shared_experts", hidden,
                                                  c.shared_expert_intermediate_size()));
  }
  return moe;
}

}  // namespace

absl::StatusOr<ModelWeights> LoadModelWeights(const Checkpoint& checkpoint, const ModelConfig& c,
                                              const LoadOptions& options) {
  TensorFetcher fetch(checkpoint, c, options);
  const int64_t hidden = c.hidden_size;
  ModelWeights weights;
  MOESERVE_ASSIGN_OR_RETURN(weights.embed_tokens,
                            fetch.Dense("model.embed_tokens.weight", {c.vocab_size, hidden}));
  MOESERVE_ASSIGN_OR_RETURN(weights.final_norm, fetch.Dense("model.norm.weight", {hidden}));
  if (c.tie_word_embeddings && !checkpoint.Contains("lm_head.weight")) {
    weights.lm_head.out_features = c.vocab_size;
    weights.lm_head.in_features = hidden;
    weights.lm_head.weight = weights.embed_tokens;
  } else {
    MOESERVE_ASSIGN_OR_RETURN(weights.lm_head, fetch.Linear("lm_head", c.vocab_size, hidden,
                                                              /*quantizable=*/false));
  }
  // Layers [0, num_hidden_layers) only: model.layers.{num_hidden_layers}.* is the MTP module.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string prefix = absl::StrCat("model.layers.", l);
    DecoderLayerWeights layer;
    MOESERVE_ASSIGN_OR_RETURN(layer.input_norm,
                              fetch.Dense(prefix + ".input_layernorm.weight", {hidden}));
    MOESERVE_ASSIGN_OR_RETURN(layer.post_attention_norm,
                              fetch.Dense(prefix + ".post_attention_layernorm.weight", {hidden}));
    MOESERVE_ASSIGN_OR_RETURN(layer.attention, LoadMla(fetch, c, prefix + ".self_attn"));
    if (c.IsMoeLayer(l)) {
      MOESERVE_ASSIGN_OR_RETURN(layer.moe, LoadMoe(fetch, c, prefix + ".mlp"));
    } else {
      MOESERVE_ASSIGN_OR_RETURN(layer.dense_mlp,
                                LoadMlp(fetch, prefix + ".mlp", hidden, c.intermediate_size));
    }
    weights.layers.push_back(std::move(layer));
  }
  return weights;
}

}  // namespace moeserve::engine
