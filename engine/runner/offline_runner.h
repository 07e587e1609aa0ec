// Runs a fixed set of sequences through a DeepseekModel without the scheduler.
//
// Each sequence gets its own blocks of the paged cache up front (optionally shuffled, so
// code that wrongly assumes contiguous pages fails). Used by moeserve-logits, the CPU
// benchmark and the model tests; the serving path uses the engine's scheduler instead.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/batch/kv_pages.h"
#include "engine/model/deepseek_model.h"

namespace moeserve::engine {

class OfflineRunner {
 public:
  // block_shuffle_seed != 0 hands out the blocks in a pseudo-random order.
  OfflineRunner(const DeepseekModel& model, int64_t num_seqs, int64_t max_seq_len,
                uint64_t block_shuffle_seed = 0);

  // Appends new_tokens[s] to each sequence s (an empty entry leaves s out of the step) and
  // runs one forward. Logits rows follow the sequences that took part, in order.
  absl::StatusOr<std::vector<float>> Step(const std::vector<std::vector<int32_t>>& new_tokens,
                                          const ForwardOptions& options);

  int64_t num_computed(int64_t seq) const { return num_computed_[seq]; }

 private:
  const DeepseekModel& model_;
  int64_t blocks_per_seq_;
  std::vector<std::vector<int32_t>> block_tables_;
  std::vector<int64_t> num_computed_;
  KvPages pages_;
};

// Greedy continuation of each prompt: one batched prefill, then batched decode steps.
// Returns [num_prompts][num_tokens] generated ids.
absl::StatusOr<std::vector<std::vector<int32_t>>> GenerateGreedy(
    const DeepseekModel& model, const std::vector<std::vector<int32_t>>& prompts,
    int64_t num_tokens, const ForwardOptions& options = {});

}  // namespace moeserve::engine
