#include "engine/model/model_config.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/io/bounded_file.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {
namespace {

using Json = nlohmann::json;

#define CFG_RETURN_IF_ERROR(expr)      \
  do {                                 \
    absl::Status _status = (expr);     \
    if (!_status.ok()) return _status; \
  } while (0)

constexpr char kV2Name[] = "DeepseekV2ForCausalLM";
constexpr char kV3Name[] = "DeepseekV3ForCausalLM";

// Debian's Abseil has its own absl::string_view (not std's), which StrCat requires.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// JSON integers that fit int64. nlohmann stores integers wider than 64 bits as doubles
// (Kimi's model_max_length has 31 digits) and large positive ones as uint64, so both are
// refused here instead of being narrowed silently.
std::optional<int64_t> AsInt64(const Json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

// Reads the fields of one JSON object. Every error names the file and the field, with
// `prefix` for nested objects ("rope_scaling."). Absent and null are treated alike: HF
// configs write null for "use the default" (q_lora_rank, n_shared_experts, n_group).
// Optional readers leave *out untouched then, so callers preset the HF default.
class Reader {
 public:
  Reader(const Json& obj, absl::string_view source, std::string prefix = "")
      : obj_(obj), source_(source), prefix_(std::move(prefix)) {}

  const Json* Find(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::Status Error(const char* key, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", prefix_, key, "' ", what));
  }

  // An integer >= min (min is 0 or 1, which picks the wording).
  absl::Status Int(const char* key, int64_t min, bool required, int64_t* out) const {
    const Json* v = Find(key);
    if (v == nullptr && !required) return absl::OkStatus();
    std::optional<int64_t> i = v ? AsInt64(*v) : std::nullopt;
    if (!i || *i < min) {
      return Error(key, min > 0 ? "must be a positive integer" : "must be a non-negative integer");
    }
    *out = *i;
    return absl::OkStatus();
  }

  // An integer >= min or null/absent (nullopt).
  absl::Status NullableInt(const char* key, int64_t min, std::optional<int64_t>* out) const {
    if (Find(key) == nullptr) {
      *out = std::nullopt;
      return absl::OkStatus();
    }
    int64_t i = 0;
    CFG_RETURN_IF_ERROR(Int(key, min, /*required=*/true, &i));
    *out = i;
    return absl::OkStatus();
  }

  // A finite number > 0 (or >= 0 when !positive); JSON integers are accepted ("factor": 40).
  absl::Status Double(const char* key, bool positive, bool required, double* out) const {
    const Json* v = Find(key);
    if (v == nullptr && !required) return absl::OkStatus();
    const bool ok = v != nullptr && v->is_number() && std::isfinite(v->get<double>()) &&
                    (positive ? v->get<double>() > 0 : v->get<double>() >= 0);
    if (!ok)
      return Error(key, positive ? "must be a positive number" : "must be a non-negative number");
    *out = v->get<double>();
    return absl::OkStatus();
  }

  absl::Status Bool(const char* key, bool* out) const {
    const Json* v = Find(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return Error(key, "must be true or false");
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* key, bool required, std::string* out) const {
    const Json* v = Find(key);
    if (v == nullptr && !required) return absl::OkStatus();
    if (v == nullptr || !v->is_string()) return Error(key, "must be a string");
    *out = v->get<std::string>();
    return absl::OkStatus();
  }

 private:
  const Json& obj_;
  absl::string_view source_;
  std::string prefix_;
};

// Picks V2 or V3 from `architectures`, else from `model_type` (some converted checkpoints
// drop architectures). DeepSeek's own inference/configs/*.json (ModelArgs: "dim", "n_layers")
// have neither, and get a hint instead of a field-by-field failure.
absl::Status ReadArchitecture(const Json& root, absl::string_view source, ModelConfig* c) {
  const Reader r(root, source);
  CFG_RETURN_IF_ERROR(r.String("model_type", /*required=*/false, &c->model_type));
  const Json* archs = r.Find("architectures");
  if (archs != nullptr) {
    if (!archs->is_array()) return r.Error("architectures", "must be a list of strings");
    for (const Json& a : *archs) {
      if (!a.is_string()) return r.Error("architectures", "must be a list of strings");
    }
  }
  if (archs != nullptr && !archs->empty()) {
    for (const Json& a : *archs) {
      const auto name = a.get<std::string>();
      if (name == kV2Name || name == kV3Name) {
        c->architecture = name == kV2Name ? Architecture::kDeepseekV2 : Architecture::kDeepseekV3;
        if (c->model_type.empty()) {
          c->model_type = name == kV2Name ? "deepseek_v2" : "deepseek_v3";
        }
        return absl::OkStatus();
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported architecture '",
                                                   (*archs)[0].get<std::string>(), "'; expected ",
                                                   kV2Name, " or ", kV3Name));
  }
  if (c->model_type == "deepseek_v2") {
    c->architecture = Architecture::kDeepseekV2;
  } else if (c->model_type == "deepseek_v3" || c->model_type == "kimi_k2") {
    c->architecture = Architecture::kDeepseekV3;
  } else if (c->model_type.empty()) {
    const bool model_args = root.contains("dim") && root.contains("n_layers");
    return absl::InvalidArgumentError(absl::StrCat(
        source,
        ": fields 'architectures' and 'model_type' are missing; expected an HF config.json "
        "for ",
        kV2Name, " or ", kV3Name,
        model_args ? " (this looks like DeepSeek's inference/configs ModelArgs file)" : ""));
  } else {
    return r.Error("model_type", absl::StrCat("'", c->model_type,
                                              "' is not deepseek_v2, deepseek_v3 or kimi_k2"));
  }
  return absl::OkStatus();
}

absl::Status ReadRopeScaling(const Json& v, absl::string_view source, RopeScaling* rs) {
  if (!v.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field 'rope_scaling' must be an object or null"));
  }
  const Reader r(v, source, "rope_scaling.");
  // Old configs spell the kind "type", newer ones "rope_type"; HF copies one into the other.
  std::string type, rope_type;
  CFG_RETURN_IF_ERROR(r.String("type", false, &type));
  CFG_RETURN_IF_ERROR(r.String("rope_type", false, &rope_type));
  if (type.empty()) type = rope_type;
  if (type.empty()) return r.Error("type", "is missing; DeepSeek checkpoints use 'yarn'");
  if (type != "yarn" || (!rope_type.empty() && rope_type != type)) {
    return r.Error("type", absl::StrCat("'", type != "yarn" ? type : rope_type,
                                        "' is not supported; DeepSeek checkpoints use 'yarn'"));
  }
  CFG_RETURN_IF_ERROR(r.Double("factor", true, /*required=*/true, &rs->factor));
  CFG_RETURN_IF_ERROR(
      r.Int("original_max_position_embeddings", 1, false, &rs->original_max_position_embeddings));
  CFG_RETURN_IF_ERROR(r.Double("beta_fast", true, false, &rs->beta_fast));
  CFG_RETURN_IF_ERROR(r.Double("beta_slow", true, false, &rs->beta_slow));
  CFG_RETURN_IF_ERROR(r.Double("mscale", false, false, &rs->mscale));
  CFG_RETURN_IF_ERROR(r.Double("mscale_all_dim", false, false, &rs->mscale_all_dim));
  return absl::OkStatus();
}

absl::Status ReadQuantization(const Json& v, absl::string_view source, Fp8Quantization* q) {
  if (!v.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field 'quantization_config' must be an object or null"));
  }
  const Reader r(v, source, "quantization_config.");
  std::string method, fmt = "e4m3", scheme = "dynamic";
  CFG_RETURN_IF_ERROR(r.String("quant_method", true, &method));
  if (method != "fp8") {
    return r.Error("quant_method", absl::StrCat("'", method, "' is not supported; expected 'fp8'"));
  }
  CFG_RETURN_IF_ERROR(r.String("fmt", false, &fmt));
  if (fmt != "e4m3")
    return r.Error("fmt", absl::StrCat("'", fmt, "' is not supported; expected 'e4m3'"));
  CFG_RETURN_IF_ERROR(r.String("activation_scheme", false, &scheme));
  // Static activation scales would need per-tensor input_scale tensors we never load.
  if (scheme != "dynamic") {
    return r.Error("activation_scheme",
                   absl::StrCat("'", scheme, "' is not supported; expected 'dynamic'"));
  }
  q->dynamic_activation = true;
  if (const Json* b = r.Find("weight_block_size")) {
    std::optional<int64_t> rows, cols;
    if (b->is_array() && b->size() == 2) {
      rows = AsInt64((*b)[0]);
      cols = AsInt64((*b)[1]);
    }
    if (!rows || !cols || *rows <= 0 || *cols <= 0) {
      return r.Error("weight_block_size", "must be a list of two positive integers [rows, cols]");
    }
    q->weight_block_rows = *rows;
    q->weight_block_cols = *cols;
  }
  return absl::OkStatus();
}

// Maps a string field onto one of `values` by its config.json name; absent keeps *out (the
// architecture's HF default), an unknown spelling is an error listing the known ones.
template <typename Enum, size_t N>
absl::Status ReadEnum(const Reader& r, const char* key, const Enum (&values)[N],
                      std::string_view (*name)(Enum), Enum* out) {
  std::string s;
  CFG_RETURN_IF_ERROR(r.String(key, false, &s));
  if (r.Find(key) == nullptr) return absl::OkStatus();
  std::string known;
  for (Enum v : values) {
    if (s == name(v)) {
      *out = v;
      return absl::OkStatus();
    }
    absl::StrAppend(&known, known.empty() ? "" : ", ", Sv(name(v)));
  }
  return r.Error(key, absl::StrCat("'", s, "' is not one of ", known));
}

constexpr TopkMethod kTopkMethods[] = {TopkMethod::kGreedy, TopkMethod::kGroupLimitedGreedy,
                                       TopkMethod::kNoauxTc};
constexpr ScoringFunc kScoringFuncs[] = {ScoringFunc::kSoftmax, ScoringFunc::kSigmoid};

absl::Status Validate(const ModelConfig& c, absl::string_view source) {
  auto fail = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", parts...));
  };
  if (c.qk_rope_head_dim % 2 != 0) {
    return fail("field 'qk_rope_head_dim' (", c.qk_rope_head_dim,
                ") must be even: RoPE rotates pairs");
  }
  if (c.first_k_dense_replace > c.num_hidden_layers) {
    return fail("field 'first_k_dense_replace' (", c.first_k_dense_replace,
                ") must be <= 'num_hidden_layers' (", c.num_hidden_layers, ")");
  }
  // A stop token the model can never produce would let every request run to max_tokens, and
  // a BOS outside the embedding would read past it (issue 21, row 9).
  for (int64_t id : c.eos_token_ids) {
    if (id >= c.vocab_size) {
      return fail("field 'eos_token_id' (", id, ") is outside the vocabulary (vocab_size ",
                  c.vocab_size, ")");
    }
  }
  if (c.eos_token_id && *c.eos_token_id >= c.vocab_size) {
    return fail("field 'eos_token_id' (", *c.eos_token_id,
                ") is outside the vocabulary (vocab_size ", c.vocab_size, ")");
  }
  if (c.bos_token_id && *c.bos_token_id >= c.vocab_size) {
    return fail("field 'bos_token_id' (", *c.bos_token_id,
                ") is outside the vocabulary (vocab_size ", c.vocab_size, ")");
  }
  if (c.n_routed_experts == 0) return absl::OkStatus();  // dense model: the router is unused

  if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.n_routed_experts) {
    return fail("field 'num_experts_per_tok' (", c.num_experts_per_tok,
                ") must be between 1 and 'n_routed_experts' (", c.n_routed_experts, ")");
  }
  if (c.moe_intermediate_size < 1) {
    return fail("field 'moe_intermediate_size' must be a positive integer for an MoE model");
  }
  if (c.n_routed_experts % c.n_group != 0) {
    return fail("field 'n_routed_experts' (", c.n_routed_experts,
                ") must be divisible by 'n_group' (", c.n_group, ")");
  }
  if (c.topk_group > c.n_group) {
    return fail("field 'topk_group' (", c.topk_group, ") must be <= 'n_group' (", c.n_group, ")");
  }
  const int64_t per_group = c.n_routed_experts / c.n_group;
  if (c.topk_method == TopkMethod::kNoauxTc) {
    // noaux_tc selects on sigmoid + bias and ranks groups by their top-2 sum (reference §3.3).
    if (c.scoring_func != ScoringFunc::kSigmoid) {
      return fail("field 'topk_method' noaux_tc requires 'scoring_func' sigmoid, got ",
                  Sv(ScoringFuncName(c.scoring_func)));
    }
    if (per_group < 2) {
      return fail("field 'topk_method' noaux_tc needs >= 2 experts per group ('n_routed_experts' ",
                  c.n_routed_experts, " / 'n_group' ", c.n_group, ")");
    }
  }
  if (c.topk_method != TopkMethod::kGreedy && c.num_experts_per_tok > c.topk_group * per_group) {
    return fail("field 'num_experts_per_tok' (", c.num_experts_per_tok, ") exceeds the ",
                c.topk_group * per_group, " experts in 'topk_group' (", c.topk_group,
                ") kept groups of 'n_routed_experts'/'n_group' (", per_group, ")");
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view ArchitectureName(Architecture architecture) {
  return architecture == Architecture::kDeepseekV2 ? kV2Name : kV3Name;
}

std::string_view TopkMethodName(TopkMethod method) {
  switch (method) {
    case TopkMethod::kGreedy:
      return "greedy";
    case TopkMethod::kGroupLimitedGreedy:
      return "group_limited_greedy";
    case TopkMethod::kNoauxTc:
      return "noaux_tc";
  }
  return "?";
}

std::string_view ScoringFuncName(ScoringFunc func) {
  return func == ScoringFunc::kSoftmax ? "softmax" : "sigmoid";
}

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

double ModelConfig::YarnMscaleAllDim() const {
  if (!rope_scaling || rope_scaling->factor <= 1.0) return 1.0;
  return 0.1 * rope_scaling->mscale_all_dim * std::log(rope_scaling->factor) + 1.0;
}

double ModelConfig::SoftmaxScale() const {
  const double m = YarnMscaleAllDim();
  return m * m / std::sqrt(static_cast<double>(qk_head_dim()));
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text,
                                             std::string_view source_name) {
  const absl::string_view source = Sv(source_name);
  Json root;
  try {
    root = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the top level of config.json must be a JSON object"));
  }
  ModelConfig c;
  CFG_RETURN_IF_ERROR(ReadArchitecture(root, source, &c));
  // The header's defaults are HF's V2 ones; HF's V3 config class defaults differ here.
  if (c.architecture == Architecture::kDeepseekV3) {
    c.topk_method = TopkMethod::kNoauxTc;
    c.scoring_func = ScoringFunc::kSigmoid;
    c.norm_topk_prob = true;
  }

  const Reader r(root, source);
  constexpr bool kRequired = true, kOptional = false;
  // Shapes have no sensible default (HF's are another model's), so they are required.
  for (auto [key, field] : {std::pair{"vocab_size", &c.vocab_size},
                            {"hidden_size", &c.hidden_size},
                            {"intermediate_size", &c.intermediate_size},
                            {"num_hidden_layers", &c.num_hidden_layers},
                            {"num_attention_heads", &c.num_attention_heads},
                            {"max_position_embeddings", &c.max_position_embeddings},
                            {"kv_lora_rank", &c.kv_lora_rank},
                            {"qk_nope_head_dim", &c.qk_nope_head_dim},
                            {"qk_rope_head_dim", &c.qk_rope_head_dim},
                            {"v_head_dim", &c.v_head_dim}}) {
    CFG_RETURN_IF_ERROR(r.Int(key, 1, kRequired, field));
  }
  // q_lora_rank must be present: null selects q_proj (V2-Lite), and guessing HF's default
  // 1536 would silently change which weights the loader looks for.
  if (!root.contains("q_lora_rank"))
    return r.Error("q_lora_rank", "is missing (write null for none)");
  CFG_RETURN_IF_ERROR(r.NullableInt("q_lora_rank", 1, &c.q_lora_rank));
  // null n_routed_experts means a dense model in HF-remote.
  CFG_RETURN_IF_ERROR(r.Int("n_routed_experts", 0, kOptional, &c.n_routed_experts));
  const bool moe = c.n_routed_experts > 0;
  CFG_RETURN_IF_ERROR(r.Int("moe_intermediate_size", moe ? 1 : 0, moe, &c.moe_intermediate_size));
  CFG_RETURN_IF_ERROR(r.Int("num_experts_per_tok", moe ? 1 : 0, moe, &c.num_experts_per_tok));
  CFG_RETURN_IF_ERROR(r.Int("n_shared_experts", 0, kOptional, &c.n_shared_experts));
  CFG_RETURN_IF_ERROR(r.Int("n_group", 1, kOptional, &c.n_group));
  CFG_RETURN_IF_ERROR(r.Int("topk_group", 1, kOptional, &c.topk_group));
  CFG_RETURN_IF_ERROR(ReadEnum(r, "topk_method", kTopkMethods, &TopkMethodName, &c.topk_method));
  CFG_RETURN_IF_ERROR(
      ReadEnum(r, "scoring_func", kScoringFuncs, &ScoringFuncName, &c.scoring_func));
  CFG_RETURN_IF_ERROR(r.Bool("norm_topk_prob", &c.norm_topk_prob));
  CFG_RETURN_IF_ERROR(r.Double("routed_scaling_factor", true, kOptional, &c.routed_scaling_factor));
  CFG_RETURN_IF_ERROR(r.Int("first_k_dense_replace", 0, kOptional, &c.first_k_dense_replace));
  CFG_RETURN_IF_ERROR(r.Int("moe_layer_freq", 1, kOptional, &c.moe_layer_freq));
  CFG_RETURN_IF_ERROR(r.Int("num_nextn_predict_layers", 0, kOptional, &c.num_nextn_predict_layers));
  CFG_RETURN_IF_ERROR(r.Double("rms_norm_eps", true, kOptional, &c.rms_norm_eps));
  CFG_RETURN_IF_ERROR(r.Double("rope_theta", true, kOptional, &c.rope_theta));
  CFG_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));

  if (const Json* v = r.Find("rope_scaling")) {
    CFG_RETURN_IF_ERROR(ReadRopeScaling(*v, source, &c.rope_scaling.emplace()));
  }
  if (const Json* v = r.Find("quantization_config")) {
    CFG_RETURN_IF_ERROR(ReadQuantization(*v, source, &c.fp8.emplace()));
  }
  CFG_RETURN_IF_ERROR(r.NullableInt("bos_token_id", 0, &c.bos_token_id));
  if (const Json* v = r.Find("eos_token_id")) {
    if (v->is_array()) {
      for (const Json& id : *v) {
        std::optional<int64_t> i = AsInt64(id);
        if (!i || *i < 0)
          return r.Error("eos_token_id", "must be a non-negative integer or a list of them");
        c.eos_token_ids.push_back(*i);
      }
    } else {
      std::optional<int64_t> i = AsInt64(*v);
      if (!i || *i < 0)
        return r.Error("eos_token_id", "must be a non-negative integer or a list of them");
      c.eos_token_ids.push_back(*i);
    }
    if (!c.eos_token_ids.empty()) c.eos_token_id = c.eos_token_ids.front();
  }

  CFG_RETURN_IF_ERROR(Validate(c, source));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxConfigFileBytes);
  if (!text.ok()) return text.status();
  return ParseModelConfig(*text, path);
}

std::string ModelConfigToJson(const ModelConfig& c) {
  // nlohmann::json keeps keys sorted, as HF's save_pretrained does.
  Json j;
  j["architectures"] = Json::array({std::string(ArchitectureName(c.architecture))});
  j["model_type"] =
      c.model_type.empty()
          ? (c.architecture == Architecture::kDeepseekV2 ? "deepseek_v2" : "deepseek_v3")
          : c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_attention_heads;  // MLA: every head has its own k/v
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling) {
    const RopeScaling& rs = *c.rope_scaling;
    // Both spellings: HF-remote reads "type", transformers' rope validation "rope_type".
    j["rope_scaling"] = {{"type", "yarn"},
                         {"rope_type", "yarn"},
                         {"factor", rs.factor},
                         {"original_max_position_embeddings", rs.original_max_position_embeddings},
                         {"beta_fast", rs.beta_fast},
                         {"beta_slow", rs.beta_slow},
                         {"mscale", rs.mscale},
                         {"mscale_all_dim", rs.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["q_lora_rank"] = c.q_lora_rank ? Json(*c.q_lora_rank) : Json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["n_routed_experts"] = c.n_routed_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["topk_method"] = std::string(TopkMethodName(c.topk_method));
  j["scoring_func"] = std::string(ScoringFuncName(c.scoring_func));
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  // Omitted rather than null when unquantized: HF treats a present key as "quantized".
  if (c.fp8) {
    j["quantization_config"] = {
        {"activation_scheme", "dynamic"},
        {"fmt", "e4m3"},
        {"quant_method", "fp8"},
        {"weight_block_size", {c.fp8->weight_block_rows, c.fp8->weight_block_cols}}};
  }
  j["bos_token_id"] = c.bos_token_id ? Json(*c.bos_token_id) : Json(nullptr);
  if (c.eos_token_ids.size() > 1) {
    j["eos_token_id"] = c.eos_token_ids;
  } else if (c.eos_token_id || !c.eos_token_ids.empty()) {
    j["eos_token_id"] = c.eos_token_id ? *c.eos_token_id : c.eos_token_ids.front();
  } else {
    j["eos_token_id"] = nullptr;
  }
  // Constants of the architecture that transformers' config classes expect to see.
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["hidden_act"] = "silu";
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["torch_dtype"] = "bfloat16";
  if (c.architecture == Architecture::kDeepseekV3) j["rope_interleave"] = true;
  // `replace` keeps a caller-set model_type with bad UTF-8 from throwing.
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

#undef CFG_RETURN_IF_ERROR

}  // namespace moeserve::engine
