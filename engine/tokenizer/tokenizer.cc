#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/io/bounded_file.h"
#include "engine/io/strict_json.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/pretokenizer.h"

namespace moeserve::engine {
namespace {

using io_internal::AsAbsl;
using nlohmann::json;

// Offset of the first byte that does not belong to a valid UTF-8 sequence (Rust's
// Utf8Error::valid_up_to: the start of the bad sequence), or npos. Overlong forms, surrogates
// and code points above U+10FFFF are invalid, as in Rust's str.
size_t FirstInvalidUtf8Byte(std::string_view text) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, bytes + i, 8);
      if (word & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    const uint8_t lead = bytes[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    uint8_t low = 0x80, high = 0xBF;  // allowed range of the second byte
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // overlong
      if (lead == 0xED) high = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // overlong
      if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + length > n) return i;
    if (bytes[i + 1] < low || bytes[i + 1] > high) return i;
    for (size_t k = 2; k < length; ++k) {
      if ((bytes[i + k] & 0xC0) != 0x80) return i;
    }
    i += length;
  }
  return std::string_view::npos;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  return ReadRegularFile(path, kMaxTokenizerFileBytes);
}

// transformers' fast tokenizer classes whose __init__ replaces the post-processor with
// "[bos] $A [eos]" from add_bos_token / add_eos_token (update_post_processor), with their
// defaults for those flags and for bos_token / eos_token.
struct TemplateClass {
  std::string_view name;
  bool add_bos_default;
  std::string_view bos_default;
  std::string_view eos_default;
};
constexpr TemplateClass kTemplateClasses[] = {
    {"LlamaTokenizerFast", true, "<s>", "</s>"},
    {"LlamaTokenizer", true, "<s>", "</s>"},  // AutoTokenizer loads the fast class
    {"CodeLlamaTokenizerFast", true, "<s>", "</s>"},
    {"CodeLlamaTokenizer", true, "<s>", "</s>"},
    {"GemmaTokenizerFast", true, "<bos>", "<eos>"},
    {"GemmaTokenizer", true, "<bos>", "<eos>"},
    {"CohereTokenizerFast", true, "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"},
    {"GPTNeoXTokenizerFast", false, "<|endoftext|>", "<|endoftext|>"},
};

}  // namespace

// Parses and checks the two JSON files and fills a Tokenizer. Separate from Tokenizer so the
// header stays free of the loading details.
class TokenizerBuilder {
 public:
  TokenizerBuilder(std::string source, std::string config_source)
      : source_(std::move(source)), config_source_(std::move(config_source)) {}

  absl::StatusOr<std::unique_ptr<Tokenizer>> Build(std::string_view tokenizer_json,
                                                   std::string_view config_json) {
    tokenizer_.reset(new Tokenizer());
    MOESERVE_ASSIGN_OR_RETURN(const json root,
                              io_internal::ParseStrictJson(tokenizer_json, source_));
    if (!root.is_object()) {
      return Error(absl::StrCat("must be a JSON object, got ", root.type_name()));
    }
    MOESERVE_RETURN_IF_ERROR(CheckModelType(root));
    MOESERVE_RETURN_IF_ERROR(CheckNormalizer(Field(root, "normalizer"), "normalizer"));
    MOESERVE_RETURN_IF_ERROR(CheckDecoder(Field(root, "decoder"), "decoder"));

    MOESERVE_ASSIGN_OR_RETURN(PreTokenizer pre_tokenizer,
                              PreTokenizer::FromJson(Field(root, "pre_tokenizer"),
                                                     absl::StrCat(source_, ": pre_tokenizer")));
    tokenizer_->pre_tokenizer_ = std::make_unique<PreTokenizer>(std::move(pre_tokenizer));
    MOESERVE_ASSIGN_OR_RETURN(tokenizer_->model_,
                              BpeModel::FromJson(root["model"], absl::StrCat(source_, ": model")));

    MOESERVE_RETURN_IF_ERROR(AddTokens(Field(root, "added_tokens")));
    BuildIdTables();
    MOESERVE_RETURN_IF_ERROR(ParsePostProcessor(Field(root, "post_processor"), "post_processor",
                                                tokenizer_->special_prefix_,
                                                tokenizer_->special_suffix_));
    tokenizer_->special_tokens_rule_ = "tokenizer.json post_processor";
    if (tokenizer_->special_prefix_.size() == 1) {
      tokenizer_->bos_token_id_ = tokenizer_->special_prefix_[0];
    }
    if (tokenizer_->special_suffix_.size() == 1) {
      tokenizer_->eos_token_id_ = tokenizer_->special_suffix_[0];
    }
    if (!config_json.empty()) MOESERVE_RETURN_IF_ERROR(ApplyConfig(config_json));
    return std::move(tokenizer_);
  }

 private:
  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", AsAbsl(what)));
  }
  absl::Status ConfigError(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(config_source_, ": ", AsAbsl(what)));
  }
  absl::Status Unsupported(std::string_view what) const {
    return absl::UnimplementedError(absl::StrCat(source_, ": ", AsAbsl(what)));
  }

  static const json& Field(const json& object, const char* key) {
    static const json* const kNull = new json(nullptr);
    const auto it = object.find(key);
    return it == object.end() ? *kNull : *it;
  }

  static std::string TypeOf(const json& component) {
    if (!component.is_object()) return "";
    const auto it = component.find("type");
    return it != component.end() && it->is_string() ? it->get<std::string>() : "";
  }

  absl::Status CheckModelType(const json& root) const {
    const auto model = root.find("model");
    if (model == root.end()) return Error("missing field 'model'");
    if (!model->is_object()) {
      return Error(absl::StrCat("'model' must be an object, got ", model->type_name()));
    }
    const auto type = model->find("type");
    if (type == model->end()) return absl::OkStatus();  // tokenizers infers BPE from its fields
    if (!type->is_string()) return Error("model.type must be a string");
    if (type->get_ref<const std::string&>() != "BPE") {
      return Unsupported(absl::StrCat("unsupported model type '", type->get<std::string>(),
                                      "' in model.type (only BPE is supported)"));
    }
    return absl::OkStatus();
  }

  // Only normalizers that leave every string unchanged: null, or Sequences of those.
  absl::Status CheckNormalizer(const json& normalizer, const std::string& where) const {
    if (normalizer.is_null()) return absl::OkStatus();
    const std::string type = TypeOf(normalizer);
    if (type == "Sequence") {
      const auto list = normalizer.find("normalizers");
      if (list == normalizer.end() || !list->is_array()) {
        return Error(absl::StrCat(where, ": Sequence needs an array 'normalizers'"));
      }
      for (size_t i = 0; i < list->size(); ++i) {
        MOESERVE_RETURN_IF_ERROR(
            CheckNormalizer((*list)[i], absl::StrCat(where, ".normalizers[", i, "]")));
      }
      return absl::OkStatus();
    }
    return Unsupported(absl::StrCat("unsupported normalizer '",
                                    type.empty() ? normalizer.dump() : type, "' in ", where,
                                    " (only null or an empty Sequence)"));
  }

  absl::Status CheckDecoder(const json& decoder, const std::string& where) const {
    const std::string type = TypeOf(decoder);
    if (type == "ByteLevel") return absl::OkStatus();
    if (type == "Sequence") {
      const auto list = decoder.find("decoders");
      if (list == decoder.end() || !list->is_array() || list->empty()) {
        return Error(absl::StrCat(where, ": Sequence needs a non-empty array 'decoders'"));
      }
      for (size_t i = 0; i < list->size(); ++i) {
        MOESERVE_RETURN_IF_ERROR(
            CheckDecoder((*list)[i], absl::StrCat(where, ".decoders[", i, "]")));
      }
      return absl::OkStatus();
    }
    return Unsupported(absl::StrCat("unsupported decoder '", type.empty() ? decoder.dump() : type,
                                    "' in ", where, " (byte-level BPE needs a ByteLevel decoder)"));
  }

  // tokenizers' deserialization: the "id" in the file is only checked (with a warning); the
  // id is the vocab's if the content is a vocab entry, else the next free id from
  // get_vocab_size() (the number of vocab entries) in file order.
  absl::Status AddTokens(const json& added_tokens) {
    std::vector<AddedToken> tokens;
    if (!added_tokens.is_null()) {
      if (!added_tokens.is_array()) {
        return Error(
            absl::StrCat("'added_tokens' must be an array, got ", added_tokens.type_name()));
      }
      int32_t next_id = static_cast<int32_t>(tokenizer_->model_->num_entries());
      for (size_t i = 0; i < added_tokens.size(); ++i) {
        const json& entry = added_tokens[i];
        const std::string where = absl::StrCat("added_tokens[", i, "]");
        if (!entry.is_object()) return Error(absl::StrCat(where, " must be an object"));
        const auto content = entry.find("content");
        if (content == entry.end() || !content->is_string()) {
          return Error(absl::StrCat(where, ": missing string field 'content'"));
        }
        // The id itself is not used (see above), but tokenizers reads it as a u32 and refuses
        // anything else, so a negative or fractional id marks a corrupt file.
        if (const auto id = entry.find("id");
            id == entry.end() || !id->is_number_unsigned() || id->get<uint64_t>() > 0xFFFFFFFFu) {
          return Error(absl::StrCat(where, ".id must be an integer in [0, 2^32)"));
        }
        AddedToken token;
        token.content = content->get<std::string>();
        for (const auto& [key, flag] :
             {std::pair<const char*, bool*>{"single_word", &token.single_word},
              std::pair<const char*, bool*>{"lstrip", &token.lstrip},
              std::pair<const char*, bool*>{"rstrip", &token.rstrip},
              std::pair<const char*, bool*>{"normalized", &token.normalized},
              std::pair<const char*, bool*>{"special", &token.special}}) {
          const auto it = entry.find(key);
          if (it == entry.end() || it->is_null()) continue;
          if (!it->is_boolean()) {
            return Error(absl::StrCat(where, ".", key, " must be a boolean"));
          }
          *flag = it->get<bool>();
        }
        if (token.content.empty()) continue;
        if (const auto known = tokenizer_->added_ids_.find(token.content);
            known != tokenizer_->added_ids_.end()) {
          token.id = known->second;
        } else if (std::optional<int32_t> vocab_id = tokenizer_->model_->TokenToId(token.content)) {
          token.id = *vocab_id;
        } else {
          token.id = next_id++;
        }
        tokenizer_->added_ids_[token.content] = token.id;
        tokens.push_back(std::move(token));
      }
    }
    // A content listed twice keeps its last flags (tokenizers overwrites added_tokens_map_r).
    std::vector<AddedToken> unique;
    for (AddedToken& token : tokens) {
      auto same = std::find_if(unique.begin(), unique.end(),
                               [&](const AddedToken& t) { return t.content == token.content; });
      if (same != unique.end()) {
        *same = std::move(token);
      } else {
        unique.push_back(std::move(token));
      }
    }
    MOESERVE_ASSIGN_OR_RETURN(AddedVocabulary vocabulary,
                              AddedVocabulary::Create(std::move(unique)));
    tokenizer_->added_vocabulary_ = std::make_unique<AddedVocabulary>(std::move(vocabulary));
    return absl::OkStatus();
  }

  void BuildIdTables() {
    const BpeModel& model = *tokenizer_->model_;
    int64_t size = model.id_limit();
    for (const AddedToken& token : tokenizer_->added_vocabulary_->tokens()) {
      size = std::max<int64_t>(size, int64_t{token.id} + 1);
    }
    tokenizer_->token_bytes_.assign(static_cast<size_t>(size), std::string());
    tokenizer_->is_special_.assign(static_cast<size_t>(size), 0);
    for (int32_t id = 0; id < model.id_limit(); ++id) {
      if (const std::string* token = model.IdToToken(id)) {
        tokenizer_->token_bytes_[id] = ByteLevelDecode(*token);
      }
    }
    for (const AddedToken& token : tokenizer_->added_vocabulary_->tokens()) {
      tokenizer_->token_bytes_[token.id] = token.content;
      tokenizer_->is_special_[token.id] = token.special ? 1 : 0;
    }
  }

  // Prefix and suffix ids of a single-sequence encoding. Sequence applies its processors in
  // order, each around the result of the previous ones.
  absl::Status ParsePostProcessor(const json& processor, const std::string& where,
                                  std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
    if (processor.is_null()) return absl::OkStatus();
    const std::string type = TypeOf(processor);
    if (type == "ByteLevel") return absl::OkStatus();  // offsets only
    if (type == "Sequence") {
      const auto list = processor.find("processors");
      if (list == processor.end() || !list->is_array()) {
        return Error(absl::StrCat(where, ": Sequence needs an array 'processors'"));
      }
      for (size_t i = 0; i < list->size(); ++i) {
        std::vector<int32_t> inner_prefix, inner_suffix;
        MOESERVE_RETURN_IF_ERROR(ParsePostProcessor(
            (*list)[i], absl::StrCat(where, ".processors[", i, "]"), inner_prefix, inner_suffix));
        prefix.insert(prefix.begin(), inner_prefix.begin(), inner_prefix.end());
        suffix.insert(suffix.end(), inner_suffix.begin(), inner_suffix.end());
      }
      return absl::OkStatus();
    }
    if (type == "BertProcessing" || type == "RobertaProcessing") {
      for (const auto& [key, out] :
           {std::pair<const char*, std::vector<int32_t>*>{"cls", &prefix},
            std::pair<const char*, std::vector<int32_t>*>{"sep", &suffix}}) {
        const auto it = processor.find(key);
        if (it == processor.end() || !it->is_array() || it->size() != 2 ||
            !(*it)[1].is_number_integer()) {
          return Error(absl::StrCat(where, ".", key, " must be [token, id]"));
        }
        out->push_back((*it)[1].get<int32_t>());
      }
      return absl::OkStatus();
    }
    if (type == "TemplateProcessing") return ParseTemplate(processor, where, prefix, suffix);
    return Unsupported(absl::StrCat("unsupported post_processor '",
                                    type.empty() ? processor.dump() : type, "' in ", where));
  }

  absl::Status ParseTemplate(const json& processor, const std::string& where,
                             std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
    const auto single = processor.find("single");
    const auto specials = processor.find("special_tokens");
    if (single == processor.end() || !single->is_array()) {
      return Error(absl::StrCat(where, ": TemplateProcessing needs an array 'single'"));
    }
    bool seen_sequence = false;
    for (size_t i = 0; i < single->size(); ++i) {
      const json& piece = (*single)[i];
      const std::string piece_where = absl::StrCat(where, ".single[", i, "]");
      if (piece.contains("Sequence")) {
        if (seen_sequence) return Error(absl::StrCat(piece_where, ": a second sequence"));
        seen_sequence = true;
        continue;
      }
      const auto special = piece.find("SpecialToken");
      if (special == piece.end() || !special->is_object() || !special->contains("id") ||
          !(*special)["id"].is_string()) {
        return Error(absl::StrCat(piece_where,
                                  " must be {\"Sequence\": ...} or "
                                  "{\"SpecialToken\": {\"id\": string, ...}}"));
      }
      const std::string& name = (*special)["id"].get_ref<const std::string&>();
      if (specials == processor.end() || !specials->is_object() || !specials->contains(name)) {
        return Error(absl::StrCat(piece_where, ": special token '", name, "' is missing from ",
                                  where, ".special_tokens"));
      }
      const json& ids = (*specials)[name]["ids"];
      if (!ids.is_array()) {
        return Error(absl::StrCat(where, ".special_tokens['", name, "'].ids must be an array"));
      }
      for (const json& id : ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
            id.get<int64_t>() >= static_cast<int64_t>(tokenizer_->token_bytes_.size())) {
          return Error(absl::StrCat(where, ".special_tokens['", name, "'].ids: ", id.dump(),
                                    " is not a token id"));
        }
        (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
      }
    }
    if (!seen_sequence) return Error(absl::StrCat(where, ".single has no {\"Sequence\": ...}"));
    return absl::OkStatus();
  }

  // bos_token / eos_token: a string, an AddedToken object {"content": ...}, or null.
  absl::StatusOr<std::optional<std::string>> ConfigToken(const json& config, const char* key,
                                                         std::string_view default_value,
                                                         bool has_default) const {
    const auto it = config.find(key);
    if (it == config.end()) {
      if (has_default) return std::optional<std::string>(std::string(default_value));
      return std::optional<std::string>();
    }
    if (it->is_null()) return std::optional<std::string>();
    if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      return std::optional<std::string>((*it)["content"].get<std::string>());
    }
    return ConfigError(absl::StrCat("'", key,
                                    "' must be a string, {\"content\": string} or "
                                    "null, got ",
                                    it->dump()));
  }

  absl::StatusOr<std::optional<bool>> ConfigFlag(const json& config, const char* key) const {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) return std::optional<bool>();
    if (!it->is_boolean()) {
      return ConfigError(absl::StrCat("'", key, "' must be a boolean, got ", it->dump()));
    }
    return std::optional<bool>(it->get<bool>());
  }

  // tokenizer_config.json: bos/eos ids, and transformers' add_bos_token / add_eos_token for
  // the classes that honour them. Other keys (chat_template, model_max_length — which can be
  // an integer wider than 64 bits, parsed as a double — added_tokens_decoder) are not used.
  absl::Status ApplyConfig(std::string_view config_json) {
    MOESERVE_ASSIGN_OR_RETURN(const json config,
                              io_internal::ParseStrictJson(config_json, config_source_));
    if (!config.is_object()) {
      return ConfigError(absl::StrCat("must be a JSON object, got ", config.type_name()));
    }
    const TemplateClass* template_class = nullptr;
    if (const auto it = config.find("tokenizer_class"); it != config.end() && !it->is_null()) {
      if (!it->is_string()) return ConfigError("'tokenizer_class' must be a string");
      for (const TemplateClass& candidate : kTemplateClasses) {
        if (candidate.name == it->get_ref<const std::string&>()) template_class = &candidate;
      }
    }
    const bool has_defaults = template_class != nullptr;
    MOESERVE_ASSIGN_OR_RETURN(
        const std::optional<std::string> bos,
        ConfigToken(config, "bos_token", has_defaults ? template_class->bos_default : "",
                    has_defaults));
    MOESERVE_ASSIGN_OR_RETURN(
        const std::optional<std::string> eos,
        ConfigToken(config, "eos_token", has_defaults ? template_class->eos_default : "",
                    has_defaults));
    MOESERVE_ASSIGN_OR_RETURN(const std::optional<bool> add_bos,
                              ConfigFlag(config, "add_bos_token"));
    MOESERVE_ASSIGN_OR_RETURN(const std::optional<bool> add_eos,
                              ConfigFlag(config, "add_eos_token"));

    const auto resolve = [&](const std::optional<std::string>& token) -> std::optional<int32_t> {
      if (!token.has_value()) return std::nullopt;
      return tokenizer_->TokenToId(*token);
    };
    if (config.contains("bos_token") || has_defaults) tokenizer_->bos_token_id_ = resolve(bos);
    if (config.contains("eos_token") || has_defaults) tokenizer_->eos_token_id_ = resolve(eos);

    if (template_class == nullptr) return absl::OkStatus();
    const bool use_bos = add_bos.value_or(template_class->add_bos_default);
    const bool use_eos = add_eos.value_or(false);
    tokenizer_->special_prefix_.clear();
    tokenizer_->special_suffix_.clear();
    for (const auto& [use, token, id, key, out] :
         {std::tuple{use_bos, &bos, tokenizer_->bos_token_id_, "bos_token",
                     &tokenizer_->special_prefix_},
          std::tuple{use_eos, &eos, tokenizer_->eos_token_id_, "eos_token",
                     &tokenizer_->special_suffix_}}) {
      if (!use) continue;
      if (!id.has_value()) {
        return ConfigError(absl::StrCat(
            "add_", absl::string_view(key).substr(0, 3), "_token is true but ", key, " ",
            token->has_value() ? absl::StrCat("'", **token, "' is not in the vocabulary")
                               : std::string("is null")));
      }
      out->push_back(*id);
    }
    tokenizer_->special_tokens_rule_ =
        absl::StrCat("tokenizer_config.json ", AsAbsl(template_class->name),
                     ": add_bos_token=", use_bos ? "true" : "false",
                     ", add_eos_token=", use_eos ? "true" : "false");
    return absl::OkStatus();
  }

  const std::string source_;
  const std::string config_source_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir) {
  const std::string path = model_dir + "/tokenizer.json";
  const std::string config_path = model_dir + "/tokenizer_config.json";
  MOESERVE_ASSIGN_OR_RETURN(const std::string tokenizer_json, ReadFile(path));
  std::string config_json;
  if (absl::StatusOr<std::string> config = ReadFile(config_path); config.ok()) {
    config_json = *std::move(config);
    if (config_json.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": empty file"));
    }
  } else if (!absl::IsNotFound(config.status())) {
    return config.status();
  }
  return TokenizerBuilder(path, config_path).Build(tokenizer_json, config_json);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(
    std::string_view tokenizer_json, std::string_view tokenizer_config_json,
    std::string_view source_name) {
  std::string source(source_name);
  constexpr std::string_view kFileName = "tokenizer.json";
  std::string config_source =
      source.size() >= kFileName.size() &&
              std::string_view(source).substr(source.size() - kFileName.size()) == kFileName
          ? source.substr(0, source.size() - kFileName.size()) + "tokenizer_config.json"
          : source + " (tokenizer_config.json)";
  return TokenizerBuilder(std::move(source), std::move(config_source))
      .Build(tokenizer_json, tokenizer_config_json);
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens) const {
  if (const size_t bad = FirstInvalidUtf8Byte(text); bad != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "text is not valid UTF-8: invalid sequence starting with byte 0x%02X at byte offset %d",
        static_cast<uint8_t>(text[bad]), bad));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids.insert(ids.end(), special_prefix_.begin(), special_prefix_.end());
  absl::Status status;
  added_vocabulary_->Split(text, [&](size_t begin, size_t end, int32_t id) {
    if (!status.ok()) return;
    if (id >= 0) {
      ids.push_back(id);
      return;
    }
    status = pre_tokenizer_->Split(text.substr(begin, end - begin),
                                   [&](std::string_view piece) { model_->Encode(piece, ids); });
  });
  if (!status.ok()) return status;
  if (add_special_tokens) ids.insert(ids.end(), special_suffix_.begin(), special_suffix_.end());
  return ids;
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  std::string text;
  for (const int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special_tokens && is_special_[id]) continue;
    text += token_bytes_[id];
  }
  return text;
}

std::string Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return token_bytes_[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && is_special_[id] != 0;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const auto it = added_ids_.find(AsAbsl(token)); it != added_ids_.end()) return it->second;
  return model_->TokenToId(token);
}

}  // namespace moeserve::engine
