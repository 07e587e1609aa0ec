// Fitting a decode step to a captured CUDA graph: a graph replays fixed shapes, so the CUDA
// backend pads a decode batch to the next captured batch size and its block tables to one width.
//
// Pad sequences hold token 0 at position 0 with slot -1 (the cache write skips it) and read
// block 0; they change nothing a real sequence sees, and their logits are dropped. Pure host
// code, tested on the CPU backend (padded logits of the real rows == unpadded; pages untouched).
// Used by DeepseekModelCuda.
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "engine/batch/forward_batch.h"

namespace moeserve::engine {

// Every sequence has exactly one new token (and there is at least one sequence).
bool IsDecodeOnly(const ForwardBatch& batch);

// The smallest of `sizes` (ascending) that holds `num_seqs` sequences, or 0 when none does.
int64_t GraphBatchSizeFor(absl::Span<const int64_t> sizes, int64_t num_seqs);

// `batch` (decode only, at most num_seqs sequences, tables no wider than table_width) with pad
// sequences appended up to num_seqs and every block table widened to table_width.
ForwardBatch PadDecodeBatch(const ForwardBatch& batch, int64_t num_seqs, int64_t table_width);

}  // namespace moeserve::engine
