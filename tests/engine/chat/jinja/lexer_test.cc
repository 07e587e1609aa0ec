// The Jinja lexer: tokens, literals (Python escapes, number forms), line numbers, and the
// whitespace rules of trim_blocks / lstrip_blocks applied to the text between tags.
#include "engine/chat/jinja/lexer.h"

#include "gtest/gtest.h"

namespace moeserve::engine::jinja {
namespace {

std::vector<Token> Lex(std::string_view source) {
  absl::StatusOr<std::vector<Token>> tokens = Tokenize(source);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  return tokens.ok() ? *tokens : std::vector<Token>{};
}

TEST(JinjaLexerTest, StringLiterals_ResolvePythonEscapes) {
  const std::vector<Token> tokens = Lex(R"({{ 'a\tb\u00e9\x41\\n\q' "it's" }})");
  ASSERT_GE(tokens.size(), 4u);
  EXPECT_EQ(tokens[1].type, TokenType::kString);
  EXPECT_EQ(tokens[1].text,
            "a\tb\xc3\xa9"
            "A\\n\\q");
  EXPECT_EQ(tokens[2].text, "it's");
}

TEST(JinjaLexerTest, Numbers_IntegersAndFloats) {
  const std::vector<Token> tokens = Lex("{{ 1_000 0x1F 0b11 1.5 2e3 7 }}");
  ASSERT_GE(tokens.size(), 8u);
  EXPECT_EQ(tokens[1].int_value, 1000);
  EXPECT_EQ(tokens[2].int_value, 31);
  EXPECT_EQ(tokens[3].int_value, 3);
  EXPECT_EQ(tokens[4].type, TokenType::kFloat);
  EXPECT_DOUBLE_EQ(tokens[4].float_value, 1.5);
  EXPECT_DOUBLE_EQ(tokens[5].float_value, 2000);
  EXPECT_EQ(tokens[6].type, TokenType::kInteger);
}

TEST(JinjaLexerTest, Lines_CountFromOne) {
  const std::vector<Token> tokens = Lex("a\nb\n{{ x }}\n{% if y %}");
  ASSERT_GE(tokens.size(), 3u);
  EXPECT_EQ(tokens[1].type, TokenType::kVariableBegin);
  EXPECT_EQ(tokens[1].line, 3);
  EXPECT_EQ(tokens[5].type, TokenType::kBlockBegin);  // after the text "\n"
  EXPECT_EQ(tokens[5].line, 4);
}

TEST(JinjaLexerTest, BlockTagAloneOnItsLine_TakesItsIndentAndNewline) {
  const std::vector<Token> tokens = Lex("x\n    {% if y %}\nz");
  // "x\n", {%, if, y, %}, "z": the indent before the tag and the newline after it are gone.
  ASSERT_GE(tokens.size(), 6u);
  EXPECT_EQ(tokens[0].text, "x\n");
  EXPECT_EQ(tokens[5].text, "z");
}

TEST(JinjaLexerTest, BalancedBracesInsideATag_DoNotEndIt) {
  const std::vector<Token> tokens = Lex("{{ {'a': {'b': 1}}}}");
  EXPECT_EQ(tokens[tokens.size() - 2].type, TokenType::kVariableEnd);
}

TEST(JinjaLexerTest, Errors_NameTheLine) {
  absl::StatusOr<std::vector<Token>> tokens = Tokenize("a\n{# open");
  ASSERT_FALSE(tokens.ok());
  EXPECT_EQ(tokens.status().message(), "line 2: Missing end of comment tag");
  tokens = Tokenize("\n\n{{ a ) }}");
  ASSERT_FALSE(tokens.ok());
  EXPECT_EQ(tokens.status().message(), "line 3: unexpected ')'");
  EXPECT_FALSE(Tokenize("{{ 'unterminated }}").ok());
  EXPECT_FALSE(Tokenize("{{ 99999999999999999999 }}").ok());
}

}  // namespace
}  // namespace moeserve::engine::jinja
