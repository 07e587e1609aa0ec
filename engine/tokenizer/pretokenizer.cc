#include "engine/tokenizer/pretokenizer.h"

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/io/strict_json.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/regex.h"

namespace moeserve::engine {
namespace {

using io_internal::AsAbsl;
using nlohmann::json;
using tokenizer_internal::Regex;

// tokenizers' ByteLevel::RE (pre_tokenizers/byte_level.rs), the GPT-2 pattern.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Digits splits on Rust's char::is_numeric, the Unicode categories Nd, Nl and No.
constexpr std::string_view kNumericPattern = R"(\p{N})";

size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Folds the segments of one find_matches pass into the splits NormalizedString::split keeps,
// for one SplitBehavior, streaming: each split goes to `sink` as soon as no later segment can
// extend it. The folds are tokenizers' (tokenizer/normalizer.rs), rewritten left to right.
// Empty splits reach the sink too; it drops them, as PreTokenizedString::split does.
template <typename Sink>
class SplitFolder {
 public:
  SplitFolder(SplitBehavior behavior, Sink& sink) : behavior_(behavior), sink_(sink) {}

  void Add(size_t begin, size_t end, bool is_match) {
    switch (behavior_) {
      case SplitBehavior::kIsolated:
        sink_(begin, end);
        break;
      case SplitBehavior::kRemoved:
        if (!is_match) sink_(begin, end);
        break;
      case SplitBehavior::kContiguous:
        // A segment extends the previous split when both are matches or both are not.
        if (has_pending_ && is_match == previous_match_) {
          pending_end_ = end;
        } else {
          Flush();
          Hold(begin, end, is_match);
        }
        break;
      case SplitBehavior::kMergedWithPrevious:
        // A match right after a non-match joins the split before it.
        if (has_pending_ && is_match && !previous_match_) {
          pending_end_ = end;
        } else {
          Flush();
          Hold(begin, end, is_match);
        }
        break;
      case SplitBehavior::kMergedWithNext:
        // tokenizers folds from the right: a match followed by a non-match (or by nothing)
        // joins the split after it. Left to right: hold a match until its successor is known.
        if (has_pending_ && pending_match_ && !is_match) {
          has_pending_ = false;
          sink_(pending_begin_, end);
        } else {
          Flush();
          if (is_match) {
            Hold(begin, end, is_match);
          } else {
            sink_(begin, end);
          }
        }
        break;
    }
    previous_match_ = is_match;
  }

  void Finish() { Flush(); }

 private:
  void Hold(size_t begin, size_t end, bool is_match) {
    has_pending_ = true;
    pending_begin_ = begin;
    pending_end_ = end;
    pending_match_ = is_match;
  }
  void Flush() {
    if (has_pending_) {
      has_pending_ = false;
      sink_(pending_begin_, pending_end_);
    }
  }

  const SplitBehavior behavior_;
  Sink& sink_;
  bool previous_match_ = false;  // tokenizers' `previous_match`: the last raw segment's flag
  bool has_pending_ = false;
  bool pending_match_ = false;
  size_t pending_begin_ = 0;
  size_t pending_end_ = 0;
};

// tokenizers' Pattern::find_matches for a regex: the segments that cover `subject`, each
// flagged as a match or not, in order. The iteration is the onig crate's FindMatches (6.5): an
// empty match ending where the previous match ended is skipped and the search moves on one
// character. Calls add(begin, end, is_match); returns a PCRE2 error code (< 0) or 0.
template <typename Add>
int FindMatches(const Regex& regex, std::string_view subject, Add&& add) {
  size_t previous_end = 0;
  size_t search_from = 0;
  std::optional<size_t> last_match_end;
  while (search_from <= subject.size()) {
    size_t begin = 0, end = 0;
    const int rc = regex.Find(subject, search_from, &begin, &end);
    if (rc < 0) return rc;
    if (rc == 0) break;
    if (begin == end && last_match_end == end) {
      search_from += search_from < subject.size()
                         ? Utf8Length(static_cast<unsigned char>(subject[search_from]))
                         : 1;
      continue;
    }
    search_from = end;
    last_match_end = end;
    if (previous_end != begin) add(previous_end, begin, false);
    add(begin, end, true);
    previous_end = end;
  }
  if (previous_end != subject.size()) add(previous_end, subject.size(), false);
  return 0;
}

absl::Status Invalid(const std::string& where, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", AsAbsl(what)));
}

absl::StatusOr<bool> OptionalBool(const json& object, const char* key, bool default_value,
                                  const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return default_value;
  if (!it->is_boolean()) {
    return Invalid(where, absl::StrCat("'", key, "' must be a boolean, got ", it->type_name()));
  }
  return it->get<bool>();
}

absl::StatusOr<SplitBehavior> ParseBehavior(const json& value, const std::string& where) {
  if (value.is_string()) {
    const std::string& name = value.get_ref<const std::string&>();
    if (name == "Removed") return SplitBehavior::kRemoved;
    if (name == "Isolated") return SplitBehavior::kIsolated;
    if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
    if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
    if (name == "Contiguous") return SplitBehavior::kContiguous;
  }
  return Invalid(where, absl::StrCat("'behavior' must be one of Removed, Isolated, "
                                     "MergedWithPrevious, MergedWithNext, Contiguous; got ",
                                     value.dump()));
}

absl::StatusOr<std::unique_ptr<Regex>> CompileRegex(std::string_view pattern, Regex::Syntax syntax,
                                                    const std::string& where) {
  absl::StatusOr<std::unique_ptr<Regex>> regex = Regex::Create(pattern, syntax);
  if (!regex.ok()) {
    return Invalid(where,
                   absl::StrCat("pattern '", AsAbsl(pattern), "': ", regex.status().message()));
  }
  return regex;
}

}  // namespace

PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

absl::Status PreTokenizer::AddSteps(const json& config, const std::string& where,
                                    std::vector<Step>& steps, bool& saw_byte_level) {
  if (!config.is_object()) {
    return Invalid(where, absl::StrCat("must be an object, got ", config.type_name()));
  }
  const auto type_it = config.find("type");
  if (type_it == config.end() || !type_it->is_string()) {
    return Invalid(where, "missing string field 'type'");
  }
  const std::string& type = type_it->get_ref<const std::string&>();
  if (saw_byte_level) {
    return absl::UnimplementedError(
        absl::StrCat(where, ": unsupported pre_tokenizer: '", type,
                     "' after ByteLevel (ByteLevel must be the last step)"));
  }

  if (type == "Sequence") {
    const auto list = config.find("pretokenizers");
    if (list == config.end() || !list->is_array()) {
      return Invalid(where, "Sequence needs an array 'pretokenizers'");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      MOESERVE_RETURN_IF_ERROR(AddSteps((*list)[i], absl::StrCat(where, ".pretokenizers[", i, "]"),
                                        steps, saw_byte_level));
    }
    return absl::OkStatus();
  }

  Step step;
  if (type == "Split") {
    const auto pattern = config.find("pattern");
    if (pattern == config.end() || !pattern->is_object() || pattern->size() != 1) {
      return Invalid(where, "Split needs 'pattern': {\"Regex\": ...} or {\"String\": ...}");
    }
    const std::string& kind = pattern->begin().key();
    const json& text = pattern->begin().value();
    if ((kind != "Regex" && kind != "String") || !text.is_string()) {
      return Invalid(where, absl::StrCat("Split 'pattern' must be {\"Regex\": string} or "
                                         "{\"String\": string}, got ",
                                         pattern->dump()));
    }
    MOESERVE_ASSIGN_OR_RETURN(
        step.regex,
        CompileRegex(text.get_ref<const std::string&>(),
                     kind == "Regex" ? Regex::Syntax::kOniguruma : Regex::Syntax::kLiteral, where));
    const auto behavior = config.find("behavior");
    if (behavior == config.end()) return Invalid(where, "Split needs 'behavior'");
    MOESERVE_ASSIGN_OR_RETURN(step.behavior, ParseBehavior(*behavior, where));
    MOESERVE_ASSIGN_OR_RETURN(step.invert, OptionalBool(config, "invert", false, where));
  } else if (type == "Digits") {
    MOESERVE_ASSIGN_OR_RETURN(const bool individual,
                              OptionalBool(config, "individual_digits", false, where));
    MOESERVE_ASSIGN_OR_RETURN(step.regex,
                              CompileRegex(kNumericPattern, Regex::Syntax::kOniguruma, where));
    step.behavior = individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  } else if (type == "ByteLevel") {
    // tokenizers' ByteLevel::default() has add_prefix_space and use_regex set.
    MOESERVE_ASSIGN_OR_RETURN(step.add_prefix_space,
                              OptionalBool(config, "add_prefix_space", true, where));
    MOESERVE_ASSIGN_OR_RETURN(const bool use_regex, OptionalBool(config, "use_regex", true, where));
    if (use_regex) {
      MOESERVE_ASSIGN_OR_RETURN(step.regex,
                                CompileRegex(kGpt2Pattern, Regex::Syntax::kOniguruma, where));
    }
    saw_byte_level = true;
    if (!step.add_prefix_space && step.regex == nullptr) return absl::OkStatus();  // mapping only
  } else {
    return absl::UnimplementedError(
        absl::StrCat(where, ": unsupported pre_tokenizer '", type,
                     "' (supported: Sequence, Split, Digits, ByteLevel)"));
  }
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<PreTokenizer> PreTokenizer::FromJson(const json& config, std::string_view where) {
  const std::string label(where);
  if (config.is_null()) {
    return absl::UnimplementedError(
        absl::StrCat(label,
                     " is null; only byte-level BPE tokenizers (a ByteLevel pre-tokenizer) are "
                     "supported"));
  }
  PreTokenizer pre_tokenizer;
  bool saw_byte_level = false;
  MOESERVE_RETURN_IF_ERROR(AddSteps(config, label, pre_tokenizer.steps_, saw_byte_level));
  if (!saw_byte_level) {
    return absl::UnimplementedError(
        absl::StrCat(label, ": no ByteLevel step; only byte-level BPE tokenizers are supported"));
  }
  return pre_tokenizer;
}

int PreTokenizer::Run(size_t step_index, std::string_view piece,
                      absl::FunctionRef<void(std::string_view)> emit) const {
  if (piece.empty()) return 0;
  if (step_index == steps_.size()) {
    emit(piece);
    return 0;
  }
  const Step& step = steps_[step_index];
  std::string prefixed;
  if (step.add_prefix_space && piece.front() != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed += ' ';
    prefixed += piece;
    piece = prefixed;
  }
  if (step.regex == nullptr) return Run(step_index + 1, piece, emit);

  int error = 0;
  auto sink = [&](size_t begin, size_t end) {
    if (error == 0 && end > begin)
      error = Run(step_index + 1, piece.substr(begin, end - begin), emit);
  };
  SplitFolder<decltype(sink)> folder(step.behavior, sink);
  const int rc = FindMatches(*step.regex, piece, [&](size_t begin, size_t end, bool is_match) {
    folder.Add(begin, end, is_match != step.invert);
  });
  folder.Finish();
  return rc < 0 ? rc : error;
}

absl::Status PreTokenizer::Split(std::string_view text,
                                 absl::FunctionRef<void(std::string_view)> emit) const {
  const int rc = Run(0, text, emit);
  if (rc < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("pre-tokenizer regex match failed: ", Regex::ErrorMessage(rc)));
  }
  return absl::OkStatus();
}

}  // namespace moeserve::engine
