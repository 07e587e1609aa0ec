#include "engine/tokenizer/onig_compat.h"

#include <cctype>
#include <string>

#include "absl/strings/ascii.h"

namespace moeserve::engine::tokenizer_internal {
namespace {

struct CategoryExtras {
  std::string_view name;   // general category, as PCRE2 spells it
  std::string_view items;  // class items for the code points only Oniguruma has
};

constexpr CategoryExtras kCategoryExtras[] = {
#include "engine/tokenizer/onig_unicode_tables.inc"
};

constexpr std::string_view kHexDigitItems = "0-9a-fA-F";

// Oniguruma compares property names ignoring case, spaces, underscores and hyphens.
std::string LooseName(std::string_view name) {
  std::string loose;
  for (char c : name) {
    if (c != ' ' && c != '_' && c != '-')
      loose += absl::ascii_tolower(static_cast<unsigned char>(c));
  }
  return loose;
}

const CategoryExtras* FindCategory(std::string_view name) {
  const std::string loose = LooseName(name);
  for (const CategoryExtras& category : kCategoryExtras) {
    if (LooseName(category.name) == loose) return &category;
  }
  return nullptr;
}

bool IsHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

class Translator {
 public:
  explicit Translator(std::string_view pattern) : pattern_(pattern) {
    out_.reserve(pattern.size() * 2);
  }

  std::string Run() {
    while (pos_ < pattern_.size()) {
      const char c = pattern_[pos_];
      if (c == '\\' && pos_ + 1 < pattern_.size()) {
        Escape(pattern_[pos_ + 1]);
      } else if (c == '[') {
        OpenBracket();
      } else {
        if (c == ']' && class_depth_ > 0) --class_depth_;
        out_ += c;
        ++pos_;
      }
    }
    return std::move(out_);
  }

 private:
  bool InClass() const { return class_depth_ > 0; }

  // A class that is `items` (negated: its complement), written to fit where we are.
  void AppendItems(std::string_view items, bool negated, std::string_view fallback) {
    if (!InClass()) {
      out_ += negated ? "[^" : "[";
      out_ += items;
      out_ += ']';
    } else if (!negated) {
      out_ += items;
    } else {
      out_ += fallback;  // a complement cannot be a union inside a class; keep PCRE2's
    }
  }

  // \p{name} or its complement, with the code points only Oniguruma knows appended.
  void AppendCategory(const CategoryExtras& category, bool negated, std::string_view original) {
    const std::string property =
        std::string(negated ? "\\P{" : "\\p{") + std::string(category.name) + "}";
    if (category.items.empty()) {
      out_ += property;
      return;
    }
    if (InClass() && negated) {
      out_ += original;
      return;
    }
    if (!InClass()) out_ += negated ? "[^" : "[";
    out_ += "\\p{";
    out_ += category.name;
    out_ += '}';
    out_ += category.items;
    if (!InClass()) out_ += ']';
  }

  void Escape(char e) {
    const std::string_view original = pattern_.substr(pos_, 2);
    switch (e) {
      case 's':
        AppendItems(kWhiteSpaceClassItems, false, original);
        pos_ += 2;
        return;
      case 'S':
        AppendItems(kWhiteSpaceClassItems, true, original);
        pos_ += 2;
        return;
      case 'd':
      case 'D':
        AppendCategory(*FindCategory("Nd"), e == 'D', original);
        pos_ += 2;
        return;
      case 'h':
      case 'H':
        AppendItems(kHexDigitItems, e == 'H', original);
        pos_ += 2;
        return;
      case 'u':
        if (pos_ + 6 <= pattern_.size() && IsHex(pattern_[pos_ + 2]) && IsHex(pattern_[pos_ + 3]) &&
            IsHex(pattern_[pos_ + 4]) && IsHex(pattern_[pos_ + 5])) {
          out_ += "\\x{";
          out_ += pattern_.substr(pos_ + 2, 4);
          out_ += '}';
          pos_ += 6;
          return;
        }
        break;
      case 'p':
      case 'P':
        if (pos_ + 2 < pattern_.size() && pattern_[pos_ + 2] == '{') {
          const size_t close = pattern_.find('}', pos_ + 3);
          if (close != std::string_view::npos) {
            std::string_view name = pattern_.substr(pos_ + 3, close - pos_ - 3);
            bool negated = e == 'P';
            if (!name.empty() && name.front() == '^') {
              negated = !negated;
              name.remove_prefix(1);
            }
            if (const CategoryExtras* category = FindCategory(name)) {
              AppendCategory(*category, negated, pattern_.substr(pos_, close + 1 - pos_));
              pos_ = close + 1;
              return;
            }
          }
        }
        break;
      default:
        break;
    }
    out_ += original;  // any other escape means the same in both engines
    pos_ += 2;
  }

  void OpenBracket() {
    if (!InClass()) {
      class_depth_ = 1;
      out_ += '[';
      ++pos_;
      if (pos_ < pattern_.size() && pattern_[pos_] == '^') {
        out_ += '^';
        ++pos_;
      }
      // A ']' right after the opening bracket is a literal in both engines.
      if (pos_ < pattern_.size() && pattern_[pos_] == ']') {
        out_ += ']';
        ++pos_;
      }
      return;
    }
    if (pos_ + 1 < pattern_.size() && pattern_[pos_ + 1] == ':') {
      const size_t close = pattern_.find(":]", pos_ + 2);
      if (close != std::string_view::npos) {  // a POSIX class such as [:alpha:]
        out_ += pattern_.substr(pos_, close + 2 - pos_);
        pos_ = close + 2;
        return;
      }
    }
    ++class_depth_;  // an Oniguruma nested class; PCRE2 will read the bracket as a literal
    out_ += '[';
    ++pos_;
  }

  std::string_view pattern_;
  std::string out_;
  size_t pos_ = 0;
  int class_depth_ = 0;
};

}  // namespace

std::string TranslateOnigPattern(std::string_view pattern) { return Translator(pattern).Run(); }

}  // namespace moeserve::engine::tokenizer_internal
