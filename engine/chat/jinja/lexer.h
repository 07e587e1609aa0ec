// Splits Jinja template source into tokens the way Jinja2 3.1's lexer does with the settings
// transformers uses for chat templates (trim_blocks=True, lstrip_blocks=True): line endings
// normalized to "\n" and one trailing newline dropped; `{%-`/`-%}` (and the {{ }} and {# #}
// forms) strip all whitespace on that side; `{%+`/`+%}` keep it; a block or comment tag alone
// on its line takes the line's leading blanks and its trailing newline with it; comments
// vanish; `{% raw %}` text passes through untouched.
//
// Called by the parser (parser.h). Errors are InvalidArgument "line N: ...".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve::engine::jinja {

enum class TokenType {
  kText,           // template data between tags, after whitespace control
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,           // identifiers and keywords (if, for, in, not, ...)
  kString,         // a string literal; `text` holds its value with escapes resolved
  kInteger,
  kFloat,
  kOperator,  // + - * / // % ** ~ [ ] ( ) { } == != < <= > >= = . : | , ;
  kEnd,
};

struct Token {
  TokenType type;
  std::string text;  // source spelling (kString: the decoded value)
  int line = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

// The whole token list, ending with kEnd.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);

}  // namespace moeserve::engine::jinja
