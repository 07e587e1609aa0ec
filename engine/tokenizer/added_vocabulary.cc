#include "engine/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "engine/status_macros.h"
#include "engine/tokenizer/regex.h"

namespace moeserve::engine {
namespace {

using tokenizer_internal::Regex;

// Rust regex's Unicode \w, tested one character at a time. Written for Oniguruma so that the
// translation appends the letters, marks and digits newer than PCRE2's Unicode tables (Rust's
// are new too); Alphabetic is L, Nl and Other_Alphabetic, mostly marks.
constexpr std::string_view kWordCharPattern =
    R"([\p{Alphabetic}\p{L}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])";

size_t CharLengthAt(std::string_view text, size_t pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

size_t PreviousCharStart(std::string_view text, size_t pos) {
  do {
    --pos;
  } while (pos > 0 && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80);
  return pos;
}

uint32_t DecodeAt(std::string_view text, size_t pos, size_t length) {
  const auto byte = [&](size_t i) {
    return static_cast<uint32_t>(static_cast<uint8_t>(text[pos + i]));
  };
  switch (length) {
    case 1:
      return byte(0);
    case 2:
      return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
    case 3:
      return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
    default:
      return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) |
             (byte(3) & 0x3F);
  }
}

// Unicode White_Space: Rust's char::is_whitespace and regex \s, used by lstrip/rstrip.
bool IsWhiteSpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Start of the run of White_Space that ends `text` (text.size() if there is none).
size_t TrailingSpaceStart(std::string_view text) {
  size_t pos = text.size();
  while (pos > 0) {
    const size_t start = PreviousCharStart(text, pos);
    if (!IsWhiteSpace(DecodeAt(text, start, pos - start))) break;
    pos = start;
  }
  return pos;
}

// Length of the run of White_Space that starts `text`.
size_t LeadingSpaceLength(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t length = CharLengthAt(text, pos);
    if (!IsWhiteSpace(DecodeAt(text, pos, length))) break;
    pos += length;
  }
  return pos;
}

}  // namespace

AddedVocabulary::AddedVocabulary(AddedVocabulary&&) noexcept = default;
AddedVocabulary& AddedVocabulary::operator=(AddedVocabulary&&) noexcept = default;
AddedVocabulary::~AddedVocabulary() = default;

absl::StatusOr<AddedVocabulary> AddedVocabulary::Create(std::vector<AddedToken> tokens) {
  AddedVocabulary vocabulary;
  MOESERVE_ASSIGN_OR_RETURN(vocabulary.word_char_,
                            Regex::Create(kWordCharPattern, Regex::Syntax::kOniguruma));

  for (AddedToken& token : tokens) {
    if (!token.content.empty()) vocabulary.tokens_.push_back(std::move(token));
  }
  for (size_t i = 0; i < vocabulary.tokens_.size(); ++i) {
    const AddedToken& token = vocabulary.tokens_[i];
    Matcher& matcher = token.normalized ? vocabulary.normalized_ : vocabulary.raw_;
    matcher.by_first_byte[static_cast<uint8_t>(token.content[0])].push_back(
        static_cast<int32_t>(i));
    matcher.empty = false;
  }
  for (Matcher* matcher : {&vocabulary.raw_, &vocabulary.normalized_}) {
    for (std::vector<int32_t>& bucket : matcher->by_first_byte) {
      std::stable_sort(bucket.begin(), bucket.end(), [&](int32_t a, int32_t b) {
        return vocabulary.tokens_[a].content.size() > vocabulary.tokens_[b].content.size();
      });
    }
  }
  return vocabulary;
}

bool AddedVocabulary::IsWordChar(std::string_view text, size_t begin, size_t end) const {
  return word_char_->MatchesWhole(text.substr(begin, end - begin));
}

void AddedVocabulary::FindMatches(
    std::string_view sentence, const Matcher& matcher,
    absl::FunctionRef<void(size_t begin, size_t end, int32_t id)> emit) const {
  if (matcher.empty) {
    emit(0, sentence.size(), -1);
    return;
  }
  size_t start_offset = 0;  // end of the last emitted token segment
  size_t pos = 0;           // where the next leftmost-longest search starts
  while (pos < sentence.size()) {
    // The next match: leftmost start, longest content there.
    const AddedToken* found = nullptr;
    size_t start = pos;
    for (; start < sentence.size() && found == nullptr; ++start) {
      for (int32_t index : matcher.by_first_byte[static_cast<uint8_t>(sentence[start])]) {
        const std::string& content = tokens_[index].content;
        if (sentence.compare(start, content.size(), content) == 0) {
          found = &tokens_[index];
          break;
        }
      }
      if (found != nullptr) break;
    }
    if (found == nullptr) break;
    size_t stop = start + found->content.size();
    pos = stop;

    if (found->single_word) {
      const bool word_before =
          start > 0 && IsWordChar(sentence, PreviousCharStart(sentence, start), start);
      const bool word_after =
          stop < sentence.size() && IsWordChar(sentence, stop, stop + CharLengthAt(sentence, stop));
      if (word_before || word_after) continue;
    }
    if (found->lstrip) {
      start = std::max(TrailingSpaceStart(sentence.substr(0, start)), start_offset);
    }
    if (found->rstrip) stop += LeadingSpaceLength(sentence.substr(stop));
    if (start_offset < start) emit(start_offset, start, -1);
    emit(start, stop, found->id);
    start_offset = stop;
  }
  if (start_offset != sentence.size()) emit(start_offset, sentence.size(), -1);
}

void AddedVocabulary::Split(
    std::string_view text,
    absl::FunctionRef<void(size_t begin, size_t end, int32_t id)> emit) const {
  // Pass 1 on the raw text, pass 2 inside each plain segment; empty segments are dropped
  // (PreTokenizedString::split).
  FindMatches(text, raw_, [&](size_t begin, size_t end, int32_t id) {
    if (end <= begin) return;
    if (id >= 0) {
      emit(begin, end, id);
      return;
    }
    FindMatches(text.substr(begin, end - begin), normalized_,
                [&](size_t inner_begin, size_t inner_end, int32_t inner_id) {
                  if (inner_end > inner_begin) {
                    emit(begin + inner_begin, begin + inner_end, inner_id);
                  }
                });
  });
}

}  // namespace moeserve::engine
