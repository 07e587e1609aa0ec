// Helpers shared by the tokenizer tests: the fixture files under tests/data/tokenizers/ and a
// reference from_utf8_lossy for comparing decodes with HF tokenizers' strings.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace moeserve::engine::testing {

// The two tokenizers with fixtures: kjv-bpe-8k (DeepSeek-V3-style pre-tokenizer, trained on the
// KJV by tools/oracle/train_tokenizer.py) and the real deepseek-coder-6.7b-instruct one.
inline constexpr const char* kFixtureTokenizers[] = {"kjv-bpe-8k", "deepseek-coder-6.7b-instruct"};

inline std::string TokenizerDir(std::string_view name) {
  return std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tokenizers/" + std::string(name);
}

inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// One JSON value per non-empty line; an unreadable file gives an empty vector.
inline std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  }
  return records;
}

inline std::vector<int32_t> Ids(const nlohmann::json& array) {
  return array.get<std::vector<int32_t>>();
}

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
inline std::string LossyUtf8(std::string_view bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const auto b0 = static_cast<uint8_t>(bytes[i]);
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 < 0x80) {
      need = 1;
    } else if (b0 >= 0xC2 && b0 <= 0xDF) {
      need = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      need = 3;
      lo = b0 == 0xE0 ? 0xA0 : 0x80;
      hi = b0 == 0xED ? 0x9F : 0xBF;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      need = 4;
      lo = b0 == 0xF0 ? 0x90 : 0x80;
      hi = b0 == 0xF4 ? 0x8F : 0xBF;
    }
    size_t good = need == 0 ? 0 : 1;  // bytes of a valid prefix seen so far
    while (good > 0 && good < need && i + good < bytes.size()) {
      const auto b = static_cast<uint8_t>(bytes[i + good]);
      const bool ok = good == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
      ++good;
    }
    if (need > 0 && good == need) {
      out.append(bytes.substr(i, need));
      i += need;
    } else {
      out += "\xEF\xBF\xBD";
      i += good == 0 ? 1 : good;
    }
  }
  return out;
}

}  // namespace moeserve::engine::testing
