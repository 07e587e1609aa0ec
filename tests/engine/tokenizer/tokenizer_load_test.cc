// Malformed and unsupported tokenizer.json files: each error names the file and the field.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {
namespace {

using nlohmann::json;

constexpr const char* kSource = "models/t/tokenizer.json";

// A small valid byte-level BPE tokenizer: the 256 byte characters, "ab" and "abc", one added
// special token.
json MinimalTokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[std::string(ByteLevelChar(static_cast<uint8_t>(b)))] = b;
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  return {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", 258},
                                     {"content", "<s>"},
                                     {"special", true},
                                     {"normalized", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"single_word", false}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b", "ab c"})}}},
  };
}

TEST(TokenizerLoadTest, MinimalTokenizerWorks) {
  auto tokenizer = Tokenizer::FromJson(MinimalTokenizer().dump(), "", kSource);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(*(*tokenizer)->Encode("abc<s>ab d"), (std::vector<int32_t>{257, 258, 256, 32, 100}));
  EXPECT_EQ((*tokenizer)->vocab_size(), 259);
  EXPECT_TRUE((*tokenizer)->IsSpecial(258));
}

struct BadCase {
  const char* name;
  std::function<void(json&)> edit;  // applied to MinimalTokenizer()
  absl::StatusCode code;
  const char* message;  // expected substring (besides the file name)
};

class BadTokenizerTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadTokenizerTest, FailsNamingFileAndField) {
  json tokenizer = MinimalTokenizer();
  GetParam().edit(tokenizer);
  auto loaded = Tokenizer::FromJson(tokenizer.dump(), "", kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), GetParam().code) << loaded.status();
  EXPECT_NE(loaded.status().message().find(kSource), std::string::npos) << loaded.status();
  EXPECT_NE(loaded.status().message().find(GetParam().message), std::string::npos)
      << loaded.status();
}

const auto kInvalid = absl::StatusCode::kInvalidArgument;
const auto kUnimplemented = absl::StatusCode::kUnimplemented;

INSTANTIATE_TEST_SUITE_P(
    Cases, BadTokenizerTest,
    ::testing::Values(
        BadCase{"MissingModel", [](json& t) { t.erase("model"); }, kInvalid,
                "missing field 'model'"},
        BadCase{"ModelNotObject", [](json& t) { t["model"] = 3; }, kInvalid,
                "'model' must be an object"},
        BadCase{"UnknownModelType", [](json& t) { t["model"]["type"] = "WordPiece"; },
                kUnimplemented, "unsupported model type 'WordPiece' in model.type"},
        BadCase{"MissingVocab", [](json& t) { t["model"].erase("vocab"); }, kInvalid,
                "model: missing field 'vocab'"},
        BadCase{"MissingMerges", [](json& t) { t["model"].erase("merges"); }, kInvalid,
                "model: missing field 'merges'"},
        BadCase{"MergeOfUnknownToken", [](json& t) { t["model"]["merges"].push_back("zz b"); },
                kInvalid, "model: merges[2]: token 'zz' is not in the vocab"},
        BadCase{"MergeResultUnknown", [](json& t) { t["model"]["merges"].push_back("b c"); },
                kInvalid, "model: merges[2]: merged token 'bc' is not in the vocab"},
        BadCase{"MergePairUnknown",
                [](json& t) {
                  t["model"]["merges"] = json::array({json::array({"a", "qq"})});
                },
                kInvalid, "model: merges[0]: token 'qq' is not in the vocab"},
        BadCase{"MergeNotTwoTokens", [](json& t) { t["model"]["merges"].push_back("a b c"); },
                kInvalid, "merges[2]: 'a b c' must be two tokens separated by one space"},
        BadCase{"MergeWrongType", [](json& t) { t["model"]["merges"].push_back(7); }, kInvalid,
                "merges[2]: must be \"a b\" or [\"a\", \"b\"]"},
        BadCase{"VocabIdNotInteger", [](json& t) { t["model"]["vocab"]["abc"] = "x"; }, kInvalid,
                "vocab['abc'] must be an integer id"},
        BadCase{"VocabIdNegative", [](json& t) { t["model"]["vocab"]["abc"] = -1; }, kInvalid,
                "vocab['abc'] must be an integer id"},
        BadCase{"VocabIdShared", [](json& t) { t["model"]["vocab"]["abc"] = 256; }, kInvalid,
                "vocab: id 256 is given to both 'ab' and 'abc'"},
        BadCase{"UnkTokenNotInVocab", [](json& t) { t["model"]["unk_token"] = "<unk>"; }, kInvalid,
                "unk_token '<unk>' is not in the vocab"},
        BadCase{"Dropout", [](json& t) { t["model"]["dropout"] = 0.1; }, kUnimplemented,
                "unsupported dropout"},
        BadCase{"NormalizerNfc",
                [](json& t) {
                  t["normalizer"] = {{"type", "NFC"}};
                },
                kUnimplemented, "unsupported normalizer 'NFC' in normalizer"},
        BadCase{"NormalizerInSequence",
                [](json& t) {
                  t["normalizer"] = {{"type", "Sequence"},
                                     {"normalizers", json::array({{{"type", "Lowercase"}}})}};
                },
                kUnimplemented, "unsupported normalizer 'Lowercase' in normalizer.normalizers[0]"},
        BadCase{"PreTokenizerNull", [](json& t) { t["pre_tokenizer"] = nullptr; }, kUnimplemented,
                "pre_tokenizer is null"},
        BadCase{"PreTokenizerWhitespace",
                [](json& t) {
                  t["pre_tokenizer"] = {{"type", "Sequence"},
                                        {"pretokenizers", json::array({{{"type", "Whitespace"}},
                                                                       t["pre_tokenizer"]})}};
                },
                kUnimplemented,
                "pre_tokenizer.pretokenizers[0]: unsupported pre_tokenizer 'Whitespace'"},
        BadCase{"NoByteLevel",
                [](json& t) {
                  t["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
                },
                kUnimplemented, "no ByteLevel step"},
        BadCase{"ByteLevelNotLast",
                [](json& t) {
                  t["pre_tokenizer"] = {
                      {"type", "Sequence"},
                      {"pretokenizers", json::array({t["pre_tokenizer"], {{"type", "Digits"}}})}};
                },
                kUnimplemented, "ByteLevel must be the last step"},
        BadCase{"RegexDoesNotCompile",
                [](json& t) {
                  t["pre_tokenizer"] = {
                      {"type", "Sequence"},
                      {"pretokenizers", json::array({{{"type", "Split"},
                                                      {"pattern", {{"Regex", "(unclosed"}}},
                                                      {"behavior", "Isolated"},
                                                      {"invert", false}},
                                                     t["pre_tokenizer"]})}};
                },
                kInvalid, "pretokenizers[0]: pattern '(unclosed': regex does not compile"},
        BadCase{"SplitBadBehavior",
                [](json& t) {
                  t["pre_tokenizer"] = {
                      {"type", "Sequence"},
                      {"pretokenizers", json::array({{{"type", "Split"},
                                                      {"pattern", {{"String", " "}}},
                                                      {"behavior", "Sideways"}},
                                                     t["pre_tokenizer"]})}};
                },
                kInvalid, "'behavior' must be one of"},
        BadCase{"DecoderMetaspace",
                [](json& t) {
                  t["decoder"] = {{"type", "Metaspace"}};
                },
                kUnimplemented, "unsupported decoder 'Metaspace' in decoder"},
        BadCase{"DecoderNull", [](json& t) { t["decoder"] = nullptr; }, kUnimplemented,
                "unsupported decoder 'null'"},
        BadCase{"PostProcessorUnknown",
                [](json& t) {
                  t["post_processor"] = {{"type", "Mystery"}};
                },
                kUnimplemented, "unsupported post_processor 'Mystery' in post_processor"},
        BadCase{"TemplateMissingSpecial",
                [](json& t) {
                  t["post_processor"] = {
                      {"type", "TemplateProcessing"},
                      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                      {"special_tokens", json::object()}};
                },
                kInvalid, "post_processor.single[0]: special token '<s>' is missing"},
        BadCase{"AddedTokenWithoutContent",
                [](json& t) {
                  t["added_tokens"].push_back({{"id", 300}});
                },
                kInvalid, "added_tokens[1]: missing string field 'content'"},
        BadCase{"AddedTokenBadFlag", [](json& t) { t["added_tokens"][0]["special"] = "yes"; },
                kInvalid, "added_tokens[0].special must be a boolean"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST(TokenizerLoadTest, MalformedJson) {
  for (const std::string text : {"{", "", "{\"model\": }", "[1,]"}) {
    auto loaded = Tokenizer::FromJson(text, "", kSource);
    ASSERT_FALSE(loaded.ok()) << text;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(loaded.status().message().find(std::string(kSource) + ": invalid JSON"),
              std::string::npos)
        << loaded.status();
  }
  auto not_object = Tokenizer::FromJson("[]", "", kSource);
  ASSERT_FALSE(not_object.ok());
  EXPECT_NE(not_object.status().message().find("must be a JSON object"), std::string::npos);
}

TEST(TokenizerLoadTest, DuplicateKeysAreRejected) {
  std::string text = MinimalTokenizer().dump();
  text.insert(1, "\"decoder\": null, ");  // a second "decoder" key
  auto loaded = Tokenizer::FromJson(text, "", kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("duplicate key 'decoder'"), std::string::npos)
      << loaded.status();
}

// tokenizers ignores the "id" written with an added token: a content in the vocab gets the
// vocab's id, the others are numbered from the vocab size in file order.
TEST(TokenizerLoadTest, AddedTokenIdsFollowTokenizers) {
  json t = MinimalTokenizer();
  t["added_tokens"] = json::array({{{"id", 900}, {"content", "abc"}, {"special", true}},
                                   {{"id", 901}, {"content", "<x>"}},
                                   {{"id", 5}, {"content", "<y>"}}});
  auto tokenizer = Tokenizer::FromJson(t.dump(), "", kSource);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->TokenToId("abc"), 257);
  EXPECT_EQ((*tokenizer)->TokenToId("<x>"), 258);
  EXPECT_EQ((*tokenizer)->TokenToId("<y>"), 259);
  EXPECT_TRUE((*tokenizer)->IsSpecial(257));
  EXPECT_EQ((*tokenizer)->vocab_size(), 260);
}

TEST(TokenizerLoadTest, PostProcessors) {
  const auto prefix_suffix = [](const json& processor) {
    json t = MinimalTokenizer();
    t["post_processor"] = processor;
    auto tokenizer = Tokenizer::FromJson(t.dump(), "", kSource);
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    auto ids = (*tokenizer)->Encode("a");
    return *ids;
  };
  const json roberta = {{"type", "RobertaProcessing"}, {"cls", {"<s>", 258}}, {"sep", {"c", 99}}};
  EXPECT_EQ(prefix_suffix(roberta), (std::vector<int32_t>{258, 97, 99}));
  const json tmpl = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
      {"special_tokens",
       {{"</s>", {{"id", "</s>"}, {"ids", {256, 257}}, {"tokens", {"ab", "abc"}}}}}}};
  EXPECT_EQ(prefix_suffix(tmpl), (std::vector<int32_t>{97, 256, 257}));
  // Sequence: later processors wrap the earlier ones' output.
  const json sequence = {{"type", "Sequence"},
                         {"processors", json::array({{{"type", "ByteLevel"}}, tmpl, roberta})}};
  EXPECT_EQ(prefix_suffix(sequence), (std::vector<int32_t>{258, 97, 256, 257, 99}));
}

}  // namespace
}  // namespace moeserve::engine
