#include "engine/batch/decode_padding.h"

#include <algorithm>

namespace moeserve::engine {

bool IsDecodeOnly(const ForwardBatch& batch) {
  if (batch.num_seqs() == 0) return false;
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    if (batch.num_new_tokens(s) != 1) return false;
  }
  return true;
}

int64_t GraphBatchSizeFor(absl::Span<const int64_t> sizes, int64_t num_seqs) {
  for (int64_t size : sizes) {
    if (size >= num_seqs) return size;
  }
  return 0;
}

ForwardBatch PadDecodeBatch(const ForwardBatch& batch, int64_t num_seqs, int64_t table_width) {
  ForwardBatch out = batch;
  for (int64_t s = batch.num_seqs(); s < num_seqs; ++s) {
    out.token_ids.push_back(0);
    out.positions.push_back(0);
    out.slot_mapping.push_back(-1);
    out.query_start_loc.push_back(out.query_start_loc.back() + 1);
    out.seq_lens.push_back(1);
  }
  out.max_blocks_per_seq = table_width;
  out.block_tables.assign(static_cast<size_t>(num_seqs * table_width), 0);
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    std::copy(batch.block_table(s), batch.block_table(s) + batch.max_blocks_per_seq,
              out.block_tables.begin() + s * table_width);
  }
  return out;
}

}  // namespace moeserve::engine
