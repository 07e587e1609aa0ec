#include "engine/chat/jinja/python_text.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace moeserve::engine::jinja {

std::u32string DecodeUtf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    int length = 0;
    char32_t c = 0;
    if (byte < 0x80) {
      length = 1;
      c = byte;
    } else if ((byte & 0xe0) == 0xc0) {
      length = 2;
      c = byte & 0x1f;
    } else if ((byte & 0xf0) == 0xe0) {
      length = 3;
      c = byte & 0x0f;
    } else if ((byte & 0xf8) == 0xf0) {
      length = 4;
      c = byte & 0x07;
    }
    bool valid = length > 0 && i + length <= text.size();
    for (int k = 1; valid && k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) valid = false;
      c = (c << 6) | (next & 0x3f);
    }
    if (!valid) {
      out.push_back(0xfffd);
      ++i;
      continue;
    }
    out.push_back(c);
    i += length;
  }
  return out;
}

void AppendUtf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
  }
}

std::string EncodeUtf8(std::u32string_view code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) AppendUtf8(c, out);
  return out;
}

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

int64_t CodePointLength(std::string_view text) {
  int64_t count = 0;
  // Every byte that is not a UTF-8 continuation byte starts a code point.
  for (char c : text) count += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return count;
}

bool IsPythonSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

char32_t ToUpper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if (c == 0xb5) return 0x39c;                               // micro sign → Greek Mu
  if ((c >= 0xe0 && c <= 0xfe) && c != 0xf7) return c - 32;  // à..þ except ÷
  if (c == 0xff) return 0x178;
  if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;  // α..ω
  if (c == 0x3c2) return 0x3a3;                               // final sigma
  if (c >= 0x430 && c <= 0x44f) return c - 32;                // а..я
  if (c >= 0x450 && c <= 0x45f) return c - 80;                // ѐ..џ
  return c;
}

char32_t ToLower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if ((c >= 0xc0 && c <= 0xde) && c != 0xd7) return c + 32;  // À..Þ except ×
  if (c == 0x178) return 0xff;
  if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;  // Α..Ω
  if (c >= 0x410 && c <= 0x42f) return c + 32;                // А..Я
  if (c >= 0x400 && c <= 0x40f) return c + 80;                // Ѐ..Џ
  return c;
}

bool IsCased(char32_t c) { return ToUpper(c) != c || ToLower(c) != c || c == 0xdf; }

std::string UpperCase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : DecodeUtf8(text)) AppendUtf8(ToUpper(c), out);
  return out;
}

std::string LowerCase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : DecodeUtf8(text)) AppendUtf8(ToLower(c), out);
  return out;
}

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  // Shortest round-trip digits, read back out of to_chars' scientific form "d.ddde±XX".
  char buffer[64];
  const auto result =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  const std::string_view sci(buffer, result.ptr - buffer);
  const size_t e_pos = sci.find('e');
  const bool negative = sci[0] == '-';
  std::string digits;
  for (char c : sci.substr(0, e_pos)) {
    if (c >= '0' && c <= '9') digits.push_back(c);
  }
  const int exponent = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  const int num_digits = static_cast<int>(digits.size());
  // CPython's repr switches to exponent form outside 1e-4 <= |x| < 1e16 (float_repr_style
  // 'short', PyOS_double_to_string mode 'r').
  // Appends instead of chaining operator+, which trips GCC 12's -Wrestrict at -O3.
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out.append(digits, 0, 1);
    if (num_digits > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    char exponent_text[16];
    std::snprintf(exponent_text, sizeof(exponent_text), "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    out.append(exponent_text);
    return out;
  }
  const int point = exponent + 1;  // digits before the decimal point
  if (point <= 0) {
    out.append("0.");
    out.append(static_cast<size_t>(-point), '0');
    out.append(digits);
  } else if (point >= num_digits) {
    out.append(digits);
    out.append(static_cast<size_t>(point - num_digits), '0');
    out.append(".0");
  } else {
    out.append(digits, 0, point);
    out.push_back('.');
    out.append(digits, point, std::string::npos);
  }
  return out;
}

namespace {

// Python's str.isprintable() for one code point, approximated from the Unicode categories it
// excludes (Cc, Cf, Zl, Zp, Zs other than space, Co, surrogates); unassigned code points (Cn)
// count as printable here.
bool IsPrintable(char32_t c) {
  if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f)) return false;
  if ((c >= 0x205f && c <= 0x2064) || (c >= 0x2066 && c <= 0x206f) || c == 0x3000) return false;
  if ((c >= 0x600 && c <= 0x605) || c == 0x61c || c == 0x6dd || c == 0x70f || c == 0x180e) {
    return false;
  }
  if ((c >= 0xd800 && c <= 0xf8ff) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb)) return false;
  if (c == 0xe0001 || (c >= 0xe0020 && c <= 0xe007f) || c >= 0xf0000) return false;
  return true;
}

}  // namespace

std::string PythonStringRepr(std::string_view text) {
  const bool has_single = text.find('\'') != std::string_view::npos;
  const bool has_double = text.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : DecodeUtf8(text)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (IsPrintable(c)) {
      AppendUtf8(c, out);
    } else {
      char escape[16];
      if (c <= 0xff) {
        std::snprintf(escape, sizeof(escape), "\\x%02x", static_cast<unsigned>(c));
      } else if (c <= 0xffff) {
        std::snprintf(escape, sizeof(escape), "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(escape, sizeof(escape), "\\U%08x", static_cast<unsigned>(c));
      }
      out += escape;
    }
  }
  out.push_back(quote);
  return out;
}

}  // namespace moeserve::engine::jinja
