#include "clients/bench/dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "clients/bench/bench_random.h"
#include "nlohmann/json.hpp"

namespace moeserve::bench {
namespace {

// vLLM's ShareGPT filter (vllm/benchmarks/datasets.py, is_valid_sequence).
constexpr int64_t kShareGptMinLen = 4;
constexpr int64_t kShareGptMaxPromptLen = 1024;
constexpr int64_t kShareGptMaxTotalLen = 2048;

// Words of random text prompts: common English words, one token each (after a space) in the
// GPT-2, Llama and DeepSeek BPE vocabularies.
constexpr const char* kWords[] = {
    "the",     "of",       "and",   "to",     "in",       "is",     "that",  "for",     "it",
    "as",      "was",      "with",  "be",     "by",       "on",     "not",   "he",      "this",
    "are",     "or",       "his",   "from",   "at",       "which",  "but",   "have",    "an",
    "had",     "they",     "you",   "were",   "their",    "one",    "all",   "we",      "can",
    "her",     "has",      "there", "been",   "if",       "more",   "when",  "will",    "would",
    "who",     "so",       "no",    "time",   "people",   "year",   "way",   "day",     "man",
    "thing",   "woman",    "life",  "child",  "world",    "school", "state", "family",  "group",
    "country", "problem",  "hand",  "part",   "place",    "case",   "week",  "company", "system",
    "program", "question", "work",  "number", "night",    "point",  "home",  "water",   "room",
    "mother",  "area",     "money", "story",  "fact",     "month",  "lot",   "right",   "study",
    "book",    "eye",      "job",   "word",   "business", "issue",  "side",  "kind",    "head"};

// Uniform lengths in [floor(len * (1 - r)), ceil(len * (1 + r))], at least `minimum`.
std::pair<int64_t, int64_t> LengthRange(int64_t len, double range_ratio, int64_t minimum) {
  const auto low = static_cast<int64_t>(std::floor(static_cast<double>(len) * (1.0 - range_ratio)));
  const auto high = static_cast<int64_t>(std::ceil(static_cast<double>(len) * (1.0 + range_ratio)));
  return {std::max(low, minimum), std::max(high, minimum)};
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open dataset file ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// `value` as a token-id list, or an error naming `where`.
absl::StatusOr<std::vector<uint32_t>> TokenIds(const nlohmann::json& value,
                                               const std::string& where) {
  if (!value.is_array() || value.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": prompt_token_ids must be a non-empty array"));
  }
  std::vector<uint32_t> ids;
  ids.reserve(value.size());
  for (const nlohmann::json& id : value) {
    if (!id.is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": prompt_token_ids must hold non-negative integers"));
    }
    ids.push_back(id.get<uint32_t>());
  }
  return ids;
}

absl::Status ValidateRandomOptions(const RandomDatasetOptions& options) {
  if (options.num_prompts <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--num-prompts must be > 0, got ", options.num_prompts));
  }
  if (!(options.range_ratio >= 0.0 && options.range_ratio < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--range-ratio must be in [0, 1), got ", options.range_ratio));
  }
  if (options.input_len < 0 || options.prefix_len < 0 ||
      options.input_len + options.prefix_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--input-len and --prefix-len must be >= 0 with a positive sum, got ",
                     options.input_len, " and ", options.prefix_len));
  }
  if (options.output_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--output-len must be > 0, got ", options.output_len));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<BenchPrompt>> MakeRandomDataset(const RandomDatasetOptions& options,
                                                           const VocabInfo& vocab) {
  if (absl::Status s = ValidateRandomOptions(options); !s.ok()) return s;
  std::vector<uint32_t> allowed;
  allowed.reserve(vocab.vocab_size);
  for (int64_t id = 0; id < vocab.vocab_size; ++id) {
    const auto token = static_cast<uint32_t>(id);
    if (std::find(vocab.excluded_ids.begin(), vocab.excluded_ids.end(), token) ==
        vocab.excluded_ids.end()) {
      allowed.push_back(token);
    }
  }
  if (allowed.empty()) {
    return absl::FailedPreconditionError("the model's vocabulary has no ids besides EOS/BOS");
  }

  BenchRandom random(options.seed);
  const auto random_token = [&] {
    return allowed[random.UniformInt(0, static_cast<int64_t>(allowed.size()) - 1)];
  };
  std::vector<uint32_t> prefix(options.prefix_len);
  for (uint32_t& id : prefix) id = random_token();

  // A prefix alone is a valid prompt, so the random part may be empty only then (as vLLM).
  const auto [input_low, input_high] =
      LengthRange(options.input_len, options.range_ratio, options.prefix_len > 0 ? 0 : 1);
  const auto [output_low, output_high] = LengthRange(options.output_len, options.range_ratio, 1);
  std::vector<BenchPrompt> prompts(options.num_prompts);
  for (BenchPrompt& prompt : prompts) {
    const int64_t input_len = random.UniformInt(input_low, input_high);
    prompt.output_len = random.UniformInt(output_low, output_high);
    prompt.token_ids = prefix;
    for (int64_t i = 0; i < input_len; ++i) prompt.token_ids.push_back(random_token());
    prompt.prompt_len = static_cast<int64_t>(prompt.token_ids.size());
  }
  return prompts;
}

absl::StatusOr<std::vector<BenchPrompt>> MakeRandomTextDataset(
    const RandomDatasetOptions& options) {
  if (absl::Status s = ValidateRandomOptions(options); !s.ok()) return s;
  BenchRandom random(options.seed);
  const auto random_word = [&random](std::string& text) {
    if (!text.empty()) text.push_back(' ');
    text += kWords[random.UniformInt(0, static_cast<int64_t>(std::size(kWords)) - 1)];
  };
  std::string prefix;
  for (int64_t i = 0; i < options.prefix_len; ++i) random_word(prefix);
  const auto [input_low, input_high] =
      LengthRange(options.input_len, options.range_ratio, options.prefix_len > 0 ? 0 : 1);
  const auto [output_low, output_high] = LengthRange(options.output_len, options.range_ratio, 1);
  std::vector<BenchPrompt> prompts(options.num_prompts);
  for (BenchPrompt& prompt : prompts) {
    const int64_t input_len = random.UniformInt(input_low, input_high);
    prompt.output_len = random.UniformInt(output_low, output_high);
    prompt.text = prefix;
    for (int64_t i = 0; i < input_len; ++i) random_word(prompt.text);
    prompt.prompt_len = options.prefix_len + input_len;
  }
  return prompts;
}

absl::StatusOr<std::vector<BenchPrompt>> LoadJsonlDataset(const FileDatasetOptions& options,
                                                          const TokenizeFn& tokenize) {
  absl::StatusOr<std::string> contents = ReadFile(options.path);
  if (!contents.ok()) return contents.status();
  std::vector<BenchPrompt> lines;
  size_t begin = 0;
  int64_t line_number = 0;
  while (begin < contents->size()) {
    size_t end = contents->find('\n', begin);
    if (end == std::string::npos) end = contents->size();
    const std::string line = contents->substr(begin, end - begin);
    begin = end + 1;
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(options.path, ":", line_number);
    const nlohmann::json entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!entry.is_object())
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));

    BenchPrompt prompt;
    if (entry.contains("prompt_token_ids")) {
      absl::StatusOr<std::vector<uint32_t>> ids = TokenIds(entry["prompt_token_ids"], where);
      if (!ids.ok()) return ids.status();
      prompt.token_ids = *std::move(ids);
      prompt.prompt_len = static_cast<int64_t>(prompt.token_ids.size());
    } else if (entry.contains("prompt") && entry["prompt"].is_string()) {
      prompt.text = entry["prompt"].get<std::string>();
      absl::StatusOr<std::vector<uint32_t>> ids = tokenize(prompt.text, true);
      if (!ids.ok()) return ids.status();
      prompt.prompt_len = static_cast<int64_t>(ids->size());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": needs a string \"prompt\" or an array \"prompt_token_ids\""));
    }
    prompt.output_len = options.default_output_len;
    for (const char* key : {"output_len", "max_tokens"}) {
      if (entry.contains(key) && entry[key].is_number_integer()) {
        prompt.output_len = entry[key].get<int64_t>();
      }
    }
    if (options.output_len) prompt.output_len = *options.output_len;
    if (prompt.output_len <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": output length must be > 0"));
    }
    lines.push_back(std::move(prompt));
  }
  if (lines.empty())
    return absl::InvalidArgumentError(absl::StrCat(options.path, " has no prompts"));
  std::vector<BenchPrompt> prompts;
  prompts.reserve(options.num_prompts);
  for (int64_t i = 0; i < options.num_prompts; ++i) prompts.push_back(lines[i % lines.size()]);
  return prompts;
}

absl::StatusOr<std::vector<BenchPrompt>> LoadShareGptDataset(const FileDatasetOptions& options,
                                                             const TokenizeFn& tokenize) {
  absl::StatusOr<std::string> contents = ReadFile(options.path);
  if (!contents.ok()) return contents.status();
  const nlohmann::json data = nlohmann::json::parse(*contents, nullptr, /*allow_exceptions=*/false);
  if (!data.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.path, ": a ShareGPT file is a JSON array"));
  }
  // (prompt, completion) of every entry with at least two text turns.
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const nlohmann::json& entry : data) {
    if (!entry.is_object() || !entry.contains("conversations")) continue;
    const nlohmann::json& turns = entry["conversations"];
    if (!turns.is_array() || turns.size() < 2) continue;
    if (!turns[0].is_object() || !turns[1].is_object() || !turns[0].contains("value") ||
        !turns[1].contains("value") || !turns[0]["value"].is_string() ||
        !turns[1]["value"].is_string()) {
      continue;
    }
    std::string prompt = turns[0]["value"].get<std::string>();
    std::string completion = turns[1]["value"].get<std::string>();
    if (prompt.empty() || completion.empty()) continue;  // too short for the filter anyway
    pairs.emplace_back(std::move(prompt), std::move(completion));
  }
  // Fisher-Yates with our generator, so a seed picks the same conversations everywhere.
  BenchRandom random(options.seed);
  for (int64_t i = static_cast<int64_t>(pairs.size()) - 1; i > 0; --i) {
    std::swap(pairs[i], pairs[random.UniformInt(0, i)]);
  }

  int64_t max_total_len = kShareGptMaxTotalLen;
  if (options.max_model_len > 0) max_total_len = std::min(max_total_len, options.max_model_len);
  std::vector<BenchPrompt> prompts;
  for (const auto& [prompt_text, completion_text] : pairs) {
    if (static_cast<int64_t>(prompts.size()) >= options.num_prompts) break;
    absl::StatusOr<std::vector<uint32_t>> prompt_ids = tokenize(prompt_text, true);
    if (!prompt_ids.ok()) return prompt_ids.status();
    int64_t output_len = 0;
    if (options.output_len) {
      output_len = *options.output_len;
    } else {
      absl::StatusOr<std::vector<uint32_t>> completion_ids = tokenize(completion_text, false);
      if (!completion_ids.ok()) return completion_ids.status();
      output_len = static_cast<int64_t>(completion_ids->size());
    }
    const auto prompt_len = static_cast<int64_t>(prompt_ids->size());
    const bool output_too_short = !options.output_len && output_len < kShareGptMinLen;
    if (prompt_len < kShareGptMinLen || output_too_short || prompt_len > kShareGptMaxPromptLen ||
        prompt_len + output_len > max_total_len || output_len <= 0) {
      continue;
    }
    prompts.push_back(
        BenchPrompt{.text = prompt_text, .prompt_len = prompt_len, .output_len = output_len});
  }
  if (prompts.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.path, ": no conversation passed the ShareGPT length filter"));
  }
  // Like vLLM's oversampling: fewer valid pairs than asked for are reused in order.
  for (size_t i = 0; static_cast<int64_t>(prompts.size()) < options.num_prompts; ++i) {
    prompts.push_back(prompts[i]);
  }
  return prompts;
}

}  // namespace moeserve::bench
