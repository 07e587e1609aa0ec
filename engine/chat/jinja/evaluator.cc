#include "engine/chat/jinja/evaluator.h"

#include <cstdlib>
#include <type_traits>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"
#include "engine/chat/jinja/builtins.h"
#include "engine/chat/jinja/python_text.h"

namespace moeserve::engine::jinja {
namespace {

constexpr char kLocatedPayload[] = "moeserve.jinja/located";

// Prefixes "line N: " to an error the first time it passes a node, so the innermost node
// names the line; raise_exception() messages pass through untouched.
absl::Status Locate(absl::Status status, int line) {
  if (status.ok() || status.GetPayload(kLocatedPayload) ||
      status.GetPayload(kRaiseExceptionPayload)) {
    return status;
  }
  absl::Status located(status.code(), absl::StrCat("line ", line, ": ", status.message()));
  located.SetPayload(kLocatedPayload, absl::Cord("1"));
  return located;
}

absl::Status UndefinedError(const Value& undefined) {
  return absl::InvalidArgumentError(undefined.undefined_hint());
}

// `loop` inside a for body: index, index0, revindex, first, last, length, previtem, ...
class LoopObject final : public Object {
 public:
  explicit LoopObject(std::shared_ptr<const std::vector<Value>> items) : items_(std::move(items)) {}
  void set_index0(int64_t index0) { index0_ = index0; }

  std::string TypeName() const override { return "LoopContext"; }
  std::string Repr() const override {
    return absl::StrCat("<LoopContext ", index0_ + 1, "/", items_->size(), ">");
  }
  std::optional<Value> GetAttr(std::string_view name) const override {
    const auto length = static_cast<int64_t>(items_->size());
    if (name == "index") return Value::Int(index0_ + 1);
    if (name == "index0") return Value::Int(index0_);
    if (name == "revindex") return Value::Int(length - index0_);
    if (name == "revindex0") return Value::Int(length - index0_ - 1);
    if (name == "first") return Value::Bool(index0_ == 0);
    if (name == "last") return Value::Bool(index0_ == length - 1);
    if (name == "length") return Value::Int(length);
    if (name == "depth") return Value::Int(1);
    if (name == "depth0") return Value::Int(0);
    if (name == "previtem") {
      if (index0_ == 0) return Value::Undefined("there is no previous item");
      return (*items_)[index0_ - 1];
    }
    if (name == "nextitem") {
      if (index0_ + 1 >= length) return Value::Undefined("there is no next item");
      return (*items_)[index0_ + 1];
    }
    if (name == "cycle") {
      return Value::FromObject(std::make_shared<Cycle>(index0_));
    }
    return std::nullopt;
  }

 private:
  // loop.cycle('odd', 'even')
  class Cycle final : public Object {
   public:
    explicit Cycle(int64_t index0) : index0_(index0) {}
    std::string TypeName() const override { return "method"; }
    std::string Repr() const override { return "<bound method LoopContext.cycle>"; }
    bool IsCallable() const override { return true; }
    absl::StatusOr<Value> Call(Evaluator&, CallArgs args) override {
      if (args.positional.empty()) return absl::InvalidArgumentError("no items for cycling given");
      return args.positional[index0_ % args.positional.size()];
    }

   private:
    int64_t index0_;
  };

  std::shared_ptr<const std::vector<Value>> items_;
  int64_t index0_ = 0;
};

}  // namespace

// {% macro name(params) %}: called like a function, renders its body to a string.
class Macro final : public Object {
 public:
  Macro(const MacroStmt* stmt, std::shared_ptr<Evaluator::Scope> closure)
      : stmt_(stmt), closure_(std::move(closure)) {}
  std::string TypeName() const override { return "Macro"; }
  std::string Repr() const override { return absl::StrCat("<Macro '", stmt_->name, "'>"); }
  bool IsCallable() const override { return true; }

  absl::StatusOr<Value> Call(Evaluator& evaluator, CallArgs args) override {
    auto scope = std::make_shared<Evaluator::Scope>();
    scope->parent = closure_;
    const auto& params = stmt_->params;
    std::vector<Value> varargs;
    for (size_t i = 0; i < args.positional.size(); ++i) {
      if (i < params.size()) {
        scope->vars[params[i].name] = std::move(args.positional[i]);
      } else {
        varargs.push_back(std::move(args.positional[i]));
      }
    }
    Dict kwargs;
    for (auto& [name, value] : args.keyword) {
      bool is_param = false;
      for (size_t i = 0; i < params.size(); ++i) {
        if (params[i].name != name) continue;
        if (i < args.positional.size()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "macro '", stmt_->name, "' got multiple values for argument '", name, "'"));
        }
        is_param = true;
      }
      if (is_param) {
        scope->vars[name] = std::move(value);
      } else {
        kwargs.Set(Value::String(name), std::move(value));
      }
    }
    for (const MacroParam& param : params) {
      if (scope->vars.contains(param.name)) continue;
      if (param.default_value == nullptr) {
        scope->vars[param.name] =
            Value::Undefined(absl::StrCat("parameter '", param.name, "' was not provided"));
        continue;
      }
      absl::StatusOr<Value> value = evaluator.Eval(*param.default_value, scope);
      if (!value.ok()) return value.status();
      scope->vars[param.name] = *std::move(value);
    }
    scope->vars["varargs"] = Value::Tuple(std::move(varargs));
    scope->vars["kwargs"] = Value::FromDict(std::move(kwargs));
    absl::StatusOr<std::string> text = evaluator.Capture(stmt_->body, scope);
    if (!text.ok()) return text.status();
    return Value::String(*std::move(text));
  }

 private:
  const MacroStmt* stmt_;
  std::shared_ptr<Evaluator::Scope> closure_;
};

Evaluator::Evaluator(const RenderLimits& limits, Dict globals)
    : limits_(limits), globals_(std::move(globals)) {}

absl::StatusOr<std::string> Evaluator::Render(const Body& body, const Dict& context) {
  char base_marker = 0;
  stack_base_ = &base_marker;
  auto root = std::make_shared<Scope>();
  for (const auto& [key, value] : context.entries()) root->vars[key.Str()] = value;
  std::string output;
  output_ = &output;
  absl::StatusOr<Flow> flow = ExecBody(body, root);
  output_ = nullptr;
  if (!flow.ok()) return flow.status();
  return output;
}

absl::Status Evaluator::Charge(int64_t units) {
  work_ += units;
  if (work_ > limits_.max_work) {
    return absl::ResourceExhaustedError(
        absl::StrCat("rendering took more than ", limits_.max_work,
                     " steps (loop iterations, statements, items processed)"));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::CheckSize(size_t size) const {
  if (static_cast<int64_t>(size) > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a value or the output would exceed ", limits_.max_output_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::CheckStack() const {
  char marker = 0;
  const int64_t used = std::abs(static_cast<int64_t>(stack_base_ - &marker));
  if (used > limits_.max_stack_bytes) {
    return absl::ResourceExhaustedError("template recursion is too deep");
  }
  return absl::OkStatus();
}

absl::Status Evaluator::Emit(std::string_view text) {
  if (absl::Status status = CheckSize(output_->size() + text.size()); !status.ok()) return status;
  output_->append(text);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Evaluator::Capture(const Body& body, const ScopePtr& scope) {
  std::string buffer;
  std::string* saved = output_;
  output_ = &buffer;
  absl::StatusOr<Flow> flow = ExecBody(body, scope);
  output_ = saved;
  if (!flow.ok()) return flow.status();
  return buffer;
}

Value Evaluator::Lookup(const std::string& name, const Scope& scope) const {
  for (const Scope* s = &scope; s != nullptr; s = s->parent.get()) {
    if (auto it = s->vars.find(name); it != s->vars.end()) return it->second;
  }
  if (const Value* global = globals_.Find(name)) return *global;
  return Value::Undefined(absl::StrCat("'", name, "' is undefined"));
}

// ---- statements ----

absl::StatusOr<Evaluator::Flow> Evaluator::ExecBody(const Body& body, const ScopePtr& scope) {
  for (const StmtPtr& stmt : body) {
    absl::StatusOr<Flow> flow = ExecStmt(*stmt, scope);
    if (!flow.ok()) return Locate(flow.status(), stmt->line);
    if (*flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Evaluator::Flow> Evaluator::ExecStmt(const Stmt& stmt, const ScopePtr& scope) {
  if (absl::Status status = Charge(1); !status.ok()) return status;
  if (absl::Status status = CheckStack(); !status.ok()) return status;
  return std::visit(
      [&](const auto& node) -> absl::StatusOr<Flow> {
        using T = std::decay_t<decltype(node)>;
        if constexpr (std::is_same_v<T, TextStmt>) {
          if (absl::Status status = Emit(node.text); !status.ok()) return status;
          return Flow::kNormal;
        } else if constexpr (std::is_same_v<T, OutputStmt>) {
          absl::StatusOr<Value> value = Eval(*node.expr, scope);
          if (!value.ok()) return value.status();
          if (absl::Status status = Emit(value->Str()); !status.ok()) return status;
          return Flow::kNormal;
        } else if constexpr (std::is_same_v<T, IfStmt>) {
          for (const auto& [condition, body] : node.branches) {
            absl::StatusOr<Value> value = Eval(*condition, scope);
            if (!value.ok()) return value.status();
            if (value->Truthy()) return ExecBody(body, scope);
          }
          return ExecBody(node.else_body, scope);
        } else if constexpr (std::is_same_v<T, ForStmt>) {
          return ExecFor(node, scope);
        } else if constexpr (std::is_same_v<T, SetStmt>) {
          if (absl::Status status = ExecSet(node, scope); !status.ok()) return status;
          return Flow::kNormal;
        } else if constexpr (std::is_same_v<T, MacroStmt>) {
          scope->vars[node.name] = Value::FromObject(std::make_shared<Macro>(&node, scope));
          return Flow::kNormal;
        } else if constexpr (std::is_same_v<T, WithStmt>) {
          auto inner = std::make_shared<Scope>();
          inner->parent = scope;
          for (const auto& [target, expr] : node.assignments) {
            absl::StatusOr<Value> value = Eval(*expr, scope);
            if (!value.ok()) return value.status();
            if (absl::Status s = Assign(target, *std::move(value), *inner); !s.ok()) return s;
          }
          return ExecBody(node.body, inner);
        } else if constexpr (std::is_same_v<T, ScopeStmt>) {
          auto inner = std::make_shared<Scope>();
          inner->parent = scope;
          return ExecBody(node.body, inner);
        } else if constexpr (std::is_same_v<T, FilterBlockStmt>) {
          auto inner = std::make_shared<Scope>();
          inner->parent = scope;
          absl::StatusOr<std::string> text = Capture(node.body, inner);
          if (!text.ok()) return text.status();
          absl::StatusOr<Value> value =
              ApplyFilters(node.filters, Value::String(*std::move(text)), scope);
          if (!value.ok()) return value.status();
          if (absl::Status status = Emit(value->Str()); !status.ok()) return status;
          return Flow::kNormal;
        } else if constexpr (std::is_same_v<T, BreakStmt>) {
          return Flow::kBreak;
        } else {
          static_assert(std::is_same_v<T, ContinueStmt>);
          return Flow::kContinue;
        }
      },
      stmt.node);
}

absl::StatusOr<Evaluator::Flow> Evaluator::ExecFor(const ForStmt& stmt, const ScopePtr& scope) {
  absl::StatusOr<Value> iterable = Eval(*stmt.iterable, scope);
  if (!iterable.ok()) return iterable.status();
  absl::StatusOr<std::vector<Value>> all_items = Iterate(*iterable);
  if (!all_items.ok()) return all_items.status();
  // `for x in y if cond`: the loop (and loop.length) sees only the items that pass.
  auto items = std::make_shared<std::vector<Value>>();
  if (stmt.filter == nullptr) {
    *items = *std::move(all_items);
  } else {
    for (Value& item : *all_items) {
      auto probe = std::make_shared<Scope>();
      probe->parent = scope;
      if (absl::Status s = Assign(stmt.target, item, *probe); !s.ok()) return s;
      absl::StatusOr<Value> keep = Eval(*stmt.filter, probe);
      if (!keep.ok()) return keep.status();
      if (keep->Truthy()) items->push_back(std::move(item));
    }
  }
  if (items->empty()) {
    auto inner = std::make_shared<Scope>();
    inner->parent = scope;
    absl::StatusOr<Flow> flow = ExecBody(stmt.else_body, inner);
    if (!flow.ok()) return flow.status();
    return Flow::kNormal;
  }
  auto loop = std::make_shared<LoopObject>(items);
  const Value loop_value = Value::FromObject(loop);
  for (size_t i = 0; i < items->size(); ++i) {
    if (absl::Status status = Charge(1); !status.ok()) return status;
    loop->set_index0(static_cast<int64_t>(i));
    // A fresh scope per iteration: Jinja's loop body starts from the enclosing values each time.
    auto inner = std::make_shared<Scope>();
    inner->parent = scope;
    inner->vars["loop"] = loop_value;
    if (absl::Status s = Assign(stmt.target, (*items)[i], *inner); !s.ok()) return s;
    absl::StatusOr<Flow> flow = ExecBody(stmt.body, inner);
    if (!flow.ok()) return flow.status();
    if (*flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

absl::Status Evaluator::ExecSet(const SetStmt& stmt, const ScopePtr& scope) {
  Value value;
  if (stmt.value != nullptr) {
    absl::StatusOr<Value> evaluated = Eval(*stmt.value, scope);
    if (!evaluated.ok()) return evaluated.status();
    value = *std::move(evaluated);
  } else {
    absl::StatusOr<std::string> text = Capture(stmt.body, scope);
    if (!text.ok()) return text.status();
    absl::StatusOr<Value> filtered =
        ApplyFilters(stmt.block_filters, Value::String(*std::move(text)), scope);
    if (!filtered.ok()) return filtered.status();
    value = *std::move(filtered);
  }
  if (!stmt.target.namespace_attribute.empty()) {
    const Value ns = Lookup(stmt.target.names[0], *scope);
    auto* object = ns.is_object() ? dynamic_cast<Namespace*>(ns.as_object()) : nullptr;
    if (object == nullptr) {
      return absl::InvalidArgumentError("cannot assign attribute on non-namespace object");
    }
    object->SetAttr(stmt.target.namespace_attribute, std::move(value));
    return absl::OkStatus();
  }
  return Assign(stmt.target, std::move(value), *scope);
}

absl::Status Evaluator::Assign(const AssignTarget& target, Value value, Scope& scope) {
  if (!target.is_tuple) {
    scope.vars[target.names[0]] = std::move(value);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<Value>> parts = Iterate(value);
  if (!parts.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot unpack non-iterable ", value.TypeName(), " object"));
  }
  if (parts->size() != target.names.size()) {
    return absl::InvalidArgumentError(
        parts->size() > target.names.size()
            ? absl::StrCat("too many values to unpack (expected ", target.names.size(), ")")
            : absl::StrCat("not enough values to unpack (expected ", target.names.size(), ", got ",
                           parts->size(), ")"));
  }
  for (size_t i = 0; i < parts->size(); ++i) scope.vars[target.names[i]] = (*parts)[i];
  return absl::OkStatus();
}

// ---- expressions ----

absl::StatusOr<Value> Evaluator::Eval(const Expr& expr, const ScopePtr& scope) {
  if (absl::Status status = CheckStack(); !status.ok()) return Locate(status, expr.line);
  absl::StatusOr<Value> value = EvalNode(expr, scope);
  if (!value.ok()) return Locate(value.status(), expr.line);
  return value;
}

absl::StatusOr<CallArgs> Evaluator::EvalArgs(const CallArgsExpr& args, const ScopePtr& scope) {
  CallArgs out;
  for (const ExprPtr& arg : args.positional) {
    absl::StatusOr<Value> value = Eval(*arg, scope);
    if (!value.ok()) return value.status();
    out.positional.push_back(*std::move(value));
  }
  for (const auto& [name, arg] : args.keyword) {
    absl::StatusOr<Value> value = Eval(*arg, scope);
    if (!value.ok()) return value.status();
    out.keyword.emplace_back(name, *std::move(value));
  }
  return out;
}

absl::StatusOr<Value> Evaluator::ApplyFilters(const std::vector<ExprPtr>& filters, Value value,
                                              const ScopePtr& scope) {
  for (const ExprPtr& expr : filters) {
    const auto& filter = std::get<FilterExpr>(expr->node);
    absl::StatusOr<CallArgs> args = EvalArgs(filter.args, scope);
    if (!args.ok()) return Locate(args.status(), expr->line);
    absl::StatusOr<Value> next = ApplyFilter(*this, filter.name, value, *std::move(args));
    if (!next.ok()) return Locate(next.status(), expr->line);
    value = *std::move(next);
  }
  return value;
}

absl::StatusOr<Value> Evaluator::EvalNode(const Expr& expr, const ScopePtr& scope) {
  return std::visit(
      [&](const auto& node) -> absl::StatusOr<Value> {
        using T = std::decay_t<decltype(node)>;
        if constexpr (std::is_same_v<T, LiteralExpr>) {
          return node.value;
        } else if constexpr (std::is_same_v<T, NameExpr>) {
          return Lookup(node.name, *scope);
        } else if constexpr (std::is_same_v<T, ListExpr>) {
          std::vector<Value> items;
          for (const ExprPtr& item : node.items) {
            absl::StatusOr<Value> value = Eval(*item, scope);
            if (!value.ok()) return value.status();
            items.push_back(*std::move(value));
          }
          return Value::List(std::move(items),
                             node.is_tuple ? SequenceKind::kTuple : SequenceKind::kList);
        } else if constexpr (std::is_same_v<T, DictExpr>) {
          Dict dict;
          for (const auto& [key_expr, value_expr] : node.entries) {
            absl::StatusOr<Value> key = Eval(*key_expr, scope);
            if (!key.ok()) return key.status();
            if (absl::Status status = CheckHashable(*key); !status.ok()) return status;
            absl::StatusOr<Value> value = Eval(*value_expr, scope);
            if (!value.ok()) return value.status();
            dict.Set(*std::move(key), *std::move(value));
          }
          return Value::FromDict(std::move(dict));
        } else if constexpr (std::is_same_v<T, GetAttrExpr>) {
          absl::StatusOr<Value> object = Eval(*node.object, scope);
          if (!object.ok()) return object.status();
          return GetAttribute(*object, node.attribute);
        } else if constexpr (std::is_same_v<T, GetItemExpr>) {
          absl::StatusOr<Value> object = Eval(*node.object, scope);
          if (!object.ok()) return object.status();
          if (const auto* slice = std::get_if<SliceExpr>(&node.key->node)) {
            return EvalSlice(*object, *slice, scope);
          }
          absl::StatusOr<Value> key = Eval(*node.key, scope);
          if (!key.ok()) return key.status();
          return GetItem(*object, *key);
        } else if constexpr (std::is_same_v<T, SliceExpr>) {
          return absl::InvalidArgumentError("a slice is only valid inside []");
        } else if constexpr (std::is_same_v<T, CallExpr>) {
          absl::StatusOr<Value> callee = Eval(*node.callee, scope);
          if (!callee.ok()) return callee.status();
          absl::StatusOr<CallArgs> args = EvalArgs(node.args, scope);
          if (!args.ok()) return args.status();
          return Call(*callee, *std::move(args));
        } else if constexpr (std::is_same_v<T, FilterExpr>) {
          absl::StatusOr<Value> operand = Eval(*node.operand, scope);
          if (!operand.ok()) return operand.status();
          absl::StatusOr<CallArgs> args = EvalArgs(node.args, scope);
          if (!args.ok()) return args.status();
          return ApplyFilter(*this, node.name, *operand, *std::move(args));
        } else if constexpr (std::is_same_v<T, TestExpr>) {
          absl::StatusOr<Value> operand = Eval(*node.operand, scope);
          if (!operand.ok()) return operand.status();
          absl::StatusOr<CallArgs> args = EvalArgs(node.args, scope);
          if (!args.ok()) return args.status();
          absl::StatusOr<bool> result = ApplyTest(*this, node.name, *operand, *std::move(args));
          if (!result.ok()) return result.status();
          return Value::Bool(*result != node.negated);
        } else if constexpr (std::is_same_v<T, UnaryExpr>) {
          absl::StatusOr<Value> operand = Eval(*node.operand, scope);
          if (!operand.ok()) return operand.status();
          if (node.op == UnaryOp::kNot) return Value::Bool(!operand->Truthy());
          if (operand->is_undefined()) return UndefinedError(*operand);
          if (!operand->is_number()) {
            return absl::InvalidArgumentError(absl::StrCat("bad operand type for unary ",
                                                           node.op == UnaryOp::kNegate ? "-" : "+",
                                                           ": '", operand->TypeName(), "'"));
          }
          if (node.op == UnaryOp::kPlus) {
            return operand->is_bool() ? Value::Int(operand->as_int()) : *operand;
          }
          if (operand->is_float()) return Value::Float(-operand->as_double());
          if (operand->as_int() == INT64_MIN) {
            return absl::OutOfRangeError("integer overflow (integers are 64-bit here)");
          }
          return Value::Int(-operand->as_int());
        } else if constexpr (std::is_same_v<T, BinaryExpr>) {
          return EvalBinary(node, scope);
        } else if constexpr (std::is_same_v<T, CompareExpr>) {
          return EvalCompare(node, scope);
        } else {
          static_assert(std::is_same_v<T, ConditionalExpr>);
          absl::StatusOr<Value> condition = Eval(*node.condition, scope);
          if (!condition.ok()) return condition.status();
          if (condition->Truthy()) return Eval(*node.then_expr, scope);
          if (node.else_expr != nullptr) return Eval(*node.else_expr, scope);
          return Value::Undefined(
              "the inline if-expression evaluated to false and no else section was defined.");
        }
      },
      expr.node);
}

absl::StatusOr<Value> Evaluator::EvalBinary(const BinaryExpr& node, const ScopePtr& scope) {
  absl::StatusOr<Value> left = Eval(*node.left, scope);
  if (!left.ok()) return left.status();
  // and/or short-circuit and return an operand, as in Python.
  if (node.op == BinaryOp::kAnd && !left->Truthy()) return left;
  if (node.op == BinaryOp::kOr && left->Truthy()) return left;
  absl::StatusOr<Value> right = Eval(*node.right, scope);
  if (!right.ok()) return right.status();
  if (node.op == BinaryOp::kAnd || node.op == BinaryOp::kOr) return right;
  if (node.op == BinaryOp::kConcat) {
    std::string text = left->Str();
    text += right->Str();
    if (absl::Status status = CheckSize(text.size()); !status.ok()) return status;
    if (absl::Status status = Charge(static_cast<int64_t>(text.size() / 64)); !status.ok()) {
      return status;
    }
    return Value::String(std::move(text));
  }
  return Arithmetic(node.op, *left, *right, *this);
}

absl::StatusOr<Value> Evaluator::EvalCompare(const CompareExpr& node, const ScopePtr& scope) {
  absl::StatusOr<Value> left = Eval(*node.first, scope);
  if (!left.ok()) return left.status();
  for (const auto& [op, right_expr] : node.rest) {
    absl::StatusOr<Value> right = Eval(*right_expr, scope);
    if (!right.ok()) return right.status();
    absl::StatusOr<bool> result = false;
    switch (op) {
      case CompareOp::kEq:
        result = Equals(*left, *right);
        break;
      case CompareOp::kNe:
        result = !Equals(*left, *right);
        break;
      case CompareOp::kIn:
      case CompareOp::kNotIn:
        result = Contains(*this, *right, *left);
        if (result.ok() && op == CompareOp::kNotIn) result = !*result;
        break;
      default: {
        for (const Value* v : {&*left, &*right}) {
          if (v->is_undefined()) return UndefinedError(*v);
        }
        const bool swap = op == CompareOp::kGt || op == CompareOp::kLe;
        result = swap ? LessThan(*right, *left) : LessThan(*left, *right);
        if (result.ok() && (op == CompareOp::kLe || op == CompareOp::kGe)) {
          result = !*result;
        }
        if (!result.ok()) {
          static constexpr const char* kSymbols[] = {"==", "!=", "<", "<=", ">", ">=", "", ""};
          return absl::InvalidArgumentError(absl::StrCat(
              "'", kSymbols[static_cast<int>(op)], "' not supported between instances of '",
              left->TypeName(), "' and '", right->TypeName(), "'"));
        }
      }
    }
    if (!result.ok()) return result.status();
    if (!*result) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<Value> Evaluator::EvalSlice(const Value& object, const SliceExpr& slice,
                                           const ScopePtr& scope) {
  std::optional<int64_t> bounds[3];
  const ExprPtr* parts[3] = {&slice.start, &slice.stop, &slice.step};
  for (int i = 0; i < 3; ++i) {
    if (*parts[i] == nullptr) continue;
    absl::StatusOr<Value> value = Eval(**parts[i], scope);
    if (!value.ok()) return value.status();
    if (value->is_none()) continue;
    if (!value->is_integral()) {
      return absl::InvalidArgumentError(
          "slice indices must be integers or None or have an __index__ method");
    }
    bounds[i] = value->as_int();
  }
  if (object.is_undefined()) return UndefinedError(object);
  const bool is_string = object.is_string();
  if (!is_string && (!object.is_sequence() || object.is_generator())) {
    return Value::Undefined(absl::StrCat("'", object.TypeName(), " object' is not subscriptable"));
  }
  const int64_t step = bounds[2].value_or(1);
  if (step == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  std::u32string code_points;
  if (is_string) code_points = DecodeUtf8(object.as_string());
  const int64_t length = is_string ? static_cast<int64_t>(code_points.size())
                                   : static_cast<int64_t>(object.items().size());
  // CPython's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> index, int64_t fallback) {
    if (!index) return fallback;
    int64_t i = *index;
    if (i < 0) {
      i += length;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= length) {
      i = step < 0 ? length - 1 : length;
    }
    return i;
  };
  const int64_t start = adjust(bounds[0], step < 0 ? length - 1 : 0);
  const int64_t stop = adjust(bounds[1], step < 0 ? -1 : length);
  if (absl::Status status = Charge(length); !status.ok()) return status;
  if (is_string) {
    std::u32string out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
      out.push_back(code_points[i]);
    return Value::String(EncodeUtf8(out));
  }
  std::vector<Value> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    out.push_back(object.items()[i]);
  }
  return Value::List(std::move(out), object.as_sequence().kind);
}

// ---- services ----

absl::StatusOr<Value> Evaluator::GetAttribute(const Value& object, std::string_view name) {
  if (object.is_undefined()) return UndefinedError(object);
  if (object.is_object()) {
    if (std::optional<Value> value = object.as_object()->GetAttr(name)) return *value;
  } else {
    if (std::optional<Value> method = LookupMethod(object, name)) return *method;
    if (object.is_dict()) {
      if (const Value* value = object.as_dict().Find(name)) return *value;
    }
  }
  return Value::Undefined(
      absl::StrCat("'", object.TypeName(), " object' has no attribute '", Sv(name), "'"));
}

absl::StatusOr<Value> Evaluator::GetItem(const Value& object, const Value& key) {
  if (object.is_undefined()) return UndefinedError(object);
  if (object.is_dict()) {
    if (const Value* value = object.as_dict().Find(key)) return *value;
  } else if ((object.is_sequence() && !object.is_generator()) || object.is_string()) {
    if (key.is_integral()) {
      int64_t index = key.as_int();
      if (object.is_string()) {
        const std::u32string code_points = DecodeUtf8(object.as_string());
        const auto length = static_cast<int64_t>(code_points.size());
        if (index < 0) index += length;
        if (index >= 0 && index < length) {
          return Value::String(EncodeUtf8(std::u32string(1, code_points[index])));
        }
      } else {
        const auto length = static_cast<int64_t>(object.items().size());
        if (index < 0) index += length;
        if (index >= 0 && index < length) return object.items()[index];
      }
      return Value::Undefined(
          absl::StrCat("'", object.TypeName(), " object' has no element ", key.as_int()));
    }
  }
  if (key.is_string()) return GetAttribute(object, key.as_string());
  return Value::Undefined(
      absl::StrCat("'", object.TypeName(), " object' has no element ", key.Repr()));
}

absl::StatusOr<std::vector<Value>> Evaluator::Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kSequence:
      if (absl::Status s = Charge(static_cast<int64_t>(value.items().size())); !s.ok()) return s;
      return value.items();
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (char32_t c : DecodeUtf8(value.as_string())) {
        chars.push_back(Value::String(EncodeUtf8(std::u32string(1, c))));
      }
      if (absl::Status s = Charge(static_cast<int64_t>(chars.size())); !s.ok()) return s;
      return chars;
    }
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& [key, unused] : value.as_dict().entries()) keys.push_back(key);
      if (absl::Status s = Charge(static_cast<int64_t>(keys.size())); !s.ok()) return s;
      return keys;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("'", value.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<Value> Evaluator::Call(const Value& callee, CallArgs args) {
  if (callee.is_undefined()) {
    return callee.undefined_is_unsafe() ? absl::PermissionDeniedError(callee.undefined_hint())
                                        : UndefinedError(callee);
  }
  if (!callee.is_callable()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", callee.TypeName(), "' object is not callable"));
  }
  if (call_depth_ >= limits_.max_call_depth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("macro calls nest deeper than ", limits_.max_call_depth));
  }
  ++call_depth_;
  // Keep the object alive for the call even if the call rebinds the name that held it.
  const std::shared_ptr<Object> object = callee.object_ptr();
  absl::StatusOr<Value> result = object->Call(*this, std::move(args));
  --call_depth_;
  return result;
}

}  // namespace moeserve::engine::jinja
