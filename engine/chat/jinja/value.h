// The values a Jinja template computes with, modelled on the Python objects Jinja2 sees when
// transformers renders a chat template: None, bool, int, float, str, list, tuple, dict
// (insertion-ordered), generators (what select/map return), Jinja's Undefined, and reference
// objects (namespace(), the loop variable, macros and built-in functions).
//
// Values are immutable and cheap to copy (containers are shared), matching transformers'
// ImmutableSandboxedEnvironment, where list.append and dict.update are refused; the one
// mutable thing is a Namespace's attributes (`{% set ns.x = ... %}`), which is why Object is
// held by shared, non-const pointer.
//
// Used by the parser (literals), the evaluator, filters and methods; not thread-safe beyond
// "distinct values may be used on distinct threads" (a Namespace is shared by its copies).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve::engine::jinja {

class Value;
class Evaluator;

// How a sequence prints and behaves: [1, 2] or (1, 2); a generator is always true, has no
// len() and prints as "<generator object>" (CPython adds an address we cannot match).
enum class SequenceKind { kList, kTuple, kGenerator };

struct Sequence {
  std::vector<Value> items;
  SequenceKind kind = SequenceKind::kList;
};

// An insertion-ordered mapping. Lookup compares keys with Python's == (so 1, 1.0 and True are
// one key); chat messages have a handful of keys, so a linear scan is the fast path.
class Dict {
 public:
  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  void Set(Value key, Value value);  // replaces in place, or appends
  const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  std::vector<std::pair<Value, Value>> entries_;
};

// Arguments of a call: f(1, 2, key=3).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Reference types: identity equality, always true.
class Object {
 public:
  virtual ~Object() = default;
  virtual std::string TypeName() const = 0;
  virtual std::string Repr() const = 0;
  // `x.name`; nullopt when there is no such attribute.
  virtual std::optional<Value> GetAttr(std::string_view name) const;
  virtual bool IsCallable() const { return false; }
  // Only called when IsCallable().
  virtual absl::StatusOr<Value> Call(Evaluator& evaluator, CallArgs args);
};

// namespace(a=1): the only mutable value; `{% set ns.a = 2 %}` writes through every copy.
class Namespace final : public Object {
 public:
  std::string TypeName() const override { return "Namespace"; }
  std::string Repr() const override;
  std::optional<Value> GetAttr(std::string_view name) const override;
  void SetAttr(std::string name, Value value);
  const Dict& attributes() const { return *attributes_; }

 private:
  std::shared_ptr<Dict> attributes_ = std::make_shared<Dict>();
};

namespace value_internal {
struct UndefinedData {
  std::shared_ptr<const std::string> hint;
  bool unsafe = false;
};
}  // namespace value_internal

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kSequence, kDict, kObject };

  // Undefined. `hint` is the reason an operation on it fails ("'foo' is undefined");
  // `unsafe` marks the Undefined the sandbox returns for list.append and friends, which
  // fails with a SecurityError when called.
  Value() = default;
  static Value Undefined(std::string hint, bool unsafe = false);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value String(std::string s);
  static Value List(std::vector<Value> items, SequenceKind kind = SequenceKind::kList);
  static Value Tuple(std::vector<Value> items) {
    return List(std::move(items), SequenceKind::kTuple);
  }
  static Value FromDict(Dict dict);
  static Value FromObject(std::shared_ptr<Object> object);

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_sequence() const { return kind() == Kind::kSequence; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_object() const { return kind() == Kind::kObject; }
  // bool is an int in Python: True + 1 == 2.
  bool is_integral() const { return is_int() || is_bool(); }
  bool is_number() const { return is_integral() || is_float(); }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return is_bool() ? as_bool() : std::get<int64_t>(data_); }
  double as_double() const {
    return is_float() ? std::get<double>(data_) : static_cast<double>(as_int());
  }
  const std::string& as_string() const { return *std::get<StringPtr>(data_); }
  const Sequence& as_sequence() const { return *std::get<SequencePtr>(data_); }
  const std::vector<Value>& items() const { return as_sequence().items; }
  const Dict& as_dict() const { return *std::get<DictPtr>(data_); }
  Object* as_object() const { return std::get<ObjectPtr>(data_).get(); }
  const std::shared_ptr<Object>& object_ptr() const { return std::get<ObjectPtr>(data_); }
  bool is_generator() const {
    return is_sequence() && as_sequence().kind == SequenceKind::kGenerator;
  }
  bool is_callable() const { return is_object() && as_object()->IsCallable(); }

  const std::string& undefined_hint() const;
  bool undefined_is_unsafe() const;

  // Python's type(x).__name__: 'str', 'int', 'list', 'dict', 'NoneType', ...
  std::string TypeName() const;
  // bool(x).
  bool Truthy() const;
  // str(x): what {{ x }} prints. Undefined prints as "".
  std::string Str() const;
  // repr(x): how x prints inside a container.
  std::string Repr() const;

 private:
  using UndefinedData = value_internal::UndefinedData;
  using StringPtr = std::shared_ptr<const std::string>;
  using SequencePtr = std::shared_ptr<const Sequence>;
  using DictPtr = std::shared_ptr<const Dict>;
  using ObjectPtr = std::shared_ptr<Object>;
  // The alternatives' order is Kind's.
  std::variant<UndefinedData, std::nullptr_t, bool, int64_t, double, StringPtr, SequencePtr,
               DictPtr, ObjectPtr>
      data_;
};

// Python's ==.
bool Equals(const Value& a, const Value& b);

// Python's <, for sorting and comparisons: numbers with numbers, str with str (code point
// order), sequences lexicographically. Anything else is a TypeError, like CPython's.
absl::StatusOr<bool> LessThan(const Value& a, const Value& b);

// A dict key must be hashable: not a list, dict or generator.
absl::Status CheckHashable(const Value& key);

}  // namespace moeserve::engine::jinja
