// Tokenizer against HF tokenizers / transformers: every fixture string of both fixture files
// (tests/data/tokenizers/*/fixtures.jsonl), decode vectors, round trips, special tokens, invalid
// UTF-8, tokenizer_config.json rules and quirks, and concurrent use.
#include "engine/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/tokenizer/bpe_model.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace moeserve::engine {
namespace {

using nlohmann::json;
using testing::Ids;
using testing::kFixtureTokenizers;
using testing::LossyUtf8;
using testing::ReadJsonLines;
using testing::ReadTextFile;
using testing::TokenizerDir;

// Loading takes ~0.1 s; each (tokenizer, with config) pair is loaded once per test binary.
const Tokenizer& Cached(const std::string& name, bool with_config) {
  static std::mutex mu;
  static std::map<std::pair<std::string, bool>, std::unique_ptr<Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[{name, with_config}];
  if (slot == nullptr) {
    const std::string dir = TokenizerDir(name);
    auto tokenizer = with_config ? Tokenizer::Load(dir)
                                 : Tokenizer::FromJson(ReadTextFile(dir + "/tokenizer.json"), "",
                                                       dir + "/tokenizer.json");
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    if (!tokenizer.ok()) std::abort();
    slot = *std::move(tokenizer);
  }
  return *slot;
}

std::string Show(const std::vector<int32_t>& ids) { return json(ids).dump(); }

class FixtureTest : public ::testing::TestWithParam<const char*> {
 protected:
  std::string Dir() const { return TokenizerDir(GetParam()); }
  std::vector<json> Fixtures() const {
    std::vector<json> records = ReadJsonLines(Dir() + "/fixtures.jsonl");
    EXPECT_GT(records.size(), 2000u) << "missing " << Dir() << "/fixtures.jsonl";
    return records;
  }
};

// tokenizers alone (no tokenizer_config.json): "ids" without and "ids_with_special" with the
// tokenizer.json post-processor.
TEST_P(FixtureTest, EncodeMatchesTokenizersOnEveryFixture) {
  const Tokenizer& tokenizer = Cached(GetParam(), /*with_config=*/false);
  int matched = 0, failed = 0;
  const std::vector<json> records = Fixtures();
  for (const json& record : records) {
    const std::string& text = record["text"].get_ref<const std::string&>();
    for (const bool special : {false, true}) {
      const std::vector<int32_t> expected = Ids(record[special ? "ids_with_special" : "ids"]);
      auto actual = tokenizer.Encode(text, special);
      ASSERT_TRUE(actual.ok()) << actual.status();
      if (*actual == expected) {
        if (special) ++matched;
        continue;
      }
      if (++failed <= 10) {
        ADD_FAILURE() << GetParam() << " add_special_tokens=" << special
                      << "\n  text:     " << json(text).dump() << "\n  expected: " << Show(expected)
                      << "\n  actual:   " << Show(*actual);
      }
    }
  }
  EXPECT_EQ(failed, 0);
  std::printf("%s: %d / %zu fixture strings match tokenizers (with and without special tokens)\n",
              GetParam(), matched, records.size());
  RecordProperty("fixtures_matched", matched);
}

// transformers' AutoTokenizer (tokenizer_config.json present): the meta file's rule, e.g.
// "[32013] + ids", or the record's "ids_transformers" where the generator saw it differ.
TEST_P(FixtureTest, EncodeMatchesTransformersWithConfig) {
  const Tokenizer& tokenizer = Cached(GetParam(), /*with_config=*/true);
  const json meta = json::parse(ReadTextFile(Dir() + "/fixtures.meta.json"));
  std::vector<int32_t> prefix, suffix;
  bool after_ids = false;
  const std::vector<std::string> parts =
      absl::StrSplit(meta["transformers_ids_with_special_rule"].get<std::string>(), " + ");
  for (const std::string& part : parts) {
    if (part == "ids") {
      after_ids = true;
    } else {
      (after_ids ? suffix : prefix).push_back(std::stoi(part.substr(1)));
    }
  }
  EXPECT_EQ(tokenizer.special_prefix(), prefix) << tokenizer.special_tokens_rule();
  EXPECT_EQ(tokenizer.special_suffix(), suffix);
  int failed = 0;
  for (const json& record : Fixtures()) {
    std::vector<int32_t> expected = prefix;
    for (int32_t id : Ids(record["ids"])) expected.push_back(id);
    expected.insert(expected.end(), suffix.begin(), suffix.end());
    if (record.contains("ids_transformers")) expected = Ids(record["ids_transformers"]);
    auto actual = tokenizer.Encode(record["text"].get<std::string>());
    ASSERT_TRUE(actual.ok()) << actual.status();
    if (*actual != expected && ++failed <= 10) {
      ADD_FAILURE() << "text: " << record["text"].dump() << "\n  expected: " << Show(expected)
                    << "\n  actual:   " << Show(*actual);
    }
  }
  EXPECT_EQ(failed, 0);
}

TEST_P(FixtureTest, DecodeInvertsEncodeOnEveryFixture) {
  const Tokenizer& tokenizer = Cached(GetParam(), /*with_config=*/true);
  int failed = 0;
  for (const json& record : Fixtures()) {
    const std::string& text = record["text"].get_ref<const std::string&>();
    auto ids = tokenizer.Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok());
    const std::string decoded = tokenizer.Decode(*ids);
    if (decoded != text && ++failed <= 10) {
      ADD_FAILURE() << "text:    " << json(text).dump()
                    << "\n  decoded: " << json(LossyUtf8(decoded)).dump();
    }
  }
  EXPECT_EQ(failed, 0);
}

// decode_fixtures.jsonl: random id sequences (any id, specials included) and prefixes of
// encodings that stop inside a character. HF returns from_utf8_lossy of the bytes; we return
// the bytes. Where HF passes an added token through the ByteLevel decoder and gets other bytes
// than its content (DeepSeek-Coder's "ü" → 0xFC), we keep the content on purpose: those
// sequences are checked against the content rule instead.
TEST_P(FixtureTest, DecodeMatchesTokenizers) {
  const Tokenizer& tokenizer = Cached(GetParam(), /*with_config=*/false);
  const std::vector<json> records = ReadJsonLines(Dir() + "/decode_fixtures.jsonl");
  ASSERT_GT(records.size(), 100u);
  // An added token (its content spells its own id) whose content HF's decoder would rewrite.
  const auto content_differs_from_hf = [&](int32_t id) {
    const std::string bytes = tokenizer.TokenBytes(id);
    return ByteLevelDecode(bytes) != bytes && tokenizer.TokenToId(bytes) == id;
  };
  int compared = 0, deliberate = 0;
  for (const json& record : records) {
    const std::vector<int32_t> ids = Ids(record["ids"]);
    bool uses_deviation = false;
    for (int32_t id : ids) uses_deviation |= content_differs_from_hf(id);
    if (uses_deviation) {
      ++deliberate;
      std::string expected;
      for (int32_t id : ids) expected += tokenizer.TokenBytes(id);
      EXPECT_EQ(tokenizer.Decode(ids), expected);
      continue;
    }
    ++compared;
    EXPECT_EQ(LossyUtf8(tokenizer.Decode(ids)), record["text"].get<std::string>())
        << "ids " << Show(ids);
    EXPECT_EQ(LossyUtf8(tokenizer.Decode(ids, /*skip_special_tokens=*/true)),
              record["text_skip_special"].get<std::string>())
        << "ids " << Show(ids);
  }
  std::printf("%s: %d decode vectors match HF, %d use added tokens decoded as their content\n",
              GetParam(), compared, deliberate);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, FixtureTest, ::testing::ValuesIn(kFixtureTokenizers));

constexpr const char* kCoder = "deepseek-coder-6.7b-instruct";
constexpr const char* kKjv = "kjv-bpe-8k";

TEST(TokenizerTest, SpecialTokensInsideText) {
  const Tokenizer& coder = Cached(kCoder, true);
  auto ids = coder.Encode("a<｜begin▁of▁sentence｜>b<|EOT|>", /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{64, 32013, 65, 32021}));
  EXPECT_TRUE(coder.IsSpecial(32013));
  EXPECT_FALSE(coder.IsSpecial(32021));  // <|EOT|> is not marked special in tokenizer.json
  EXPECT_FALSE(coder.IsSpecial(64));
  EXPECT_EQ(coder.Decode(*ids), "a<｜begin▁of▁sentence｜>b<|EOT|>");
  EXPECT_EQ(coder.Decode(*ids, /*skip_special_tokens=*/true), "ab<|EOT|>");

  const Tokenizer& kjv = Cached(kKjv, true);
  ids = kjv.Encode("<｜User｜>Hi<｜Assistant｜><think>x</think>");
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 6u);
  EXPECT_EQ((*ids)[0], 0);  // BOS
  EXPECT_EQ((*ids)[1], 8197);
  EXPECT_EQ(kjv.Decode(*ids, /*skip_special_tokens=*/true), "Hi<think>x</think>");
}

// DeepSeek-Coder adds "õ", "÷", "Á", ... (ids 32000-32012) as plain added tokens; HF encodes
// those letters with them and decodes them to single bytes. We decode them as their content.
TEST(TokenizerTest, CoderLatinAddedTokensRoundTrip) {
  const Tokenizer& coder = Cached(kCoder, true);
  auto ids = coder.Encode("über", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{32009, 696}));
  EXPECT_EQ(coder.TokenBytes(32009), "ü");
  EXPECT_EQ(coder.Decode(*ids), "über");
}

TEST(TokenizerTest, InvalidUtf8IsRejectedWithTheOffset) {
  const Tokenizer& tokenizer = Cached(kKjv, true);
  const std::pair<std::string, size_t> cases[] = {
      {"ab\xff"
       "cd",
       2},                        // never valid
      {"abc\x80", 3},             // stray continuation byte
      {"ok \xe4\xb8", 3},         // truncated at the end
      {"\xed\xa0\x80", 0},        // surrogate U+D800
      {"x\xc0\x80", 1},           // overlong NUL
      {"12\xf4\x90\x80\x80", 2},  // above U+10FFFF
      {"\xe2\x82\xac\xe2(", 3},   // "€" then a bad continuation
  };
  for (const auto& [text, offset] : cases) {
    auto ids = tokenizer.Encode(text);
    ASSERT_FALSE(ids.ok()) << json(LossyUtf8(text)).dump();
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find("byte offset " + std::to_string(offset)),
              std::string::npos)
        << ids.status();
  }
  EXPECT_TRUE(tokenizer.Encode("\xf0\x9f\x98\x80 \xef\xbf\xbd").ok());  // 😀 and U+FFFD are fine
}

TEST(TokenizerTest, Accessors) {
  const Tokenizer& coder = Cached(kCoder, true);
  EXPECT_EQ(coder.vocab_size(), 32022);
  EXPECT_EQ(coder.bos_token_id(), 32013);
  EXPECT_EQ(coder.eos_token_id(), 32021);  // <|EOT|>, from tokenizer_config.json
  EXPECT_EQ(coder.TokenToId("Ġworld"), 1835);
  EXPECT_EQ(coder.TokenToId("<pad>"), 32018);
  EXPECT_EQ(coder.TokenToId("no such token"), std::nullopt);
  EXPECT_EQ(coder.TokenBytes(1835), " world");
  EXPECT_EQ(coder.TokenBytes(-1), "");
  EXPECT_EQ(coder.TokenBytes(32022), "");
  EXPECT_EQ(coder.Decode({1835, -5, 999999, 1835}), " world world");  // unknown ids skipped

  const Tokenizer& coder_alone = Cached(kCoder, false);  // ByteLevel post-processor: no BOS
  EXPECT_EQ(coder_alone.bos_token_id(), std::nullopt);
  EXPECT_EQ(coder_alone.eos_token_id(), std::nullopt);
  EXPECT_TRUE(coder_alone.special_prefix().empty());

  const Tokenizer& kjv = Cached(kKjv, true);
  EXPECT_EQ(kjv.vocab_size(), 8209);
  EXPECT_EQ(kjv.bos_token_id(), 0);
  EXPECT_EQ(kjv.eos_token_id(), 1);
  EXPECT_EQ(Cached(kKjv, false).bos_token_id(), 0);  // from the TemplateProcessing
  EXPECT_EQ(kjv.TokenBytes(0), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(kjv.Encode("")->size(), 1u);  // just BOS
  EXPECT_TRUE(kjv.Encode("", false)->empty());
}

TEST(TokenizerTest, LoadReadsTheDirectory) {
  auto tokenizer = Tokenizer::Load(TokenizerDir(kKjv));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(*(*tokenizer)->Encode("In the beginning"),
            (std::vector<int32_t>{0, 43, 80, 261, 2188}));  // transformers' AutoTokenizer

  auto missing = Tokenizer::Load("/nonexistent/model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/model/tokenizer.json"),
            std::string::npos);
}

// The tokenizer_config.json files of the DeepSeek family (and Kimi-K2, whose model_max_length
// is a 31-digit integer) load next to the kjv tokenizer.json, which has DeepSeek-V3's tokens.
TEST(TokenizerTest, RealTokenizerConfigsLoad) {
  const std::string tokenizer_json = ReadTextFile(TokenizerDir(kKjv) + "/tokenizer.json");
  const std::string configs = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/configs/";
  struct Case {
    const char* file;
    std::vector<int32_t> prefix;
    std::optional<int32_t> bos, eos;
  };
  const Case cases[] = {
      {"deepseek-v3.tokenizer_config.json", {0}, 0, 1},
      {"deepseek-r1.tokenizer_config.json", {0}, 0, 1},
      // TikTokenTokenizer does not rebuild the post-processor: tokenizer.json's BOS stays;
      // its "[BOS]" / "[EOS]" are not in this vocabulary.
      {"kimi-k2-instruct.tokenizer_config.json", {0}, std::nullopt, std::nullopt},
  };
  for (const Case& c : cases) {
    auto tokenizer =
        Tokenizer::FromJson(tokenizer_json, ReadTextFile(configs + c.file), "x/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok()) << c.file << ": " << tokenizer.status();
    EXPECT_EQ((*tokenizer)->special_prefix(), c.prefix) << c.file;
    EXPECT_EQ((*tokenizer)->bos_token_id(), c.bos) << c.file;
    EXPECT_EQ((*tokenizer)->eos_token_id(), c.eos) << c.file;
  }
  // The coder config names <|EOT|> as EOS; with its own tokenizer.json see Accessors.
  auto coder = Tokenizer::FromJson(
      ReadTextFile(TokenizerDir(kCoder) + "/tokenizer.json"),
      ReadTextFile(configs + "deepseek-coder-6.7b-instruct.tokenizer_config.json"), "c");
  ASSERT_TRUE(coder.ok()) << coder.status();
  EXPECT_EQ((*coder)->special_prefix(), std::vector<int32_t>{32013});
}

TEST(TokenizerTest, ConfigFlagsChooseBosAndEos) {
  const std::string tokenizer_json = ReadTextFile(TokenizerDir(kKjv) + "/tokenizer.json");
  const auto load = [&](const std::string& config) {
    return Tokenizer::FromJson(tokenizer_json, config, "dir/tokenizer.json");
  };
  auto no_bos = load(R"({"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": false,
                         "bos_token": "<｜begin▁of▁sentence｜>"})");
  ASSERT_TRUE(no_bos.ok()) << no_bos.status();
  EXPECT_EQ(*(*no_bos)->Encode("In"), (std::vector<int32_t>{43, 80}));

  auto with_eos = load(R"({"tokenizer_class": "LlamaTokenizerFast", "add_eos_token": true,
                           "bos_token": {"content": "<｜begin▁of▁sentence｜>"},
                           "eos_token": "<｜end▁of▁sentence｜>"})");
  ASSERT_TRUE(with_eos.ok()) << with_eos.status();
  EXPECT_EQ(*(*with_eos)->Encode("In"), (std::vector<int32_t>{0, 43, 80, 1}));
  EXPECT_EQ(*(*with_eos)->Encode("In", false), (std::vector<int32_t>{43, 80}));

  // Classes that do not rebuild the post-processor keep tokenizer.json's (BOS here).
  auto generic = load(R"({"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": false})");
  ASSERT_TRUE(generic.ok()) << generic.status();
  EXPECT_EQ(*(*generic)->Encode("In"), (std::vector<int32_t>{0, 43, 80}));

  // Errors name tokenizer_config.json and the field.
  for (const auto& [config, needle] : std::vector<std::pair<std::string, std::string>>{
           {R"({"add_bos_token": "yes"})", "'add_bos_token' must be a boolean"},
           {R"({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<nope>"})",
            "bos_token '<nope>' is not in the vocabulary"},
           {R"({"tokenizer_class": "LlamaTokenizerFast", "bos_token": null})", "bos_token is null"},
           {R"({"bos_token": 7})", "'bos_token' must be a string"},
           {R"({"add_bos_token": true,})", "invalid JSON"},
           {R"([1, 2])", "must be a JSON object"},
       }) {
    auto tokenizer = load(config);
    ASSERT_FALSE(tokenizer.ok()) << config;
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(tokenizer.status().message().find("dir/tokenizer_config.json"), std::string::npos)
        << tokenizer.status();
    EXPECT_NE(tokenizer.status().message().find(needle), std::string::npos) << tokenizer.status();
  }
}

TEST(TokenizerTest, ConcurrentEncodesAgree) {
  const Tokenizer& tokenizer = Cached(kCoder, true);
  const std::vector<json> records = ReadJsonLines(TokenizerDir(kCoder) + "/fixtures.jsonl");
  ASSERT_FALSE(records.empty());
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < records.size() * 2; i += 3) {
        const json& record = records[i % records.size()];
        auto ids = tokenizer.Encode(record["text"].get<std::string>(), false);
        if (!ids.ok() || *ids != Ids(record["ids"])) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace moeserve::engine
