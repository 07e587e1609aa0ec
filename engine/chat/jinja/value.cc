#include "engine/chat/jinja/value.h"

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/python_text.h"

namespace moeserve::engine::jinja {

const Value* Dict::Find(const Value& key) const {
  for (const auto& [k, v] : entries_) {
    if (Equals(k, key)) return &v;
  }
  return nullptr;
}

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k.is_string() && k.as_string() == key) return &v;
  }
  return nullptr;
}

void Dict::Set(Value key, Value value) {
  for (auto& [k, v] : entries_) {
    if (Equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::move(key), std::move(value));
}

std::optional<Value> Object::GetAttr(std::string_view) const { return std::nullopt; }

absl::StatusOr<Value> Object::Call(Evaluator&, CallArgs) {
  return absl::InvalidArgumentError(absl::StrCat("'", TypeName(), "' object is not callable"));
}

std::string Namespace::Repr() const {
  return absl::StrCat("<Namespace ", Value::FromDict(*attributes_).Repr(), ">");
}

std::optional<Value> Namespace::GetAttr(std::string_view name) const {
  if (const Value* v = attributes_->Find(name)) return *v;
  return std::nullopt;
}

void Namespace::SetAttr(std::string name, Value value) {
  attributes_->Set(Value::String(std::move(name)), std::move(value));
}

Value Value::Undefined(std::string hint, bool unsafe) {
  Value v;
  v.data_ = UndefinedData{std::make_shared<const std::string>(std::move(hint)), unsafe};
  return v;
}

Value Value::None() {
  Value v;
  v.data_ = nullptr;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.data_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.data_ = i;
  return v;
}

Value Value::Float(double d) {
  Value v;
  v.data_ = d;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.data_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::List(std::vector<Value> items, SequenceKind kind) {
  Value v;
  v.data_ = std::make_shared<const Sequence>(Sequence{std::move(items), kind});
  return v;
}

Value Value::FromDict(Dict dict) {
  Value v;
  v.data_ = std::make_shared<const Dict>(std::move(dict));
  return v;
}

Value Value::FromObject(std::shared_ptr<Object> object) {
  Value v;
  v.data_ = std::move(object);
  return v;
}

const std::string& Value::undefined_hint() const {
  static const std::string kNoHint = "undefined value";
  const auto& hint = std::get<UndefinedData>(data_).hint;
  return hint && !hint->empty() ? *hint : kNoHint;
}

bool Value::undefined_is_unsafe() const { return std::get<UndefinedData>(data_).unsafe; }

std::string Value::TypeName() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kSequence:
      switch (as_sequence().kind) {
        case SequenceKind::kList:
          return "list";
        case SequenceKind::kTuple:
          return "tuple";
        case SequenceKind::kGenerator:
          return "generator";
      }
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kObject:
      return as_object()->TypeName();
  }
  return "object";
}

bool Value::Truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return as_bool();
    case Kind::kInt:
      return as_int() != 0;
    case Kind::kFloat:
      return as_double() != 0;
    case Kind::kString:
      return !as_string().empty();
    case Kind::kSequence:
      return is_generator() || !items().empty();
    case Kind::kDict:
      return as_dict().size() > 0;
    case Kind::kObject:
      return true;
  }
  return true;
}

std::string Value::Str() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return as_string();
    default:
      return Repr();
  }
}

namespace {
// Values built by a template can nest without bound (`{% set ns.x = [ns.x] %}` in a loop) or
// even hold themselves (a namespace attribute set to the namespace): recursion over a value
// stops here instead of exhausting the stack.
constexpr int kMaxValueDepth = 100;
thread_local int repr_depth = 0;
}  // namespace

std::string Value::Repr() const {
  if (repr_depth > kMaxValueDepth) return "...";
  struct DepthScope {
    DepthScope() { ++repr_depth; }
    ~DepthScope() { --repr_depth; }
  } depth_scope;
  switch (kind()) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return as_bool() ? "True" : "False";
    case Kind::kInt:
      return absl::StrCat(as_int());
    case Kind::kFloat:
      return PythonFloatRepr(as_double());
    case Kind::kString:
      return PythonStringRepr(as_string());
    case Kind::kSequence: {
      const Sequence& seq = as_sequence();
      if (seq.kind == SequenceKind::kGenerator) return "<generator object>";
      std::string out = seq.kind == SequenceKind::kTuple ? "(" : "[";
      for (size_t i = 0; i < seq.items.size(); ++i) {
        if (i > 0) out += ", ";
        out += seq.items[i].Repr();
      }
      if (seq.kind == SequenceKind::kTuple && seq.items.size() == 1) out += ",";
      out += seq.kind == SequenceKind::kTuple ? ")" : "]";
      return out;
    }
    case Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, v] : as_dict().entries()) {
        if (!first) out += ", ";
        first = false;
        absl::StrAppend(&out, k.Repr(), ": ", v.Repr());
      }
      return out + "}";
    }
    case Kind::kObject:
      return as_object()->Repr();
  }
  return "";
}

namespace {
bool EqualsAt(const Value& a, const Value& b, int depth);
}  // namespace

bool Equals(const Value& a, const Value& b) { return EqualsAt(a, b, 0); }

namespace {
bool EqualsAt(const Value& a, const Value& b, int depth) {
  using Kind = Value::Kind;
  if (depth > kMaxValueDepth) return false;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kString:
      return a.as_string() == b.as_string();
    case Kind::kSequence: {
      const Sequence& x = a.as_sequence();
      const Sequence& y = b.as_sequence();
      if (x.kind == SequenceKind::kGenerator || y.kind == SequenceKind::kGenerator) {
        return &x == &y;
      }
      if (x.kind != y.kind || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!EqualsAt(x.items[i], y.items[i], depth + 1)) return false;
      }
      return true;
    }
    case Kind::kDict: {
      const Dict& x = a.as_dict();
      const Dict& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.entries()) {
        const Value* other = y.Find(k);
        if (other == nullptr || !EqualsAt(v, *other, depth + 1)) return false;
      }
      return true;
    }
    case Kind::kObject:
      return a.as_object() == b.as_object();
    default:
      return false;
  }
}
}  // namespace

absl::StatusOr<bool> LessThan(const Value& a, const Value& b) {
  static thread_local int depth = 0;
  if (depth > kMaxValueDepth) return absl::ResourceExhaustedError("values nest too deeply");
  struct DepthScope {
    DepthScope() { ++depth; }
    ~DepthScope() { --depth; }
  } depth_scope;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();  // UTF-8 order
  if (a.is_sequence() && b.is_sequence() && !a.is_generator() &&
      a.as_sequence().kind == b.as_sequence().kind) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equals(x[i], y[i])) continue;
      return LessThan(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

absl::Status CheckHashable(const Value& key) {
  if (key.is_dict() || (key.is_sequence() && key.as_sequence().kind == SequenceKind::kList)) {
    return absl::InvalidArgumentError(absl::StrCat("unhashable type: '", key.TypeName(), "'"));
  }
  return absl::OkStatus();
}

}  // namespace moeserve::engine::jinja
