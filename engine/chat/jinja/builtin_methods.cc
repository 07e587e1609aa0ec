// Methods on strings, dicts and lists (`s.split(',')`, `d.items()`, `l.index(x)`), as the
// ImmutableSandboxedEnvironment allows them: every str method and the non-mutating dict and
// list methods; mutating ones (append, update, pop, ...) are "unsafe" and fail when called.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"
#include "engine/chat/jinja/builtins.h"
#include "engine/chat/jinja/builtins_internal.h"
#include "engine/chat/jinja/call_args.h"
#include "engine/chat/jinja/python_text.h"
#include "engine/chat/jinja/string_format.h"

namespace moeserve::engine::jinja {
namespace {

constexpr std::string_view kStringMethods[] = {
    "upper",    "lower",    "title",        "capitalize",   "strip",      "lstrip",
    "rstrip",   "split",    "rsplit",       "splitlines",   "startswith", "endswith",
    "replace",  "find",     "rfind",        "index",        "rindex",     "count",
    "join",     "format",   "isdigit",      "isalpha",      "isalnum",    "isspace",
    "islower",  "isupper",  "removeprefix", "removesuffix", "partition",  "rpartition",
    "swapcase", "casefold", "zfill"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get", "copy"};
constexpr std::string_view kDictMutators[] = {"pop", "popitem", "setdefault", "update", "clear"};
constexpr std::string_view kListMethods[] = {"index", "count", "copy"};
constexpr std::string_view kListMutators[] = {"append", "extend",  "insert", "pop",
                                              "remove", "reverse", "sort",   "clear"};

template <size_t N>
bool Contains(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

class BoundMethod final : public Object {
 public:
  BoundMethod(Value self, std::string name) : self_(std::move(self)), name_(std::move(name)) {}
  std::string TypeName() const override { return "builtin_function_or_method"; }
  std::string Repr() const override {
    return absl::StrCat("<built-in method ", name_, " of ", self_.TypeName(), " object>");
  }
  bool IsCallable() const override { return true; }
  absl::StatusOr<Value> Call(Evaluator& evaluator, CallArgs args) override {
    return CallMethod(evaluator, self_, name_, std::move(args));
  }

 private:
  Value self_;
  std::string name_;
};

bool IsSpaceAt(const std::u32string& s, size_t i) { return IsPythonSpace(s[i]); }

// str.split / str.rsplit.
absl::StatusOr<Value> Split(std::string_view text, const Value& sep, int64_t max_split,
                            bool from_right) {
  std::vector<std::string> parts;
  if (sep.is_none()) {
    // Runs of whitespace separate; leading and trailing whitespace yields no empty parts.
    const std::u32string s = DecodeUtf8(text);
    std::vector<std::pair<size_t, size_t>> words;
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && IsSpaceAt(s, i)) ++i;
      if (i == s.size()) break;
      size_t j = i;
      while (j < s.size() && !IsSpaceAt(s, j)) ++j;
      words.emplace_back(i, j);
      i = j;
    }
    if (max_split >= 0 && static_cast<int64_t>(words.size()) > max_split + 1) {
      // The unsplit remainder keeps its inner whitespace (and, for rsplit, its start).
      if (from_right) {
        const size_t keep_from = words.size() - max_split;
        std::vector<std::pair<size_t, size_t>> merged = {
            {words[0].first, words[keep_from - 1].second}};
        merged.insert(merged.end(), words.begin() + keep_from, words.end());
        words = merged;
      } else {
        size_t end = s.size();
        while (end > 0 && IsSpaceAt(s, end - 1)) --end;
        words.resize(max_split + 1);
        words.back().second = end;
      }
    }
    for (const auto& [start, end] : words)
      parts.push_back(EncodeUtf8(s.substr(start, end - start)));
  } else {
    if (!sep.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("must be str or None, not ", sep.TypeName()));
    }
    const std::string& separator = sep.as_string();
    if (separator.empty()) return absl::InvalidArgumentError("empty separator");
    std::string rest(text);
    int64_t splits = 0;
    if (!from_right) {
      size_t start = 0;
      while (max_split < 0 || splits < max_split) {
        const size_t found = rest.find(separator, start);
        if (found == std::string::npos) break;
        parts.push_back(rest.substr(start, found - start));
        start = found + separator.size();
        ++splits;
      }
      parts.push_back(rest.substr(start));
    } else {
      size_t end = rest.size();
      std::vector<std::string> reversed;
      while (max_split < 0 || splits < max_split) {
        if (end < separator.size()) break;
        const size_t found = rest.rfind(separator, end - separator.size());
        if (found == std::string::npos) break;
        reversed.push_back(rest.substr(found + separator.size(), end - found - separator.size()));
        end = found;
        ++splits;
      }
      reversed.push_back(rest.substr(0, end));
      parts.assign(reversed.rbegin(), reversed.rend());
    }
  }
  std::vector<Value> values;
  for (std::string& part : parts) values.push_back(Value::String(std::move(part)));
  return Value::List(std::move(values));
}

absl::StatusOr<bool> AffixMatch(std::string_view text, const Value& affix, bool prefix) {
  std::vector<Value> candidates;
  if (affix.is_sequence() && affix.as_sequence().kind == SequenceKind::kTuple) {
    candidates = affix.items();
  } else {
    candidates.push_back(affix);
  }
  for (const Value& candidate : candidates) {
    if (!candidate.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix ? "startswith" : "endswith",
                       " first arg must be str or a tuple of str, not ", candidate.TypeName()));
    }
    const std::string& s = candidate.as_string();
    if (s.size() <= text.size() &&
        (prefix ? text.substr(0, s.size()) == s : text.substr(text.size() - s.size()) == s)) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> RequireString(std::string_view method, const Value& value) {
  if (!value.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(method), "() argument must be str, not ", value.TypeName()));
  }
  return value.as_string();
}

int64_t CodePointIndex(std::string_view text, size_t byte_index) {
  return CodePointLength(text.substr(0, byte_index));
}

absl::StatusOr<Value> CallStringMethod(Evaluator& evaluator, const std::string& s,
                                       std::string_view name, CallArgs args) {
  const std::string function = absl::StrCat("str.", Sv(name));
  auto bind = [&](std::initializer_list<Param> params) {
    return BindArgs(function, std::move(args), params);
  };
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" ||
      name == "swapcase" || name == "casefold") {
    absl::StatusOr<std::vector<Value>> a = bind({});
    if (!a.ok()) return a.status();
    if (name == "upper") return Value::String(UpperCase(s));
    if (name == "lower" || name == "casefold") return Value::String(LowerCase(s));
    if (name == "title") return Value::String(PythonTitle(s));
    if (name == "capitalize") return Value::String(PythonCapitalize(s));
    std::string out;
    for (char32_t c : DecodeUtf8(s)) AppendUtf8(ToUpper(c) != c ? ToUpper(c) : ToLower(c), out);
    return Value::String(std::move(out));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    absl::StatusOr<std::vector<Value>> a = bind({{"chars", Value::None()}});
    if (!a.ok()) return a.status();
    absl::StatusOr<std::string> out = PythonStrip(s, (*a)[0], name != "rstrip", name != "lstrip");
    if (!out.ok()) return out.status();
    return Value::String(*std::move(out));
  }
  if (name == "split" || name == "rsplit") {
    absl::StatusOr<std::vector<Value>> a =
        bind({{"sep", Value::None()}, {"maxsplit", Value::Int(-1)}});
    if (!a.ok()) return a.status();
    if (!(*a)[1].is_integral()) return absl::InvalidArgumentError("maxsplit must be an integer");
    if (absl::Status status = evaluator.Charge(static_cast<int64_t>(s.size() / 16)); !status.ok()) {
      return status;
    }
    return Split(s, (*a)[0], (*a)[1].as_int(), name == "rsplit");
  }
  if (name == "splitlines") {
    absl::StatusOr<std::vector<Value>> a = bind({{"keepends", Value::Bool(false)}});
    if (!a.ok()) return a.status();
    std::vector<Value> lines;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\n' && s[i] != '\r') continue;
      size_t end = i + 1;
      if (s[i] == '\r' && end < s.size() && s[end] == '\n') ++end;
      lines.push_back(Value::String(s.substr(start, ((*a)[0].Truthy() ? end : i) - start)));
      start = end;
      i = end - 1;
    }
    if (start < s.size()) lines.push_back(Value::String(s.substr(start)));
    return Value::List(std::move(lines));
  }
  if (name == "startswith" || name == "endswith") {
    absl::StatusOr<std::vector<Value>> a = bind({{"prefix", std::nullopt}});
    if (!a.ok()) return a.status();
    absl::StatusOr<bool> match = AffixMatch(s, (*a)[0], name == "startswith");
    if (!match.ok()) return match.status();
    return Value::Bool(*match);
  }
  if (name == "replace") {
    absl::StatusOr<std::vector<Value>> a =
        bind({{"old", std::nullopt}, {"new", std::nullopt}, {"count", Value::Int(-1)}});
    if (!a.ok()) return a.status();
    absl::StatusOr<std::string> old_text = RequireString("replace", (*a)[0]);
    if (!old_text.ok()) return old_text.status();
    absl::StatusOr<std::string> new_text = RequireString("replace", (*a)[1]);
    if (!new_text.ok()) return new_text.status();
    if (!(*a)[2].is_integral()) return absl::InvalidArgumentError("count must be an integer");
    std::string out = PythonReplace(s, *old_text, *new_text, (*a)[2].as_int());
    if (absl::Status status = evaluator.CheckSize(out.size()); !status.ok()) return status;
    return Value::String(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    absl::StatusOr<std::vector<Value>> a = bind({{"sub", std::nullopt}});
    if (!a.ok()) return a.status();
    absl::StatusOr<std::string> sub = RequireString(name, (*a)[0]);
    if (!sub.ok()) return sub.status();
    if (name == "count") {
      if (sub->empty()) return Value::Int(CodePointLength(s) + 1);
      int64_t count = 0;
      for (size_t pos = s.find(*sub); pos != std::string::npos;
           pos = s.find(*sub, pos + sub->size())) {
        ++count;
      }
      return Value::Int(count);
    }
    const size_t found = name[0] == 'r' ? s.rfind(*sub) : s.find(*sub);
    if (found == std::string::npos) {
      if (name == "index" || name == "rindex")
        return absl::InvalidArgumentError("substring not found");
      return Value::Int(-1);
    }
    return Value::Int(CodePointIndex(s, found));
  }
  if (name == "join") {
    absl::StatusOr<std::vector<Value>> a = bind({{"iterable", std::nullopt}});
    if (!a.ok()) return a.status();
    absl::StatusOr<std::vector<Value>> items = evaluator.Iterate((*a)[0]);
    if (!items.ok()) return items.status();
    std::string out;
    for (size_t i = 0; i < items->size(); ++i) {
      if (!(*items)[i].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sequence item ", i, ": expected str instance, ", (*items)[i].TypeName(), " found"));
      }
      if (i > 0) out += s;
      out += (*items)[i].as_string();
      if (absl::Status status = evaluator.CheckSize(out.size()); !status.ok()) return status;
    }
    return Value::String(std::move(out));
  }
  if (name == "format") return BraceFormat(s, args);
  if (name == "removeprefix" || name == "removesuffix") {
    absl::StatusOr<std::vector<Value>> a = bind({{"affix", std::nullopt}});
    if (!a.ok()) return a.status();
    absl::StatusOr<std::string> affix = RequireString(name, (*a)[0]);
    if (!affix.ok()) return affix.status();
    if (name == "removeprefix") {
      return Value::String(s.starts_with(*affix) ? s.substr(affix->size()) : s);
    }
    return Value::String(s.ends_with(*affix) ? s.substr(0, s.size() - affix->size()) : s);
  }
  if (name == "partition" || name == "rpartition") {
    absl::StatusOr<std::vector<Value>> a = bind({{"sep", std::nullopt}});
    if (!a.ok()) return a.status();
    absl::StatusOr<std::string> sep = RequireString(name, (*a)[0]);
    if (!sep.ok()) return sep.status();
    if (sep->empty()) return absl::InvalidArgumentError("empty separator");
    const size_t found = name == "partition" ? s.find(*sep) : s.rfind(*sep);
    if (found == std::string::npos) {
      return name == "partition"
                 ? Value::Tuple({Value::String(s), Value::String(""), Value::String("")})
                 : Value::Tuple({Value::String(""), Value::String(""), Value::String(s)});
    }
    return Value::Tuple({Value::String(s.substr(0, found)), Value::String(*sep),
                         Value::String(s.substr(found + sep->size()))});
  }
  if (name == "zfill") {
    absl::StatusOr<std::vector<Value>> a = bind({{"width", std::nullopt}});
    if (!a.ok()) return a.status();
    const int64_t width = (*a)[0].is_integral() ? (*a)[0].as_int() : 0;
    const int64_t length = CodePointLength(s);
    if (length >= width) return Value::String(s);
    if (absl::Status status = evaluator.CheckSize(width); !status.ok()) return status;
    const size_t sign = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
    return Value::String(s.substr(0, sign) + std::string(width - length, '0') + s.substr(sign));
  }
  // is* predicates.
  absl::StatusOr<std::vector<Value>> a = bind({});
  if (!a.ok()) return a.status();
  const std::u32string cps = DecodeUtf8(s);
  if (cps.empty()) return Value::Bool(false);
  bool all = true, any_cased = false, any_upper = false, any_lower = false;
  for (char32_t c : cps) {
    const bool digit = c >= '0' && c <= '9';
    const bool alpha = IsCased(c) || (c >= 0x4e00 && c <= 0x9fff);
    if (name == "isdigit") all = all && digit;
    if (name == "isalpha") all = all && alpha;
    if (name == "isalnum") all = all && (alpha || digit);
    if (name == "isspace") all = all && IsPythonSpace(c);
    any_cased = any_cased || IsCased(c);
    any_upper = any_upper || ToLower(c) != c;
    any_lower = any_lower || ToUpper(c) != c || c == 0xdf;
  }
  if (name == "islower") return Value::Bool(any_cased && !any_upper);
  if (name == "isupper") return Value::Bool(any_cased && !any_lower);
  return Value::Bool(all);
}

absl::StatusOr<Value> CallDictMethod(const Value& self, std::string_view name, CallArgs args) {
  const Dict& dict = self.as_dict();
  const std::string function = absl::StrCat("dict.", Sv(name));
  if (name == "get") {
    absl::StatusOr<std::vector<Value>> a =
        BindArgs(function, std::move(args), {{"key", std::nullopt}, {"default", Value::None()}});
    if (!a.ok()) return a.status();
    if (absl::Status status = CheckHashable((*a)[0]); !status.ok()) return status;
    const Value* found = dict.Find((*a)[0]);
    return found != nullptr ? *found : (*a)[1];
  }
  absl::StatusOr<std::vector<Value>> a = BindArgs(function, std::move(args), {});
  if (!a.ok()) return a.status();
  if (name == "copy") return self;
  std::vector<Value> out;
  for (const auto& [key, value] : dict.entries()) {
    if (name == "items") {
      out.push_back(Value::Tuple({key, value}));
    } else {
      out.push_back(name == "keys" ? key : value);
    }
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> CallListMethod(const Value& self, std::string_view name, CallArgs args) {
  const std::string function = absl::StrCat(self.TypeName(), ".", Sv(name));
  if (name == "copy") {
    absl::StatusOr<std::vector<Value>> a = BindArgs(function, std::move(args), {});
    if (!a.ok()) return a.status();
    return self;
  }
  absl::StatusOr<std::vector<Value>> a =
      BindArgs(function, std::move(args), {{"value", std::nullopt}});
  if (!a.ok()) return a.status();
  const auto& items = self.items();
  int64_t count = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!Equals(items[i], (*a)[0])) continue;
    if (name == "index") return Value::Int(static_cast<int64_t>(i));
    ++count;
  }
  if (name == "index") {
    return absl::InvalidArgumentError(absl::StrCat((*a)[0].Repr(), " is not in list"));
  }
  return Value::Int(count);
}

}  // namespace

std::optional<Value> LookupMethod(const Value& self, std::string_view name) {
  bool known = false;
  bool mutator = false;
  if (self.is_string()) {
    known = Contains(kStringMethods, name);
  } else if (self.is_dict()) {
    known = Contains(kDictMethods, name);
    mutator = Contains(kDictMutators, name);
  } else if (self.is_sequence() && !self.is_generator()) {
    const bool is_list = self.as_sequence().kind == SequenceKind::kList;
    known = Contains(kListMethods, name) && (is_list || name != "copy");
    mutator = is_list && Contains(kListMutators, name);
  }
  if (mutator) {
    return Value::Undefined(absl::StrCat("access to attribute '", Sv(name), "' of '",
                                         self.TypeName(), "' object is unsafe."),
                            /*unsafe=*/true);
  }
  if (!known) return std::nullopt;
  return Value::FromObject(std::make_shared<BoundMethod>(self, std::string(name)));
}

absl::StatusOr<Value> CallMethod(Evaluator& evaluator, const Value& self, std::string_view name,
                                 CallArgs args) {
  if (self.is_string()) return CallStringMethod(evaluator, self.as_string(), name, std::move(args));
  if (self.is_dict()) return CallDictMethod(self, name, std::move(args));
  return CallListMethod(self, name, std::move(args));
}

absl::StatusOr<std::string> PythonStrip(std::string_view text, const Value& chars, bool left,
                                        bool right) {
  if (!chars.is_none() && !chars.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("strip arg must be None or str, not ", chars.TypeName()));
  }
  const std::u32string s = DecodeUtf8(text);
  const std::u32string set = chars.is_string() ? DecodeUtf8(chars.as_string()) : U"";
  auto strip = [&](char32_t c) {
    return chars.is_none() ? IsPythonSpace(c) : set.find(c) != std::u32string::npos;
  };
  size_t start = 0;
  size_t end = s.size();
  if (left) {
    while (start < end && strip(s[start])) ++start;
  }
  if (right) {
    while (end > start && strip(s[end - 1])) --end;
  }
  return EncodeUtf8(std::u32string_view(s).substr(start, end - start));
}

std::string PythonReplace(std::string_view text, std::string_view old_text,
                          std::string_view new_text, int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts `new` before every character and at the end.
    int64_t done = 0;
    for (char32_t c : DecodeUtf8(text)) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      AppendUtf8(c, out);
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t found = text.find(old_text, start);
    if (found == std::string_view::npos) break;
    out += text.substr(start, found - start);
    out += new_text;
    start = found + old_text.size();
    ++done;
  }
  out += text.substr(start);
  return out;
}

std::string PythonTitle(std::string_view text) {
  std::string out;
  bool previous_cased = false;
  for (char32_t c : DecodeUtf8(text)) {
    AppendUtf8(previous_cased ? ToLower(c) : ToUpper(c), out);
    previous_cased = IsCased(c);
  }
  return out;
}

std::string PythonCapitalize(std::string_view text) {
  std::string out;
  bool first = true;
  for (char32_t c : DecodeUtf8(text)) {
    AppendUtf8(first ? ToUpper(c) : ToLower(c), out);
    first = false;
  }
  return out;
}

absl::StatusOr<Value> GetAttributePath(Evaluator& evaluator, const Value& item,
                                       const Value& attribute) {
  if (!attribute.is_string()) return evaluator.GetItem(item, attribute);
  Value current = item;
  std::string_view path = attribute.as_string();
  while (true) {
    const size_t dot = path.find('.');
    const std::string_view part = path.substr(0, dot);
    Value key = Value::String(std::string(part));
    if (!part.empty() &&
        std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        part.size() < 18) {
      key = Value::Int(std::stoll(std::string(part)));
    }
    absl::StatusOr<Value> next = evaluator.GetItem(current, key);
    if (!next.ok()) return next.status();
    current = *std::move(next);
    if (dot == std::string_view::npos) return current;
    path = path.substr(dot + 1);
  }
}

absl::StatusOr<int64_t> PythonLength(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return CodePointLength(value.as_string());
    case Value::Kind::kSequence:
      if (!value.is_generator()) return static_cast<int64_t>(value.items().size());
      break;
    case Value::Kind::kDict:
      return static_cast<int64_t>(value.as_dict().size());
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("object of type '", value.TypeName(), "' has no len()"));
}

}  // namespace moeserve::engine::jinja
