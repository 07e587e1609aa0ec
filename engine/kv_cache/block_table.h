// The KV blocks of one sequence, in token order: block i holds tokens [64 i, 64 (i + 1)).
//
// Owned by the scheduler's Sequence (ARCHITECTURE.md §3); only KvCacheManager changes it:
// MatchPrefix and Allocate append blocks, CommitComputedBlocks advances its prefix-cache
// cursor, and Free releases every block and leaves the table empty. Move-only, because a copy
// would name blocks without holding their references. A table destroyed while it still holds
// blocks leaks them (they stay "used"); KvCacheManager::CheckInvariants reports that.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/batch/forward_batch.h"
#include "engine/kv_cache/block_pool.h"

namespace moeserve::engine {

class BlockTable {
 public:
  BlockTable() = default;
  BlockTable(BlockTable&& other) noexcept { *this = std::move(other); }
  // Assigning over a table that still holds blocks leaks them: Free it first.
  BlockTable& operator=(BlockTable&& other) noexcept {
    if (this != &other) {
      ids_ = std::exchange(other.ids_, {});
      num_cached_blocks_registered_ = std::exchange(other.num_cached_blocks_registered_, 0);
      last_hash_ = std::exchange(other.last_hash_, 0);
      last_node_ = std::exchange(other.last_node_, 0);
      prefix_chain_broken_ = std::exchange(other.prefix_chain_broken_, false);
    }
    return *this;
  }
  BlockTable(const BlockTable&) = delete;
  BlockTable& operator=(const BlockTable&) = delete;

  const std::vector<BlockId>& ids() const { return ids_; }
  int64_t num_blocks() const { return static_cast<int64_t>(ids_.size()); }
  bool empty() const { return ids_.empty(); }
  // Tokens the table can hold: num_blocks * kKvBlockSize.
  int64_t capacity_tokens() const { return num_blocks() * kKvBlockSize; }
  // How many leading full blocks the prefix cache has seen (matched, registered, or found
  // already cached); CommitComputedBlocks resumes after them.
  int64_t num_cached_blocks_registered() const { return num_cached_blocks_registered_; }

 private:
  friend class KvCacheManager;

  std::vector<BlockId> ids_;
  int64_t num_cached_blocks_registered_ = 0;
  // The prefix-cache chain after those blocks: the key and node id of the cached block that
  // holds block num_cached_blocks_registered_ - 1's content (0, 0 = the empty prefix). See
  // prefix_cache.h.
  uint64_t last_hash_ = 0;
  uint64_t last_node_ = 0;
  // Set when this table's chain cannot be extended (its parent was evicted, or a 64-bit key
  // collision): its remaining blocks are simply never registered.
  bool prefix_chain_broken_ = false;
};

}  // namespace moeserve::engine
