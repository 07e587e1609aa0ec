// Full KV blocks indexed by content, so that sequences sharing a prompt prefix share its blocks.
//
// Keys. The block holding tokens [64 i, 64 (i + 1)) of a sequence is keyed by a chained 64-bit
// hash, key_i = HashBlock(key_{i-1}, the block's 64 token ids) with key_{-1} = 0: a block's KV
// depends on every token before it, and chaining makes its key depend on them too.
//
// Verification. A key is only a hint. Every registered block also gets a node id, a serial
// number given at registration and never reused, and stores its 64 token ids and the node id of
// the cached block it extends (0 for the first block). A lookup accepts an entry only when both
// equal the query's exactly. Lookups walk from the first block, so by induction an accepted
// block's entire prefix equals the query's, whatever the hash does: a collision can cost a
// cache hit but can never hand out wrong KV. (Storing the parent's key instead of its node id
// would not be enough: an entry can outlive its parent, and a colliding prefix could later take
// the parent's key.) When a registration meets a different entry under its key, that entry is
// replaced if it is unreachable (its parent is gone), and otherwise the registration fails as a
// collision; PrefixCacheTest forces collisions with a key mask.
//
// Eviction. Registered blocks whose reference count dropped to 0 wait in an LRU, ordered by when
// they became unreferenced, and are evicted (entry erased, block returned to the caller for
// reuse) only when a fresh block is needed and the free list is empty. Eviction is plain LRU,
// not leaf-first: KvCacheManager::Free releases a table's blocks last-first, so a sequence's
// tail ages out before the prefix it extends, and a prefix shared with a later sequence is
// younger than its children. A block whose parent was evicted anyway stays registered but
// unreachable (its parent's node id never comes back); it ages out like any other block, and a
// later registration of the same content replaces it.
//
// Host bookkeeping only; not thread-safe (engine thread).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv_cache/block_pool.h"

namespace moeserve::engine {

// A position in a hash chain: the key and node id of the cached block holding a prefix's last
// full block. The default value is the empty prefix.
struct PrefixLink {
  uint64_t key = 0;
  uint64_t node = 0;

  bool operator==(const PrefixLink&) const = default;
};

class PrefixCache {
 public:
  static constexpr uint64_t kFullKeyMask = ~uint64_t{0};

  // `key_mask` is a test hook: keys are HashBlock(...) & key_mask, so a narrow mask forces
  // collisions. Production code uses the full 64 bits.
  explicit PrefixCache(int64_t num_blocks, uint64_t key_mask = kFullKeyMask);

  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The chained hash of one block: a splitmix64-style mix over the parent's key and the token
  // ids, two per 64-bit word.
  static uint64_t HashBlock(uint64_t parent_key, absl::Span<const int32_t> tokens);
  // HashBlock masked by key_mask: the key under which the block is stored.
  uint64_t Key(uint64_t parent_key, absl::Span<const int32_t> tokens) const {
    return HashBlock(parent_key, tokens) & key_mask_;
  }

  // The cached block that extends `parent` with `tokens` (kKvBlockSize ids), with its link, or
  // nullopt. Changes nothing (the caller revives a found block with RemoveUnused if needed).
  struct Found {
    BlockId block;
    PrefixLink link;
  };
  std::optional<Found> Find(PrefixLink parent, absl::Span<const int32_t> tokens) const;

  enum class RegisterOutcome {
    kRegistered,     // `block` now holds the entry; `link` is its link
    kAlreadyCached,  // an identical block is cached; `link` is that block's; `block` unchanged
    kParentEvicted,  // `parent` is no longer cached, so nothing can reach the block
    kHashCollision,  // a different, reachable block holds the key
  };
  struct RegisterResult {
    RegisterOutcome outcome;
    PrefixLink link;
    // An unreferenced (LRU) block whose unreachable entry was replaced. It is no longer
    // registered nor in the LRU; the caller must return it to the free list.
    std::optional<BlockId> unregistered_unused;
  };
  // Registers `block` (not registered yet, holding the computed KV of `tokens` after the prefix
  // `parent`) as the child of `parent`.
  RegisterResult Register(PrefixLink parent, absl::Span<const int32_t> tokens, BlockId block);

  bool IsRegistered(BlockId block) const { return meta_[static_cast<size_t>(block)].node != 0; }
  // Number of registered blocks (= entries in the key map).
  int64_t num_registered() const { return static_cast<int64_t>(map_.size()); }

  // --- The LRU of unreferenced registered blocks.
  // Appends a registered, unreferenced block as the most recently used.
  void AddUnused(BlockId block);
  // Takes a block out of the LRU (it is being referenced again); it stays registered.
  void RemoveUnused(BlockId block);
  bool IsUnused(BlockId block) const { return prev_[static_cast<size_t>(block)] != kNotLinked; }
  int64_t num_unused() const { return num_unused_; }
  // Removes the least recently used block from the LRU and from the key map and returns it, now
  // unregistered. Requires num_unused() > 0.
  BlockId EvictOldest();
  // The LRU, next eviction first.
  std::vector<BlockId> UnusedOldestFirst() const;

  // Checks that the key map, the per-block entries and the LRU's links agree.
  absl::Status CheckConsistency() const;

 private:
  static constexpr int32_t kNotLinked = -1;

  struct BlockMeta {
    uint64_t key = 0;
    uint64_t node = 0;  // 0: not registered
    uint64_t parent_key = 0;
    uint64_t parent_node = 0;
  };

  // Whether `link` names a block that is still cached (the empty prefix always is).
  bool IsLive(PrefixLink link) const;
  bool TokensEqual(BlockId block, absl::Span<const int32_t> tokens) const;
  void Unregister(BlockId block);
  void Unlink(BlockId block);
  int64_t num_blocks() const { return static_cast<int64_t>(meta_.size()); }

  uint64_t key_mask_;
  uint64_t next_node_ = 1;
  absl::flat_hash_map<uint64_t, BlockId> map_;  // key -> registered block
  std::vector<BlockMeta> meta_;                 // [num_blocks]
  std::vector<int32_t> tokens_;                 // [num_blocks, kKvBlockSize] of registered blocks
  // Intrusive doubly linked LRU over block ids, with sentinel num_blocks (oldest = next of the
  // sentinel); kNotLinked for blocks not in it.
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  int64_t num_unused_ = 0;
};

}  // namespace moeserve::engine
