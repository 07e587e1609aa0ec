// The syntax tree of a parsed Jinja template: expressions and statements, each node carrying
// the source line its errors are reported at. Built by the parser (parser.h), walked by the
// evaluator (evaluator.h); immutable once built.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "engine/chat/jinja/value.h"

namespace moeserve::engine::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct CallArgsExpr {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

struct LiteralExpr {
  Value value;
};
struct NameExpr {
  std::string name;
};
struct ListExpr {  // [a, b] or (a, b)
  std::vector<ExprPtr> items;
  bool is_tuple = false;
};
struct DictExpr {
  std::vector<std::pair<ExprPtr, ExprPtr>> entries;
};
struct GetAttrExpr {  // x.name: attribute first, then item (Jinja's environment.getattr)
  ExprPtr object;
  std::string attribute;
};
struct GetItemExpr {  // x[key]: item first, then attribute (environment.getitem)
  ExprPtr object;
  ExprPtr key;
};
struct SliceExpr {  // only as a GetItemExpr key; null parts are omitted
  ExprPtr start, stop, step;
};
struct CallExpr {
  ExprPtr callee;
  CallArgsExpr args;
};
struct FilterExpr {  // operand | name(args)
  ExprPtr operand;
  std::string name;
  CallArgsExpr args;
};
struct TestExpr {  // operand is [not] name(args)
  ExprPtr operand;
  std::string name;
  CallArgsExpr args;
  bool negated = false;
};
enum class UnaryOp { kNegate, kPlus, kNot };
struct UnaryExpr {
  UnaryOp op;
  ExprPtr operand;
};
enum class BinaryOp {
  kAdd,
  kSubtract,
  kMultiply,
  kDivide,
  kFloorDivide,
  kModulo,
  kPower,
  kConcat,
  kAnd,
  kOr
};
struct BinaryExpr {
  BinaryOp op;
  ExprPtr left, right;
};
enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };
struct CompareExpr {  // a < b <= c, chained like Python
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};
struct ConditionalExpr {  // then_expr if condition else else_expr (else may be absent)
  ExprPtr condition, then_expr, else_expr;
};

struct Expr {
  int line = 0;
  std::variant<LiteralExpr, NameExpr, ListExpr, DictExpr, GetAttrExpr, GetItemExpr, SliceExpr,
               CallExpr, FilterExpr, TestExpr, UnaryExpr, BinaryExpr, CompareExpr, ConditionalExpr>
      node;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// Left side of set/for/with: a name, a tuple of names (unpacking), or ns.attr.
struct AssignTarget {
  std::vector<std::string> names;
  bool is_tuple = false;
  std::string namespace_attribute;  // non-empty for `set ns.attr = ...` (names[0] is ns)
};

struct TextStmt {
  std::string text;
};
struct OutputStmt {
  ExprPtr expr;
};
struct IfStmt {
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
  Body else_body;
};
struct ForStmt {
  AssignTarget target;
  ExprPtr iterable;
  ExprPtr filter;  // `for x in y if cond`; may be null
  Body body;
  Body else_body;  // runs when no item was iterated
};
struct SetStmt {
  AssignTarget target;
  ExprPtr value;                       // `set x = value`; null for a block set
  Body body;                           // `{% set x %}body{% endset %}`
  std::vector<ExprPtr> block_filters;  // `{% set x | upper %}`: FilterExprs with null operand
};
struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};
struct MacroStmt {
  std::string name;
  std::vector<MacroParam> params;
  Body body;
};
struct WithStmt {
  std::vector<std::pair<AssignTarget, ExprPtr>> assignments;
  Body body;
};
struct ScopeStmt {  // {% generation %}...{% endgeneration %}: renders its body as-is
  Body body;
};
struct FilterBlockStmt {         // {% filter upper %}...{% endfilter %}
  std::vector<ExprPtr> filters;  // FilterExprs with null operand
  Body body;
};
struct BreakStmt {};
struct ContinueStmt {};

struct Stmt {
  int line = 0;
  std::variant<TextStmt, OutputStmt, IfStmt, ForStmt, SetStmt, MacroStmt, WithStmt, ScopeStmt,
               FilterBlockStmt, BreakStmt, ContinueStmt>
      node;
};

}  // namespace moeserve::engine::jinja
