// Added tokens: the tokenizer.json "added_tokens" that are cut out of the text before
// pre-tokenization (tokenizers' AddedVocabulary, tokenizer/added_vocabulary.rs).
//
// Tokenizer::Encode calls Split first. Like tokenizers it runs two passes: tokens with
// normalized = false are matched on the raw text, then tokens with normalized = true on what
// is left between them (after normalization; we only support normalizers that change nothing,
// so it is the same text). Each pass takes leftmost-longest, non-overlapping matches (its
// Aho-Corasick MatchKind::LeftmostLongest) and applies the token's flags:
//   single_word  the match is dropped when a word character (Rust regex \w: Alphabetic, M, Nd,
//                Pc, Join_Control) touches it on either side;
//   lstrip       White_Space before the match joins the token (and so is not encoded);
//   rstrip       White_Space after the match joins the token.
// Matching resumes at the end of the match itself, not of its stripped extent, as in tokenizers.
//
// Thread-safety: immutable after Create.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace moeserve::engine {

namespace tokenizer_internal {
class Regex;
}  // namespace tokenizer_internal

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class AddedVocabulary {
 public:
  // Tokens with empty content are ignored, as tokenizers does.
  static absl::StatusOr<AddedVocabulary> Create(std::vector<AddedToken> tokens);

  AddedVocabulary(AddedVocabulary&&) noexcept;
  AddedVocabulary& operator=(AddedVocabulary&&) noexcept;
  ~AddedVocabulary();

  // Cuts valid UTF-8 `text` into consecutive non-empty segments and calls
  // emit(begin, end, id) for each, in order: id is the added token's, or -1 for text to
  // pre-tokenize. Stripped whitespace belongs to its token's segment.
  void Split(std::string_view text,
             absl::FunctionRef<void(size_t begin, size_t end, int32_t id)> emit) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // Leftmost-longest search over one set of tokens: candidates are bucketed by first byte,
  // longest first, so the first hit at the leftmost position is the longest.
  struct Matcher {
    std::array<std::vector<int32_t>, 256> by_first_byte;  // indices into tokens_
    bool empty = true;
  };

  AddedVocabulary() = default;
  // tokenizers' find_matches on `sentence` with one matcher.
  void FindMatches(std::string_view sentence, const Matcher& matcher,
                   absl::FunctionRef<void(size_t begin, size_t end, int32_t id)> emit) const;
  bool IsWordChar(std::string_view text, size_t begin, size_t end) const;

  std::vector<AddedToken> tokens_;
  Matcher raw_;         // normalized = false: matched on the input
  Matcher normalized_;  // normalized = true: matched on the normalized input
  std::unique_ptr<tokenizer_internal::Regex> word_char_;  // Rust regex's \w, one character
};

}  // namespace moeserve::engine
