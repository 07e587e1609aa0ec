#include "engine/runner/offline_runner.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

int64_t Argmax(const float* row, int64_t n) { return std::max_element(row, row + n) - row; }

}  // namespace

OfflineRunner::OfflineRunner(const DeepseekModel& model, int64_t num_seqs, int64_t max_seq_len,
                             uint64_t block_shuffle_seed)
    : model_(model),
      blocks_per_seq_((max_seq_len + kKvBlockSize - 1) / kKvBlockSize),
      num_computed_(static_cast<size_t>(num_seqs), 0),
      pages_(model.MakeKvPages(num_seqs * blocks_per_seq_)) {
  std::vector<int32_t> blocks(static_cast<size_t>(num_seqs * blocks_per_seq_));
  std::iota(blocks.begin(), blocks.end(), 0);
  if (block_shuffle_seed != 0) {
    // Fisher–Yates with a 64-bit LCG: deterministic on every platform.
    uint64_t state = block_shuffle_seed;
    for (size_t i = blocks.size(); i > 1; --i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      std::swap(blocks[i - 1], blocks[(state >> 33) % i]);
    }
  }
  for (int64_t s = 0; s < num_seqs; ++s) {
    block_tables_.emplace_back(blocks.begin() + s * blocks_per_seq_,
                               blocks.begin() + (s + 1) * blocks_per_seq_);
  }
}

absl::StatusOr<std::vector<float>> OfflineRunner::Step(
    const std::vector<std::vector<int32_t>>& new_tokens, const ForwardOptions& options) {
  ForwardBatchBuilder builder;
  for (size_t s = 0; s < new_tokens.size() && s < block_tables_.size(); ++s) {
    if (new_tokens[s].empty()) continue;
    const int64_t total = num_computed_[s] + static_cast<int64_t>(new_tokens[s].size());
    if (total > blocks_per_seq_ * kKvBlockSize) {
      return absl::OutOfRangeError(absl::StrCat("sequence ", s, " would hold ", total,
                                                " tokens, more than its ",
                                                blocks_per_seq_ * kKvBlockSize));
    }
    builder.AddSequence(block_tables_[s], num_computed_[s], new_tokens[s]);
  }
  const ForwardBatch batch = std::move(builder).Build();
  MOESERVE_ASSIGN_OR_RETURN(std::vector<float> logits, model_.Forward(batch, pages_, options));
  for (size_t s = 0; s < new_tokens.size() && s < block_tables_.size(); ++s) {
    num_computed_[s] += static_cast<int64_t>(new_tokens[s].size());
  }
  return logits;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> GenerateGreedy(
    const DeepseekModel& model, const std::vector<std::vector<int32_t>>& prompts,
    int64_t num_tokens, const ForwardOptions& options) {
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, p.size());
  OfflineRunner runner(model, static_cast<int64_t>(prompts.size()), longest + num_tokens);
  ForwardOptions step_options = options;
  step_options.logits_for = LogitsFor::kLastTokenOfEachSequence;
  const int64_t vocab = model.config().vocab_size;

  std::vector<std::vector<int32_t>> generated(prompts.size());
  std::vector<std::vector<int32_t>> inputs = prompts;
  for (int64_t step = 0; step < num_tokens; ++step) {
    MOESERVE_ASSIGN_OR_RETURN(std::vector<float> logits, runner.Step(inputs, step_options));
    int64_t row = 0;
    for (size_t s = 0; s < prompts.size(); ++s) {
      if (inputs[s].empty()) continue;
      const int32_t next = static_cast<int32_t>(Argmax(logits.data() + row * vocab, vocab));
      generated[s].push_back(next);
      inputs[s] = {next};
      ++row;
    }
  }
  return generated;
}

}  // namespace moeserve::engine
