// The real server started on a corpus of broken checkpoints, each made from a valid tiny model
// by one corruption of its safetensors shards, index, config.json, tokenizer.json or
// tokenizer_config.json: every one must end the process with exit status 1 (not a signal, not a
// hang) and a log line naming the file at fault — and the field or tensor where there is one.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kShard[] = "model-00001-of-00002.safetensors";

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void Write(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Edits one JSON file in place.
void EditJson(const fs::path& path, const std::function<void(json&)>& edit) {
  json document = json::parse(Read(path));
  edit(document);
  Write(path, document.dump(1));
}

// Rewrites the safetensors header of `path` (the data bytes stay where they are).
void EditSafetensorsHeader(const fs::path& path, const std::function<void(json&)>& edit) {
  const std::string bytes = Read(path);
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  json header = json::parse(bytes.substr(8, length));
  edit(header);
  const std::string text = header.dump();
  uint64_t new_length = text.size();
  std::string out(reinterpret_cast<const char*>(&new_length), 8);
  Write(path, out + text + bytes.substr(8 + length));
}

// The first tensor of a header (not __metadata__).
std::string FirstTensor(const json& header) {
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() != "__metadata__") return it.key();
  }
  return "";
}

struct Corruption {
  std::string name;
  std::function<void(const fs::path& dir)> apply;
  std::vector<std::string> log_must_name;  // every string must appear in the startup log
};

std::vector<Corruption> Corpus() {
  const auto shard = [](const fs::path& dir) { return dir / kShard; };
  return {
      // --- safetensors shards
      {"shard truncated to half",
       [&](const fs::path& d) { fs::resize_file(shard(d), fs::file_size(shard(d)) / 2); },
       {kShard}},
      {"shard empty", [&](const fs::path& d) { Write(shard(d), ""); }, {kShard}},
      {"shard of 5 bytes", [&](const fs::path& d) { Write(shard(d), "abcde"); }, {kShard}},
      {"header length 2^63",
       [&](const fs::path& d) {
         std::string bytes = Read(shard(d));
         const uint64_t huge = uint64_t{1} << 63;
         std::memcpy(bytes.data(), &huge, 8);
         Write(shard(d), bytes);
       },
       {kShard}},
      {"header length past the end",
       [&](const fs::path& d) {
         std::string bytes = Read(shard(d));
         const uint64_t past = bytes.size();
         std::memcpy(bytes.data(), &past, 8);
         Write(shard(d), bytes);
       },
       {kShard}},
      {"header not JSON",
       [&](const fs::path& d) {
         std::string bytes = Read(shard(d));
         bytes[8] = 'x';
         Write(shard(d), bytes);
       },
       {kShard}},
      {"unknown dtype",
       [&](const fs::path& d) {
         EditSafetensorsHeader(shard(d), [](json& h) { h[FirstTensor(h)]["dtype"] = "F33"; });
       },
       {kShard, "F33"}},
      {"shape does not match the byte range",
       [&](const fs::path& d) {
         EditSafetensorsHeader(shard(d), [](json& h) { h[FirstTensor(h)]["shape"][0] = 3; });
       },
       {kShard}},
      {"overlapping tensors",
       [&](const fs::path& d) {
         EditSafetensorsHeader(shard(d), [](json& h) {
           std::vector<std::string> names;
           for (auto it = h.begin(); it != h.end(); ++it) {
             if (it.key() != "__metadata__") names.push_back(it.key());
           }
           h[names[1]]["data_offsets"] = h[names[0]]["data_offsets"];
           h[names[1]]["shape"] = h[names[0]]["shape"];
           h[names[1]]["dtype"] = h[names[0]]["dtype"];
         });
       },
       {kShard}},
      {"negative dimension",
       [&](const fs::path& d) {
         EditSafetensorsHeader(shard(d), [](json& h) { h[FirstTensor(h)]["shape"][0] = -4; });
       },
       {kShard}},
      {"tensor renamed (missing)",
       [&](const fs::path& d) {
         EditSafetensorsHeader(shard(d), [](json& h) {
           const std::string name = FirstTensor(h);
           h[name + ".renamed"] = h[name];
           h.erase(name);
         });
       },
       {kShard}},
      {"shard deleted", [&](const fs::path& d) { fs::remove(shard(d)); }, {kShard}},
      // --- the shard index
      {"index not JSON",
       [](const fs::path& d) { Write(d / "model.safetensors.index.json", "{\"weight_map\": "); },
       {"model.safetensors.index.json"}},
      {"index points to a missing shard",
       [](const fs::path& d) {
         EditJson(d / "model.safetensors.index.json", [](json& j) {
           j["weight_map"]["lm_head.weight"] = "model-00009-of-00009.safetensors";
         });
       },
       {"model-00009-of-00009.safetensors"}},
      {"index names a tensor its shard lacks",
       [](const fs::path& d) {
         EditJson(d / "model.safetensors.index.json",
                  [](json& j) { j["weight_map"]["model.layers.0.bogus.weight"] = kShard; });
       },
       {"model.layers.0.bogus.weight"}},
      // --- config.json
      {"config missing", [](const fs::path& d) { fs::remove(d / "config.json"); }, {"config.json"}},
      {"config not JSON",
       [](const fs::path& d) { Write(d / "config.json", "{\"hidden_size\": 2"); },
       {"config.json"}},
      {"config hidden_size is a string",
       [](const fs::path& d) {
         EditJson(d / "config.json", [](json& j) { j["hidden_size"] = "256"; });
       },
       {"config.json", "hidden_size"}},
      {"config num_hidden_layers negative",
       [](const fs::path& d) {
         EditJson(d / "config.json", [](json& j) { j["num_hidden_layers"] = -3; });
       },
       {"config.json", "num_hidden_layers"}},
      {"config vocab_size 10^12",
       [](const fs::path& d) {
         EditJson(d / "config.json", [](json& j) { j["vocab_size"] = 1000000000000; });
       },
       // Refused by the memory plan (its logits alone would need petabytes), before the load
       // would find that model.embed_tokens.weight disagrees.
       {"config.json", "vocab_size 1000000000000"}},
      {"config kv_lora_rank 0",
       [](const fs::path& d) {
         EditJson(d / "config.json", [](json& j) { j["kv_lora_rank"] = 0; });
       },
       {"config.json", "kv_lora_rank"}},
      {"config num_experts_per_tok beyond n_routed_experts",
       [](const fs::path& d) {
         EditJson(d / "config.json", [](json& j) { j["num_experts_per_tok"] = 1000; });
       },
       {"config.json", "num_experts_per_tok"}},
      {"config unknown rope_scaling type",
       [](const fs::path& d) {
         EditJson(d / "config.json", [](json& j) {
           j["rope_scaling"] = {{"type", "warp"}, {"factor", 4}};
         });
       },
       {"config.json", "rope_scaling"}},
      {"config hidden_size NaN-like",
       [](const fs::path& d) {
         std::string text = Read(d / "config.json");
         const size_t at = text.find("\"rms_norm_eps\"");
         text.insert(text.find(':', at) + 1, " NaN,\"x\":");
         Write(d / "config.json", text);
       },
       {"config.json"}},
      // --- tokenizer.json / tokenizer_config.json
      {"tokenizer missing",
       [](const fs::path& d) { fs::remove(d / "tokenizer.json"); },
       {"tokenizer.json"}},
      {"tokenizer truncated",
       [](const fs::path& d) {
         const std::string text = Read(d / "tokenizer.json");
         Write(d / "tokenizer.json", text.substr(0, text.size() / 3));
       },
       {"tokenizer.json"}},
      {"tokenizer model type Unigram",
       [](const fs::path& d) {
         EditJson(d / "tokenizer.json", [](json& j) { j["model"]["type"] = "Unigram"; });
       },
       {"tokenizer.json", "Unigram"}},
      {"tokenizer vocab id negative",
       [](const fs::path& d) {
         EditJson(d / "tokenizer.json", [](json& j) { j["model"]["vocab"].begin().value() = -7; });
       },
       {"tokenizer.json"}},
      {"tokenizer merge of unknown tokens",
       [](const fs::path& d) {
         EditJson(d / "tokenizer.json", [](json& j) { j["model"]["merges"][0] = "zzqq xxyy"; });
       },
       {"tokenizer.json"}},
      {"tokenizer pre-tokenizer regex invalid",
       [](const fs::path& d) {
         EditJson(d / "tokenizer.json", [](json& j) {
           j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed[";
         });
       },
       {"tokenizer.json"}},
      {"tokenizer added token id negative",
       [](const fs::path& d) {
         EditJson(d / "tokenizer.json", [](json& j) { j["added_tokens"][0]["id"] = -1; });
       },
       {"tokenizer.json", "added_tokens[0].id"}},
      {"tokenizer_config not JSON",
       [](const fs::path& d) { Write(d / "tokenizer_config.json", "{\"bos_token\": "); },
       {"tokenizer_config.json"}},
  };
}

TEST(MalformedCheckpointTest, EveryCorruptionIsAClearStartupError) {
  const fs::path valid = TestCheckpointDir("tiny-v3", false);
  const fs::path root =
      fs::path(::testing::TempDir()) / absl::StrCat("moeserve_malformed_", getpid());
  const std::vector<Corruption> corpus = Corpus();
  ASSERT_GE(corpus.size(), 30u);
  int index = 0;
  for (const Corruption& c : corpus) {
    SCOPED_TRACE(c.name);
    const fs::path dir = root / absl::StrCat("case", index++);
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(valid)) {
      fs::copy_file(entry.path(), dir / entry.path().filename());
    }
    c.apply(dir);
    ServerProcess server;
    EXPECT_FALSE(server.Start(ServerBinary(), {"--model", dir.string()}, std::chrono::seconds(60)));
    // Start() gives up on a process that exits; a hang would have hit its timeout instead.
    const std::string log = server.Log();
    EXPECT_NE(server.error().find("exited during startup"), std::string::npos) << server.error();
    EXPECT_EQ(server.Stop(), 1) << log;
    for (const std::string& needle : c.log_must_name) {
      EXPECT_NE(log.find(needle), std::string::npos) << "log does not name " << needle << ":\n"
                                                     << log;
    }
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace moeserve::testing
