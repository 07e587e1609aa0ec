#include "engine/kv_cache/block_pool.h"

#include <cstddef>

namespace moeserve::engine {

BlockPool::BlockPool(int64_t num_blocks)
    : ref_counts_(static_cast<size_t>(num_blocks > 0 ? num_blocks : 0), 0) {
  // Highest id at the bottom of the stack, so a fresh pool hands out 0, 1, 2, ...
  free_list_.reserve(ref_counts_.size());
  for (int64_t id = this->num_blocks() - 1; id >= 0; --id) {
    free_list_.push_back(static_cast<BlockId>(id));
  }
}

BlockId BlockPool::TakeFree() {
  const BlockId id = free_list_.back();
  free_list_.pop_back();
  ref_counts_[static_cast<size_t>(id)] = 1;
  return id;
}

void BlockPool::PutFree(BlockId id) { free_list_.push_back(id); }

}  // namespace moeserve::engine
