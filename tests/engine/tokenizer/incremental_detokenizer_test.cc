// Streaming detokenization equals HF tokenizers' decode of the whole sequence (the decode
// fixtures hold Rust from_utf8_lossy output, invalid and partial UTF-8 included), and no delta
// ever carries a partial character.
#include "engine/tokenizer/incremental_detokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "engine/tokenizer/utf8.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace moeserve::engine {
namespace {

std::string Stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer detokenizer(tokenizer, skip);
  std::string text;
  for (int32_t id : ids) {
    const std::string delta = detokenizer.Append(id);
    EXPECT_EQ(FindInvalidUtf8(delta), delta.size()) << "delta is not valid UTF-8";
    text += delta;
  }
  const std::string tail = detokenizer.Finish();
  EXPECT_EQ(FindInvalidUtf8(tail), tail.size());
  return text + tail;
}

TEST(IncrementalDetokenizerTest, MatchesHfDecodeFixtures) {
  auto tokenizer = Tokenizer::Load(testing::TokenizerDir("kjv-bpe-8k"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  int checked = 0;
  for (const nlohmann::json& line :
       testing::ReadJsonLines(testing::TokenizerDir("kjv-bpe-8k") + "/decode_fixtures.jsonl")) {
    const std::vector<int32_t> ids = testing::Ids(line["ids"]);
    EXPECT_EQ(Stream(**tokenizer, ids, false), line["text"].get<std::string>()) << line.dump();
    EXPECT_EQ(Stream(**tokenizer, ids, true), line["text_skip_special"].get<std::string>())
        << line.dump();
    ++checked;
  }
  EXPECT_GT(checked, 400);
}

TEST(IncrementalDetokenizerTest, RandomByteTokensSplittingCharacters) {
  auto tokenizer = Tokenizer::Load(testing::TokenizerDir("kjv-bpe-8k"));
  ASSERT_TRUE(tokenizer.ok());
  // UTF-8 text of multi-byte characters, encoded byte by byte as single-byte tokens, so almost
  // every token ends inside a character; plus random token soup.
  std::mt19937 rng(99);
  const std::string text = "héllo wörld ☃ 日本語 🙂👍🏽 ok";
  std::vector<int32_t> by_byte;
  for (unsigned char byte : text) {
    // A lone continuation byte is not valid UTF-8 input to Encode: find its byte token.
    for (int32_t id = 0; id < (*tokenizer)->vocab_size(); ++id) {
      if ((*tokenizer)->TokenBytes(id) == std::string(1, static_cast<char>(byte))) {
        by_byte.push_back(id);
        break;
      }
    }
  }
  ASSERT_EQ(by_byte.size(), text.size());
  EXPECT_EQ(Stream(**tokenizer, by_byte, false), text);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int32_t> ids(1 + rng() % 30);
    for (auto& id : ids) id = static_cast<int32_t>(rng() % (*tokenizer)->vocab_size());
    for (bool skip : {false, true}) {
      EXPECT_EQ(Stream(**tokenizer, ids, skip), LossyUtf8((*tokenizer)->Decode(ids, skip)));
    }
  }
}

}  // namespace
}  // namespace moeserve::engine
