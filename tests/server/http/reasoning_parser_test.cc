// ReasoningParser fed random outputs cut at random places must give exactly what splitting the
// whole output at once gives (the rule written independently below, from vLLM's description).
#include "server/http/reasoning_parser.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace moeserve::server {
namespace {

// The whole-output rule: a leading "<think>" dropped; reasoning up to the first "</think>",
// content after it; no "</think>" → all reasoning.
ReasoningParser::Delta SplitWhole(std::string text) {
  if (text.rfind("<think>", 0) == 0) text.erase(0, 7);
  const size_t end = text.find("</think>");
  if (end == std::string::npos) return {text, ""};
  return {text.substr(0, end), text.substr(end + 8)};
}

std::string RandomOutput(std::mt19937& rng) {
  // Pieces that make near-misses of the tags likely.
  static const char* kPieces[] = {"<think>", "</think>",    "<",      "</",      "</th",
                                  "think",   ">",           "a",      " ",       "\n",
                                  "é",       "</thinking>", "<think", "x</think"};
  std::uniform_int_distribution<int> piece(0, std::size(kPieces) - 1);
  std::uniform_int_distribution<int> length(0, 12);
  std::string out;
  for (int i = length(rng); i > 0; --i) out += kPieces[piece(rng)];
  return out;
}

TEST(ReasoningParserTest, IncrementalSplitEqualsWholeSplit) {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 20000; ++trial) {
    const std::string output = RandomOutput(rng);
    ReasoningParser parser;
    ReasoningParser::Delta got;
    size_t at = 0;
    while (at < output.size()) {
      const size_t n = std::uniform_int_distribution<size_t>(1, output.size() - at)(rng);
      ReasoningParser::Delta d = parser.Feed(std::string_view(output).substr(at, n));
      got.reasoning += d.reasoning;
      got.content += d.content;
      at += n;
    }
    ReasoningParser::Delta rest = parser.Finish();
    got.reasoning += rest.reasoning;
    got.content += rest.content;
    const ReasoningParser::Delta want = SplitWhole(output);
    ASSERT_EQ(got.reasoning, want.reasoning) << "output: " << output;
    ASSERT_EQ(got.content, want.content) << "output: " << output;
    ASSERT_EQ(parser.reasoning_ended(), output.find("</think>") != std::string::npos ||
                                            (output.rfind("<think>", 0) == 0 &&
                                             output.find("</think>", 7) != std::string::npos))
        << output;
  }
}

TEST(ReasoningParserTest, TagSplitAcrossDeltasIsNeverShownHalfway) {
  ReasoningParser parser;
  EXPECT_EQ(parser.Feed("<thi").reasoning, "");
  EXPECT_EQ(parser.Feed("nk>plan").reasoning, "plan");
  ReasoningParser::Delta d = parser.Feed(" more</th");
  EXPECT_EQ(d.reasoning, " more");
  EXPECT_EQ(d.content, "");
  d = parser.Feed("ink>\n\nAnswer");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "\n\nAnswer");
  EXPECT_TRUE(parser.reasoning_ended());
}

}  // namespace
}  // namespace moeserve::server
