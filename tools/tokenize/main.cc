// moeserve-tokenize: encodes or decodes with a model directory's tokenizer.json, line by line.
//   moeserve-tokenize --model DIR [--no-special-tokens]          one JSON string per stdin line
//                                                                → one JSON array of ids per line
//   moeserve-tokenize --model DIR --decode [--skip-special-tokens]
//                                                    one JSON array of ids per line → JSON string
// A line that cannot be handled (not JSON of the right shape, invalid UTF-8, an id outside the
// vocabulary) writes `null` in its place, so output line N always answers input line N, and an
// error naming the line number to stderr; the tool goes on and exits with 1 at the end.
// Decoded bytes that are not valid UTF-8 (ids that split a character) are written as U+FFFD.
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "engine/cli/command_line.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace {

using moeserve::engine::Tokenizer;
using nlohmann::json;

// The output line for one input line, or an error message.
bool EncodeLine(const Tokenizer& tokenizer, const std::string& line, bool add_special_tokens,
                std::string& out, std::string& error) {
  const json value = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!value.is_string()) {
    error = value.is_discarded() ? "not valid JSON" : "expected a JSON string";
    return false;
  }
  auto ids = tokenizer.Encode(value.get_ref<const std::string&>(), add_special_tokens);
  if (!ids.ok()) {
    error = std::string(ids.status().message());
    return false;
  }
  out = json(*ids).dump();
  return true;
}

bool DecodeLine(const Tokenizer& tokenizer, const std::string& line, bool skip_special_tokens,
                std::string& out, std::string& error) {
  const json value = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!value.is_array()) {
    error = value.is_discarded() ? "not valid JSON" : "expected a JSON array of token ids";
    return false;
  }
  std::vector<int32_t> ids;
  ids.reserve(value.size());
  for (const json& id : value) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() >= tokenizer.vocab_size()) {
      error = "token id " + id.dump() + " is not in the vocabulary (size " +
              std::to_string(tokenizer.vocab_size()) + ")";
      return false;
    }
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  out = json(tokenizer.Decode(ids, skip_special_tokens))
            .dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Encodes JSON strings to token ids (or decodes ids), one per line, stdin → stdout."};
  std::string model_dir;
  bool decode = false, no_special_tokens = false, skip_special_tokens = false;
  app.add_option("--model", model_dir, "directory with tokenizer.json (+ tokenizer_config.json)")
      ->required();
  app.add_flag("--decode", decode, "decode JSON arrays of ids instead of encoding strings");
  app.add_flag("--no-special-tokens", no_special_tokens,
               "encode without the special tokens the tokenizer adds (BOS)");
  app.add_flag("--skip-special-tokens", skip_special_tokens, "decode without special added tokens");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  auto tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "moeserve-tokenize: %s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  std::ios::sync_with_stdio(false);
  std::string line, out, error;
  int64_t line_number = 0, failed = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    const bool ok = decode ? DecodeLine(**tokenizer, line, skip_special_tokens, out, error)
                           : EncodeLine(**tokenizer, line, !no_special_tokens, out, error);
    if (!ok) {
      ++failed;
      std::cerr << "moeserve-tokenize: line " << line_number << ": " << error << std::endl;
      out = "null";
    }
    std::cout << out << '\n' << std::flush;  // one answer per line, for interactive pipes
  }
  return failed == 0 ? 0 : 1;
}
