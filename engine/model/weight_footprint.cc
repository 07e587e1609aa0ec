#include "engine/model/weight_footprint.h"

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "engine/model/mla_absorbed_weights.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"

namespace moeserve::engine {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool EndsWith(std::string_view s, std::string_view suffix) { return s.ends_with(suffix); }

bool IsLinearWeight(std::string_view name) {
  return name == "lm_head.weight" || EndsWith(name, "_proj.weight") ||
         EndsWith(name, "kv_a_proj_with_mqa.weight");
}

// Bytes of one linear weight [out, in] as the loader holds it (weight_loader.cc, Linear()).
int64_t LinearBytes(const TensorInfo& info, const LoadOptions& options, bool quantizable) {
  const int64_t n = info.num_elements();
  if (options.cpu_kernels == CpuKernels::kReference) return 4 * n;
  const bool floating = info.dtype != DType::kF8E4M3;
  if (floating && quantizable && options.quantize_fp8) {
    const int64_t out = info.shape.size() == 2 ? info.shape[0] : n;
    const int64_t in = info.shape.size() == 2 ? info.shape[1] : 1;
    return n + 4 * CeilDiv(out, kFp8BlockSize) * CeilDiv(in, kFp8BlockSize);
  }
  if (!floating) return n;  // its weight_scale_inv is counted as its own tensor
  return info.dtype == DType::kBF16 ? 2 * n : 4 * n;
}

// Absorbed MLA's W_UK[h]ᵀ and W_UV[h] (mla_absorbed_weights.h): kv_b_proj's elements once
// more, in its format (with as many scales), or fp32 where that format cannot be split.
int64_t AbsorbedBytes(const TensorInfo& kv_b, const ModelConfig& c, const LoadOptions& options) {
  const int64_t n = kv_b.num_elements();
  const int64_t held = LinearBytes(kv_b, options, /*quantizable=*/true);
  if (held >= 2 * n) return held;  // fp32 or BF16: splitting keeps the format
  // FP8 (in the checkpoint or quantized at load): bytes plus one scale per 128×128 block.
  if (!AbsorbedKeepsFormat(WeightFormat::kFp8Block128, c.qk_nope_head_dim, c.v_head_dim,
                           c.kv_lora_rank)) {
    return 4 * n;
  }
  return n + 4 * (n / (kFp8BlockSize * kFp8BlockSize));
}

}  // namespace

int64_t EstimateWeightBytes(const Checkpoint& checkpoint, const ModelConfig& config,
                            const LoadOptions& options) {
  const std::string mtp_prefix = absl::StrCat("model.layers.", config.num_hidden_layers, ".");
  int64_t bytes = 0;
  bool has_lm_head = false;
  int64_t embed_bytes = 0;
  for (const auto& file : checkpoint.files()) {
    for (const TensorInfo& info : file->tensors()) {
      const std::string& name = info.name;
      if (name.starts_with(mtp_prefix)) continue;
      const int64_t n = info.num_elements();
      if (EndsWith(name, ".weight_scale_inv")) {
        // Kept beside FP8 bytes on the fast path; folded into fp32 weights on the reference one.
        if (options.cpu_kernels == CpuKernels::kFast) bytes += 4 * n;
        continue;
      }
      if (!IsLinearWeight(name)) {
        bytes += 4 * n;  // norms, embeddings, routers, biases: fp32
        if (name == "model.embed_tokens.weight") embed_bytes = 4 * n;
        continue;
      }
      const bool is_lm_head = name == "lm_head.weight";
      has_lm_head = has_lm_head || is_lm_head;
      bytes += LinearBytes(info, options, /*quantizable=*/!is_lm_head);
      if (EndsWith(name, ".kv_b_proj.weight")) bytes += AbsorbedBytes(info, config, options);
    }
  }
  if (config.tie_word_embeddings && !has_lm_head) bytes += embed_bytes;
  return bytes;
}

int64_t WeightBytesHeld(const ModelWeights& w) {
  auto floats = [](const std::vector<float>& v) { return static_cast<int64_t>(4 * v.size()); };
  auto linear = [](const LinearWeight& l) { return static_cast<int64_t>(l.size_bytes()); };
  auto mlp = [&](const MlpWeights& m) {
    return linear(m.gate_up) + (m.up ? linear(*m.up) : 0) + linear(m.down);
  };
  int64_t bytes = floats(w.embed_tokens) + floats(w.final_norm) + linear(w.lm_head);
  for (const DecoderLayerWeights& layer : w.layers) {
    const MlaWeights& a = layer.attention;
    bytes += floats(layer.input_norm) + floats(layer.post_attention_norm);
    for (const auto* l :
         {a.q_proj ? &*a.q_proj : nullptr, a.q_a_proj ? &*a.q_a_proj : nullptr,
          a.q_b_proj ? &*a.q_b_proj : nullptr, &a.kv_a_proj, &a.kv_b_proj, &a.o_proj}) {
      if (l != nullptr) bytes += linear(*l);
    }
    bytes += floats(a.q_a_norm) + floats(a.kv_a_norm) + linear(a.w_uk_t) + linear(a.w_uv);
    if (layer.dense_mlp) bytes += mlp(*layer.dense_mlp);
    if (layer.moe) {
      bytes += floats(layer.moe->router) + floats(layer.moe->correction_bias);
      for (const MlpWeights& e : layer.moe->experts) bytes += mlp(e);
      if (layer.moe->shared) bytes += mlp(*layer.moe->shared);
    }
  }
  return bytes;
}

}  // namespace moeserve::engine
