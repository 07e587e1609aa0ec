// Runs a parsed Jinja template: walks the statement tree, evaluates expressions with Python
// semantics, and appends to the output. Scoping follows Jinja2 3.1: `if` shares its scope,
// each `for` iteration gets a fresh one (so `{% set %}` inside a loop never leaks out or into
// the next iteration; namespace() is the way to carry state), macros see the scope they were
// defined in.
//
// Every render is bounded (RenderLimits): output bytes, work units (statements, loop
// iterations and items copied by filters), macro call depth and native stack use, so a hostile
// template (it can come from a user's --chat-template file) or hostile input cannot hang the
// server or overflow its stack.
//
// One Evaluator per render, on the caller's thread; Template::Render (template.h) creates it.
// Filters, tests and methods (builtins.h) call back into it for attribute lookup, iteration,
// calls and budget accounting.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/chat/jinja/ast.h"
#include "engine/chat/jinja/value.h"

namespace moeserve::engine::jinja {

struct RenderLimits {
  // A rendered prompt is bounded by the model's context anyway; 16 MiB is far above any
  // real one and small enough to be harmless.
  int64_t max_output_bytes = int64_t{16} << 20;
  // Statements executed + loop iterations + items copied or compared by filters. A 1,000-turn
  // conversation through a real template costs well under a million.
  int64_t max_work = 20'000'000;
  int max_call_depth = 32;  // nested macro calls (recursion)
  // Native stack the evaluator may use below its entry point; the server's threads have MiBs.
  int64_t max_stack_bytes = int64_t{2} << 20;
};

class Evaluator {
 public:
  Evaluator(const RenderLimits& limits, Dict globals);

  // Renders `body` with `context` (messages, add_generation_prompt, ...) as its variables.
  // Errors are "line N: message"; raise_exception() errors carry kRaiseExceptionPayload.
  absl::StatusOr<std::string> Render(const Body& body, const Dict& context);

  // ---- services for filters, tests and methods ----

  // Jinja's environment.getattr (x.name: attribute, then item) and getitem (x[key]: item,
  // then attribute), as sandboxed: mutating methods are "unsafe" undefined values.
  absl::StatusOr<Value> GetAttribute(const Value& object, std::string_view name);
  absl::StatusOr<Value> GetItem(const Value& object, const Value& key);
  // Python's iter(): list items, a string's characters, a dict's keys; Undefined is empty.
  absl::StatusOr<std::vector<Value>> Iterate(const Value& value);
  absl::StatusOr<Value> Call(const Value& callee, CallArgs args);
  // Charges `units` of work against RenderLimits::max_work.
  absl::Status Charge(int64_t units);
  // Refuses a string or sequence of `size` bytes/items that would exceed the output cap.
  absl::Status CheckSize(size_t size) const;

 private:
  friend class Macro;
  struct Scope {
    absl::flat_hash_map<std::string, Value> vars;
    std::shared_ptr<Scope> parent;
  };
  using ScopePtr = std::shared_ptr<Scope>;
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> ExecBody(const Body& body, const ScopePtr& scope);
  absl::StatusOr<Flow> ExecStmt(const Stmt& stmt, const ScopePtr& scope);
  absl::StatusOr<Flow> ExecFor(const ForStmt& stmt, const ScopePtr& scope);
  absl::Status ExecSet(const SetStmt& stmt, const ScopePtr& scope);
  absl::Status Assign(const AssignTarget& target, Value value, Scope& scope);
  // Renders `body` into a string instead of the output.
  absl::StatusOr<std::string> Capture(const Body& body, const ScopePtr& scope);
  absl::Status Emit(std::string_view text);

  absl::StatusOr<Value> Eval(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalNode(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<CallArgs> EvalArgs(const CallArgsExpr& args, const ScopePtr& scope);
  absl::StatusOr<Value> EvalBinary(const BinaryExpr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalCompare(const CompareExpr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalSlice(const Value& object, const SliceExpr& slice,
                                  const ScopePtr& scope);
  absl::StatusOr<Value> ApplyFilters(const std::vector<ExprPtr>& filters, Value value,
                                     const ScopePtr& scope);
  Value Lookup(const std::string& name, const Scope& scope) const;
  absl::Status CheckStack() const;

  const RenderLimits limits_;
  const Dict globals_;
  std::string* output_ = nullptr;  // the render's buffer, or a Capture's
  int64_t work_ = 0;
  int call_depth_ = 0;
  const char* stack_base_ = nullptr;
};

// Python arithmetic on two values (+ - * / // % **), with TypeErrors worded like CPython's.
absl::StatusOr<Value> Arithmetic(BinaryOp op, const Value& a, const Value& b,
                                 const Evaluator& evaluator);
// `needle in haystack`.
absl::StatusOr<bool> Contains(Evaluator& evaluator, const Value& haystack, const Value& needle);

}  // namespace moeserve::engine::jinja
