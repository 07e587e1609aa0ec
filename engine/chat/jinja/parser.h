// Parses Jinja template tokens into a syntax tree with Jinja2 3.1's grammar: the operator
// precedence of its parser (filters and tests bind tighter than unary minus' operand chain,
// `**` is left-associative, `not x is y` is `not (x is y)`), the statements chat templates use
// (if/elif/else, for with else and `if` filter, set incl. namespace attributes and block set,
// macro, with, filter blocks, break/continue from the loopcontrols extension, and transformers'
// {% generation %}), and Jinja's compile-time checks (unknown filters and tests, unknown tags).
//
// Called by Template::Parse (template.h). Errors are InvalidArgument "line N: ...". Nesting is
// capped (kMaxNestingDepth) so a hostile template cannot exhaust the stack.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "engine/chat/jinja/ast.h"
#include "engine/chat/jinja/lexer.h"

namespace moeserve::engine::jinja {

// Deepest nesting of expressions plus statements the parser accepts; real chat templates nest
// a few levels (the evaluator recurses along the tree, so this also bounds its stack).
inline constexpr int kMaxNestingDepth = 128;

absl::StatusOr<Body> Parse(std::vector<Token> tokens);

}  // namespace moeserve::engine::jinja
