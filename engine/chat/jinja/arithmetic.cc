// Python's binary operators and `in` on Jinja values (declared in evaluator.h).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/evaluator.h"
#include "engine/chat/jinja/python_text.h"
#include "engine/chat/jinja/string_format.h"

namespace moeserve::engine::jinja {
namespace {

const char* Symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSubtract:
      return "-";
    case BinaryOp::kMultiply:
      return "*";
    case BinaryOp::kDivide:
      return "/";
    case BinaryOp::kFloorDivide:
      return "//";
    case BinaryOp::kModulo:
      return "%";
    case BinaryOp::kPower:
      return "** or pow()";
    default:
      return "?";
  }
}

absl::Status Unsupported(BinaryOp op, const Value& a, const Value& b) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ", Symbol(op),
                                                 ": '", a.TypeName(), "' and '", b.TypeName(),
                                                 "'"));
}

absl::Status Overflow() {
  return absl::OutOfRangeError("integer overflow (integers are 64-bit here)");
}

absl::StatusOr<Value> IntArithmetic(BinaryOp op, int64_t a, int64_t b) {
  int64_t result = 0;
  switch (op) {
    case BinaryOp::kAdd:
      if (__builtin_add_overflow(a, b, &result)) return Overflow();
      return Value::Int(result);
    case BinaryOp::kSubtract:
      if (__builtin_sub_overflow(a, b, &result)) return Overflow();
      return Value::Int(result);
    case BinaryOp::kMultiply:
      if (__builtin_mul_overflow(a, b, &result)) return Overflow();
      return Value::Int(result);
    case BinaryOp::kDivide:
      if (b == 0) return absl::InvalidArgumentError("division by zero");
      return Value::Float(static_cast<double>(a) / static_cast<double>(b));
    case BinaryOp::kFloorDivide:
    case BinaryOp::kModulo: {
      if (b == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
      if (a == INT64_MIN && b == -1) return Overflow();
      int64_t quotient = a / b;
      int64_t remainder = a % b;
      // Python rounds toward negative infinity; the remainder takes the divisor's sign.
      if (remainder != 0 && ((remainder < 0) != (b < 0))) {
        quotient -= 1;
        remainder += b;
      }
      return Value::Int(op == BinaryOp::kFloorDivide ? quotient : remainder);
    }
    case BinaryOp::kPower: {
      if (b < 0) return Value::Float(std::pow(static_cast<double>(a), static_cast<double>(b)));
      int64_t base = a;
      result = 1;
      for (int64_t e = b; e > 0; e >>= 1) {
        if ((e & 1) && __builtin_mul_overflow(result, base, &result)) return Overflow();
        if (e > 1 && __builtin_mul_overflow(base, base, &base)) return Overflow();
      }
      return Value::Int(result);
    }
    default:
      return absl::InternalError("not an arithmetic operator");
  }
}

absl::StatusOr<Value> FloatArithmetic(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::kAdd:
      return Value::Float(a + b);
    case BinaryOp::kSubtract:
      return Value::Float(a - b);
    case BinaryOp::kMultiply:
      return Value::Float(a * b);
    case BinaryOp::kDivide:
      if (b == 0) return absl::InvalidArgumentError("float division by zero");
      return Value::Float(a / b);
    case BinaryOp::kFloorDivide:
    case BinaryOp::kModulo: {
      if (b == 0) return absl::InvalidArgumentError("float modulo");
      // CPython's float_divmod.
      double mod = std::fmod(a, b);
      double div = (a - mod) / b;
      if (mod != 0) {
        if ((b < 0) != (mod < 0)) {
          mod += b;
          div -= 1.0;
        }
      } else {
        mod = std::copysign(0.0, b);
      }
      double floordiv = 0;
      if (div != 0) {
        floordiv = std::floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
      } else {
        floordiv = std::copysign(0.0, a / b);
      }
      return Value::Float(op == BinaryOp::kFloorDivide ? floordiv : mod);
    }
    case BinaryOp::kPower:
      if (a == 0 && b < 0) {
        return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
      }
      return Value::Float(std::pow(a, b));
    default:
      return absl::InternalError("not an arithmetic operator");
  }
}

absl::StatusOr<Value> Repeat(const Value& sequence, int64_t times, const Evaluator& evaluator) {
  if (times < 0) times = 0;
  if (sequence.is_string()) {
    const std::string& s = sequence.as_string();
    if (!s.empty() && times > 0) {
      if (absl::Status status = evaluator.CheckSize(s.size() * std::min<int64_t>(times, INT32_MAX));
          !status.ok()) {
        return status;
      }
    }
    std::string out;
    for (int64_t i = 0; i < times && !s.empty(); ++i) out += s;
    return Value::String(std::move(out));
  }
  const auto& items = sequence.items();
  if (!items.empty() && times > 0) {
    if (absl::Status status =
            evaluator.CheckSize(items.size() * std::min<int64_t>(times, INT32_MAX));
        !status.ok()) {
      return status;
    }
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < times && !items.empty(); ++i)
    out.insert(out.end(), items.begin(), items.end());
  return Value::List(std::move(out), sequence.as_sequence().kind);
}

}  // namespace

absl::StatusOr<Value> Arithmetic(BinaryOp op, const Value& a, const Value& b,
                                 const Evaluator& evaluator) {
  for (const Value* v : {&a, &b}) {
    if (v->is_undefined()) return absl::InvalidArgumentError(v->undefined_hint());
  }
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return FloatArithmetic(op, a.as_double(), b.as_double());
    return IntArithmetic(op, a.as_int(), b.as_int());
  }
  const bool a_repeatable = a.is_string() || (a.is_sequence() && !a.is_generator());
  const bool b_repeatable = b.is_string() || (b.is_sequence() && !b.is_generator());
  switch (op) {
    case BinaryOp::kAdd:
      if (a.is_string() && b.is_string()) {
        if (absl::Status s = evaluator.CheckSize(a.as_string().size() + b.as_string().size());
            !s.ok()) {
          return s;
        }
        return Value::String(a.as_string() + b.as_string());
      }
      if (a.is_sequence() && b.is_sequence() && !a.is_generator() &&
          a.as_sequence().kind == b.as_sequence().kind) {
        if (absl::Status s = evaluator.CheckSize(a.items().size() + b.items().size()); !s.ok()) {
          return s;
        }
        std::vector<Value> items = a.items();
        items.insert(items.end(), b.items().begin(), b.items().end());
        return Value::List(std::move(items), a.as_sequence().kind);
      }
      if (a.is_string() || (a.is_sequence() && !a.is_generator())) {
        return absl::InvalidArgumentError(absl::StrCat("can only concatenate ", a.TypeName(),
                                                       " (not \"", b.TypeName(), "\") to ",
                                                       a.TypeName()));
      }
      return Unsupported(op, a, b);
    case BinaryOp::kMultiply:
      if (a_repeatable && b.is_integral()) return Repeat(a, b.as_int(), evaluator);
      if (b_repeatable && a.is_integral()) return Repeat(b, a.as_int(), evaluator);
      if (a_repeatable || b_repeatable) {
        return absl::InvalidArgumentError(
            absl::StrCat("can't multiply sequence by non-int of type '",
                         (a_repeatable ? b : a).TypeName(), "'"));
      }
      return Unsupported(op, a, b);
    case BinaryOp::kModulo:
      if (a.is_string()) return PercentFormat(a.as_string(), b);
      return Unsupported(op, a, b);
    default:
      return Unsupported(op, a, b);
  }
}

absl::StatusOr<bool> Contains(Evaluator& evaluator, const Value& haystack, const Value& needle) {
  if (haystack.is_string()) {
    if (!needle.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'in <string>' requires string as left operand, not ", needle.TypeName()));
    }
    return haystack.as_string().find(needle.as_string()) != std::string::npos;
  }
  if (haystack.is_dict()) {
    if (absl::Status status = CheckHashable(needle); !status.ok()) return status;
    return haystack.as_dict().Find(needle) != nullptr;
  }
  if (haystack.is_sequence() || haystack.is_undefined()) {
    absl::StatusOr<std::vector<Value>> items = evaluator.Iterate(haystack);
    if (!items.ok()) return items.status();
    for (const Value& item : *items) {
      if (Equals(item, needle)) return true;
    }
    return false;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("argument of type '", haystack.TypeName(), "' is not iterable"));
}

}  // namespace moeserve::engine::jinja
