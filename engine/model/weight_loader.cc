#include "engine/model/weight_loader.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/linear.h"
#include "engine/model/mla_absorbed_weights.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/ops/linear/weight_gemm_onednn.h"
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

// Rows or columns [begin, begin + size) of a tensor; size < 0: all of them.
struct Slice {
  int64_t begin = 0;
  int64_t size = -1;
  int64_t Size(int64_t full) const { return size < 0 ? full : size; }
};

// The contiguous part `index` of `parts` of [0, total) (total % parts == 0, checked by
// ValidateParallelConfig).
Slice Part(int64_t total, int parts, int index) {
  return parts == 1 ? Slice{} : Slice{index * (total / parts), total / parts};
}

// Copies rows × cols of a row-major [*, full_cols] matrix.
template <typename T>
std::vector<T> CutOut(const T* full, int64_t full_cols, Slice rows, int64_t num_rows, Slice cols,
                      int64_t num_cols) {
  std::vector<T> out(static_cast<size_t>(num_rows * num_cols));
  for (int64_t i = 0; i < num_rows; ++i) {
    const T* src = full + (rows.begin + i) * full_cols + cols.begin;
    std::copy(src, src + num_cols, out.begin() + i * num_cols);
  }
  return out;
}
std::vector<float> CutOut(const std::vector<float>& full, int64_t full_cols, Slice rows,
                          int64_t num_rows, Slice cols, int64_t num_cols) {
  return CutOut(full.data(), full_cols, rows, num_rows, cols, num_cols);
}

// Reads named tensors out of a checkpoint, checking shapes against the config.
class TensorFetcher {
 public:
  TensorFetcher(const Checkpoint& checkpoint, const ModelConfig& config, const LoadOptions& options)
      : checkpoint_(checkpoint), config_(config), options_(options) {}

  // A norm, embedding or router tensor: must be F32/BF16/F16 of exactly `shape`.
  absl::StatusOr<std::vector<float>> Dense(const std::string& name,
                                           const std::vector<int64_t>& shape) {
    absl::StatusOr<TensorView> view = Fetch(name, shape);
    if (!view.ok()) return view.status();
    const absl::Cleanup drop = [&] { DropPages(*view); };
    if (!IsFloatingDType(view->info->dtype)) {
      return Error(*view, absl::StrCat("has dtype ", DTypeName(view->info->dtype),
                                       "; expected F32, BF16 or F16"));
    }
    // Norms, routers, biases, the embedding: one NaN or infinity here reaches every token, and
    // the model would serve garbage (token 0 repeated) without a word (issue 21, row 9).
    if (const std::optional<int64_t> bad = FirstNonFinite(*view)) {
      return Error(*view, absl::StrCat("has a non-finite value at element ", *bad));
    }
    return ToFloat(*view);
  }

  // A linear weight [out, in]: floating, or F8_E4M3 with its block scales. `quantizable`:
  // whether LoadOptions::quantize_fp8 applies (false for lm_head). rows/cols: the part a
  // tensor-parallel rank holds; only it is converted (online FP8 quantization excepted, whose
  // 128×128 blocks need the whole tensor). Held as weights.h says: BF16 and FP8 as they are
  // for the fast kernels, unless sliced (FP8 slices become fp32: a slice need not keep whole
  // 128×128 blocks), fp32 for the reference kernels.
  absl::StatusOr<LinearWeight> Linear(const std::string& prefix, int64_t out, int64_t in,
                                      bool quantizable = true, Slice rows = {}, Slice cols = {}) {
    const std::string name = prefix + ".weight";
    absl::StatusOr<TensorView> view = Fetch(name, {out, in});
    if (!view.ok()) return view.status();
    const absl::Cleanup drop = [&] { DropPages(*view); };
    const bool sliced = rows.size >= 0 || cols.size >= 0;
    const bool fast = options_.cpu_kernels != CpuKernels::kReference;
    LinearWeight linear;
    linear.out_features = rows.Size(out);
    linear.in_features = cols.Size(in);
    linear.isa = LinearIsaFor(options_.cpu_kernels);
    linear.library_gemm = UsesLibraryGemm(options_);
    const DType dtype = view->info->dtype;
    if (IsFloatingDType(dtype)) {
      if (options_.check_all_weights) {
        if (const std::optional<int64_t> bad = FirstNonFinite(*view)) {
          return Error(*view, absl::StrCat("has a non-finite value at element ", *bad));
        }
      }
      if (quantizable && options_.quantize_fp8) {
        // Online quantization: what an FP8 checkpoint of these exact values would hold.
        std::vector<float> full = ToFloat(*view);
        Fp8BlockWeight quantized = QuantizeFp8BlockWeight(full, out, in);
        linear.fp8 = true;
        if (fast && !sliced) {
          linear.format = WeightFormat::kFp8Block128;
          linear.weight_fp8 = std::move(quantized.fp8);
          linear.scale_inv = std::move(quantized.scale_inv);
          return linear;
        }
        full = DequantizeFp8BlockWeight(quantized.fp8, quantized.scale_inv, out, in);
        linear.weight = sliced
                            ? CutOut(full, in, rows, linear.out_features, cols, linear.in_features)
                            : std::move(full);
        return linear;
      }
      if (fast && dtype == DType::kBF16) {
        linear.format = WeightFormat::kBf16;
        linear.weight_bf16 = CutOut(reinterpret_cast<const uint16_t*>(view->bytes.data()), in, rows,
                                    linear.out_features, cols, linear.in_features);
        return linear;
      }
      linear.weight = sliced ? ToFloatSlice(*view, in, rows, linear.out_features, cols,
                                            linear.in_features, {}, 0, 0)
                             : ToFloat(*view);
      return linear;
    }
    if (dtype != DType::kF8E4M3) {
      return Error(*view, absl::StrCat("has dtype ", DTypeName(dtype),
                                       "; expected F8_E4M3, F32, BF16 or F16"));
    }
    const int64_t block_rows = config_.fp8 ? config_.fp8->weight_block_rows : kFp8BlockSize;
    const int64_t block_cols = config_.fp8 ? config_.fp8->weight_block_cols : kFp8BlockSize;
    const std::string scale_name = prefix + ".weight_scale_inv";
    absl::StatusOr<TensorView> scale =
        Fetch(scale_name, {CeilDiv(out, block_rows), CeilDiv(in, block_cols)});
    if (!scale.ok()) return scale.status();
    const absl::Cleanup drop_scale = [&] { DropPages(*scale); };
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
    // e4m3 has no infinities; S.1111.111 is NaN (reference §4). A NaN weight would turn every
    // logit it touches into NaN, so it is refused here rather than served.
    const absl::Span<const uint8_t> bytes = view->bytes;
    for (size_t i = 0; i < bytes.size(); ++i) {
      if ((bytes[i] & 0x7F) == 0x7F) {
        return Error(*view, absl::StrCat("has a NaN (0x", absl::Hex(bytes[i]), ") at element ", i));
      }
    }
    linear.fp8 = true;
    if (fast && !sliced && block_rows == kFp8BlockSize && block_cols == kFp8BlockSize) {
      linear.format = WeightFormat::kFp8Block128;
      linear.weight_fp8.assign(bytes.begin(), bytes.end());
      linear.scale_inv = std::move(scales);
      return linear;
    }
    linear.weight =
        sliced ? ToFloatSlice(*view, in, rows, linear.out_features, cols, linear.in_features,
                              scales, block_rows, block_cols)
               : DequantizeFp8BlockWeight(view->bytes, scales, out, in, block_rows, block_cols);
    return linear;
  }

 private:
  // Once a tensor is converted its mapped bytes are not needed again: dropping them keeps the
  // load's peak RSS at the converted weights plus one tensor, not plus the whole file.
  static void DropPages(const TensorView& view) { view.file->DropPages(*view.info); }

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

  // The first NaN or infinity of a floating tensor, read from its raw bits (no conversion).
  static std::optional<int64_t> FirstNonFinite(const TensorView& view) {
    const int64_t n = view.info->num_elements();
    const uint8_t* bytes = view.bytes.data();
    switch (view.info->dtype) {
      case DType::kF32:
        for (int64_t i = 0; i < n; ++i) {
          uint32_t bits;
          std::memcpy(&bits, bytes + 4 * i, 4);
          if ((bits & 0x7F800000u) == 0x7F800000u) return i;
        }
        return std::nullopt;
      case DType::kBF16:
      case DType::kF16: {
        const uint16_t mask = view.info->dtype == DType::kBF16 ? 0x7F80 : 0x7C00;
        for (int64_t i = 0; i < n; ++i) {
          uint16_t bits;
          std::memcpy(&bits, bytes + 2 * i, 2);
          if ((bits & mask) == mask) return i;
        }
        return std::nullopt;
      }
      default:
        return std::nullopt;
    }
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

  // Converts rows × cols of a [*, full_cols] tensor; FP8 elements are scaled by their block's
  // scale (scales non-empty), exactly as DequantizeFp8BlockWeight does for the whole tensor.
  static std::vector<float> ToFloatSlice(const TensorView& view, int64_t full_cols, Slice rows,
                                         int64_t num_rows, Slice cols, int64_t num_cols,
                                         const std::vector<float>& scales, int64_t block_rows,
                                         int64_t block_cols) {
    std::vector<float> out(static_cast<size_t>(num_rows * num_cols));
    const DType dtype = view.info->dtype;
    const uint8_t* data = view.bytes.data();
    const int64_t scale_cols = block_cols > 0 ? CeilDiv(full_cols, block_cols) : 0;
    for (int64_t i = 0; i < num_rows; ++i) {
      const int64_t r = rows.begin + i;
      for (int64_t j = 0; j < num_cols; ++j) {
        const int64_t c = cols.begin + j;
        float value = LoadAsFloat(data, dtype, r * full_cols + c);
        if (!scales.empty()) value *= scales[(r / block_rows) * scale_cols + c / block_cols];
        out[i * num_cols + j] = value;
      }
    }
    return out;
  }

  const Checkpoint& checkpoint_;
  const ModelConfig& config_;
  const LoadOptions& options_;
};

// gate_proj and up_proj stacked into one [2 * width, hidden] matrix where their format allows
// (MlpWeights). `part`: the slice of the intermediate dimension a tensor-parallel rank holds
// (gate/up rows, down columns).
absl::StatusOr<MlpWeights> LoadMlp(TensorFetcher& fetch, const std::string& prefix, int64_t hidden,
                                   int64_t width, Slice part = {}) {
  LinearWeight gate, up;
  MlpWeights mlp;
  MOESERVE_ASSIGN_OR_RETURN(gate, fetch.Linear(prefix + ".gate_proj", width, hidden, true, part));
  MOESERVE_ASSIGN_OR_RETURN(up, fetch.Linear(prefix + ".up_proj", width, hidden, true, part));
  MOESERVE_ASSIGN_OR_RETURN(mlp.down,
                            fetch.Linear(prefix + ".down_proj", hidden, width, true, {}, part));
  const bool keep_apart = gate.format == up.format && !CanStackRows(gate, up);
  if (keep_apart) {
    mlp.gate_up = std::move(gate);
    mlp.up = std::move(up);
  } else {
    mlp.gate_up = StackRows(std::move(gate), std::move(up));
  }
  return mlp;
}

// Tensor parallel: the rank's heads [h0, h0 + local) take their rows of q_b_proj (q_proj) and
// kv_b_proj and their columns of o_proj; q_a_proj and kv_a_proj_with_mqa stay whole, so every
// rank computes the same latents and holds the same (replicated) latent cache.
absl::StatusOr<MlaWeights> LoadMla(TensorFetcher& fetch, const ModelConfig& c,
                                   const std::string& prefix, const WeightShard& shard) {
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  const int64_t local = heads / shard.tp_size, h0 = shard.tp_rank * local;
  const bool split = shard.tp_size > 1;
  const Slice q_rows = split ? Slice{h0 * c.qk_head_dim(), local * c.qk_head_dim()} : Slice{};
  const int64_t kv_b_head = c.qk_nope_head_dim + c.v_head_dim;
  const Slice kv_b_rows = split ? Slice{h0 * kv_b_head, local * kv_b_head} : Slice{};
  const Slice o_cols = split ? Slice{h0 * c.v_head_dim, local * c.v_head_dim} : Slice{};
  MlaWeights mla;
  if (c.q_lora_rank.has_value()) {
    const int64_t rank = *c.q_lora_rank;
    MOESERVE_ASSIGN_OR_RETURN(mla.q_a_proj, fetch.Linear(prefix + ".q_a_proj", rank, hidden));
    MOESERVE_ASSIGN_OR_RETURN(mla.q_a_norm, fetch.Dense(prefix + ".q_a_layernorm.weight", {rank}));
    MOESERVE_ASSIGN_OR_RETURN(
        mla.q_b_proj,
        fetch.Linear(prefix + ".q_b_proj", heads * c.qk_head_dim(), rank, true, q_rows));
  } else {
    MOESERVE_ASSIGN_OR_RETURN(mla.q_proj, fetch.Linear(prefix + ".q_proj", heads * c.qk_head_dim(),
                                                       hidden, true, q_rows));
  }
  MOESERVE_ASSIGN_OR_RETURN(mla.kv_a_proj,
                            fetch.Linear(prefix + ".kv_a_proj_with_mqa", c.kv_cache_dim(), hidden));
  MOESERVE_ASSIGN_OR_RETURN(mla.kv_a_norm,
                            fetch.Dense(prefix + ".kv_a_layernorm.weight", {c.kv_lora_rank}));
  MOESERVE_ASSIGN_OR_RETURN(mla.kv_b_proj, fetch.Linear(prefix + ".kv_b_proj", heads * kv_b_head,
                                                        c.kv_lora_rank, true, kv_b_rows));
  MOESERVE_ASSIGN_OR_RETURN(
      mla.o_proj, fetch.Linear(prefix + ".o_proj", hidden, heads * c.v_head_dim, true, {}, o_cols));
  SplitAbsorbedWeights(local, c.qk_nope_head_dim, c.v_head_dim, c.kv_lora_rank, mla);
  return mla;
}

absl::StatusOr<MoeWeights> LoadMoe(TensorFetcher& fetch, const ModelConfig& c,
                                   const std::string& prefix, const WeightShard& shard,
                                   const std::vector<int32_t>& slot_experts) {
  const int64_t hidden = c.hidden_size, experts = c.n_routed_experts;
  MoeWeights moe;
  MOESERVE_ASSIGN_OR_RETURN(moe.router, fetch.Dense(prefix + ".gate.weight", {experts, hidden}));
  if (c.topk_method == TopkMethod::kNoauxTc) {
    MOESERVE_ASSIGN_OR_RETURN(moe.correction_bias,
                              fetch.Dense(prefix + ".gate.e_score_correction_bias", {experts}));
  }
  // Expert parallel: only this rank's slots; otherwise every expert, in order.
  moe.slot_experts = slot_experts;
  std::vector<int32_t> to_load = slot_experts;
  if (to_load.empty()) {
    for (int64_t e = 0; e < experts; ++e) to_load.push_back(static_cast<int32_t>(e));
  }
  const Slice expert_part = shard.split_routed_experts
                                ? Part(c.moe_intermediate_size, shard.tp_size, shard.tp_rank)
                                : Slice{};
  moe.experts.reserve(to_load.size());
  for (int32_t e : to_load) {
    if (e < 0 || e >= experts) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, ": expert ", e, " is outside [0, ", experts, ")"));
    }
    MlpWeights expert;
    MOESERVE_ASSIGN_OR_RETURN(expert, LoadMlp(fetch, absl::StrCat(prefix, ".experts.", e), hidden,
                                              c.moe_intermediate_size, expert_part));
    moe.experts.push_back(std::move(expert));
  }
  if (c.n_shared_experts > 0) {
    const int64_t width = c.shared_expert_intermediate_size();
    MOESERVE_ASSIGN_OR_RETURN(moe.shared, LoadMlp(fetch, prefix + ".shared_experts", hidden, width,
                                                  Part(width, shard.tp_size, shard.tp_rank)));
  }
  return moe;
}

absl::StatusOr<DecoderLayerWeights> LoadDecoderLayer(TensorFetcher& fetch, const ModelConfig& c,
                                                     const std::string& prefix, bool moe,
                                                     const WeightShard& shard,
                                                     const std::vector<int32_t>& slot_experts) {
  const int64_t hidden = c.hidden_size;
  DecoderLayerWeights layer;
  MOESERVE_ASSIGN_OR_RETURN(layer.input_norm,
                            fetch.Dense(prefix + ".input_layernorm.weight", {hidden}));
  MOESERVE_ASSIGN_OR_RETURN(layer.post_attention_norm,
                            fetch.Dense(prefix + ".post_attention_layernorm.weight", {hidden}));
  MOESERVE_ASSIGN_OR_RETURN(layer.attention, LoadMla(fetch, c, prefix + ".self_attn", shard));
  if (moe) {
    MOESERVE_ASSIGN_OR_RETURN(layer.moe, LoadMoe(fetch, c, prefix + ".mlp", shard, slot_experts));
  } else {
    MOESERVE_ASSIGN_OR_RETURN(layer.dense_mlp,
                              LoadMlp(fetch, prefix + ".mlp", hidden, c.intermediate_size,
                                      Part(c.intermediate_size, shard.tp_size, shard.tp_rank)));
  }
  return layer;
}

// MTP module `m` (model.layers.{num_hidden_layers + m}.*, reference §3.4). Its block is an MoE
// layer when the model has routed experts (V3's layer 61), as moeserve-make-model writes it.
absl::StatusOr<MtpWeights> LoadMtp(TensorFetcher& fetch, const Checkpoint& checkpoint,
                                   const ModelConfig& c, int64_t m, const ModelWeights& main,
                                   const WeightShard& shard) {
  const int64_t hidden = c.hidden_size;
  const std::string prefix = absl::StrCat("model.layers.", c.num_hidden_layers + m);
  MtpWeights mtp;
  MOESERVE_ASSIGN_OR_RETURN(mtp.enorm, fetch.Dense(prefix + ".enorm.weight", {hidden}));
  MOESERVE_ASSIGN_OR_RETURN(mtp.hnorm, fetch.Dense(prefix + ".hnorm.weight", {hidden}));
  // BF16 in DeepSeek's FP8 checkpoints and never quantized online (reference §4).
  MOESERVE_ASSIGN_OR_RETURN(mtp.eh_proj, fetch.Linear(prefix + ".eh_proj", hidden, 2 * hidden,
                                                      /*quantizable=*/false));
  MOESERVE_ASSIGN_OR_RETURN(mtp.block, LoadDecoderLayer(fetch, c, prefix, c.n_routed_experts > 0,
                                                        shard, shard.mtp_layer_experts));
  MOESERVE_ASSIGN_OR_RETURN(mtp.head_norm,
                            fetch.Dense(prefix + ".shared_head.norm.weight", {hidden}));
  // V3 stores copies of the main embedding and lm_head here; hold them only if they differ.
  if (checkpoint.Contains(prefix + ".embed_tokens.weight")) {
    std::vector<float> embed;
    MOESERVE_ASSIGN_OR_RETURN(embed,
                              fetch.Dense(prefix + ".embed_tokens.weight", {c.vocab_size, hidden}));
    if (embed != main.embed_tokens) mtp.embed_tokens = std::move(embed);
  }
  if (checkpoint.Contains(prefix + ".shared_head.head.weight")) {
    LinearWeight head;
    MOESERVE_ASSIGN_OR_RETURN(head, fetch.Linear(prefix + ".shared_head.head", c.vocab_size, hidden,
                                                 /*quantizable=*/false));
    // Both were loaded by the same rules, so equal tensors are held identically.
    const bool same = head.format == main.lm_head.format && head.weight == main.lm_head.weight &&
                      head.weight_bf16 == main.lm_head.weight_bf16 &&
                      head.weight_fp8 == main.lm_head.weight_fp8 &&
                      head.scale_inv == main.lm_head.scale_inv;
    if (!same) mtp.head = std::move(head);
  }
  return mtp;
}

}  // namespace

std::optional<CpuKernels> ParseCpuKernels(std::string_view name) {
  if (name == "fast") return CpuKernels::kFast;
  if (name == "bf16") return CpuKernels::kFastBf16;
  if (name == "reference") return CpuKernels::kReference;
  return std::nullopt;
}

DType CpuKvCacheDtype(const LoadOptions& options) {
  if (options.kv_cache_dtype.has_value()) return *options.kv_cache_dtype;
  return options.cpu_kernels == CpuKernels::kReference ? DType::kF32 : DType::kBF16;
}

std::optional<DType> ParseKvCacheDtype(std::string_view name) {
  if (name == "bf16") return DType::kBF16;
  if (name == "fp32") return DType::kF32;
  return std::nullopt;
}

bool UsesLibraryGemm(const LoadOptions& options) {
  return options.cpu_kernels == CpuKernels::kFastBf16 && !options.deterministic &&
         LinearIsaFor(options.cpu_kernels) == CpuIsa::kAvx512Bf16 && OneDnnGemmAvailable();
}

CpuIsa LinearIsaFor(CpuKernels kernels) {
  switch (kernels) {
    case CpuKernels::kReference:
      return CpuIsa::kPortable;
    case CpuKernels::kFastBf16:
      if (CpuIsaAvailable(CpuIsa::kAvx512Bf16)) return CpuIsa::kAvx512Bf16;
      return BestCpuIsa();
    case CpuKernels::kFast:
      return BestCpuIsa();
  }
  return CpuIsa::kPortable;
}

absl::Status LoadModelWeightsByLayer(
    const Checkpoint& checkpoint, const ModelConfig& c, const LoadOptions& options,
    const WeightShard& shard, ModelWeights& weights,
    const std::function<absl::Status(int64_t, DecoderLayerWeights&&)>& on_layer) {
  if (shard.tp_size < 1 || shard.tp_rank < 0 || shard.tp_rank >= shard.tp_size ||
      c.num_attention_heads % shard.tp_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("weight shard ", shard.tp_rank, " of ",
                                                   shard.tp_size, " does not fit ",
                                                   c.num_attention_heads, " heads"));
  }
  if (!shard.layer_experts.empty() &&
      static_cast<int64_t>(shard.layer_experts.size()) != c.num_hidden_layers) {
    return absl::InvalidArgumentError("weight shard: layer_experts must cover every layer");
  }
  TensorFetcher fetch(checkpoint, c, options);
  const int64_t hidden = c.hidden_size;
  weights = ModelWeights();
  MOESERVE_ASSIGN_OR_RETURN(weights.embed_tokens,
                            fetch.Dense("model.embed_tokens.weight", {c.vocab_size, hidden}));
  MOESERVE_ASSIGN_OR_RETURN(weights.final_norm, fetch.Dense("model.norm.weight", {hidden}));
  if (c.tie_word_embeddings && !checkpoint.Contains("lm_head.weight")) {
    weights.lm_head.out_features = c.vocab_size;
    weights.lm_head.in_features = hidden;
    weights.lm_head.weight = weights.embed_tokens;
    weights.lm_head.isa = LinearIsaFor(options.cpu_kernels);
    weights.lm_head.library_gemm = UsesLibraryGemm(options);
  } else {
    MOESERVE_ASSIGN_OR_RETURN(weights.lm_head, fetch.Linear("lm_head", c.vocab_size, hidden,
                                                            /*quantizable=*/false));
  }
  // Layers [0, num_hidden_layers) only: model.layers.{num_hidden_layers}.* is the MTP module.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::vector<int32_t> no_experts;
    DecoderLayerWeights layer;
    MOESERVE_ASSIGN_OR_RETURN(
        layer, LoadDecoderLayer(fetch, c, absl::StrCat("model.layers.", l), c.IsMoeLayer(l), shard,
                                shard.layer_experts.empty() ? no_experts : shard.layer_experts[l]));
    MOESERVE_RETURN_IF_ERROR(on_layer(l, std::move(layer)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelWeights> LoadModelWeights(const Checkpoint& checkpoint, const ModelConfig& c,
                                              const LoadOptions& options,
                                              const WeightShard& shard) {
  ModelWeights weights;
  std::vector<DecoderLayerWeights> layers;
  MOESERVE_RETURN_IF_ERROR(LoadModelWeightsByLayer(checkpoint, c, options, shard, weights,
                                                   [&](int64_t, DecoderLayerWeights&& layer) {
                                                     layers.push_back(std::move(layer));
                                                     return absl::OkStatus();
                                                   }));
  weights.layers = std::move(layers);
  if (options.load_mtp) {
    MOESERVE_ASSIGN_OR_RETURN(weights.mtp, LoadMtpModules(checkpoint, c, options, weights, shard));
  }
  return weights;
}

absl::Status CheckMtpShard(const LoadOptions& options, const WeightShard& shard) {
  if (options.load_mtp && (shard.tp_size > 1 || !shard.layer_experts.empty())) {
    return absl::InvalidArgumentError(
        "the CUDA backend loads the MTP module only into an unsharded model (no tensor or "
        "expert parallelism; the CPU backend shards it)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<MtpWeights>> LoadMtpModules(const Checkpoint& checkpoint,
                                                       const ModelConfig& c,
                                                       const LoadOptions& options,
                                                       const ModelWeights& main,
                                                       const WeightShard& shard) {
  TensorFetcher fetch(checkpoint, c, options);
  std::vector<MtpWeights> modules;
  for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m) {
    MtpWeights mtp;
    MOESERVE_ASSIGN_OR_RETURN(mtp, LoadMtp(fetch, checkpoint, c, m, main, shard));
    modules.push_back(std::move(mtp));
  }
  return modules;
}

}  // namespace moeserve::engine
