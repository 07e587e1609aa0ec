// The explicit inputs of one forward step over the paged latent cache.
//
// Built by the model runner from the scheduler's batch (and by tools/tests through
// ForwardBatchBuilder) and passed down the call chain as an argument, never through global
// state (ARCHITECTURE.md §5 rule 2). Sequences are laid out back to back: sequence s owns
// tokens [query_start_loc[s], query_start_loc[s+1]), which are the last tokens of its context
// of seq_lens[s] tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/batch/forward_options.h"

namespace moeserve::engine {

// Tokens per KV block (DESIGN.md §3; FlashMLA's page size).
inline constexpr int64_t kKvBlockSize = 64;
// Block table width limit (2^24 blocks = 2^30 tokens per sequence): keeps index products in
// range when a batch is checked (ValidateForwardBatch).
inline constexpr int64_t kMaxBlocksPerSeq = int64_t{1} << 24;

struct ForwardBatch {
  std::vector<int32_t> token_ids;     // [num_tokens]
  std::vector<int32_t> positions;     // [num_tokens] absolute, 0-based
  std::vector<int64_t> slot_mapping;  // [num_tokens] block_id * kKvBlockSize + offset; -1: no write
  std::vector<int32_t> query_start_loc;  // [num_seqs + 1]
  std::vector<int32_t> seq_lens;         // [num_seqs] context length including this step
  std::vector<int32_t> block_tables;     // [num_seqs, max_blocks_per_seq], padded with 0
  int64_t max_blocks_per_seq = 0;

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int64_t num_seqs() const { return static_cast<int64_t>(seq_lens.size()); }
  int64_t num_new_tokens(int64_t seq) const {
    return query_start_loc[seq + 1] - query_start_loc[seq];
  }
  const int32_t* block_table(int64_t seq) const {
    return block_tables.data() + seq * max_blocks_per_seq;
  }
};

// Assembles a ForwardBatch sequence by sequence.
class ForwardBatchBuilder {
 public:
  // block_table must cover num_computed + new_token_ids.size() tokens; the new tokens take
  // positions num_computed, num_computed + 1, ...
  void AddSequence(absl::Span<const int32_t> block_table, int64_t num_computed,
                   absl::Span<const int32_t> new_token_ids);
  ForwardBatch Build() &&;

 private:
  ForwardBatch batch_;
  std::vector<std::vector<int32_t>> block_tables_;
};

// The checks every backend's Forward starts with: sizes consistent, token ids in
// [0, vocab_size), slots and block ids inside a pool of num_kv_blocks blocks, positions the
// last tokens of each context. InvalidArgument naming the index otherwise.
absl::Status ValidateForwardBatch(const ForwardBatch& batch, int64_t vocab_size,
                                  int64_t num_kv_blocks);

// Whether a sequence may ask for no logits at all (ForwardOptions::logits_per_sequence[s] = 0):
// only ForwardMtp takes that, to write a sequence's latents without drafting from it.
enum class ZeroLogitRows { kRefused, kAllowed };

// The token indices whose logits a forward returns under `options` (ForwardOptions::logits_for
// and logits_per_sequence), in order. InvalidArgument when logits_per_sequence does not fit.
absl::StatusOr<std::vector<int64_t>> LogitRows(const ForwardBatch& batch,
                                               const ForwardOptions& options,
                                               ZeroLogitRows zero = ZeroLogitRows::kRefused);

// For a backend that runs the MTP block over every position anyway (CUDA): `options` with each
// logits_per_sequence 0 raised to 1 (cleared when all are then 1, the default), so a latents-only
// sequence computes its last row too; KeepAskedRows then drops those rows.
ForwardOptions WithLogitRowForEverySequence(const ForwardOptions& options);
// `out` of a forward under WithLogitRowForEverySequence(options) → the rows `options` asked for
// (logits [rows, vocab] and hidden [rows, hidden] alike).
ForwardOutput KeepAskedRows(ForwardOutput out, const ForwardOptions& options, int64_t vocab,
                            int64_t hidden);

// The batch of only the tokens `rows` (LogitRows' output: the last tokens of each sequence),
// with the same contexts and block tables; a sequence without rows is left out. A forward over
// it attends as those tokens do within `batch`, once the latents of the tokens left out are in
// the cache.
ForwardBatch RowsOnly(const ForwardBatch& batch, absl::Span<const int64_t> rows);

// The batch of only the sequences `seqs` (indices into `batch`, in the order given), each with
// all its tokens, positions, slots and its block table.
ForwardBatch SequencesOf(const ForwardBatch& batch, absl::Span<const int64_t> seqs);

}  // namespace moeserve::engine
