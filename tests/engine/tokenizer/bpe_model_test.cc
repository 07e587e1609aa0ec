// BpeModel on small hand-made vocabularies. Every expected id list was computed with HF
// tokenizers 0.22.2 on the same model JSON (ByteLevel pre-tokenizer without regex).
#include "engine/tokenizer/bpe_model.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace moeserve::engine {
namespace {

using nlohmann::json;

json Vocab(const std::vector<std::string>& tokens) {
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  return vocab;
}

std::unique_ptr<BpeModel> Model(json model) {
  model["type"] = "BPE";
  auto bpe = BpeModel::FromJson(model, "test: model");
  EXPECT_TRUE(bpe.ok()) << bpe.status();
  return bpe.ok() ? *std::move(bpe) : nullptr;
}

std::vector<int32_t> Encode(const BpeModel& model, std::string_view piece) {
  std::vector<int32_t> ids;
  model.Encode(piece, ids);
  return ids;
}

using Ids = std::vector<int32_t>;

TEST(BpeModelTest, LowestRankFirst) {
  auto model = Model(
      {{"vocab", Vocab({"a", "b", "c", "ab", "bc", "abc"})}, {"merges", {"b c", "a b", "a bc"}}});
  EXPECT_EQ(Encode(*model, "abc"), Ids{5});
  EXPECT_EQ(Encode(*model, "abab"), (Ids{3, 3}));
  EXPECT_EQ(Encode(*model, "abc"), Ids{5});  // again, from the cache
}

TEST(BpeModelTest, LeftmostAmongEqualRanks) {
  auto model = Model({{"vocab", Vocab({"a", "aa"})}, {"merges", {"a a"}}});
  EXPECT_EQ(Encode(*model, "aaa"), (Ids{1, 0}));
  EXPECT_EQ(Encode(*model, "aaaa"), (Ids{1, 1}));
  // Longer than the cache limit: the same merges.
  EXPECT_EQ(Encode(*model, std::string(301, 'a')), [] {
    Ids ids(150, 1);
    ids.push_back(0);
    return ids;
  }());
}

TEST(BpeModelTest, RepeatedMergeKeepsItsLastRankAndVersionLinesAreSkipped) {
  auto repeated =
      Model({{"vocab", Vocab({"a", "b", "c", "ab", "bc"})}, {"merges", {"a b", "b c", "a b"}}});
  EXPECT_EQ(Encode(*repeated, "abc"), (Ids{0, 4}));
  auto versioned =
      Model({{"vocab", Vocab({"a", "b", "ab"})}, {"merges", {"#version: 0.2", "a b"}}});
  EXPECT_EQ(Encode(*versioned, "ab"), Ids{2});
  auto pairs = Model(
      {{"vocab", Vocab({"a", "b", "ab"})}, {"merges", json::array({json::array({"a", "b"})})}});
  EXPECT_EQ(Encode(*pairs, "ab"), Ids{2});
}

TEST(BpeModelTest, IgnoreMerges) {
  const json vocab = Vocab({"a", "b", "c", "ab", "bc", "abc"});
  auto plain = Model({{"vocab", vocab}, {"merges", {"a b", "b c"}}});
  EXPECT_EQ(Encode(*plain, "abc"), (Ids{3, 2}));
  auto ignoring = Model({{"vocab", vocab}, {"merges", {"a b", "b c"}}, {"ignore_merges", true}});
  EXPECT_EQ(Encode(*ignoring, "abc"), Ids{5});
  EXPECT_EQ(Encode(*ignoring, "abcabc"), (Ids{3, 2, 3, 2}));
}

TEST(BpeModelTest, UnknownCharacters) {
  auto unk =
      Model({{"vocab", Vocab({"a", "<unk>"})}, {"merges", json::array()}, {"unk_token", "<unk>"}});
  EXPECT_EQ(Encode(*unk, "abba"), (Ids{0, 1, 1, 0}));
  auto fused = Model({{"vocab", Vocab({"a", "<unk>"})},
                      {"merges", json::array()},
                      {"unk_token", "<unk>"},
                      {"fuse_unk", true}});
  EXPECT_EQ(Encode(*fused, "abba"), (Ids{0, 1, 0}));
  auto dropped = Model({{"vocab", Vocab({"a"})}, {"merges", json::array()}});
  EXPECT_EQ(Encode(*dropped, "abba"), (Ids{0, 0}));
}

TEST(BpeModelTest, ByteFallback) {
  auto model = Model({{"vocab", Vocab({"a", "<0x62>", "<unk>"})},
                      {"merges", json::array()},
                      {"unk_token", "<unk>"},
                      {"byte_fallback", true}});
  EXPECT_EQ(Encode(*model, "ab"), (Ids{0, 1}));
  EXPECT_EQ(Encode(*model, "ac"), (Ids{0, 2}));
  EXPECT_EQ(Encode(*model, "xb"), (Ids{1, 2}));  // tokenizers writes the pending unk last
  EXPECT_EQ(Encode(*model, "é"), (Ids{2, 2}));   // 'Ã' '©': no <0xC3>, so unk each
}

TEST(BpeModelTest, SubwordPrefixAndSuffix) {
  auto prefixed = Model({{"vocab", Vocab({"a", "##b", "ab"})},
                         {"merges", {"a ##b"}},
                         {"continuing_subword_prefix", "##"}});
  EXPECT_EQ(Encode(*prefixed, "ab"), Ids{2});
  EXPECT_EQ(Encode(*prefixed, "ba"), Ids{});
  auto suffixed = Model({{"vocab", Vocab({"a", "b</w>", "ab</w>", "b"})},
                         {"merges", {"a b</w>"}},
                         {"end_of_word_suffix", "</w>"}});
  EXPECT_EQ(Encode(*suffixed, "ab"), Ids{2});
  EXPECT_EQ(Encode(*suffixed, "abb"), (Ids{0, 3, 1}));
}

TEST(BpeModelTest, BytesMapToGpt2Characters) {
  auto model =
      Model({{"vocab", Vocab({"Ġ", "a", "Ġa", "Ã", "©", "Ã©"})}, {"merges", {"Ġ a", "Ã ©"}}});
  EXPECT_EQ(Encode(*model, " a"), Ids{2});
  EXPECT_EQ(Encode(*model, "é"), Ids{5});
  EXPECT_EQ(ByteLevelEncode(" é\n"), "ĠÃ©Ċ");
  EXPECT_EQ(ByteLevelDecode("ĠÃ©Ċ"), " é\n");
  EXPECT_EQ(ByteLevelDecode("<｜User｜>"), "<｜User｜>");  // '｜' is outside the table
  for (int b = 0; b < 256; ++b) {
    const std::string byte(1, static_cast<char>(b));
    EXPECT_EQ(ByteLevelDecode(ByteLevelEncode(byte)), byte);
  }
  EXPECT_EQ(model->TokenToId("Ã©"), 5);
  EXPECT_EQ(*model->IdToToken(2), "Ġa");
  EXPECT_EQ(model->IdToToken(6), nullptr);
  EXPECT_EQ(model->num_entries(), 6);
}

}  // namespace
}  // namespace moeserve::engine
