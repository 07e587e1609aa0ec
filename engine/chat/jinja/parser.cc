#include "engine/chat/jinja/parser.h"

#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"
#include "engine/chat/jinja/builtins.h"

namespace moeserve::engine::jinja {
namespace {

template <typename Node>
ExprPtr MakeExpr(int line, Node node) {
  auto expr = std::make_unique<Expr>();
  expr->line = line;
  expr->node = std::move(node);
  return expr;
}

template <typename Node>
StmtPtr MakeStmt(int line, Node node) {
  auto stmt = std::make_unique<Stmt>();
  stmt->line = line;
  stmt->node = std::move(node);
  return stmt;
}

// Early return for StatusOr-producing parse steps.
#define JINJA_ASSIGN_OR_RETURN(lhs, expr)                  \
  auto lhs##_or = (expr);                                  \
  if (!lhs##_or.ok()) return std::move(lhs##_or).status(); \
  auto lhs = *std::move(lhs##_or)

#define JINJA_RETURN_IF_ERROR(expr)    \
  do {                                 \
    absl::Status status_ = (expr);     \
    if (!status_.ok()) return status_; \
  } while (0)

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseTemplate() {
    std::string end_tag;
    JINJA_ASSIGN_OR_RETURN(body, ParseBody({}, &end_tag));
    return body;
  }

 private:
  // ---- token stream ----
  const Token& Current() const { return tokens_[pos_]; }
  const Token& Peek(size_t ahead = 1) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  void Advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOperator(std::string_view op) const {
    return Current().type == TokenType::kOperator && Current().text == op;
  }
  bool IsName(std::string_view name) const {
    return Current().type == TokenType::kName && Current().text == name;
  }
  bool SkipOperator(std::string_view op) {
    if (!IsOperator(op)) return false;
    Advance();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Advance();
    return true;
  }

  static std::string Describe(const Token& token) {
    switch (token.type) {
      case TokenType::kEnd:
        return "end of template";
      case TokenType::kBlockEnd:
        return "end of statement block";
      case TokenType::kVariableEnd:
        return "end of print statement";
      case TokenType::kString:
        return "string";
      default:
        return token.text;
    }
  }

  absl::Status Fail(const std::string& message) const { return Fail(Current().line, message); }
  static absl::Status Fail(int line, const std::string& message) {
    return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", message));
  }

  absl::Status Expect(TokenType type, std::string_view what) {
    if (Current().type != type) {
      return Fail(absl::StrCat("expected ", Sv(what), ", got '", Describe(Current()), "'"));
    }
    Advance();
    return absl::OkStatus();
  }
  absl::Status ExpectOperator(std::string_view op) {
    if (!SkipOperator(op)) {
      return Fail(absl::StrCat("expected '", Sv(op), "', got '", Describe(Current()), "'"));
    }
    return absl::OkStatus();
  }
  absl::Status ExpectName(std::string_view name) {
    if (!SkipName(name)) {
      return Fail(absl::StrCat("expected '", Sv(name), "', got '", Describe(Current()), "'"));
    }
    return absl::OkStatus();
  }

  // Guards recursion: every nested expression or statement takes a level.
  class DepthGuard {
   public:
    explicit DepthGuard(int& depth) : depth_(depth) { ++depth_; }
    ~DepthGuard() { --depth_; }
    bool exceeded() const { return depth_ > kMaxNestingDepth; }

   private:
    int& depth_;
  };
  absl::Status TooDeep() const {
    return Fail(absl::StrCat("template nests deeper than ", kMaxNestingDepth, " levels"));
  }

  // ---- statements ----

  // Parses until `{% <one of end_tags>` and leaves the stream after that tag name; with no
  // end tags, parses to the end of the template.
  absl::StatusOr<Body> ParseBody(std::initializer_list<std::string_view> end_tags,
                                 std::string* end_tag) {
    DepthGuard guard(depth_);
    if (guard.exceeded()) return TooDeep();
    Body body;
    while (true) {
      const Token& token = Current();
      switch (token.type) {
        case TokenType::kEnd:
          if (end_tags.size() == 0) return body;
          return Fail(
              absl::StrCat("unexpected end of template; expected '", Sv(*end_tags.begin()), "'"));
        case TokenType::kText:
          body.push_back(MakeStmt(token.line, TextStmt{token.text}));
          Advance();
          break;
        case TokenType::kVariableBegin: {
          Advance();
          JINJA_ASSIGN_OR_RETURN(expr, ParseTuple(/*with_condexpr=*/true, {}));
          JINJA_RETURN_IF_ERROR(Expect(TokenType::kVariableEnd, "end of print statement"));
          body.push_back(MakeStmt(token.line, OutputStmt{std::move(expr)}));
          break;
        }
        case TokenType::kBlockBegin: {
          Advance();
          if (Current().type != TokenType::kName) return Fail("tag name expected");
          for (std::string_view end : end_tags) {
            if (Current().text == end) {
              *end_tag = Current().text;
              Advance();
              return body;
            }
          }
          JINJA_ASSIGN_OR_RETURN(stmt, ParseStatement());
          if (stmt != nullptr) body.push_back(std::move(stmt));
          JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
          break;
        }
        default:
          return Fail(absl::StrCat("unexpected '", Describe(token), "'"));
      }
    }
  }

  // The statement after `{% `; leaves the stream at its closing %}.
  absl::StatusOr<StmtPtr> ParseStatement() {
    const Token tag = Current();
    const int line = tag.line;
    Advance();
    const std::string& name = tag.text;
    if (name == "if") return ParseIf(line);
    if (name == "for") return ParseFor(line);
    if (name == "set") return ParseSet(line);
    if (name == "macro") return ParseMacro(line);
    if (name == "with") return ParseWith(line);
    if (name == "filter") return ParseFilterBlock(line);
    if (name == "print") {
      JINJA_ASSIGN_OR_RETURN(expr, ParseTuple(true, {}));
      return MakeStmt(line, OutputStmt{std::move(expr)});
    }
    if (name == "generation") {
      JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
      JINJA_ASSIGN_OR_RETURN(body, ParseBlockBody({"endgeneration"}));
      return MakeStmt(line, ScopeStmt{std::move(body)});
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return Fail(line, absl::StrCat("'", name, "' outside of a loop"));
      if (name == "break") return MakeStmt(line, BreakStmt{});
      return MakeStmt(line, ContinueStmt{});
    }
    return Fail(line, absl::StrCat("Encountered unknown tag '", name, "'."));
  }

  // The body of a block up to `{% end_tag %}`, consuming the end tag's name.
  absl::StatusOr<Body> ParseBlockBody(std::initializer_list<std::string_view> end_tags) {
    std::string end;
    return ParseBody(end_tags, &end);
  }

  absl::StatusOr<StmtPtr> ParseIf(int line) {
    IfStmt stmt;
    while (true) {
      JINJA_ASSIGN_OR_RETURN(condition, ParseTuple(/*with_condexpr=*/false, {}));
      JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
      std::string end;
      JINJA_ASSIGN_OR_RETURN(body, ParseBody({"elif", "else", "endif"}, &end));
      stmt.branches.emplace_back(std::move(condition), std::move(body));
      if (end == "elif") continue;
      if (end == "else") {
        JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
        JINJA_ASSIGN_OR_RETURN(else_body, ParseBlockBody({"endif"}));
        stmt.else_body = std::move(else_body);
      }
      return MakeStmt(line, std::move(stmt));
    }
  }

  absl::StatusOr<StmtPtr> ParseFor(int line) {
    ForStmt stmt;
    JINJA_ASSIGN_OR_RETURN(target, ParseAssignTarget(/*with_namespace=*/false, {"in"}));
    stmt.target = std::move(target);
    JINJA_RETURN_IF_ERROR(ExpectName("in"));
    JINJA_ASSIGN_OR_RETURN(iterable, ParseTuple(/*with_condexpr=*/false, {"recursive"}));
    stmt.iterable = std::move(iterable);
    if (SkipName("if")) {
      JINJA_ASSIGN_OR_RETURN(filter, ParseExpression(true));
      stmt.filter = std::move(filter);
    }
    if (IsName("recursive")) return Fail("recursive loops are not supported");
    JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
    std::string end;
    ++loop_depth_;
    absl::StatusOr<Body> body = ParseBody({"endfor", "else"}, &end);
    --loop_depth_;
    if (!body.ok()) return body.status();
    stmt.body = *std::move(body);
    if (end == "else") {
      JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
      JINJA_ASSIGN_OR_RETURN(else_body, ParseBlockBody({"endfor"}));
      stmt.else_body = std::move(else_body);
    }
    return MakeStmt(line, std::move(stmt));
  }

  absl::StatusOr<StmtPtr> ParseSet(int line) {
    SetStmt stmt;
    JINJA_ASSIGN_OR_RETURN(target, ParseAssignTarget(/*with_namespace=*/true, {}));
    stmt.target = std::move(target);
    if (SkipOperator("=")) {
      JINJA_ASSIGN_OR_RETURN(value, ParseTuple(true, {}));
      stmt.value = std::move(value);
      return MakeStmt(line, std::move(stmt));
    }
    JINJA_ASSIGN_OR_RETURN(filters, ParseFilterChain());
    stmt.block_filters = std::move(filters);
    JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
    JINJA_ASSIGN_OR_RETURN(body, ParseBlockBody({"endset"}));
    stmt.body = std::move(body);
    return MakeStmt(line, std::move(stmt));
  }

  absl::StatusOr<StmtPtr> ParseMacro(int line) {
    MacroStmt stmt;
    if (Current().type != TokenType::kName) return Fail("expected a macro name");
    stmt.name = Current().text;
    Advance();
    JINJA_RETURN_IF_ERROR(ExpectOperator("("));
    while (!IsOperator(")")) {
      if (!stmt.params.empty()) JINJA_RETURN_IF_ERROR(ExpectOperator(","));
      if (IsOperator(")")) break;
      if (Current().type != TokenType::kName) return Fail("expected a parameter name");
      MacroParam param{Current().text, nullptr};
      Advance();
      if (SkipOperator("=")) {
        JINJA_ASSIGN_OR_RETURN(value, ParseExpression(true));
        param.default_value = std::move(value);
      } else if (!stmt.params.empty() && stmt.params.back().default_value != nullptr) {
        return Fail("non-default argument follows default argument");
      }
      stmt.params.push_back(std::move(param));
    }
    Advance();  // )
    JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;  // a loop around a macro's definition does not enclose its body
    absl::StatusOr<Body> body = ParseBlockBody({"endmacro"});
    loop_depth_ = saved_loop_depth;
    if (!body.ok()) return body.status();
    stmt.body = *std::move(body);
    return MakeStmt(line, std::move(stmt));
  }

  absl::StatusOr<StmtPtr> ParseWith(int line) {
    WithStmt stmt;
    while (Current().type != TokenType::kBlockEnd) {
      if (!stmt.assignments.empty()) JINJA_RETURN_IF_ERROR(ExpectOperator(","));
      JINJA_ASSIGN_OR_RETURN(target, ParseAssignTarget(false, {}));
      JINJA_RETURN_IF_ERROR(ExpectOperator("="));
      JINJA_ASSIGN_OR_RETURN(value, ParseExpression(true));
      stmt.assignments.emplace_back(std::move(target), std::move(value));
    }
    Advance();
    JINJA_ASSIGN_OR_RETURN(body, ParseBlockBody({"endwith"}));
    stmt.body = std::move(body);
    // The closing %} of endwith is consumed by ParseBody's caller; leave it.
    return MakeStmt(line, std::move(stmt));
  }

  absl::StatusOr<StmtPtr> ParseFilterBlock(int line) {
    FilterBlockStmt stmt;
    // The first filter has no leading |.
    --pos_;
    JINJA_ASSIGN_OR_RETURN(filters, ParseFilterChain(/*first_without_pipe=*/true));
    stmt.filters = std::move(filters);
    JINJA_RETURN_IF_ERROR(Expect(TokenType::kBlockEnd, "end of statement block"));
    JINJA_ASSIGN_OR_RETURN(body, ParseBlockBody({"endfilter"}));
    stmt.body = std::move(body);
    return MakeStmt(line, std::move(stmt));
  }

  // `| f(args) | g` with no operand (block set, filter blocks). With first_without_pipe the
  // stream is at the token before the first filter's name (the `filter` tag itself).
  absl::StatusOr<std::vector<ExprPtr>> ParseFilterChain(bool first_without_pipe = false) {
    std::vector<ExprPtr> filters;
    while (first_without_pipe || IsOperator("|")) {
      first_without_pipe = false;
      Advance();
      JINJA_ASSIGN_OR_RETURN(filter, ParseFilter(nullptr));
      filters.push_back(std::move(filter));
    }
    return filters;
  }

  absl::StatusOr<AssignTarget> ParseAssignTarget(bool with_namespace,
                                                 std::initializer_list<std::string_view> ends) {
    AssignTarget target;
    if (with_namespace && Current().type == TokenType::kName && Peek().text == "." &&
        Peek().type == TokenType::kOperator) {
      target.names.push_back(Current().text);
      Advance();
      Advance();
      if (Current().type != TokenType::kName) return Fail("expected an attribute name");
      target.namespace_attribute = Current().text;
      Advance();
      return target;
    }
    while (true) {
      if (Current().type != TokenType::kName) {
        return Fail(absl::StrCat("can't assign to '", Describe(Current()), "'"));
      }
      const std::string& name = Current().text;
      if (name == "true" || name == "false" || name == "none" || name == "True" ||
          name == "False" || name == "None") {
        return Fail(absl::StrCat("can't assign to '", name, "'"));
      }
      target.names.push_back(name);
      Advance();
      if (!IsOperator(",")) break;
      target.is_tuple = true;
      Advance();
      bool at_end = IsOperator("=") || Current().type == TokenType::kBlockEnd;
      for (std::string_view end : ends) at_end = at_end || IsName(end);
      if (at_end) break;
    }
    return target;
  }

  // ---- expressions ----

  // Jinja's parse_tuple: `a, b` is a tuple, `a` is itself. extra_ends are names that end the
  // tuple (`recursive` after a for's iterable).
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr,
                                     std::initializer_list<std::string_view> extra_ends,
                                     bool explicit_parentheses = false) {
    const int line = Current().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) JINJA_RETURN_IF_ERROR(ExpectOperator(","));
      bool at_end = Current().type == TokenType::kVariableEnd ||
                    Current().type == TokenType::kBlockEnd || IsOperator(")");
      for (std::string_view end : extra_ends) at_end = at_end || IsName(end);
      if (at_end) break;
      JINJA_ASSIGN_OR_RETURN(item, ParseExpression(with_condexpr));
      items.push_back(std::move(item));
      if (!IsOperator(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) {
        return Fail(absl::StrCat("Expected an expression, got '", Describe(Current()), "'"));
      }
    }
    return MakeExpr(line, ListExpr{std::move(items), /*is_tuple=*/true});
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    DepthGuard guard(depth_);
    if (guard.exceeded()) return TooDeep();
    if (!with_condexpr) return ParseOr();
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(expr, ParseOr());
    while (SkipName("if")) {
      JINJA_ASSIGN_OR_RETURN(condition, ParseOr());
      ExprPtr else_expr;
      if (SkipName("else")) {
        JINJA_ASSIGN_OR_RETURN(otherwise, ParseExpression(true));
        else_expr = std::move(otherwise);
      }
      expr = MakeExpr(line,
                      ConditionalExpr{std::move(condition), std::move(expr), std::move(else_expr)});
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(left, ParseAnd());
    while (SkipName("or")) {
      JINJA_ASSIGN_OR_RETURN(right, ParseAnd());
      left = MakeExpr(line, BinaryExpr{BinaryOp::kOr, std::move(left), std::move(right)});
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(left, ParseNot());
    while (SkipName("and")) {
      JINJA_ASSIGN_OR_RETURN(right, ParseNot());
      left = MakeExpr(line, BinaryExpr{BinaryOp::kAnd, std::move(left), std::move(right)});
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    DepthGuard guard(depth_);
    if (guard.exceeded()) return TooDeep();
    const int line = Current().line;
    if (SkipName("not")) {
      JINJA_ASSIGN_OR_RETURN(operand, ParseNot());
      return MakeExpr(line, UnaryExpr{UnaryOp::kNot, std::move(operand)});
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(first, ParseMath1());
    CompareExpr compare{std::move(first), {}};
    static const std::pair<std::string_view, CompareOp> kOperators[] = {
        {"==", CompareOp::kEq}, {"!=", CompareOp::kNe}, {"<", CompareOp::kLt},
        {"<=", CompareOp::kLe}, {">", CompareOp::kGt},  {">=", CompareOp::kGe}};
    while (true) {
      std::optional<CompareOp> op;
      for (const auto& [text, candidate] : kOperators) {
        if (IsOperator(text)) op = candidate;
      }
      if (op) {
        Advance();
      } else if (SkipName("in")) {
        op = CompareOp::kIn;
      } else if (IsName("not") && Peek().type == TokenType::kName && Peek().text == "in") {
        Advance();
        Advance();
        op = CompareOp::kNotIn;
      } else {
        break;
      }
      JINJA_ASSIGN_OR_RETURN(operand, ParseMath1());
      compare.rest.emplace_back(*op, std::move(operand));
    }
    if (compare.rest.empty()) return std::move(compare.first);
    return MakeExpr(line, std::move(compare));
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(left, ParseConcat());
    while (IsOperator("+") || IsOperator("-")) {
      const BinaryOp op = IsOperator("+") ? BinaryOp::kAdd : BinaryOp::kSubtract;
      Advance();
      JINJA_ASSIGN_OR_RETURN(right, ParseConcat());
      left = MakeExpr(line, BinaryExpr{op, std::move(left), std::move(right)});
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(left, ParseMath2());
    while (SkipOperator("~")) {
      JINJA_ASSIGN_OR_RETURN(right, ParseMath2());
      left = MakeExpr(line, BinaryExpr{BinaryOp::kConcat, std::move(left), std::move(right)});
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(left, ParsePow());
    while (true) {
      BinaryOp op;
      if (IsOperator("*")) {
        op = BinaryOp::kMultiply;
      } else if (IsOperator("/")) {
        op = BinaryOp::kDivide;
      } else if (IsOperator("//")) {
        op = BinaryOp::kFloorDivide;
      } else if (IsOperator("%")) {
        op = BinaryOp::kModulo;
      } else {
        return left;
      }
      Advance();
      JINJA_ASSIGN_OR_RETURN(right, ParsePow());
      left = MakeExpr(line, BinaryExpr{op, std::move(left), std::move(right)});
    }
  }

  absl::StatusOr<ExprPtr> ParsePow() {
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(left, ParseUnary(true));
    while (SkipOperator("**")) {  // left-associative in Jinja: 2**3**2 == 64
      JINJA_ASSIGN_OR_RETURN(right, ParseUnary(true));
      left = MakeExpr(line, BinaryExpr{BinaryOp::kPower, std::move(left), std::move(right)});
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    DepthGuard guard(depth_);
    if (guard.exceeded()) return TooDeep();
    const int line = Current().line;
    ExprPtr expr;
    if (IsOperator("-") || IsOperator("+")) {
      const UnaryOp op = IsOperator("-") ? UnaryOp::kNegate : UnaryOp::kPlus;
      Advance();
      JINJA_ASSIGN_OR_RETURN(operand, ParseUnary(false));
      expr = MakeExpr(line, UnaryExpr{op, std::move(operand)});
    } else {
      JINJA_ASSIGN_OR_RETURN(primary, ParsePrimary());
      expr = std::move(primary);
    }
    JINJA_ASSIGN_OR_RETURN(postfix, ParsePostfix(std::move(expr)));
    if (!with_filter) return postfix;
    return ParseFilterExpr(std::move(postfix));
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& token = Current();
    const int line = token.line;
    switch (token.type) {
      case TokenType::kName: {
        Advance();
        if (token.text == "true" || token.text == "True") {
          return MakeExpr(line, LiteralExpr{Value::Bool(true)});
        }
        if (token.text == "false" || token.text == "False") {
          return MakeExpr(line, LiteralExpr{Value::Bool(false)});
        }
        if (token.text == "none" || token.text == "None") {
          return MakeExpr(line, LiteralExpr{Value::None()});
        }
        return MakeExpr(line, NameExpr{token.text});
      }
      case TokenType::kString: {
        std::string text;
        while (Current().type == TokenType::kString) {  // adjacent literals concatenate
          text += Current().text;
          Advance();
        }
        return MakeExpr(line, LiteralExpr{Value::String(std::move(text))});
      }
      case TokenType::kInteger:
        Advance();
        return MakeExpr(line, LiteralExpr{Value::Int(token.int_value)});
      case TokenType::kFloat:
        Advance();
        return MakeExpr(line, LiteralExpr{Value::Float(token.float_value)});
      case TokenType::kOperator:
        if (token.text == "(") {
          Advance();
          JINJA_ASSIGN_OR_RETURN(inner, ParseTuple(true, {}, /*explicit_parentheses=*/true));
          JINJA_RETURN_IF_ERROR(ExpectOperator(")"));
          return inner;
        }
        if (token.text == "[") return ParseList();
        if (token.text == "{") return ParseDict();
        break;
      default:
        break;
    }
    return Fail(absl::StrCat("unexpected '", Describe(token), "'"));
  }

  absl::StatusOr<ExprPtr> ParseList() {
    const int line = Current().line;
    Advance();  // [
    ListExpr list;
    while (!IsOperator("]")) {
      if (!list.items.empty()) JINJA_RETURN_IF_ERROR(ExpectOperator(","));
      if (IsOperator("]")) break;
      JINJA_ASSIGN_OR_RETURN(item, ParseExpression(true));
      list.items.push_back(std::move(item));
    }
    Advance();
    return MakeExpr(line, std::move(list));
  }

  absl::StatusOr<ExprPtr> ParseDict() {
    const int line = Current().line;
    Advance();  // {
    DictExpr dict;
    while (!IsOperator("}")) {
      if (!dict.entries.empty()) JINJA_RETURN_IF_ERROR(ExpectOperator(","));
      if (IsOperator("}")) break;
      JINJA_ASSIGN_OR_RETURN(key, ParseExpression(true));
      JINJA_RETURN_IF_ERROR(ExpectOperator(":"));
      JINJA_ASSIGN_OR_RETURN(value, ParseExpression(true));
      dict.entries.emplace_back(std::move(key), std::move(value));
    }
    Advance();
    return MakeExpr(line, std::move(dict));
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr expr) {
    while (true) {
      const int line = Current().line;
      if (SkipOperator(".")) {
        const Token& attribute = Current();
        if (attribute.type == TokenType::kName) {
          Advance();
          expr = MakeExpr(line, GetAttrExpr{std::move(expr), attribute.text});
        } else if (attribute.type == TokenType::kInteger) {
          Advance();
          expr = MakeExpr(
              line, GetItemExpr{std::move(expr),
                                MakeExpr(line, LiteralExpr{Value::Int(attribute.int_value)})});
        } else {
          return Fail("expected name or number");
        }
      } else if (SkipOperator("[")) {
        std::vector<ExprPtr> keys;
        while (!IsOperator("]")) {
          if (!keys.empty()) JINJA_RETURN_IF_ERROR(ExpectOperator(","));
          JINJA_ASSIGN_OR_RETURN(key, ParseSubscript());
          keys.push_back(std::move(key));
        }
        Advance();
        if (keys.empty()) return Fail(line, "expected a subscript");
        ExprPtr key =
            keys.size() == 1 ? std::move(keys[0]) : MakeExpr(line, ListExpr{std::move(keys), true});
        expr = MakeExpr(line, GetItemExpr{std::move(expr), std::move(key)});
      } else if (IsOperator("(")) {
        JINJA_ASSIGN_OR_RETURN(args, ParseCallArgs());
        expr = MakeExpr(line, CallExpr{std::move(expr), std::move(args)});
      } else {
        return expr;
      }
    }
  }

  // `a`, or a slice `a:b:c` with any part omitted.
  absl::StatusOr<ExprPtr> ParseSubscript() {
    const int line = Current().line;
    ExprPtr start;
    if (!IsOperator(":")) {
      JINJA_ASSIGN_OR_RETURN(expr, ParseExpression(true));
      if (!IsOperator(":")) return expr;
      start = std::move(expr);
    }
    Advance();  // :
    SliceExpr slice{std::move(start), nullptr, nullptr};
    auto at_part_end = [&] { return IsOperator("]") || IsOperator(",") || IsOperator(":"); };
    if (!at_part_end()) {
      JINJA_ASSIGN_OR_RETURN(stop, ParseExpression(true));
      slice.stop = std::move(stop);
    }
    if (SkipOperator(":") && !at_part_end()) {
      JINJA_ASSIGN_OR_RETURN(step, ParseExpression(true));
      slice.step = std::move(step);
    }
    return MakeExpr(line, std::move(slice));
  }

  absl::StatusOr<CallArgsExpr> ParseCallArgs() {
    JINJA_RETURN_IF_ERROR(ExpectOperator("("));
    CallArgsExpr args;
    bool first = true;
    while (!IsOperator(")")) {
      if (!first) JINJA_RETURN_IF_ERROR(ExpectOperator(","));
      first = false;
      if (IsOperator(")")) break;
      if (IsOperator("*") || IsOperator("**")) return Fail("*args and **kwargs are not supported");
      if (Current().type == TokenType::kName && Peek().type == TokenType::kOperator &&
          Peek().text == "=") {
        std::string key = Current().text;
        Advance();
        Advance();
        JINJA_ASSIGN_OR_RETURN(value, ParseExpression(true));
        args.keyword.emplace_back(std::move(key), std::move(value));
      } else {
        if (!args.keyword.empty()) return Fail("positional argument follows keyword argument");
        JINJA_ASSIGN_OR_RETURN(value, ParseExpression(true));
        args.positional.push_back(std::move(value));
      }
    }
    Advance();
    return args;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr expr) {
    while (true) {
      if (SkipOperator("|")) {
        JINJA_ASSIGN_OR_RETURN(filter, ParseFilter(std::move(expr)));
        expr = std::move(filter);
      } else if (IsName("is")) {
        Advance();
        JINJA_ASSIGN_OR_RETURN(test, ParseTest(std::move(expr)));
        expr = std::move(test);
      } else if (IsOperator("(")) {
        const int line = Current().line;
        JINJA_ASSIGN_OR_RETURN(args, ParseCallArgs());
        expr = MakeExpr(line, CallExpr{std::move(expr), std::move(args)});
      } else {
        return expr;
      }
    }
  }

  absl::StatusOr<std::string> ParseDottedName() {
    if (Current().type != TokenType::kName) return Fail("expected a filter or test name");
    std::string name = Current().text;
    Advance();
    while (IsOperator(".") && Peek().type == TokenType::kName) {
      Advance();
      name += "." + Current().text;
      Advance();
    }
    return name;
  }

  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr operand) {
    const int line = Current().line;
    JINJA_ASSIGN_OR_RETURN(name, ParseDottedName());
    if (!IsKnownFilter(name)) return Fail(line, absl::StrCat("unknown filter '", name, "'"));
    FilterExpr filter{std::move(operand), name, {}};
    if (IsOperator("(")) {
      JINJA_ASSIGN_OR_RETURN(args, ParseCallArgs());
      filter.args = std::move(args);
    }
    return MakeExpr(line, std::move(filter));
  }

  absl::StatusOr<ExprPtr> ParseTest(ExprPtr operand) {
    const int line = Current().line;
    const bool negated = SkipName("not");
    JINJA_ASSIGN_OR_RETURN(name, ParseDottedName());
    if (!IsKnownTest(name)) return Fail(line, absl::StrCat("unknown test '", name, "'"));
    TestExpr test{std::move(operand), name, {}, negated};
    const Token& next = Current();
    if (IsOperator("(")) {
      JINJA_ASSIGN_OR_RETURN(args, ParseCallArgs());
      test.args = std::move(args);
    } else if ((next.type == TokenType::kName || next.type == TokenType::kString ||
                next.type == TokenType::kInteger || next.type == TokenType::kFloat ||
                IsOperator("[") || IsOperator("{")) &&
               !(IsName("else") || IsName("or") || IsName("and"))) {
      // `x is divisibleby 3`, `x is sameas none`: one argument without parentheses.
      if (IsName("is")) return Fail("You cannot chain multiple tests with is");
      JINJA_ASSIGN_OR_RETURN(primary, ParsePrimary());
      JINJA_ASSIGN_OR_RETURN(argument, ParsePostfix(std::move(primary)));
      test.args.positional.push_back(std::move(argument));
    }
    return MakeExpr(line, std::move(test));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> Parse(std::vector<Token> tokens) {
  return Parser(std::move(tokens)).ParseTemplate();
}

}  // namespace moeserve::engine::jinja
