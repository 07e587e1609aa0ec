// The scheduler's view of the paged latent KV cache: which blocks each sequence holds.
//
// Owns the block pool (free list, reference counts) and the prefix cache (content hash of full
// blocks -> block, LRU of unreferenced cached blocks); never device memory (ARCHITECTURE.md
// §3). The scheduler owns each sequence's BlockTable and changes it only through this class.
// A step of one sequence goes:
//   MatchPrefix(prompt, table)              once, on an empty table: reuse cached full blocks;
//   Allocate(table, computed + new tokens)  before each forward (false: preempt or wait);
//   CommitComputedBlocks(table, tokens, n)  after each forward: share newly full blocks;
//   Shrink(table, tokens)                   after a speculative step: give back unneeded blocks;
//   Free(table)                             on finish, abort or preemption.
// Every block is referenced, cached-unused (evictable) or free; NumAvailableBlocks counts the
// last two. Not thread-safe: engine thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/block_table.h"
#include "engine/kv_cache/prefix_cache.h"

namespace moeserve::engine {

struct KvCacheStats {
  int64_t num_blocks = 0;
  int64_t num_blocks_used = 0;           // ref count > 0
  int64_t num_blocks_cached_unused = 0;  // ref count 0, in the prefix cache, evictable
  int64_t num_blocks_free = 0;           // truly free
  // Cumulative over MatchPrefix calls (prefix caching on only).
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t evictions = 0;  // cached blocks evicted to serve Allocate

  // Fraction of blocks referenced (0 for an empty pool).
  double usage() const {
    return num_blocks > 0 ? static_cast<double>(num_blocks_used) / static_cast<double>(num_blocks)
                          : 0.0;
  }
};

class KvCacheManager {
 public:
  // `prefix_key_mask` is a test hook that narrows the prefix cache's keys to force hash
  // collisions (see PrefixCache); leave it at the default.
  KvCacheManager(int64_t num_blocks, bool enable_prefix_caching,
                 uint64_t prefix_key_mask = PrefixCache::kFullKeyMask);

  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  // The longest run of leading FULL blocks of `tokens` found in the prefix cache, never
  // covering the last token (it must be computed to produce logits, so at most
  // floor((n - 1) / 64) blocks). Appends those blocks to `table`, which must be empty (else
  // nothing happens and 0 is returned), raising their reference counts (reviving them from the
  // LRU), and returns the number of tokens covered, a multiple of 64. Adds n to
  // prefix_query_tokens and the result to prefix_hit_tokens. Returns 0 and counts nothing when
  // prefix caching is off.
  //
  // Under speculative decoding the MTP module's cache entry at each position depends on the
  // token AFTER it too; at a block's last position that token lies outside the block, so the
  // block's key does not cover it, and a sequence that goes on differently would read the
  // previous owner's entry. kAllButLastBlock therefore gives back the last block found, to be
  // computed again (vLLM and LMDeploy drop it likewise).
  enum class PrefixReuse { kAllBlocks, kAllButLastBlock };
  int64_t MatchPrefix(absl::Span<const int32_t> tokens, BlockTable& table,
                      PrefixReuse reuse = PrefixReuse::kAllBlocks);

  // Blocks needed to grow `table` to hold num_tokens tokens in total (0 if it already does).
  int64_t BlocksNeeded(const BlockTable& table, int64_t num_tokens) const;
  // Free blocks plus evictable cached blocks.
  int64_t NumAvailableBlocks() const;
  // Whether Allocate(table, num_tokens) would succeed.
  bool CanAllocate(const BlockTable& table, int64_t num_tokens) const {
    return BlocksNeeded(table, num_tokens) <= NumAvailableBlocks();
  }
  // Grows `table` to hold num_tokens tokens; all or nothing: returns false, changing nothing,
  // when not enough blocks are available. Takes truly free blocks first, then evicts cached
  // blocks, least recently unreferenced first (dropping their prefix-cache entries).
  bool Allocate(BlockTable& table, int64_t num_tokens);

  // Registers in the prefix cache every FULL block of `table` whose 64 tokens are all computed
  // (tokens[0:num_computed_tokens]); `tokens` is the sequence so far (prompt + output).
  // Idempotent and incremental (a cursor in the table); call after each step. When an
  // identical block is already cached (another sequence computed the same prefix), the existing
  // entry is kept and this table's block stays unregistered (it is freed normally). A no-op
  // when prefix caching is off.
  void CommitComputedBlocks(BlockTable& table, absl::Span<const int32_t> tokens,
                            int64_t num_computed_tokens);

  // Gives back the blocks beyond the first ceil(num_tokens / 64), last first (never one the
  // prefix cache has seen for this table): speculative decoding's rollback, whose rejected
  // drafts and look-ahead slots may have spilled into blocks the sequence does not need yet.
  void Shrink(BlockTable& table, int64_t num_tokens);

  // Releases the table's blocks, last block first: reference counts drop, and a block reaching
  // 0 joins the LRU (as its newest entry) if it is registered in the prefix cache, else the
  // free list. Leaves `table` empty. Safe on an empty table.
  void Free(BlockTable& table);

  KvCacheStats Stats() const;
  int64_t num_blocks() const { return pool_.num_blocks(); }
  bool prefix_caching_enabled() const { return prefix_cache_.has_value(); }

  // --- For tests and debugging.
  int32_t RefCount(BlockId block) const { return pool_.ref_count(block); }
  // Whether the block is registered in the prefix cache (referenced or not).
  bool IsCached(BlockId block) const {
    return prefix_cache_.has_value() && prefix_cache_->IsRegistered(block);
  }
  // The evictable cached blocks, next eviction first.
  std::vector<BlockId> EvictionOrder() const;
  // Checks the invariants against the tables alive now (every table holding blocks must be
  // passed): each block's reference count equals the number of tables holding it, no table
  // holds a block twice, and the free list, the LRU and the referenced blocks partition all
  // blocks (free-list blocks unregistered, LRU blocks registered). Returns an Internal error
  // describing the first violation.
  absl::Status CheckInvariants(absl::Span<const BlockTable* const> live_tables) const;

 private:
  // Drops one reference; at 0 the block joins the LRU if registered, else the free list.
  void Release(BlockId block);

  BlockPool pool_;
  std::optional<PrefixCache> prefix_cache_;  // engaged iff prefix caching is on
  KvCacheStats counters_;                    // only the cumulative fields are kept here
};

}  // namespace moeserve::engine
