#include "engine/chat/jinja/lexer.h"

#include <cctype>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"
#include "engine/chat/jinja/python_text.h"

namespace moeserve::engine::jinja {
namespace {

absl::Status SyntaxError(int line, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", Sv(message)));
}

// Jinja2's lexer first turns \r\n and \r into \n and drops one trailing newline
// (keep_trailing_newline=False).
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Length in bytes of the code point ending at `end` (for stepping backwards through UTF-8).
size_t PreviousCodePointStart(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80) --start;
  return start;
}

char32_t CodePointAt(std::string_view text, size_t pos, size_t* length) {
  size_t end = pos + 1;
  while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80) ++end;
  *length = end - pos;
  const std::u32string decoded = DecodeUtf8(text.substr(pos, end - pos));
  return decoded.empty() ? 0 : decoded[0];
}

// Python's str.rstrip(): the length of `text` without trailing whitespace.
size_t RStripLength(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    const size_t start = PreviousCodePointStart(text, end);
    const std::u32string c = DecodeUtf8(text.substr(start, end - start));
    if (c.size() != 1 || !IsPythonSpace(c[0])) break;
    end = start;
  }
  return end;
}

// Regex `\s*` at `pos`: the position after the run of whitespace.
size_t SkipSpace(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    size_t length = 0;
    if (!IsPythonSpace(CodePointAt(text, pos, &length))) break;
    pos += length;
  }
  return pos;
}

// Regex `\s+` over the whole of `text` (fullmatch).
bool AllSpace(std::string_view text) { return !text.empty() && SkipSpace(text, 0) == text.size(); }

bool IsNameStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool IsNameChar(char c) { return IsNameStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

// Resolves a string literal's escapes as Python's "unicode-escape" codec does, which is what
// Jinja2 applies to the text between the quotes. Unknown escapes keep their backslash.
absl::StatusOr<std::string> DecodeStringLiteral(std::string_view body, int line) {
  std::string out;
  out.reserve(body.size());
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char e = body[++i];
    auto hex = [&](int digits) -> absl::StatusOr<char32_t> {
      char32_t value = 0;
      for (int k = 1; k <= digits; ++k) {
        if (i + k >= body.size() || !std::isxdigit(static_cast<unsigned char>(body[i + k]))) {
          return SyntaxError(line, "truncated \\x/\\u/\\U escape in a string literal");
        }
        value = value * 16 + std::strtol(std::string(1, body[i + k]).c_str(), nullptr, 16);
      }
      i += digits;
      return value;
    };
    switch (e) {
      case '\n':
        break;  // line continuation
      case '\\':
      case '\'':
      case '"':
        out.push_back(e);
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        absl::StatusOr<char32_t> c = hex(e == 'x' ? 2 : e == 'u' ? 4 : 8);
        if (!c.ok()) return c.status();
        if (*c > 0x10ffff) return SyntaxError(line, "illegal Unicode character in a string");
        AppendUtf8(*c, out);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          char32_t value = e - '0';
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k) {
            value = value * 8 + (body[++i] - '0');
          }
          AppendUtf8(value, out);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      absl::Status status = LexData();
      if (!status.ok()) return status;
    }
    tokens_.push_back(Token{TokenType::kEnd, "", LineAt(src_.size())});
    return std::move(tokens_);
  }

 private:
  int LineAt(size_t pos) {
    // Lines are counted incrementally: tokens are produced in source order.
    while (line_pos_ < pos && line_pos_ < src_.size()) {
      if (src_[line_pos_] == '\n') ++line_;
      ++line_pos_;
    }
    return line_;
  }

  void EmitText(std::string_view text, size_t start) {
    if (!text.empty()) tokens_.push_back(Token{TokenType::kText, std::string(text), LineAt(start)});
  }

  // Applies the whitespace control of a tag opening at `tag_pos` to the text before it.
  std::string_view ControlText(std::string_view text, char sign, bool is_variable) {
    if (sign == '-') return text.substr(0, RStripLength(text));
    if (sign != '+' && !is_variable) {  // lstrip_blocks
      const size_t newline = text.rfind('\n');
      const size_t line_start = newline == std::string_view::npos ? 0 : newline + 1;
      if ((line_start > 0 || line_starting_) && AllSpace(text.substr(line_start))) {
        return text.substr(0, line_start);
      }
    }
    return text;
  }

  // After a block or comment end: `-%}` eats all whitespace, `+%}` nothing, `%}` one newline
  // (trim_blocks). Returns the new position; sets line_starting_ as Jinja2 does.
  size_t AfterBlockEnd(size_t end_pos, char sign) {
    size_t pos = end_pos;
    if (sign == '-') {
      pos = SkipSpace(src_, pos);
    } else if (sign != '+' && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
    }
    line_starting_ = pos > 0 && src_[pos - 1] == '\n';
    return pos;
  }

  absl::Status LexData() {
    // The next tag opener: {{, {% or {#.
    size_t tag = pos_;
    while (true) {
      tag = src_.find('{', tag);
      if (tag == std::string::npos || tag + 1 >= src_.size()) {
        EmitText(std::string_view(src_).substr(pos_), pos_);
        pos_ = src_.size();
        return absl::OkStatus();
      }
      const char kind = src_[tag + 1];
      if (kind == '{' || kind == '%' || kind == '#') break;
      ++tag;
    }
    const char kind = src_[tag + 1];
    char sign = 0;
    size_t after = tag + 2;
    if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
    const std::string_view text = std::string_view(src_).substr(pos_, tag - pos_);

    if (kind == '%') {
      if (const size_t raw_end = RawBeginEnd(after); raw_end != std::string::npos) {
        EmitText(ControlText(text, sign, false), pos_);
        return LexRaw(tag, raw_end);
      }
    }
    EmitText(ControlText(text, sign, kind == '{'), pos_);
    if (kind == '#') return LexComment(tag, after);
    tokens_.push_back(Token{kind == '{' ? TokenType::kVariableBegin : TokenType::kBlockBegin,
                            kind == '{' ? "{{" : "{%", LineAt(tag)});
    pos_ = after;
    return LexTag(kind == '{');
  }

  // The end of `{% raw %}` when one opens here (`after_sign` is just past "{%" and its sign):
  // regex `\s*raw\s*(?:-%}\s*|%})`. No trim_blocks newline is taken after it.
  size_t RawBeginEnd(size_t after_sign) {
    size_t pos = SkipSpace(src_, after_sign);
    if (src_.compare(pos, 3, "raw") != 0) return std::string::npos;
    pos = SkipSpace(src_, pos + 3);
    if (src_.compare(pos, 2, "%}") == 0) return pos + 2;
    if (src_.compare(pos, 3, "-%}") == 0) return SkipSpace(src_, pos + 3);
    return std::string::npos;
  }

  absl::Status LexRaw(size_t tag, size_t pos) {
    const int line = LineAt(tag);
    // The first `{%[-+]? endraw [-+]?%}`.
    for (size_t search = pos;;) {
      const size_t open = src_.find("{%", search);
      if (open == std::string::npos) return SyntaxError(line, "Missing end of raw directive");
      size_t p = open + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = SkipSpace(src_, p);
      if (src_.compare(p, 6, "endraw") != 0) {
        search = open + 2;
        continue;
      }
      p = SkipSpace(src_, p + 6);
      char end_sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) end_sign = src_[p++];
      if (src_.compare(p, 2, "%}") != 0) {
        search = open + 2;
        continue;
      }
      line_starting_ = false;
      EmitText(ControlText(std::string_view(src_).substr(pos, open - pos), sign, false), pos);
      pos_ = AfterBlockEnd(p + 2, end_sign);
      return absl::OkStatus();
    }
  }

  absl::Status LexComment(size_t tag, size_t content) {
    const size_t close = src_.find("#}", content);
    if (close == std::string::npos) return SyntaxError(LineAt(tag), "Missing end of comment tag");
    char sign = 0;
    if (close > content && (src_[close - 1] == '-' || src_[close - 1] == '+')) {
      sign = src_[close - 1];
    }
    pos_ = AfterBlockEnd(close + 2, sign);
    return absl::OkStatus();
  }

  // Tokens inside {{ }} or {% %} up to and including the end tag. End tags only count when
  // brackets are balanced, so `{{ {'a': 1}}}` ends at the last }}.
  absl::Status LexTag(bool is_variable) {
    std::vector<char> brackets;
    while (true) {
      if (pos_ >= src_.size()) {
        return SyntaxError(LineAt(pos_), is_variable ? "unexpected end of template, expected '}}'"
                                                     : "unexpected end of template, expected '%}'");
      }
      if (brackets.empty()) {
        const char closer = is_variable ? '}' : '%';
        char sign = 0;
        size_t p = pos_;
        if (src_[p] == '-' || (!is_variable && src_[p] == '+')) sign = src_[p++];
        if (src_.compare(p, 2, std::string(1, closer) + "}") == 0) {
          const size_t end = p + 2;
          tokens_.push_back(Token{is_variable ? TokenType::kVariableEnd : TokenType::kBlockEnd,
                                  is_variable ? "}}" : "%}", LineAt(pos_)});
          if (is_variable) {
            pos_ = sign == '-' ? SkipSpace(src_, end) : end;
            line_starting_ = pos_ > 0 && src_[pos_ - 1] == '\n';
          } else {
            pos_ = AfterBlockEnd(end, sign);
          }
          return absl::OkStatus();
        }
      }
      size_t space_end = SkipSpace(src_, pos_);
      if (space_end != pos_) {
        pos_ = space_end;
        continue;
      }
      absl::Status status = LexOne(brackets);
      if (!status.ok()) return status;
    }
  }

  absl::Status LexOne(std::vector<char>& brackets) {
    const int line = LineAt(pos_);
    const char c = src_[pos_];
    if (std::isdigit(static_cast<unsigned char>(c))) return LexNumber(line);
    if (IsNameStart(c)) {
      size_t end = pos_;
      while (end < src_.size() && IsNameChar(src_[end])) ++end;
      tokens_.push_back(Token{TokenType::kName, src_.substr(pos_, end - pos_), line});
      pos_ = end;
      return absl::OkStatus();
    }
    if (c == '\'' || c == '"') {
      size_t end = pos_ + 1;
      while (end < src_.size() && src_[end] != c) end += src_[end] == '\\' ? 2 : 1;
      if (end >= src_.size())
        return SyntaxError(line, "unexpected char '" + std::string(1, c) + "'");
      absl::StatusOr<std::string> value =
          DecodeStringLiteral(std::string_view(src_).substr(pos_ + 1, end - pos_ - 1), line);
      if (!value.ok()) return value.status();
      tokens_.push_back(Token{TokenType::kString, *std::move(value), line});
      pos_ = end + 1;
      return absl::OkStatus();
    }
    static constexpr std::string_view kTwoCharOperators[] = {"//", "**", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwoCharOperators) {
      if (src_.compare(pos_, 2, op) == 0) {
        tokens_.push_back(Token{TokenType::kOperator, std::string(op), line});
        pos_ += 2;
        return absl::OkStatus();
      }
    }
    if (std::string_view("+-/*%~[](){}<>=.:|,;").find(c) == std::string_view::npos) {
      return SyntaxError(line, absl::StrCat("unexpected char '", std::string(1, c), "'"));
    }
    if (c == '(' || c == '[' || c == '{') {
      brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty())
        return SyntaxError(line, absl::StrCat("unexpected '", std::string(1, c), "'"));
      if (brackets.back() != c) {
        return SyntaxError(line, absl::StrCat("unexpected '", std::string(1, c), "', expected '",
                                              std::string(1, brackets.back()), "'"));
      }
      brackets.pop_back();
    }
    tokens_.push_back(Token{TokenType::kOperator, std::string(1, c), line});
    ++pos_;
    return absl::OkStatus();
  }

  // Integers (decimal, 0b, 0o, 0x, with _ separators) and floats (1.5, 1e3, 1.5e-3).
  absl::Status LexNumber(int line) {
    auto digits = [&](size_t p) {
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                                 (src_[p] == '_' && p + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[p + 1]))))) {
        ++p;
      }
      return p;
    };
    auto strip_underscores = [](std::string s) {
      std::erase(s, '_');
      return s;
    };
    size_t end = digits(pos_);
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[end + 1]))) {
      is_float = true;
      end = digits(end + 1);
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t p = end + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
        is_float = true;
        end = digits(p);
      }
    }
    const std::string spelling = src_.substr(pos_, end - pos_);
    if (is_float) {
      Token token{TokenType::kFloat, spelling, line};
      token.float_value = std::strtod(strip_underscores(spelling).c_str(), nullptr);
      tokens_.push_back(std::move(token));
      pos_ = end;
      return absl::OkStatus();
    }
    int base = 10;
    if (spelling == "0" && end < src_.size()) {
      const char prefix = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[end])));
      if (prefix == 'b' || prefix == 'o' || prefix == 'x') {
        base = prefix == 'b' ? 2 : prefix == 'o' ? 8 : 16;
        end += 1;
        while (end < src_.size() &&
               (std::isxdigit(static_cast<unsigned char>(src_[end])) || src_[end] == '_')) {
          ++end;
        }
      }
    }
    const std::string number = strip_underscores(
        src_.substr(pos_ + (base == 10 ? 0 : 2), end - pos_ - (base == 10 ? 0 : 2)));
    errno = 0;
    char* parse_end = nullptr;
    const long long value = std::strtoll(number.c_str(), &parse_end, base);
    if (number.empty() || errno == ERANGE || *parse_end != '\0') {
      return SyntaxError(line, absl::StrCat("integer literal '", src_.substr(pos_, end - pos_),
                                            "' is not a 64-bit integer"));
    }
    Token token{TokenType::kInteger, src_.substr(pos_, end - pos_), line};
    token.int_value = value;
    tokens_.push_back(std::move(token));
    pos_ = end;
    return absl::OkStatus();
  }

  const std::string src_;
  size_t pos_ = 0;
  bool line_starting_ = true;
  size_t line_pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  return Lexer(NormalizeNewlines(source)).Run();
}

}  // namespace moeserve::engine::jinja
