#include "engine/kv_cache/kv_cache_manager.h"

#include <algorithm>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "engine/batch/forward_batch.h"
#include "engine/status_macros.h"

namespace moeserve::engine {

KvCacheManager::KvCacheManager(int64_t num_blocks, bool enable_prefix_caching,
                               uint64_t prefix_key_mask)
    : pool_(num_blocks) {
  if (enable_prefix_caching) prefix_cache_.emplace(pool_.num_blocks(), prefix_key_mask);
}

int64_t KvCacheManager::MatchPrefix(absl::Span<const int32_t> tokens, BlockTable& table,
                                    PrefixReuse reuse) {
  if (!prefix_cache_.has_value() || !table.empty()) return 0;
  const auto num_tokens = static_cast<int64_t>(tokens.size());
  counters_.prefix_query_tokens += num_tokens;
  // At least the last token is computed: at most floor((n - 1) / 64) blocks.
  const int64_t max_blocks = num_tokens > 0 ? (num_tokens - 1) / kKvBlockSize : 0;
  PrefixLink link;
  PrefixLink link_before_last;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const std::optional<PrefixCache::Found> found = prefix_cache_->Find(
        link,
        tokens.subspan(static_cast<size_t>(i * kKvBlockSize), static_cast<size_t>(kKvBlockSize)));
    if (!found.has_value()) break;
    if (pool_.ref_count(found->block) == 0) prefix_cache_->RemoveUnused(found->block);
    pool_.IncRef(found->block);
    table.ids_.push_back(found->block);
    link_before_last = link;
    link = found->link;
  }
  if (reuse == PrefixReuse::kAllButLastBlock && !table.ids_.empty()) {
    Release(table.ids_.back());
    table.ids_.pop_back();
    link = link_before_last;
  }
  table.num_cached_blocks_registered_ = table.num_blocks();
  table.last_hash_ = link.key;
  table.last_node_ = link.node;
  table.prefix_chain_broken_ = false;
  const int64_t hit_tokens = table.capacity_tokens();
  counters_.prefix_hit_tokens += hit_tokens;
  return hit_tokens;
}

int64_t KvCacheManager::BlocksNeeded(const BlockTable& table, int64_t num_tokens) const {
  const int64_t blocks = (std::max<int64_t>(num_tokens, 0) + kKvBlockSize - 1) / kKvBlockSize;
  return std::max<int64_t>(blocks - table.num_blocks(), 0);
}

int64_t KvCacheManager::NumAvailableBlocks() const {
  return pool_.num_free() + (prefix_cache_.has_value() ? prefix_cache_->num_unused() : 0);
}

bool KvCacheManager::Allocate(BlockTable& table, int64_t num_tokens) {
  const int64_t needed = BlocksNeeded(table, num_tokens);
  if (needed > NumAvailableBlocks()) return false;
  table.ids_.reserve(table.ids_.size() + static_cast<size_t>(needed));
  for (int64_t i = 0; i < needed; ++i) {
    if (pool_.num_free() > 0) {
      table.ids_.push_back(pool_.TakeFree());
      continue;
    }
    const BlockId evicted = prefix_cache_->EvictOldest();
    ++counters_.evictions;
    pool_.IncRef(evicted);
    table.ids_.push_back(evicted);
  }
  return true;
}

void KvCacheManager::CommitComputedBlocks(BlockTable& table, absl::Span<const int32_t> tokens,
                                          int64_t num_computed_tokens) {
  if (!prefix_cache_.has_value() || table.prefix_chain_broken_) return;
  const int64_t computed =
      std::clamp<int64_t>(num_computed_tokens, 0, static_cast<int64_t>(tokens.size()));
  const int64_t full_blocks = std::min(computed / kKvBlockSize, table.num_blocks());
  for (int64_t i = table.num_cached_blocks_registered_; i < full_blocks; ++i) {
    const PrefixCache::RegisterResult result = prefix_cache_->Register(
        PrefixLink{table.last_hash_, table.last_node_},
        tokens.subspan(static_cast<size_t>(i * kKvBlockSize), static_cast<size_t>(kKvBlockSize)),
        table.ids_[static_cast<size_t>(i)]);
    if (result.unregistered_unused.has_value()) pool_.PutFree(*result.unregistered_unused);
    if (result.outcome == PrefixCache::RegisterOutcome::kParentEvicted ||
        result.outcome == PrefixCache::RegisterOutcome::kHashCollision) {
      // Nothing after this block could be reached; the rest of the table stays unregistered.
      table.prefix_chain_broken_ = true;
      return;
    }
    table.last_hash_ = result.link.key;
    table.last_node_ = result.link.node;
    table.num_cached_blocks_registered_ = i + 1;
  }
}

void KvCacheManager::Release(BlockId block) {
  if (pool_.DecRef(block) != 0) return;
  if (prefix_cache_.has_value() && prefix_cache_->IsRegistered(block)) {
    prefix_cache_->AddUnused(block);
  } else {
    pool_.PutFree(block);
  }
}

void KvCacheManager::Free(BlockTable& table) {
  // Last block first, so that in the LRU a sequence's tail is evicted before its prefix.
  for (auto it = table.ids_.rbegin(); it != table.ids_.rend(); ++it) Release(*it);
  table = BlockTable();
}

void KvCacheManager::Shrink(BlockTable& table, int64_t num_tokens) {
  const int64_t keep =
      std::max<int64_t>((std::max<int64_t>(num_tokens, 0) + kKvBlockSize - 1) / kKvBlockSize,
                        table.num_cached_blocks_registered_);
  while (table.num_blocks() > keep) {
    Release(table.ids_.back());
    table.ids_.pop_back();
  }
}

KvCacheStats KvCacheManager::Stats() const {
  KvCacheStats stats = counters_;
  stats.num_blocks = pool_.num_blocks();
  stats.num_blocks_free = pool_.num_free();
  stats.num_blocks_cached_unused = prefix_cache_.has_value() ? prefix_cache_->num_unused() : 0;
  stats.num_blocks_used = stats.num_blocks - stats.num_blocks_free - stats.num_blocks_cached_unused;
  return stats;
}

std::vector<BlockId> KvCacheManager::EvictionOrder() const {
  return prefix_cache_.has_value() ? prefix_cache_->UnusedOldestFirst() : std::vector<BlockId>{};
}

absl::Status KvCacheManager::CheckInvariants(
    absl::Span<const BlockTable* const> live_tables) const {
  const int64_t n = num_blocks();
  std::vector<int32_t> holders(static_cast<size_t>(n), 0);
  std::vector<int64_t> last_table(static_cast<size_t>(n), -1);
  for (size_t t = 0; t < live_tables.size(); ++t) {
    const BlockTable* table = live_tables[t];
    if (table == nullptr) return absl::InvalidArgumentError(absl::StrCat("table ", t, " is null"));
    if (table->num_cached_blocks_registered_ > table->num_blocks()) {
      return absl::InternalError(absl::StrCat("table ", t, " has ", table->num_blocks(),
                                              " blocks but a prefix cursor at ",
                                              table->num_cached_blocks_registered_));
    }
    for (const BlockId id : table->ids()) {
      if (id < 0 || id >= n) {
        return absl::InternalError(
            absl::StrCat("table ", t, " holds block ", id, ", outside [0, ", n, ")"));
      }
      if (last_table[static_cast<size_t>(id)] == static_cast<int64_t>(t)) {
        return absl::InternalError(absl::StrCat("table ", t, " holds block ", id, " twice"));
      }
      last_table[static_cast<size_t>(id)] = static_cast<int64_t>(t);
      ++holders[static_cast<size_t>(id)];
    }
  }
  for (int64_t b = 0; b < n; ++b) {
    const auto id = static_cast<BlockId>(b);
    if (pool_.ref_count(id) != holders[static_cast<size_t>(b)]) {
      return absl::InternalError(absl::StrCat("block ", b, " has ref count ", pool_.ref_count(id),
                                              " but is held by ", holders[static_cast<size_t>(b)],
                                              " live tables"));
    }
  }

  // Free list, LRU and referenced blocks partition [0, n).
  enum Where : uint8_t { kNowhere, kFreeList, kLru };
  std::vector<uint8_t> where(static_cast<size_t>(n), kNowhere);
  for (const BlockId id : pool_.free_list()) {
    if (id < 0 || id >= n) {
      return absl::InternalError(absl::StrCat("free list holds block ", id));
    }
    if (where[static_cast<size_t>(id)] != kNowhere) {
      return absl::InternalError(absl::StrCat("block ", id, " is on the free list twice"));
    }
    if (pool_.ref_count(id) != 0) {
      return absl::InternalError(
          absl::StrCat("block ", id, " is on the free list with ref count ", pool_.ref_count(id)));
    }
    if (IsCached(id)) {
      return absl::InternalError(
          absl::StrCat("block ", id, " is on the free list but registered in the prefix cache"));
    }
    where[static_cast<size_t>(id)] = kFreeList;
  }
  if (prefix_cache_.has_value()) {
    MOESERVE_RETURN_IF_ERROR(prefix_cache_->CheckConsistency());
    for (const BlockId id : prefix_cache_->UnusedOldestFirst()) {
      if (where[static_cast<size_t>(id)] != kNowhere) {
        return absl::InternalError(
            absl::StrCat("block ", id, " is both in the LRU and on the free list"));
      }
      if (pool_.ref_count(id) != 0) {
        return absl::InternalError(
            absl::StrCat("block ", id, " is in the LRU with ref count ", pool_.ref_count(id)));
      }
      where[static_cast<size_t>(id)] = kLru;
    }
  }
  for (int64_t b = 0; b < n; ++b) {
    const auto id = static_cast<BlockId>(b);
    if (pool_.ref_count(id) == 0 && where[static_cast<size_t>(b)] == kNowhere) {
      return absl::InternalError(
          absl::StrCat("block ", b, " is unreferenced but neither free nor cached (leaked)"));
    }
  }
  const KvCacheStats stats = Stats();
  if (stats.num_blocks_used < 0 ||
      stats.num_blocks_used + stats.num_blocks_cached_unused + stats.num_blocks_free != n) {
    return absl::InternalError("block counts do not add up");
  }
  return absl::OkStatus();
}

}  // namespace moeserve::engine
