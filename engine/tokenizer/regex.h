// A compiled PCRE2 pattern with the search semantics the tokenizer needs (internal to
// engine/tokenizer).
//
// tokenizer.json regexes are written for Oniguruma, the engine Hugging Face `tokenizers` uses.
// Regex::Create translates them (onig_compat.h) and compiles them with PCRE2_UTF | PCRE2_UCP |
// PCRE2_MULTILINE (Oniguruma's ^ and $ are line anchors) and JIT. Subjects must be valid UTF-8:
// callers validate once at the edge and matching skips PCRE2's own check, which would otherwise
// rescan the whole subject on every call.
//
// Thread-safety: a Regex is immutable after Create and may be used from any number of threads.
// Each thread keeps its own match data and JIT stack (thread_local, created on first use).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace moeserve::engine::tokenizer_internal {

class Regex {
 public:
  enum class Syntax {
    kOniguruma,  // a tokenizer.json "Regex" pattern: translated, then compiled
    kPcre2,      // our own patterns, compiled as written
    kLiteral,    // a tokenizer.json "String" pattern: matched byte for byte
  };

  // InvalidArgument with PCRE2's message and offset if the pattern does not compile.
  static absl::StatusOr<std::unique_ptr<Regex>> Create(std::string_view pattern, Syntax syntax);

  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Searches `subject` from byte `start` (lookbehinds see the bytes before it). Returns 1 and
  // sets [*begin, *end) on a match, 0 if there is none, or a negative PCRE2 error code when
  // matching itself failed (match limit, JIT stack exhausted).
  int Find(std::string_view subject, size_t start, size_t* begin, size_t* end) const;

  // True if the pattern matches the whole of `subject` (anchored at both ends).
  bool MatchesWhole(std::string_view subject) const;

  // The pattern as given to Create (before translation).
  const std::string& pattern() const { return pattern_; }

  // PCRE2's text for an error code from Find.
  static std::string ErrorMessage(int code);

 private:
  Regex() = default;

  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code*; void keeps pcre2.h out of this header
  bool jit_ = false;
};

}  // namespace moeserve::engine::tokenizer_internal
