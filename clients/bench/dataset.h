// The prompts a run sends: random token ids (vLLM's `random` dataset), a JSONL prompt file
// (vLLM's `custom`), or a ShareGPT JSON export (vLLM's `sharegpt`).
//
// Random prompts are token ids drawn uniformly from the model's vocabulary minus its EOS and
// BOS ids (from GetModelInfo), sent as TokenizedInput with ignore_eos, so prompt and output
// lengths are exact (over HTTP to a server of unknown vocabulary: random English words);
// --prefix-len puts the same random prefix in front of every prompt for prefix-cache workloads.
// File datasets carry text and are counted with the server's own tokenizer (the Tokenize RPC,
// passed in as a TokenizeFn so tests can use a fake).
//
// Called once by main.cc before the run; the result is immutable during the run.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve::bench {

struct BenchPrompt {
  std::vector<uint32_t> token_ids;  // sent as TokenizedInput when non-empty
  std::string text;                 // sent as text otherwise
  int64_t prompt_len = 0;           // tokens the server will see
  int64_t output_len = 0;           // max_tokens of the request
};

struct VocabInfo {
  int64_t vocab_size = 0;
  std::vector<uint32_t> excluded_ids;  // EOS and BOS ids: never put into a random prompt
};

struct RandomDatasetOptions {
  int64_t num_prompts = 0;
  int64_t input_len = 1024;  // random part, excluding the shared prefix (as vLLM)
  int64_t output_len = 128;
  // Lengths are uniform in [floor(len * (1 - r)), ceil(len * (1 + r))]; r in [0, 1).
  double range_ratio = 0.0;
  int64_t prefix_len = 0;  // shared by every prompt
  uint64_t seed = 0;
};

absl::StatusOr<std::vector<BenchPrompt>> MakeRandomDataset(const RandomDatasetOptions& options,
                                                           const VocabInfo& vocab);

// The random dataset for a server whose vocabulary the client does not know (the openai
// backends): text of input_len (+ prefix_len shared) words drawn from common English words,
// each about one token in an English BPE vocabulary. prompt_len is the word count, an
// estimate: the report takes the server's usage.prompt_tokens. Same lengths and seed use as
// MakeRandomDataset.
absl::StatusOr<std::vector<BenchPrompt>> MakeRandomTextDataset(const RandomDatasetOptions& options);

// Counts text the way the server will: returns the token ids of `text`.
using TokenizeFn = std::function<absl::StatusOr<std::vector<uint32_t>>(const std::string& text,
                                                                       bool add_special_tokens)>;

struct FileDatasetOptions {
  std::string path;
  int64_t num_prompts = 0;
  std::optional<int64_t> output_len;  // overrides the file's own lengths when set
  int64_t default_output_len = 256;   // JSONL lines without a length (vLLM's custom default)
  int64_t max_model_len = 0;          // ShareGPT: drop pairs longer than this (0 = no cap)
  uint64_t seed = 0;
};

// One JSON object per line: {"prompt": "text"} or {"prompt_token_ids": [..]}, optionally
// "output_len" (or "max_tokens"). Lines are used in file order, cycling if the file has fewer
// than num_prompts.
absl::StatusOr<std::vector<BenchPrompt>> LoadJsonlDataset(const FileDatasetOptions& options,
                                                          const TokenizeFn& tokenize);

// A ShareGPT export: a JSON array of {"conversations": [{"from": "human", "value": ..},
// {"from": "gpt", "value": ..}, ..]}. As vLLM: the first two turns are prompt and reference
// completion, entries are shuffled with the seed, the completion's token count is the output
// length (unless output_len is set), and pairs with a prompt or completion under 4 tokens, a
// prompt over 1024 or a total over 2048 tokens are skipped.
absl::StatusOr<std::vector<BenchPrompt>> LoadShareGptDataset(const FileDatasetOptions& options,
                                                             const TokenizeFn& tokenize);

}  // namespace moeserve::bench
