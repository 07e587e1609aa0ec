#include "engine/batch/decode_padding.h"

#include <algorithm>

namespace moeserve::engine {

int64_t UniformNewTokens(const ForwardBatch& batch) {
  if (batch.num_seqs() == 0) return 0;
  const int64_t q = batch.num_new_tokens(0);
  for (int64_t s = 1; s < batch.num_seqs(); ++s) {
    if (batch.num_new_tokens(s) != q) return 0;
  }
  return q;
}

int64_t GraphBatchSizeFor(absl::Span<const int64_t> sizes, int64_t num_seqs) {
  for (int64_t size : sizes) {
    if (size >= num_seqs) return size;
  }
  return 0;
}

ForwardBatch PadDecodeBatch(const ForwardBatch& batch, int64_t num_seqs, int64_t table_width) {
  const int64_t q = UniformNewTokens(batch);
  ForwardBatch out = batch;
  for (int64_t s = batch.num_seqs(); s < num_seqs; ++s) {
    for (int64_t i = 0; i < q; ++i) {
      out.token_ids.push_back(0);
      out.positions.push_back(static_cast<int32_t>(i));
      out.slot_mapping.push_back(-1);
    }
    out.query_start_loc.push_back(static_cast<int32_t>(out.query_start_loc.back() + q));
    out.seq_lens.push_back(static_cast<int32_t>(q));
  }
  out.max_blocks_per_seq = table_width;
  out.block_tables.assign(static_cast<size_t>(num_seqs * table_width), 0);
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    std::copy(batch.block_table(s), batch.block_table(s) + batch.max_blocks_per_seq,
              out.block_tables.begin() + s * table_width);
  }
  return out;
}

int64_t UniformLogitsPerSequence(const ForwardBatch& batch, const ForwardOptions& options) {
  const int64_t q = UniformNewTokens(batch);
  if (q == 0) return 0;
  if (options.logits_for == LogitsFor::kAllTokens) return q;
  if (options.logits_per_sequence.empty()) return 1;
  if (static_cast<int64_t>(options.logits_per_sequence.size()) != batch.num_seqs()) return 0;
  const int32_t r = options.logits_per_sequence.front();
  for (int32_t n : options.logits_per_sequence) {
    if (n != r) return 0;
  }
  return r >= 1 && r <= q ? r : 0;
}

ForwardOptions PadOptions(const ForwardOptions& options, int64_t num_seqs) {
  ForwardOptions padded = options;
  if (!padded.logits_per_sequence.empty()) {
    padded.logits_per_sequence.resize(static_cast<size_t>(num_seqs),
                                      options.logits_per_sequence.front());
  }
  return padded;
}

}  // namespace moeserve::engine
