// PreTokenizer against HF tokenizers: the pre-tokenizer fixtures of both tokenizers, the split
// behaviors (expected pieces computed with tokenizers 0.22.2), Oniguruma's empty-match and
// anchor rules, and the Oniguruma → PCRE2 translation.
#include "engine/tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/tokenizer/onig_compat.h"
#include "engine/tokenizer/regex.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace moeserve::engine {
namespace {

using nlohmann::json;
using testing::kFixtureTokenizers;
using testing::ReadJsonLines;
using testing::ReadTextFile;
using testing::TokenizerDir;

std::vector<std::string> Pieces(const PreTokenizer& pre_tokenizer, std::string_view text) {
  std::vector<std::string> pieces;
  const absl::Status status =
      pre_tokenizer.Split(text, [&](std::string_view piece) { pieces.emplace_back(piece); });
  EXPECT_TRUE(status.ok()) << status;
  return pieces;
}

// `step` followed by the no-op ByteLevel every supported pre-tokenizer ends with.
PreTokenizer Make(const json& step) {
  const json config = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array(
           {step, {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  auto pre_tokenizer = PreTokenizer::FromJson(config, "test");
  EXPECT_TRUE(pre_tokenizer.ok()) << pre_tokenizer.status();
  return *std::move(pre_tokenizer);
}

json Split(const json& pattern, const char* behavior, bool invert) {
  return {{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

class PreTokenizerFixtureTest : public ::testing::TestWithParam<const char*> {};

TEST_P(PreTokenizerFixtureTest, PiecesMatchTokenizers) {
  const std::string dir = TokenizerDir(GetParam());
  const json tokenizer = json::parse(ReadTextFile(dir + "/tokenizer.json"));
  auto pre_tokenizer = PreTokenizer::FromJson(tokenizer["pre_tokenizer"], "pre_tokenizer");
  ASSERT_TRUE(pre_tokenizer.ok()) << pre_tokenizer.status();
  const std::vector<json> records = ReadJsonLines(dir + "/pretokenize_fixtures.jsonl");
  ASSERT_GT(records.size(), 2000u);
  int failed = 0;
  for (const json& record : records) {
    const std::vector<std::string> expected = record["pieces"].get<std::vector<std::string>>();
    const std::vector<std::string> actual =
        Pieces(*pre_tokenizer, record["text"].get<std::string>());
    if (actual != expected && ++failed <= 10) {
      ADD_FAILURE() << "text: " << record["text"].dump()
                    << "\n  expected: " << json(expected).dump()
                    << "\n  actual:   " << json(actual).dump();
    }
  }
  EXPECT_EQ(failed, 0);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, PreTokenizerFixtureTest,
                         ::testing::ValuesIn(kFixtureTokenizers));

// tokenizers' own split.rs cases: \w+|[^\w\s]+ inverted, so the spaces are the matches.
TEST(PreTokenizerTest, SplitBehaviors) {
  const json words = {{"Regex", R"(\w+|[^\w\s]+)"}};
  const std::string text = "How are you doing?";
  const std::vector<std::pair<const char*, std::vector<std::string>>> cases = {
      {"Removed", {"How", "are", "you", "doing", "?"}},
      {"Isolated", {"How", " ", "are", " ", "you", " ", "doing", "?"}},
      {"MergedWithPrevious", {"How ", "are ", "you ", "doing", "?"}},
      {"MergedWithNext", {"How", " are", " you", " doing", "?"}},
      {"Contiguous", {"How", " ", "are", " ", "you", " ", "doing?"}},
  };
  for (const auto& [behavior, expected] : cases) {
    EXPECT_EQ(Pieces(Make(Split(words, behavior, true)), text), expected) << behavior;
  }
  EXPECT_EQ(Pieces(Make(Split({{"String", " "}}, "Removed", false)), "Hey, man!"),
            (std::vector<std::string>{"Hey,", "man!"}));
  EXPECT_EQ(Pieces(Make(Split({{"String", "Hello"}}, "Removed", true)), "Hello Hello Hello"),
            (std::vector<std::string>{"Hello", "Hello", "Hello"}));
  // A String pattern is literal: no regex meaning for '.'.
  EXPECT_EQ(Pieces(Make(Split({{"String", "."}}, "Isolated", false)), "a.b|c"),
            (std::vector<std::string>{"a", ".", "b|c"}));
}

TEST(PreTokenizerTest, EmptyMatchesAndAnchorsFollowOniguruma) {
  EXPECT_EQ(Pieces(Make(Split({{"Regex", "x*"}}, "Isolated", false)), "axxb"),
            (std::vector<std::string>{"a", "xx", "b"}));
  // ^ and $ are line anchors in Oniguruma.
  EXPECT_EQ(Pieces(Make(Split({{"Regex", "^"}}, "Isolated", false)), "ab\nba\nab"),
            (std::vector<std::string>{"ab\n", "ba\n", "ab"}));
  EXPECT_EQ(Pieces(Make(Split({{"Regex", "a$"}}, "Isolated", false)), "ab\nba\nab"),
            (std::vector<std::string>{"ab\nb", "a", "\nab"}));
}

TEST(PreTokenizerTest, UnicodeClassesFollowOniguruma) {
  // \s: U+180E is not White_Space (PCRE2 alone would split there); U+0085 and U+3000 are.
  EXPECT_EQ(Pieces(Make(Split({{"Regex", R"(\s+)"}}, "Isolated", false)),
                   "a\u180e"
                   "b\u0085"
                   "c\u3000"
                   "d"),
            (std::vector<std::string>{"a\u180e"
                                      "b",
                                      "\u0085", "c", "\u3000", "d"}));
  // Letters assigned after PCRE2 10.42's Unicode 14: U+1C89 (Cyrillic, 16.0) is \p{L};
  // U+10D40 (Garay digit, 16.0) is not.
  EXPECT_EQ(Pieces(Make(Split({{"Regex", R"(\p{L}+)"}}, "Isolated", false)),
                   "ab\u1c89"
                   "cd\U00010D40"),
            (std::vector<std::string>{"ab\u1c89"
                                      "cd",
                                      "\U00010D40"}));
}

TEST(PreTokenizerTest, DigitsAndByteLevel) {
  EXPECT_EQ(Pieces(Make({{"type", "Digits"}, {"individual_digits", true}}), "a123b٣½"),
            (std::vector<std::string>{"a", "1", "2", "3", "b", "٣", "½"}));
  EXPECT_EQ(Pieces(Make({{"type", "Digits"}, {"individual_digits", false}}), "a123b٣½"),
            (std::vector<std::string>{"a", "123", "b", "٣½"}));
  // GPT-2's regex with the prefix space (pieces before the byte mapping).
  auto gpt2 = PreTokenizer::FromJson(
      {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}, "gpt2");
  ASSERT_TRUE(gpt2.ok()) << gpt2.status();
  EXPECT_EQ(Pieces(*gpt2, "Hello world's  end\n\n 123"),
            (std::vector<std::string>{" Hello", " world", "'s", " ", " end", "\n\n", " 123"}));
}

TEST(OnigCompatTest, Translation) {
  using tokenizer_internal::TranslateOnigPattern;
  const std::string ws = "[" + std::string(tokenizer_internal::kWhiteSpaceClassItems) + "]";
  EXPECT_EQ(TranslateOnigPattern(R"(\s+(?!\S))"),
            ws + "+(?![^" + std::string(tokenizer_internal::kWhiteSpaceClassItems) + "])");
  EXPECT_EQ(TranslateOnigPattern(R"([^\s\d])"),
            R"([^)" + std::string(tokenizer_internal::kWhiteSpaceClassItems) +
                TranslateOnigPattern(R"(\d)").substr(1));
  EXPECT_EQ(TranslateOnigPattern(R"(\u00e9\h)"), R"(\x{00e9}[0-9a-fA-F])");
  EXPECT_EQ(TranslateOnigPattern(R"(\p{Han}\p{Lt}\[\s)"), R"(\p{Han}\p{Lt}\[)" + ws);
  EXPECT_EQ(TranslateOnigPattern(R"([[:alpha:]\]x])"), R"([[:alpha:]\]x])");
  const std::string letters = TranslateOnigPattern(R"(\p{L})");
  EXPECT_EQ(letters.rfind(R"([\p{L}\x{)", 0), 0u) << letters;
  EXPECT_EQ(TranslateOnigPattern(R"(\P{L})"), "[^" + letters.substr(1));
  EXPECT_EQ(TranslateOnigPattern(R"(\p{^L})"), "[^" + letters.substr(1));
  EXPECT_EQ(TranslateOnigPattern(R"(\p{Letter})"), R"(\p{Letter})");  // not a short name
  EXPECT_EQ(TranslateOnigPattern(R"(\p{l})"), letters);               // Oniguruma ignores the case
  // Every translation compiles.
  for (const char* pattern : {R"(\s?\p{L}+|\p{N}{1,3}|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)",
                              R"((?i:'s|'t)|\S+|[\S\d\D\h\H\w])", R"([一-龥぀-ゟ゠-ヿ]+)"}) {
    EXPECT_TRUE(
        tokenizer_internal::Regex::Create(pattern, tokenizer_internal::Regex::Syntax::kOniguruma)
            .ok())
        << pattern;
  }
}

}  // namespace
}  // namespace moeserve::engine
