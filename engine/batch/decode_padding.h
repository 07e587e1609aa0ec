// Fitting a step to a captured CUDA graph: a graph replays fixed shapes, so the CUDA backend pads
// a batch whose sequences all have the same few new tokens (decode: one; speculative
// verification: 1 + k; an MTP pass) to the next captured batch size, and its block tables to
// one width.
//
// A pad sequence holds q tokens 0 at positions 0 … q-1 with slot -1 (the cache write skips
// them) and reads block 0; pads change nothing a real sequence sees, and their logits are
// dropped. Pure host code, tested on the CPU backend (padded logits of the real rows ==
// unpadded; pages untouched). Used by DeepseekModelCuda.
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "engine/batch/forward_batch.h"
#include "engine/batch/forward_options.h"

namespace moeserve::engine {

// q when every sequence has exactly q >= 1 new tokens (and there is at least one sequence),
// else 0.
int64_t UniformNewTokens(const ForwardBatch& batch);

// The smallest of `sizes` (ascending) that holds `num_seqs` sequences, or 0 when none does.
int64_t GraphBatchSizeFor(absl::Span<const int64_t> sizes, int64_t num_seqs);

// `batch` (UniformNewTokens > 0, at most num_seqs sequences, tables no wider than table_width)
// with pad sequences of as many tokens appended up to num_seqs and every block table widened to
// table_width.
ForwardBatch PadDecodeBatch(const ForwardBatch& batch, int64_t num_seqs, int64_t table_width);

// The logits each sequence asks for under `options` when all ask for the same number r
// (kAllTokens: q), else 0. `options` as ForwardOptions takes them; q = UniformNewTokens(batch).
int64_t UniformLogitsPerSequence(const ForwardBatch& batch, const ForwardOptions& options);

// `options` for the padded batch of num_seqs sequences: the pads ask for as many logits as the
// real sequences (logits_per_sequence extended).
ForwardOptions PadOptions(const ForwardOptions& options, int64_t num_seqs);

}  // namespace moeserve::engine
