// Jinja2 3.1's built-in filters that chat templates use, plus transformers' tojson.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"
#include "engine/chat/jinja/builtins.h"
#include "engine/chat/jinja/builtins_internal.h"
#include "engine/chat/jinja/call_args.h"
#include "engine/chat/jinja/json_value.h"
#include "engine/chat/jinja/python_text.h"
#include "engine/chat/jinja/string_format.h"

namespace moeserve::engine::jinja {
namespace {

using Args = std::vector<Value>;

absl::StatusOr<Value> Length(const Value& input) {
  absl::StatusOr<int64_t> length = PythonLength(input);
  if (!length.ok()) return length.status();
  return Value::Int(*length);
}

// Python int(str, base): optional sign and surrounding whitespace, underscores between digits.
std::optional<int64_t> ParseInt(std::string text, int base) {
  absl::StatusOr<std::string> stripped = PythonStrip(text, Value::None(), true, true);
  text = *stripped;
  if (text.empty() || text.front() == '_' || text.back() == '_' ||
      text.find("__") != std::string::npos) {
    return std::nullopt;
  }
  std::erase(text, '_');
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, base);
  if (errno != 0 || *end != '\0' || text.find_first_of(" \t\n") != std::string::npos) {
    return std::nullopt;
  }
  return value;
}

std::optional<double> ParseFloat(const std::string& raw) {
  absl::StatusOr<std::string> stripped = PythonStrip(raw, Value::None(), true, true);
  std::string text = *stripped;
  if (text.empty()) return std::nullopt;
  std::erase(text, '_');
  const std::string lower = LowerCase(text);
  const bool negative = lower[0] == '-';
  const std::string_view unsigned_part =
      std::string_view(lower).substr(lower[0] == '-' || lower[0] == '+' ? 1 : 0);
  if (unsigned_part == "inf" || unsigned_part == "infinity") {
    return negative ? -INFINITY : INFINITY;
  }
  if (unsigned_part == "nan") return NAN;
  if (unsigned_part.empty() ||
      !(std::isdigit(static_cast<unsigned char>(unsigned_part[0])) || unsigned_part[0] == '.')) {
    return std::nullopt;  // rejects strtod's hex floats and the like
  }
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  return value;
}

absl::StatusOr<Value> IntFilter(const Value& input, const Args& a) {
  const Value& fallback = a[0];
  if (input.is_undefined()) return absl::InvalidArgumentError(input.undefined_hint());
  if (input.is_integral()) return Value::Int(input.as_int());
  if (input.is_float()) {
    if (!std::isfinite(input.as_double())) {
      return absl::InvalidArgumentError("cannot convert float infinity or NaN to integer");
    }
    return Value::Int(static_cast<int64_t>(input.as_double()));
  }
  if (input.is_string()) {
    const int base = a[1].is_integral() ? static_cast<int>(a[1].as_int()) : 10;
    if (std::optional<int64_t> value = ParseInt(input.as_string(), base)) return Value::Int(*value);
    // Jinja's quirk: "42.23"|int is 42.
    if (std::optional<double> value = ParseFloat(input.as_string());
        value && std::isfinite(*value)) {
      return Value::Int(static_cast<int64_t>(*value));
    }
  }
  return fallback;
}

absl::StatusOr<Value> FloatFilter(const Value& input, const Value& fallback) {
  if (input.is_undefined()) return absl::InvalidArgumentError(input.undefined_hint());
  if (input.is_number()) return Value::Float(input.as_double());
  if (input.is_string()) {
    if (std::optional<double> value = ParseFloat(input.as_string())) return Value::Float(*value);
  }
  return fallback;
}

// Python's round(x, n) for floats: the correctly rounded decimal, ties to even on the exact
// binary value, which is what glibc's printf computes.
double RoundHalfEven(double value, int64_t digits) {
  if (!std::isfinite(value)) return value;
  if (digits > 300) return value;
  if (digits < -300) return 0.0 * value;
  if (digits >= 0) {
    char buffer[512];
    std::snprintf(buffer, sizeof(buffer), "%.*f", static_cast<int>(digits), value);
    return std::strtod(buffer, nullptr);
  }
  const double scale = std::pow(10.0, static_cast<double>(-digits));
  return std::nearbyint(value / scale) * scale;
}

absl::StatusOr<Value> RoundFilter(const Value& input, const Args& a) {
  if (!input.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("type ", input.TypeName(), " doesn't define __round__ method"));
  }
  if (!a[0].is_integral()) return absl::InvalidArgumentError("precision must be an integer");
  const int64_t precision = a[0].as_int();
  const std::string method = a[1].Str();
  if (method != "common" && method != "ceil" && method != "floor") {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  if (method == "common") {
    // round(int, n) stays an int in Python.
    if (input.is_integral()) return Value::Int(input.as_int());
    return Value::Float(RoundHalfEven(input.as_double(), precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double scaled = input.as_double() * scale;
  return Value::Float((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
}

// A sort key: case-insensitive comparisons lower-case strings.
Value SortKey(const Value& value, bool case_sensitive) {
  if (!case_sensitive && value.is_string()) return Value::String(LowerCase(value.as_string()));
  return value;
}

absl::Status SortValues(std::vector<std::pair<Value, Value>>& keyed, bool reverse) {
  absl::Status status;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    absl::StatusOr<bool> less = reverse ? LessThan(y.first, x.first) : LessThan(x.first, y.first);
    if (!less.ok()) {
      status = less.status();
      return false;
    }
    return *less;
  });
  return status;
}

absl::StatusOr<Value> SortFilter(Evaluator& ev, const Value& input, const Args& a) {
  absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
  if (!items.ok()) return items.status();
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : *items) {
    Value key = item;
    if (!a[2].is_none()) {
      absl::StatusOr<Value> attribute = GetAttributePath(ev, item, a[2]);
      if (!attribute.ok()) return attribute.status();
      key = *attribute;
    }
    keyed.emplace_back(SortKey(key, a[1].Truthy()), std::move(item));
  }
  if (absl::Status status = SortValues(keyed, a[0].Truthy()); !status.ok()) return status;
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::List(std::move(out));
}

absl::StatusOr<Value> DictSortFilter(Evaluator& ev, const Value& input, const Args& a) {
  if (!input.is_dict()) return absl::InvalidArgumentError("dictsort: expected a mapping");
  const std::string by = a[1].Str();
  if (by != "key" && by != "value") {
    return absl::InvalidArgumentError("You can only sort by either \"key\" or \"value\"");
  }
  if (absl::Status status = ev.Charge(static_cast<int64_t>(input.as_dict().size())); !status.ok()) {
    return status;
  }
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& [key, value] : input.as_dict().entries()) {
    keyed.emplace_back(SortKey(by == "key" ? key : value, a[0].Truthy()),
                       Value::Tuple({key, value}));
  }
  if (absl::Status status = SortValues(keyed, a[2].Truthy()); !status.ok()) return status;
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::List(std::move(out));
}

// select/reject/selectattr/rejectattr: keep items whose (attribute's) test result is `keep`.
absl::StatusOr<Value> SelectFilter(Evaluator& ev, std::string_view filter, const Value& input,
                                   CallArgs args) {
  const bool by_attribute = filter == "selectattr" || filter == "rejectattr";
  const bool keep = filter == "select" || filter == "selectattr";
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(filter), "() missing the attribute argument"));
    }
    attribute = args.positional[next++];
  }
  std::optional<std::string> test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(filter), "(): the test name must be a string"));
    }
    test = args.positional[next++].as_string();
    if (!IsKnownTest(*test))
      return absl::InvalidArgumentError(absl::StrCat("No test named '", *test, "'."));
  }
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + next, args.positional.end());
  test_args.keyword = args.keyword;
  absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
  if (!items.ok()) return items.status();
  std::vector<Value> out;
  for (Value& item : *items) {
    Value subject = item;
    if (by_attribute) {
      absl::StatusOr<Value> value = GetAttributePath(ev, item, attribute);
      if (!value.ok()) return value.status();
      subject = *value;
    }
    bool passed = subject.Truthy();
    if (test) {
      absl::StatusOr<bool> result = ApplyTest(ev, *test, subject, test_args);
      if (!result.ok()) return result.status();
      passed = *result;
    }
    if (passed == keep) out.push_back(std::move(item));
  }
  return Value::List(std::move(out), SequenceKind::kGenerator);
}

absl::StatusOr<Value> MapFilter(Evaluator& ev, const Value& input, CallArgs args) {
  absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
  if (!items.ok()) return items.status();
  std::vector<Value> out;
  if (args.positional.empty()) {
    // map(attribute='x', default=d)
    absl::StatusOr<Args> a = BindArgs(
        "map", std::move(args), {{"attribute", std::nullopt}, {"default", Value::Undefined("")}});
    if (!a.ok()) return a.status();
    for (const Value& item : *items) {
      absl::StatusOr<Value> value = GetAttributePath(ev, item, (*a)[0]);
      if (!value.ok()) return value.status();
      out.push_back(value->is_undefined() && !(*a)[1].is_undefined() ? (*a)[1] : *value);
    }
  } else {
    if (!args.positional[0].is_string() || !IsKnownFilter(args.positional[0].as_string())) {
      return absl::InvalidArgumentError(
          absl::StrCat("No filter named ", args.positional[0].Repr(), "."));
    }
    const std::string name = args.positional[0].as_string();
    CallArgs rest;
    rest.positional.assign(args.positional.begin() + 1, args.positional.end());
    rest.keyword = args.keyword;
    for (const Value& item : *items) {
      absl::StatusOr<Value> value = ApplyFilter(ev, name, item, rest);
      if (!value.ok()) return value.status();
      out.push_back(*std::move(value));
    }
  }
  return Value::List(std::move(out), SequenceKind::kGenerator);
}

absl::StatusOr<Value> JoinFilter(Evaluator& ev, const Value& input, const Args& a) {
  absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
  if (!items.ok()) return items.status();
  const std::string separator = a[0].Str();
  std::string out;
  for (size_t i = 0; i < items->size(); ++i) {
    Value item = (*items)[i];
    if (!a[1].is_none()) {
      absl::StatusOr<Value> value = GetAttributePath(ev, item, a[1]);
      if (!value.ok()) return value.status();
      item = *value;
    }
    if (i > 0) out += separator;
    out += item.Str();
    if (absl::Status status = ev.CheckSize(out.size()); !status.ok()) return status;
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> ToJsonFilter(const Value& input, const Args& a) {
  JsonDumpOptions options;
  options.ensure_ascii = a[0].Truthy();
  const Value& indent = a[1];
  if (indent.is_integral()) {
    options.indent =
        std::string(std::max<int64_t>(0, std::min<int64_t>(indent.as_int(), 1024)), ' ');
  } else if (indent.is_string()) {
    options.indent = indent.as_string();
  } else if (!indent.is_none()) {
    return absl::InvalidArgumentError("tojson: indent must be an int, a str or None");
  }
  if (!a[2].is_none()) {
    if (!a[2].is_sequence() || a[2].items().size() != 2 || !a[2].items()[0].is_string() ||
        !a[2].items()[1].is_string()) {
      return absl::InvalidArgumentError("tojson: separators must be a pair of strings");
    }
    options.separators = {a[2].items()[0].as_string(), a[2].items()[1].as_string()};
  }
  options.sort_keys = a[3].Truthy();
  absl::StatusOr<std::string> text = PythonJsonDumps(input, options);
  if (!text.ok()) return text.status();
  return Value::String(*std::move(text));
}

// Jinja's title filter: upper-cases the first letter after whitespace, -, (, {, [ or <.
std::string JinjaTitle(std::string_view text) {
  std::string out;
  bool word_start = true;
  for (char32_t c : DecodeUtf8(text)) {
    const bool separator =
        IsPythonSpace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    AppendUtf8(separator ? c : word_start ? ToUpper(c) : ToLower(c), out);
    word_start = separator;
  }
  return out;
}

std::string HtmlEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<Value> IndentFilter(const Value& input, const Args& a) {
  std::string indent = a[0].is_string()
                           ? a[0].as_string()
                           : std::string(std::clamp<int64_t>(a[0].as_int(), 0, 1024), ' ');
  const std::string text = input.Str() + "\n";  // Jinja appends "\n" and strips it again
  std::string out;
  size_t start = 0;
  bool first = true;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end - start);
    const bool blank = PythonStrip(line, Value::None(), true, true)->empty();
    if (first ? a[1].Truthy() && (!blank || a[2].Truthy()) : !blank || a[2].Truthy()) {
      out += indent;
    }
    out += line;
    out += "\n";
    start = end + 1;
    first = false;
  }
  out.pop_back();
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Aggregate(Evaluator& ev, std::string_view name, const Value& input,
                                CallArgs args) {
  absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
  if (!items.ok()) return items.status();
  if (name == "sum") {
    absl::StatusOr<Args> a =
        BindArgs("sum", std::move(args), {{"attribute", Value::None()}, {"start", Value::Int(0)}});
    if (!a.ok()) return a.status();
    Value total = (*a)[1];
    for (const Value& item : *items) {
      Value term = item;
      if (!(*a)[0].is_none()) {
        absl::StatusOr<Value> value = GetAttributePath(ev, item, (*a)[0]);
        if (!value.ok()) return value.status();
        term = *value;
      }
      absl::StatusOr<Value> next = Arithmetic(BinaryOp::kAdd, total, term, ev);
      if (!next.ok()) return next.status();
      total = *std::move(next);
    }
    return total;
  }
  absl::StatusOr<Args> a =
      BindArgs(name, std::move(args),
               {{"case_sensitive", Value::Bool(false)}, {"attribute", Value::None()}});
  if (!a.ok()) return a.status();
  if (items->empty())
    return Value::Undefined(absl::StrCat("No aggregated item, sequence was empty."));
  std::optional<std::pair<Value, Value>> best;
  for (const Value& item : *items) {
    Value key = item;
    if (!(*a)[1].is_none()) {
      absl::StatusOr<Value> value = GetAttributePath(ev, item, (*a)[1]);
      if (!value.ok()) return value.status();
      key = *value;
    }
    key = SortKey(key, (*a)[0].Truthy());
    if (!best) {
      best.emplace(key, item);
      continue;
    }
    absl::StatusOr<bool> better =
        name == "min" ? LessThan(key, best->first) : LessThan(best->first, key);
    if (!better.ok()) return better.status();
    if (*better) best.emplace(key, item);
  }
  return best->second;
}

absl::StatusOr<Value> UniqueFilter(Evaluator& ev, const Value& input, const Args& a) {
  absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
  if (!items.ok()) return items.status();
  std::vector<Value> seen, out;
  for (const Value& item : *items) {
    Value key = item;
    if (!a[1].is_none()) {
      absl::StatusOr<Value> value = GetAttributePath(ev, item, a[1]);
      if (!value.ok()) return value.status();
      key = *value;
    }
    key = SortKey(key, a[0].Truthy());
    if (absl::Status status = CheckHashable(key); !status.ok()) return status;
    if (absl::Status status = ev.Charge(static_cast<int64_t>(seen.size())); !status.ok())
      return status;
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); }))
      continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::List(std::move(out), SequenceKind::kGenerator);
}

}  // namespace

bool IsKnownFilter(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "abs",    "attr",   "capitalize", "count",      "d",         "default",     "dictsort",
      "e",      "escape", "first",      "float",      "format",    "indent",      "int",
      "items",  "join",   "last",       "length",     "list",      "lower",       "map",
      "max",    "min",    "reject",     "rejectattr", "replace",   "reverse",     "round",
      "safe",   "select", "selectattr", "sort",       "string",    "sum",         "title",
      "tojson", "trim",   "unique",     "upper",      "wordcount", "forceescape", "center"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

absl::StatusOr<Value> ApplyFilter(Evaluator& ev, std::string_view name, const Value& input,
                                  CallArgs args) {
  if (absl::Status status = ev.Charge(1); !status.ok()) return status;
  auto bind = [&](std::initializer_list<Param> params) {
    return BindArgs(name, std::move(args), params);
  };
  // Filters of one string: Jinja applies them to str(input), '' for Undefined.
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title" ||
      name == "string" || name == "safe" || name == "escape" || name == "e" ||
      name == "forceescape" || name == "wordcount") {
    absl::StatusOr<Args> a = bind({});
    if (!a.ok()) return a.status();
    if (name == "string" || name == "safe")
      return input.is_string() ? input : Value::String(input.Str());
    const std::string text = input.Str();
    if (name == "upper") return Value::String(UpperCase(text));
    if (name == "lower") return Value::String(LowerCase(text));
    if (name == "capitalize") return Value::String(PythonCapitalize(text));
    if (name == "title") return Value::String(JinjaTitle(text));
    if (name == "wordcount") {
      int64_t words = 0;
      bool in_word = false;
      for (char32_t c : DecodeUtf8(text)) {
        const bool word_char = IsCased(c) || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
        if (word_char && !in_word) ++words;
        in_word = word_char;
      }
      return Value::Int(words);
    }
    return Value::String(HtmlEscape(text));
  }
  if (name == "trim") {
    absl::StatusOr<Args> a = bind({{"chars", Value::None()}});
    if (!a.ok()) return a.status();
    absl::StatusOr<std::string> out = PythonStrip(input.Str(), (*a)[0], true, true);
    if (!out.ok()) return out.status();
    return Value::String(*std::move(out));
  }
  if (name == "replace") {
    absl::StatusOr<Args> a =
        bind({{"old", std::nullopt}, {"new", std::nullopt}, {"count", Value::None()}});
    if (!a.ok()) return a.status();
    const int64_t count = (*a)[2].is_integral() ? (*a)[2].as_int() : -1;
    std::string out = PythonReplace(input.Str(), (*a)[0].Str(), (*a)[1].Str(), count);
    if (absl::Status status = ev.CheckSize(out.size()); !status.ok()) return status;
    return Value::String(std::move(out));
  }
  if (name == "length" || name == "count") {
    absl::StatusOr<Args> a = bind({});
    if (!a.ok()) return a.status();
    return Length(input);
  }
  if (name == "default" || name == "d") {
    absl::StatusOr<Args> a =
        bind({{"default_value", Value::String("")}, {"boolean", Value::Bool(false)}});
    if (!a.ok()) return a.status();
    const bool use_default = input.is_undefined() || ((*a)[1].Truthy() && !input.Truthy());
    return use_default ? (*a)[0] : input;
  }
  if (name == "first" || name == "last") {
    absl::StatusOr<Args> a = bind({});
    if (!a.ok()) return a.status();
    if (name == "last" && (input.is_generator() || !(input.is_sequence() || input.is_string() ||
                                                     input.is_dict() || input.is_undefined()))) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", input.TypeName(), "' object is not reversible"));
    }
    absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
    if (!items.ok()) return items.status();
    if (items->empty()) {
      return Value::Undefined(absl::StrCat("No ", Sv(name), " item, sequence was empty."));
    }
    return name == "first" ? items->front() : items->back();
  }
  if (name == "join") {
    absl::StatusOr<Args> a = bind({{"d", Value::String("")}, {"attribute", Value::None()}});
    if (!a.ok()) return a.status();
    return JoinFilter(ev, input, *a);
  }
  if (name == "list") {
    absl::StatusOr<Args> a = bind({});
    if (!a.ok()) return a.status();
    absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
    if (!items.ok()) return items.status();
    return Value::List(*std::move(items));
  }
  if (name == "items") {
    absl::StatusOr<Args> a = bind({});
    if (!a.ok()) return a.status();
    if (input.is_undefined()) return Value::List({}, SequenceKind::kGenerator);
    if (!input.is_dict())
      return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
    std::vector<Value> pairs;
    for (const auto& [key, value] : input.as_dict().entries())
      pairs.push_back(Value::Tuple({key, value}));
    return Value::List(std::move(pairs), SequenceKind::kGenerator);
  }
  if (name == "reverse") {
    absl::StatusOr<Args> a = bind({});
    if (!a.ok()) return a.status();
    if (input.is_string()) {
      std::u32string s = DecodeUtf8(input.as_string());
      std::reverse(s.begin(), s.end());
      return Value::String(EncodeUtf8(s));
    }
    absl::StatusOr<std::vector<Value>> items = ev.Iterate(input);
    if (!items.ok()) return items.status();
    std::reverse(items->begin(), items->end());
    return Value::List(*std::move(items), SequenceKind::kGenerator);
  }
  if (name == "tojson") {
    absl::StatusOr<Args> a = bind({{"ensure_ascii", Value::Bool(false)},
                                   {"indent", Value::None()},
                                   {"separators", Value::None()},
                                   {"sort_keys", Value::Bool(false)}});
    if (!a.ok()) return a.status();
    return ToJsonFilter(input, *a);
  }
  if (name == "int") {
    absl::StatusOr<Args> a = bind({{"default", Value::Int(0)}, {"base", Value::Int(10)}});
    if (!a.ok()) return a.status();
    return IntFilter(input, *a);
  }
  if (name == "float") {
    absl::StatusOr<Args> a = bind({{"default", Value::Float(0.0)}});
    if (!a.ok()) return a.status();
    return FloatFilter(input, (*a)[0]);
  }
  if (name == "abs") {
    absl::StatusOr<Args> a = bind({});
    if (!a.ok()) return a.status();
    if (input.is_float()) return Value::Float(std::fabs(input.as_double()));
    if (input.is_integral()) {
      if (input.as_int() == INT64_MIN) return absl::OutOfRangeError("integer overflow");
      return Value::Int(std::llabs(input.as_int()));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("bad operand type for abs(): '", input.TypeName(), "'"));
  }
  if (name == "round") {
    absl::StatusOr<Args> a =
        bind({{"precision", Value::Int(0)}, {"method", Value::String("common")}});
    if (!a.ok()) return a.status();
    return RoundFilter(input, *a);
  }
  if (name == "sort") {
    absl::StatusOr<Args> a = bind({{"reverse", Value::Bool(false)},
                                   {"case_sensitive", Value::Bool(false)},
                                   {"attribute", Value::None()}});
    if (!a.ok()) return a.status();
    return SortFilter(ev, input, *a);
  }
  if (name == "dictsort") {
    absl::StatusOr<Args> a = bind({{"case_sensitive", Value::Bool(false)},
                                   {"by", Value::String("key")},
                                   {"reverse", Value::Bool(false)}});
    if (!a.ok()) return a.status();
    return DictSortFilter(ev, input, *a);
  }
  if (name == "unique") {
    absl::StatusOr<Args> a =
        bind({{"case_sensitive", Value::Bool(false)}, {"attribute", Value::None()}});
    if (!a.ok()) return a.status();
    return UniqueFilter(ev, input, *a);
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return SelectFilter(ev, name, input, std::move(args));
  }
  if (name == "map") return MapFilter(ev, input, std::move(args));
  if (name == "sum" || name == "min" || name == "max")
    return Aggregate(ev, name, input, std::move(args));
  if (name == "attr") {
    absl::StatusOr<Args> a = bind({{"name", std::nullopt}});
    if (!a.ok()) return a.status();
    return ev.GetAttribute(input, (*a)[0].Str());
  }
  if (name == "format") {
    if (!args.keyword.empty() && !args.positional.empty()) {
      return absl::InvalidArgumentError(
          "can't handle positional and keyword arguments at the same time");
    }
    Value format_args = Value::Tuple(args.positional);
    if (!args.keyword.empty()) {
      Dict mapping;
      for (auto& [key, value] : args.keyword) mapping.Set(Value::String(key), value);
      format_args = Value::FromDict(std::move(mapping));
    }
    return PercentFormat(input.Str(), format_args);
  }
  if (name == "indent") {
    absl::StatusOr<Args> a = bind(
        {{"width", Value::Int(4)}, {"first", Value::Bool(false)}, {"blank", Value::Bool(false)}});
    if (!a.ok()) return a.status();
    return IndentFilter(input, *a);
  }
  if (name == "center") {
    absl::StatusOr<Args> a = bind({{"width", Value::Int(80)}});
    if (!a.ok()) return a.status();
    const std::string text = input.Str();
    const int64_t length = CodePointLength(text);
    const int64_t width = std::min<int64_t>((*a)[0].is_integral() ? (*a)[0].as_int() : 80, 1 << 20);
    if (length >= width) return Value::String(text);
    // CPython's str.center puts the odd space on the right unless the width is odd... its rule:
    // left = pad / 2 + (pad & width & 1).
    const int64_t pad = width - length;
    const int64_t left = pad / 2 + (pad & width & 1);
    return Value::String(std::string(left, ' ') + text + std::string(pad - left, ' '));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown filter '", Sv(name), "'"));
}

}  // namespace moeserve::engine::jinja
