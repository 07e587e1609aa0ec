// Tokenizer: a Hugging Face tokenizer.json byte-level BPE tokenizer that encodes exactly like
// the `tokenizers` library (0.22) and, with tokenizer_config.json, like transformers'
// AutoTokenizer.
//
// The server encodes prompts with it (request validation) and the engine decodes generated ids
// (the incremental detokenizer builds on TokenBytes). Encode runs tokenizers' pipeline:
//   1. added tokens are cut out of the text (added_vocabulary.h);
//   2. the normalizer runs (only normalizers that change nothing are supported: null or an
//      empty Sequence, as in DeepSeek's files);
//   3. the pre-tokenizer splits the rest into pieces (pretokenizer.h);
//   4. the BPE model encodes each piece (bpe_model.h);
//   5. with add_special_tokens, the post-processor adds its special tokens.
// For step 5, tokenizer.json's post_processor (TemplateProcessing, Bert/RobertaProcessing,
// ByteLevel, Sequence) is what `tokenizers` applies. transformers replaces it for the tokenizer
// classes that read add_bos_token/add_eos_token from tokenizer_config.json (LlamaTokenizerFast —
// the class DeepSeek's configs name — CodeLlama, Gemma, Cohere, GPTNeoX): then BOS is prepended
// when add_bos_token (default true for Llama) and EOS appended when add_eos_token. So
// DeepSeek-Coder, whose tokenizer.json post-processor adds nothing, gets BOS from its config.
//
// Decode concatenates TokenBytes: a vocab token's ByteLevel-decoded bytes and an added token's
// content. This differs from `tokenizers` in one place on purpose: tokenizers passes added
// tokens through the ByteLevel decoder too, so DeepSeek-Coder's added tokens "ü", "ö", ... (ids
// 32000-32012, which Encode produces for those letters) decode to the lone bytes 0xFC, 0xF6 ...
// and "über" does not survive a round trip there. Here decode(encode(s)) == s for every s.
//
// Errors at load name the file and the field ("dir/tokenizer.json: model.merges[12]: token
// 'x' is not in the vocab"). Unsupported components (WordPiece/Unigram models, NFC and other
// normalizers, Metaspace and other pre-tokenizers, non-ByteLevel decoders) are Unimplemented.
//
// Thread-safety: immutable after Load/FromJson; every const method may run concurrently.
// (The BPE piece cache inside is internally synchronized.)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moeserve::engine {

class AddedVocabulary;
class BpeModel;
class PreTokenizer;

class Tokenizer {
 public:
  // Reads model_dir/tokenizer.json and, if present, model_dir/tokenizer_config.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir);
  // `tokenizer_config_json` may be empty (then: tokenizers' behaviour, no transformers rules).
  // `source_name` labels errors; config errors name tokenizer_config.json beside it.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view tokenizer_config_json,
                                                             std::string_view source_name);

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  ~Tokenizer();

  // InvalidArgument if `text` is not valid UTF-8 (the message gives the byte offset).
  // add_special_tokens: add the post-processor's special tokens (see the header comment).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = true) const;
  // Concatenated TokenBytes of `ids`; unknown ids are skipped, and special added tokens too
  // when skip_special_tokens. Invalid UTF-8 only where the ids split a character.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens = false) const;
  // The raw bytes token `id` decodes to (ByteLevel-inverted; added tokens: their content);
  // "" for unknown ids.
  std::string TokenBytes(int32_t id) const;
  // Added tokens marked special.
  bool IsSpecial(int32_t id) const;
  // Max id + 1 over the vocab and the added tokens.
  int64_t vocab_size() const { return static_cast<int64_t>(token_bytes_.size()); }
  std::optional<int32_t> bos_token_id() const { return bos_token_id_; }
  std::optional<int32_t> eos_token_id() const { return eos_token_id_; }
  // The id of a token in its vocab spelling ("Ġthe", "<｜User｜>"): added tokens first, then
  // the model vocab, as tokenizers' token_to_id.
  std::optional<int32_t> TokenToId(std::string_view token) const;

  // What add_special_tokens adds around the encoding, and why ("tokenizer.json
  // post_processor", "tokenizer_config.json add_bos_token", ...). For tests and logs.
  const std::vector<int32_t>& special_prefix() const { return special_prefix_; }
  const std::vector<int32_t>& special_suffix() const { return special_suffix_; }
  const std::string& special_tokens_rule() const { return special_tokens_rule_; }

 private:
  Tokenizer() = default;

  // Everything below is constant after FromJson.
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<AddedVocabulary> added_vocabulary_;
  absl::flat_hash_map<std::string, int32_t> added_ids_;  // content → id
  std::vector<std::string> token_bytes_;                 // by id
  std::vector<uint8_t> is_special_;                      // by id
  std::vector<int32_t> special_prefix_;
  std::vector<int32_t> special_suffix_;
  std::string special_tokens_rule_;
  std::optional<int32_t> bos_token_id_;
  std::optional<int32_t> eos_token_id_;

  friend class TokenizerBuilder;
};

}  // namespace moeserve::engine
