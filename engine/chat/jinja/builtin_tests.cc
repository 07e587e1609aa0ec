// Jinja2 3.1's built-in tests (`x is defined`, `x is string`, `x is divisibleby 3`, ...).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"
#include "engine/chat/jinja/builtins.h"
#include "engine/chat/jinja/builtins_internal.h"
#include "engine/chat/jinja/call_args.h"
#include "engine/chat/jinja/python_text.h"

namespace moeserve::engine::jinja {

bool IsKnownTest(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "defined", "undefined",   "none",   "boolean",  "false",       "true",     "integer",
      "float",   "number",      "string", "mapping",  "iterable",    "sequence", "callable",
      "sameas",  "escaped",     "in",     "==",       "eq",          "equalto",  "!=",
      "ne",      "<",           "lt",     "lessthan", "<=",          "le",       ">",
      "gt",      "greaterthan", ">=",     "ge",       "divisibleby", "even",     "odd",
      "lower",   "upper",       "filter", "test"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

absl::StatusOr<bool> ApplyTest(Evaluator& ev, std::string_view name, const Value& input,
                               CallArgs args) {
  if (absl::Status status = ev.Charge(1); !status.ok()) return status;
  const bool takes_argument = name == "sameas" || name == "in" || name == "==" || name == "eq" ||
                              name == "equalto" || name == "!=" || name == "ne" || name == "<" ||
                              name == "lt" || name == "lessthan" || name == "<=" || name == "le" ||
                              name == ">" || name == "gt" || name == "greaterthan" ||
                              name == ">=" || name == "ge" || name == "divisibleby";
  absl::StatusOr<std::vector<Value>> bound =
      takes_argument ? BindArgs(name, std::move(args), {{"other", std::nullopt}})
                     : BindArgs(name, std::move(args), {});
  if (!bound.ok()) return bound.status();
  const Value other = takes_argument ? (*bound)[0] : Value();

  if (name == "defined") return !input.is_undefined();
  if (name == "undefined") return input.is_undefined();
  if (name == "none") return input.is_none();
  if (name == "boolean") return input.is_bool();
  if (name == "false") return input.is_bool() && !input.as_bool();
  if (name == "true") return input.is_bool() && input.as_bool();
  if (name == "integer") return input.is_int();
  if (name == "float") return input.is_float();
  if (name == "number") return input.is_number();  // bool is a Number in Python
  if (name == "string") return input.is_string();
  if (name == "mapping") return input.is_dict();
  // Undefined is iterable (empty) and a "sequence" (it has __len__ and __getitem__).
  if (name == "iterable") {
    return input.is_undefined() || input.is_string() || input.is_sequence() || input.is_dict();
  }
  if (name == "sequence") {
    return input.is_undefined() || input.is_string() || input.is_dict() ||
           (input.is_sequence() && !input.is_generator());
  }
  if (name == "callable") return input.is_callable() || input.is_undefined();
  if (name == "escaped") return false;
  if (name == "lower" || name == "upper") {
    const std::string text = input.Str();
    bool any_cased = false, all_match = true;
    for (char32_t c : DecodeUtf8(text)) {
      if (!IsCased(c)) continue;
      any_cased = true;
      all_match = all_match && (name == "lower" ? ToUpper(c) != c || c == 0xdf : ToLower(c) != c);
    }
    return any_cased && all_match;
  }
  if (name == "even" || name == "odd" || name == "divisibleby") {
    const Value& divisor = name == "divisibleby" ? other : Value::Int(2);
    absl::StatusOr<Value> remainder = Arithmetic(BinaryOp::kModulo, input, divisor, ev);
    if (!remainder.ok()) return remainder.status();
    const bool divisible = Equals(*remainder, Value::Int(0));
    return name == "odd" ? !divisible : divisible;
  }
  if (name == "sameas") {
    if (input.is_none() || other.is_none()) return input.is_none() && other.is_none();
    if (input.is_bool() || other.is_bool()) {
      return input.is_bool() && other.is_bool() && input.as_bool() == other.as_bool();
    }
    if (input.is_object() && other.is_object()) return input.as_object() == other.as_object();
    return false;
  }
  if (name == "in") return Contains(ev, other, input);
  if (name == "==" || name == "eq" || name == "equalto") return Equals(input, other);
  if (name == "!=" || name == "ne") return !Equals(input, other);
  for (const Value* v : {&input, &other}) {
    if (v->is_undefined()) return absl::InvalidArgumentError(v->undefined_hint());
  }
  if (name == "<" || name == "lt" || name == "lessthan") return LessThan(input, other);
  if (name == ">" || name == "gt" || name == "greaterthan") return LessThan(other, input);
  if (name == "<=" || name == "le") {
    absl::StatusOr<bool> greater = LessThan(other, input);
    if (!greater.ok()) return greater.status();
    return !*greater;
  }
  if (name == ">=" || name == "ge") {
    absl::StatusOr<bool> less = LessThan(input, other);
    if (!less.ok()) return less.status();
    return !*less;
  }
  if (name == "filter") return input.is_string() && IsKnownFilter(input.as_string());
  if (name == "test") return input.is_string() && IsKnownTest(input.as_string());
  return absl::InvalidArgumentError(absl::StrCat("unknown test '", Sv(name), "'"));
}

}  // namespace moeserve::engine::jinja
