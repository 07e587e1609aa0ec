#include "engine/stop_checker.h"

#include <gtest/gtest.h>

#include <random>

namespace moeserve::engine {
namespace {

constexpr int32_t kEos = 1;

struct Outcome {
  std::string text;
  std::optional<FinishReason> finish;
  int64_t finished_at = 0;
  std::string matched;
};

Outcome Stream(const StopConditions& conditions, const std::vector<std::string>& deltas,
               const std::vector<int32_t>& ids = {}) {
  StopChecker checker(conditions);
  Outcome out;
  for (size_t i = 0; i < deltas.size(); ++i) {
    const int32_t id = i < ids.size() ? ids[i] : 100;
    StopDecision d = checker.OnToken(id, deltas[i], static_cast<int64_t>(i) + 1);
    out.text += d.text;
    if (d.finish) {
      out.finish = d.finish;
      out.finished_at = static_cast<int64_t>(i) + 1;
      out.matched = d.matched_stop_string;
      return out;
    }
  }
  out.text += checker.Flush();
  return out;
}

// The rules applied to whole text prefixes, without any streaming state.
Outcome NaiveStop(const StopConditions& c, const std::vector<std::string>& deltas) {
  std::string text;
  for (size_t k = 0; k < deltas.size(); ++k) {
    text += deltas[k];
    size_t best = std::string::npos;
    std::string best_stop;
    for (const std::string& s : c.stop_strings) {
      const size_t at = text.find(s);
      if (at != std::string::npos && (at < best || (at == best && s.size() > best_stop.size()))) {
        best = at;
        best_stop = s;
      }
    }
    if (best != std::string::npos) {
      return {text.substr(0, c.include_stop_string ? best + best_stop.size() : best),
              FinishReason::kStop, static_cast<int64_t>(k) + 1, best_stop};
    }
    if (static_cast<int64_t>(k) + 1 >= c.max_new_tokens) {
      return {text, FinishReason::kLength, static_cast<int64_t>(k) + 1, ""};
    }
  }
  return {text, std::nullopt, 0, ""};
}

TEST(StopCheckerTest, StopStringSplitAcrossTokensIsNeverEmitted) {
  StopConditions c{.max_new_tokens = 100, .stop_strings = {"</end>"}};
  StopChecker checker(c);
  std::string streamed;
  const std::vector<std::string> deltas = {"hello </", "e", "nd", ">", " tail"};
  for (size_t i = 0; i < deltas.size(); ++i) {
    StopDecision d = checker.OnToken(100, deltas[i], static_cast<int64_t>(i) + 1);
    streamed += d.text;
    EXPECT_EQ(streamed.find('<'), std::string::npos) << "emitted part of the stop string";
    if (d.finish) {
      EXPECT_EQ(*d.finish, FinishReason::kStop);
      EXPECT_EQ(d.matched_stop_string, "</end>");
      break;
    }
  }
  EXPECT_EQ(streamed, "hello ");
}

TEST(StopCheckerTest, IncludeStopStringEmitsIt) {
  StopConditions c{.max_new_tokens = 100, .stop_strings = {"STOP"}, .include_stop_string = true};
  Outcome o = Stream(c, {"abc ST", "OP and more"});
  EXPECT_EQ(o.text, "abc STOP");
  EXPECT_EQ(o.matched, "STOP");
}

TEST(StopCheckerTest, HeldPrefixIsReleasedWhenRuledOut) {
  StopConditions c{.max_new_tokens = 100, .stop_strings = {"abc"}};
  StopChecker checker(c);
  EXPECT_EQ(checker.OnToken(100, "xab", 1).text, "x");
  EXPECT_EQ(checker.OnToken(100, "d", 2).text, "abd");
}

TEST(StopCheckerTest, EosStopsUnlessIgnoredAndNotBeforeMinTokens) {
  StopConditions c{.max_new_tokens = 10, .min_new_tokens = 3, .eos_token_ids = {kEos}};
  Outcome early = Stream(c, {"a", "b", "c", "d"}, {kEos, kEos, kEos, kEos});
  EXPECT_EQ(early.finished_at, 3);
  EXPECT_EQ(early.text, "ab");  // the EOS token's own text is not emitted
  c.ignore_eos = true;
  Outcome ignored = Stream(c, {"a", "b", "c", "d"}, {kEos, kEos, kEos, kEos});
  EXPECT_FALSE(ignored.finish.has_value());
  EXPECT_EQ(ignored.text, "abcd");
}

TEST(StopCheckerTest, StopTokenIdReported) {
  StopConditions c{.max_new_tokens = 10, .stop_token_ids = {42}};
  StopChecker checker(c);
  EXPECT_FALSE(checker.OnToken(7, "x", 1).finish.has_value());
  StopDecision d = checker.OnToken(42, "y", 2);
  ASSERT_TRUE(d.finish.has_value());
  EXPECT_EQ(*d.matched_stop_token, 42);
}

TEST(StopCheckerTest, MaxNewTokensEndsWithLengthAndFlushesHeldText) {
  StopConditions c{.max_new_tokens = 2, .stop_strings = {"xyz"}};
  Outcome o = Stream(c, {"a", "bx", "c"});
  EXPECT_EQ(*o.finish, FinishReason::kLength);
  EXPECT_EQ(o.finished_at, 2);
  EXPECT_EQ(o.text, "abx");
}

TEST(StopCheckerTest, RandomStreamsMatchWholeTextRule) {
  std::mt19937 rng(314159);
  const std::string alphabet = "abc";
  for (int trial = 0; trial < 3000; ++trial) {
    StopConditions c{.max_new_tokens = 1 + static_cast<int64_t>(rng() % 30)};
    const int num_stops = static_cast<int>(rng() % 3);
    for (int s = 0; s < num_stops; ++s) {
      std::string stop(1 + rng() % 4, 'a');
      for (char& ch : stop) ch = alphabet[rng() % 3];
      c.stop_strings.push_back(stop);
    }
    c.include_stop_string = rng() % 2;
    std::vector<std::string> deltas(1 + rng() % 30);
    for (auto& d : deltas) {
      d.resize(rng() % 4);
      for (char& ch : d) ch = alphabet[rng() % 3];
    }
    const Outcome expected = NaiveStop(c, deltas);
    const Outcome actual = Stream(c, deltas);
    ASSERT_EQ(actual.text, expected.text) << "trial " << trial;
    ASSERT_EQ(actual.finish, expected.finish) << "trial " << trial;
    ASSERT_EQ(actual.finished_at, expected.finished_at) << "trial " << trial;
    ASSERT_EQ(actual.matched, expected.matched) << "trial " << trial;
  }
}

TEST(StopCheckerTest, ValidationNamesTheField) {
  EXPECT_NE(ValidateStopConditions({.max_new_tokens = 0}).message().find("max_new_tokens"),
            std::string::npos);
  EXPECT_NE(ValidateStopConditions({.max_new_tokens = 4, .min_new_tokens = 5})
                .message()
                .find("min_new_tokens"),
            std::string::npos);
  StopConditions empty_stop{.max_new_tokens = 4, .stop_strings = {"ok", ""}};
  EXPECT_NE(ValidateStopConditions(empty_stop).message().find("stop[1]"), std::string::npos);
  StopConditions many{.max_new_tokens = 4};
  many.stop_strings.assign(kMaxStopStrings + 1, "x");
  EXPECT_EQ(ValidateStopConditions(many).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateStopConditions({.max_new_tokens = 4, .stop_strings = {"a"}}).ok());
}

}  // namespace
}  // namespace moeserve::engine
