#include "tools/make_model/checkpoint_maker.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/io/checkpoint.h"
#include "engine/io/safetensors_writer.h"
#include "engine/ops/dtype.h"
#include "engine/ops/linear/fp8_quant.h"
#include "engine/status_macros.h"
#include "tools/make_model/tokenizer_writer.h"

namespace moeserve::tools {
namespace {

using engine::DType;
using engine::ModelConfig;

constexpr int64_t kDefaultShardBytes = int64_t{4} << 30;

// splitmix64: a counter-based generator, so element i of a tensor needs no sequential state.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t HashName(const std::string& name, uint64_t seed) {
  uint64_t h = Mix(seed);
  for (unsigned char ch : name) h = Mix(h ^ ch);
  return h;
}

double Uniform(uint64_t key, uint64_t index) {  // in (0, 1)
  return (static_cast<double>(Mix(key ^ Mix(index)) >> 11) + 0.5) * 0x1.0p-53;
}

// Box–Muller on two counter-derived uniforms.
double Normal(uint64_t key, uint64_t index) {
  const double u1 = Uniform(key, 2 * index), u2 = Uniform(key, 2 * index + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// fp32 values of a tensor by role. Linear rows get a per-128-row-block magnitude in
// [0.5, 1.5) so FP8 block scales differ realistically across blocks.
std::vector<float> RandomValues(const TensorSpec& spec, uint64_t seed) {
  const uint64_t key = HashName(spec.name, seed);
  const int64_t n = NumElements(spec.shape);
  const int64_t cols = spec.shape.size() == 2 ? spec.shape[1] : n;
  std::vector<float> v(static_cast<size_t>(n));
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const double z = Normal(key, static_cast<uint64_t>(i));
    double value = 0.0;
    switch (spec.role) {
      case TensorRole::kLinear:
      case TensorRole::kDenseLinear:
      case TensorRole::kRouter: {
        const double block_magnitude = 0.5 + Uniform(key ^ 0xb10c, (i / cols) / 128);
        value = z * block_magnitude / std::sqrt(static_cast<double>(cols));
        break;
      }
      case TensorRole::kEmbedding:
        value = z;
        break;
      case TensorRole::kNorm:
        value = 1.0 + 0.1 * z;
        break;
      case TensorRole::kRouterBias:
        value = 0.05 * z;
        break;
    }
    v[i] = static_cast<float>(value);
  }
  return v;
}

struct EncodedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

EncodedTensor Encode(const std::string& name, DType dtype, std::vector<int64_t> shape,
                     const void* data, size_t bytes) {
  EncodedTensor t{name, dtype, std::move(shape), {}};
  t.bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + bytes);
  return t;
}

// One spec → one tensor (BF16/F32), or two (FP8 weight + weight_scale_inv).
std::vector<EncodedTensor> EncodeTensor(const TensorSpec& spec, bool fp8, uint64_t seed) {
  std::vector<float> values = RandomValues(spec, seed);
  if (spec.role == TensorRole::kRouterBias) {
    return {Encode(spec.name, DType::kF32, spec.shape, values.data(), values.size() * 4)};
  }
  if (spec.role == TensorRole::kLinear && fp8) {
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    engine::Fp8BlockWeight q = engine::QuantizeFp8BlockWeight(values, rows, cols);
    const std::string scale_name =
        spec.name.substr(0, spec.name.size() - std::string(".weight").size()) + ".weight_scale_inv";
    const std::vector<int64_t> scale_shape = {(rows + 127) / 128, (cols + 127) / 128};
    return {
        Encode(spec.name, DType::kF8E4M3, spec.shape, q.fp8.data(), q.fp8.size()),
        Encode(scale_name, DType::kF32, scale_shape, q.scale_inv.data(), q.scale_inv.size() * 4)};
  }
  std::vector<uint16_t> bf16(values.size());
  for (size_t i = 0; i < values.size(); ++i) bf16[i] = engine::FloatToBf16(values[i]);
  return {Encode(spec.name, DType::kBF16, spec.shape, bf16.data(), bf16.size() * 2)};
}

int64_t EncodedBytes(const TensorSpec& spec, bool fp8) {
  const int64_t n = NumElements(spec.shape);
  if (spec.role == TensorRole::kRouterBias) return 4 * n;
  if (spec.role == TensorRole::kLinear && fp8) return n;
  return 2 * n;
}

void AddMlp(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t hidden,
            int64_t width) {
  specs.push_back({prefix + ".gate_proj.weight", {width, hidden}, TensorRole::kLinear});
  specs.push_back({prefix + ".up_proj.weight", {width, hidden}, TensorRole::kLinear});
  specs.push_back({prefix + ".down_proj.weight", {hidden, width}, TensorRole::kLinear});
}

void AddDecoderLayer(std::vector<TensorSpec>& specs, const ModelConfig& c, int64_t layer,
                     bool moe) {
  const std::string p = absl::StrCat("model.layers.", layer);
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  specs.push_back({p + ".input_layernorm.weight", {hidden}, TensorRole::kNorm});
  const std::string a = p + ".self_attn";
  if (c.q_lora_rank.has_value()) {
    specs.push_back({a + ".q_a_proj.weight", {*c.q_lora_rank, hidden}, TensorRole::kLinear});
    specs.push_back({a + ".q_a_layernorm.weight", {*c.q_lora_rank}, TensorRole::kNorm});
    specs.push_back(
        {a + ".q_b_proj.weight", {heads * c.qk_head_dim(), *c.q_lora_rank}, TensorRole::kLinear});
  } else {
    specs.push_back({a + ".q_proj.weight", {heads * c.qk_head_dim(), hidden}, TensorRole::kLinear});
  }
  specs.push_back(
      {a + ".kv_a_proj_with_mqa.weight", {c.kv_cache_dim(), hidden}, TensorRole::kLinear});
  specs.push_back({a + ".kv_a_layernorm.weight", {c.kv_lora_rank}, TensorRole::kNorm});
  specs.push_back({a + ".kv_b_proj.weight",
                   {heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
                   TensorRole::kLinear});
  specs.push_back({a + ".o_proj.weight", {hidden, heads * c.v_head_dim}, TensorRole::kLinear});
  specs.push_back({p + ".post_attention_layernorm.weight", {hidden}, TensorRole::kNorm});
  if (!moe) {
    AddMlp(specs, p + ".mlp", hidden, c.intermediate_size);
    return;
  }
  specs.push_back({p + ".mlp.gate.weight", {c.n_routed_experts, hidden}, TensorRole::kRouter});
  if (c.topk_method == engine::TopkMethod::kNoauxTc) {
    specs.push_back(
        {p + ".mlp.gate.e_score_correction_bias", {c.n_routed_experts}, TensorRole::kRouterBias});
  }
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    AddMlp(specs, absl::StrCat(p, ".mlp.experts.", e), hidden, c.moe_intermediate_size);
  }
  if (c.n_shared_experts > 0) {
    AddMlp(specs, p + ".mlp.shared_experts", hidden, c.shared_expert_intermediate_size());
  }
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

std::vector<TensorSpec> CheckpointTensorSpecs(const ModelConfig& c) {
  const int64_t hidden = c.hidden_size;
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, hidden}, TensorRole::kEmbedding});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) AddDecoderLayer(specs, c, l, c.IsMoeLayer(l));
  specs.push_back({"model.norm.weight", {hidden}, TensorRole::kNorm});
  specs.push_back({"lm_head.weight", {c.vocab_size, hidden}, TensorRole::kDenseLinear});
  // MTP modules (reference §2.2): a decoder block plus its projections, after the main stack.
  for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m) {
    const int64_t layer = c.num_hidden_layers + m;
    const std::string p = absl::StrCat("model.layers.", layer);
    AddDecoderLayer(specs, c, layer, c.n_routed_experts > 0);
    specs.push_back({p + ".enorm.weight", {hidden}, TensorRole::kNorm});
    specs.push_back({p + ".hnorm.weight", {hidden}, TensorRole::kNorm});
    specs.push_back({p + ".eh_proj.weight", {hidden, 2 * hidden}, TensorRole::kDenseLinear});
    specs.push_back({p + ".embed_tokens.weight", {c.vocab_size, hidden}, TensorRole::kEmbedding});
    specs.push_back(
        {p + ".shared_head.head.weight", {c.vocab_size, hidden}, TensorRole::kDenseLinear});
    specs.push_back({p + ".shared_head.norm.weight", {hidden}, TensorRole::kNorm});
  }
  return specs;
}

absl::Status MakeRandomCheckpoint(const ModelConfig& input_config,
                                  const MakeCheckpointOptions& options) {
  ModelConfig config = input_config;
  if (options.fp8) {
    config.fp8 = engine::Fp8Quantization{};
  } else {
    config.fp8.reset();
  }
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", options.out_dir, ": ", ec.message()));
  MOESERVE_RETURN_IF_ERROR(
      WriteTextFile(options.out_dir + "/config.json", engine::ModelConfigToJson(config)));
  MOESERVE_RETURN_IF_ERROR(WriteTokenizerFiles(config.vocab_size, options.out_dir));

  // Partition the specs, in order, into shards of about equal size.
  const std::vector<TensorSpec> specs = CheckpointTensorSpecs(config);
  int64_t total_bytes = 0;
  for (const TensorSpec& spec : specs) total_bytes += EncodedBytes(spec, options.fp8);
  int64_t shards =
      options.shards > 0
          ? options.shards
          : std::max<int64_t>(1, (total_bytes + kDefaultShardBytes - 1) / kDefaultShardBytes);
  shards = std::min<int64_t>(shards, static_cast<int64_t>(specs.size()));
  std::vector<std::vector<const TensorSpec*>> shard_specs(static_cast<size_t>(shards));
  int64_t running = 0;
  for (const TensorSpec& spec : specs) {
    const int64_t shard = std::min<int64_t>(shards - 1, running * shards / total_bytes);
    shard_specs[shard].push_back(&spec);
    running += EncodedBytes(spec, options.fp8);
  }

  std::map<std::string, std::string> weight_map;
  for (int64_t s = 0; s < shards; ++s) {
    const std::string file_name =
        shards == 1 ? "model.safetensors"
                    : absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards);
    std::vector<EncodedTensor> encoded;
    for (const TensorSpec* spec : shard_specs[s]) {
      for (EncodedTensor& t : EncodeTensor(*spec, options.fp8, options.seed)) {
        encoded.push_back(std::move(t));
      }
    }
    std::vector<engine::TensorToWrite> to_write;
    for (const EncodedTensor& t : encoded) {
      to_write.push_back({t.name, t.dtype, t.shape, absl::MakeConstSpan(t.bytes)});
      weight_map[t.name] = file_name;
    }
    MOESERVE_RETURN_IF_ERROR(engine::WriteSafetensors(options.out_dir + "/" + file_name, to_write));
  }
  if (shards > 1) {
    MOESERVE_RETURN_IF_ERROR(engine::WriteSafetensorsIndex(options.out_dir, weight_map,
                                                           static_cast<uint64_t>(total_bytes)));
  }
  return absl::OkStatus();
}

}  // namespace moeserve::tools
