#include "engine/runner/forward_batch.h"

#include <algorithm>

namespace moeserve::engine {

void ForwardBatchBuilder::AddSequence(absl::Span<const int32_t> block_table, int64_t num_computed,
                                      absl::Span<const int32_t> new_token_ids) {
  if (batch_.query_start_loc.empty()) batch_.query_start_loc.push_back(0);
  for (size_t i = 0; i < new_token_ids.size(); ++i) {
    const int64_t position = num_computed + static_cast<int64_t>(i);
    batch_.token_ids.push_back(new_token_ids[i]);
    batch_.positions.push_back(static_cast<int32_t>(position));
    batch_.slot_mapping.push_back(static_cast<int64_t>(block_table[position / kKvBlockSize]) *
                                      kKvBlockSize +
                                  position % kKvBlockSize);
  }
  batch_.query_start_loc.push_back(static_cast<int32_t>(batch_.token_ids.size()));
  batch_.seq_lens.push_back(static_cast<int32_t>(num_computed + new_token_ids.size()));
  block_tables_.emplace_back(block_table.begin(), block_table.end());
}

ForwardBatch ForwardBatchBuilder::Build() && {
  size_t width = 0;
  for (const auto& table : block_tables_) width = std::max(width, table.size());
  batch_.max_blocks_per_seq = static_cast<int64_t>(width);
  batch_.block_tables.assign(block_tables_.size() * width, 0);
  for (size_t s = 0; s < block_tables_.size(); ++s) {
    std::copy(block_tables_[s].begin(), block_tables_[s].end(),
              batch_.block_tables.begin() + s * width);
  }
  if (batch_.query_start_loc.empty()) batch_.query_start_loc.push_back(0);
  return std::move(batch_);
}

}  // namespace moeserve::engine
