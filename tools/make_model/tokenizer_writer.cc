#include "tools/make_model/tokenizer_writer.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

extern const unsigned char kKjvTokenizerJson[];
extern const size_t kKjvTokenizerJson_size;
extern const unsigned char kKjvTokenizerConfigJson[];
extern const size_t kKjvTokenizerConfigJson_size;

namespace moeserve::tools {
namespace {

using nlohmann::json;

json ParseEmbedded(const unsigned char* data, size_t size) {
  return json::parse(reinterpret_cast<const char*>(data),
                     reinterpret_cast<const char*>(data) + size);
}

// Keeps ids < vocab_size: vocabulary entries, the merges whose parts and result survive, and
// added tokens.
void Truncate(json& tokenizer, int64_t vocab_size) {
  json& model = tokenizer["model"];
  json kept_vocab = json::object();
  for (auto& [token, id] : model["vocab"].items()) {
    if (id.get<int64_t>() < vocab_size) kept_vocab[token] = id;
  }
  json kept_merges = json::array();
  for (const json& merge : model["merges"]) {
    const std::string left = merge[0], right = merge[1];
    if (kept_vocab.contains(left) && kept_vocab.contains(right) &&
        kept_vocab.contains(left + right)) {
      kept_merges.push_back(merge);
    }
  }
  model["vocab"] = std::move(kept_vocab);
  model["merges"] = std::move(kept_merges);
  json kept_added = json::array();
  for (const json& token : tokenizer["added_tokens"]) {
    if (token["id"].get<int64_t>() < vocab_size) kept_added.push_back(token);
  }
  tokenizer["added_tokens"] = std::move(kept_added);
}

absl::Status WriteJson(const std::string& path, const json& value) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << value.dump(2, ' ', /*ensure_ascii=*/false) << "\n";
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteTokenizerFiles(int64_t vocab_size, const std::string& out_dir) {
  if (vocab_size < kMinTokenizerVocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", vocab_size, " is below the tokenizer's minimum of ", kMinTokenizerVocab));
  }
  json tokenizer = ParseEmbedded(kKjvTokenizerJson, kKjvTokenizerJson_size);
  Truncate(tokenizer, vocab_size);
  json config = ParseEmbedded(kKjvTokenizerConfigJson, kKjvTokenizerConfigJson_size);
  if (absl::Status s = WriteJson(out_dir + "/tokenizer.json", tokenizer); !s.ok()) return s;
  return WriteJson(out_dir + "/tokenizer_config.json", config);
}

}  // namespace moeserve::tools
