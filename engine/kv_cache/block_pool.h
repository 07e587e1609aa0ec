// Reference counts and the free list of the paged latent KV cache's blocks.
//
// Host bookkeeping only: the memory itself lives in the model runner's KV pages, which are
// indexed by the same block ids (ARCHITECTURE.md §3). A block is always in exactly one of three
// states, tracked between this pool and the PrefixCache and moved between them by
// KvCacheManager:
//   referenced    ref_count > 0, held by one or more BlockTables;
//   cached-unused ref_count 0, registered in the prefix cache, waiting in its LRU;
//   free          ref_count 0, on this pool's free list, content meaningless.
// Not thread-safe: used on the engine thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace moeserve::engine {

// Index of a KV block: the same number in the scheduler's block tables and in the KV pages.
using BlockId = int32_t;

class BlockPool {
 public:
  // Every block starts free. 0 <= num_blocks <= INT32_MAX.
  explicit BlockPool(int64_t num_blocks);

  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  int64_t num_blocks() const { return static_cast<int64_t>(ref_counts_.size()); }
  int64_t num_free() const { return static_cast<int64_t>(free_list_.size()); }

  // Takes a free block and sets its reference count to 1. A fresh pool hands out ids 0, 1, 2,
  // ...; afterwards the most recently freed block comes first. Requires num_free() > 0.
  BlockId TakeFree();
  // Puts an unreferenced block (ref_count 0, not on the free list) on the free list.
  void PutFree(BlockId id);

  void IncRef(BlockId id) { ++ref_counts_[static_cast<size_t>(id)]; }
  // Requires ref_count(id) > 0. Returns the new count; a block reaching 0 is NOT put on the
  // free list here (the caller decides between the free list and the prefix cache's LRU).
  int32_t DecRef(BlockId id) { return --ref_counts_[static_cast<size_t>(id)]; }
  int32_t ref_count(BlockId id) const { return ref_counts_[static_cast<size_t>(id)]; }

  // The free list; back() is taken next.
  absl::Span<const BlockId> free_list() const { return free_list_; }

 private:
  std::vector<int32_t> ref_counts_;
  std::vector<BlockId> free_list_;  // a stack
};

}  // namespace moeserve::engine
