// Pre-tokenization: the `pre_tokenizer` of a Hugging Face tokenizer.json, compiled to PCRE2.
//
// The pre-tokenizer cuts the text between added tokens into pieces, and the BPE model encodes
// each piece on its own. Supported steps (tokenizers' names), possibly nested in a Sequence:
//
//   Split      {pattern: {Regex|String}, behavior, invert}. All five behaviors: Removed,
//              Isolated, MergedWithPrevious, MergedWithNext, Contiguous.
//   Digits     {individual_digits}: a Split on each numeric (\p{N}) character, Isolated when
//              individual_digits is set and Contiguous otherwise, as tokenizers does.
//   ByteLevel  {add_prefix_space, use_regex}: prepends " " to a piece that does not start with
//              one, then splits with GPT-2's regex when use_regex is set. It must be the last step.
//              Its byte → character mapping is left to the BPE model (bpe_model.h), which turns
//              each byte of a piece into its initial symbol directly.
//
// Each step runs on every piece the previous step produced, and pieces are never empty, as in
// tokenizers (PreTokenizedString::split drops empty splits). Matching follows tokenizers'
// Oniguruma find_iter, including its rule for empty matches, so patterns that can match the
// empty string split the same way.
//
// Thread-safety: immutable after FromJson; Split may run concurrently on any number of threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {

namespace tokenizer_internal {
class Regex;
}  // namespace tokenizer_internal

// tokenizers' SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  // `config` is tokenizer.json's "pre_tokenizer" value; `where` labels errors (e.g.
  // "dir/tokenizer.json: pre_tokenizer"). Errors: InvalidArgument for a malformed step or a regex
  // that does not compile, Unimplemented for a step type we do not support, and for a
  // pre-tokenizer without a final ByteLevel step (only byte-level BPE is supported).
  static absl::StatusOr<PreTokenizer> FromJson(const nlohmann::json& config,
                                               std::string_view where);

  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  // Splits valid UTF-8 `text` and calls `emit` with each piece in order (raw UTF-8, not yet
  // byte-mapped; a piece may be a copy with the ByteLevel prefix space, valid only during the
  // call). An error only if PCRE2 fails while matching (its match or JIT-stack limits).
  absl::Status Split(std::string_view text, absl::FunctionRef<void(std::string_view)> emit) const;

  int num_steps() const { return static_cast<int>(steps_.size()); }

 private:
  struct Step {
    std::unique_ptr<tokenizer_internal::Regex> regex;  // null: ByteLevel without use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;  // ByteLevel only
  };

  PreTokenizer() = default;
  static absl::Status AddSteps(const nlohmann::json& config, const std::string& where,
                               std::vector<Step>& steps, bool& saw_byte_level);
  // Runs steps_[step..] on `piece` and emits what comes out; returns a PCRE2 error code (< 0)
  // or 0.
  int Run(size_t step, std::string_view piece,
          absl::FunctionRef<void(std::string_view)> emit) const;

  std::vector<Step> steps_;
};

}  // namespace moeserve::engine
