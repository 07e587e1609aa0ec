#include "engine/kv_cache/prefix_cache.h"

#include <algorithm>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "engine/batch/forward_batch.h"

namespace moeserve::engine {
namespace {

// splitmix64's output function (Steele, Lea, Flood 2014): a bijection on 64 bits with full
// avalanche.
uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// 2^64 / golden ratio, splitmix64's increment; keeps the all-zero state from being a fixed point.
constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ull;

}  // namespace

PrefixCache::PrefixCache(int64_t num_blocks, uint64_t key_mask)
    : key_mask_(key_mask),
      meta_(static_cast<size_t>(num_blocks)),
      tokens_(static_cast<size_t>(num_blocks * kKvBlockSize)),
      prev_(static_cast<size_t>(num_blocks + 1), kNotLinked),
      next_(static_cast<size_t>(num_blocks + 1), kNotLinked) {
  const auto sentinel = static_cast<size_t>(num_blocks);
  prev_[sentinel] = static_cast<int32_t>(num_blocks);
  next_[sentinel] = static_cast<int32_t>(num_blocks);
}

uint64_t PrefixCache::HashBlock(uint64_t parent_key, absl::Span<const int32_t> tokens) {
  uint64_t h = Mix64(parent_key + kGamma);
  size_t i = 0;
  for (; i + 1 < tokens.size(); i += 2) {
    const uint64_t word = (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) << 32) |
                          static_cast<uint32_t>(tokens[i + 1]);
    h = Mix64(h ^ word) + kGamma;
  }
  if (i < tokens.size()) {
    h = Mix64(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) << 32)) + kGamma;
  }
  return Mix64(h ^ tokens.size());
}

bool PrefixCache::IsLive(PrefixLink link) const {
  if (link.node == 0) return true;
  const auto it = map_.find(link.key);
  return it != map_.end() && meta_[static_cast<size_t>(it->second)].node == link.node;
}

bool PrefixCache::TokensEqual(BlockId block, absl::Span<const int32_t> tokens) const {
  if (tokens.size() != static_cast<size_t>(kKvBlockSize)) return false;
  const int32_t* stored = tokens_.data() + static_cast<int64_t>(block) * kKvBlockSize;
  return std::equal(tokens.begin(), tokens.end(), stored);
}

std::optional<PrefixCache::Found> PrefixCache::Find(PrefixLink parent,
                                                    absl::Span<const int32_t> tokens) const {
  const uint64_t key = Key(parent.key, tokens);
  const auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  const BlockId block = it->second;
  const BlockMeta& meta = meta_[static_cast<size_t>(block)];
  if (meta.parent_node != parent.node || !TokensEqual(block, tokens)) return std::nullopt;
  return Found{block, PrefixLink{key, meta.node}};
}

PrefixCache::RegisterResult PrefixCache::Register(PrefixLink parent,
                                                  absl::Span<const int32_t> tokens, BlockId block) {
  RegisterResult result{RegisterOutcome::kParentEvicted, PrefixLink{}, std::nullopt};
  if (!IsLive(parent) || tokens.size() != static_cast<size_t>(kKvBlockSize)) return result;
  const uint64_t key = Key(parent.key, tokens);
  const auto it = map_.find(key);
  if (it != map_.end()) {
    const BlockId existing = it->second;
    const BlockMeta& meta = meta_[static_cast<size_t>(existing)];
    if (meta.parent_node == parent.node && TokensEqual(existing, tokens)) {
      result.outcome = RegisterOutcome::kAlreadyCached;
      result.link = PrefixLink{key, meta.node};
      return result;
    }
    if (IsLive(PrefixLink{meta.parent_key, meta.parent_node})) {
      result.outcome = RegisterOutcome::kHashCollision;
      return result;
    }
    // The existing entry is unreachable: replace it.
    if (IsUnused(existing)) {
      Unlink(existing);
      result.unregistered_unused = existing;
    }
    Unregister(existing);
  }
  BlockMeta& meta = meta_[static_cast<size_t>(block)];
  meta = BlockMeta{key, next_node_++, parent.key, parent.node};
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<int64_t>(block) * kKvBlockSize);
  map_[key] = block;
  result.outcome = RegisterOutcome::kRegistered;
  result.link = PrefixLink{key, meta.node};
  return result;
}

void PrefixCache::Unregister(BlockId block) {
  BlockMeta& meta = meta_[static_cast<size_t>(block)];
  map_.erase(meta.key);
  meta = BlockMeta{};
}

void PrefixCache::AddUnused(BlockId block) {
  const auto sentinel = static_cast<int32_t>(num_blocks());
  const int32_t newest = prev_[static_cast<size_t>(sentinel)];
  prev_[static_cast<size_t>(block)] = newest;
  next_[static_cast<size_t>(block)] = sentinel;
  next_[static_cast<size_t>(newest)] = block;
  prev_[static_cast<size_t>(sentinel)] = block;
  ++num_unused_;
}

void PrefixCache::Unlink(BlockId block) {
  const int32_t prev = prev_[static_cast<size_t>(block)];
  const int32_t next = next_[static_cast<size_t>(block)];
  next_[static_cast<size_t>(prev)] = next;
  prev_[static_cast<size_t>(next)] = prev;
  prev_[static_cast<size_t>(block)] = kNotLinked;
  next_[static_cast<size_t>(block)] = kNotLinked;
  --num_unused_;
}

void PrefixCache::RemoveUnused(BlockId block) { Unlink(block); }

BlockId PrefixCache::EvictOldest() {
  const BlockId oldest = next_[static_cast<size_t>(num_blocks())];
  Unlink(oldest);
  Unregister(oldest);
  return oldest;
}

std::vector<BlockId> PrefixCache::UnusedOldestFirst() const {
  std::vector<BlockId> order;
  order.reserve(static_cast<size_t>(num_unused_));
  const auto sentinel = static_cast<int32_t>(num_blocks());
  for (int32_t b = next_[static_cast<size_t>(sentinel)];
       b != sentinel && static_cast<int64_t>(order.size()) <= num_blocks();
       b = next_[static_cast<size_t>(b)]) {
    order.push_back(b);
  }
  return order;
}

absl::Status PrefixCache::CheckConsistency() const {
  int64_t registered = 0;
  for (int64_t b = 0; b < num_blocks(); ++b) {
    const BlockMeta& meta = meta_[static_cast<size_t>(b)];
    if (meta.node == 0) continue;
    ++registered;
    const auto it = map_.find(meta.key);
    if (it == map_.end() || it->second != b) {
      return absl::InternalError(
          absl::StrCat("prefix cache: block ", b, " is registered but its key maps elsewhere"));
    }
    if (meta.node >= next_node_ || meta.parent_node >= meta.node) {
      return absl::InternalError(absl::StrCat("prefix cache: block ", b, " has node ", meta.node,
                                              " and parent node ", meta.parent_node));
    }
  }
  if (registered != num_registered()) {
    return absl::InternalError(absl::StrCat("prefix cache: ", num_registered(), " keys but ",
                                            registered, " registered blocks"));
  }
  // Walk the LRU forwards, checking back links; it must end at the sentinel within num_unused_.
  const auto sentinel = static_cast<int32_t>(num_blocks());
  int64_t count = 0;
  for (int32_t prev = sentinel, b = next_[static_cast<size_t>(sentinel)]; b != sentinel;
       prev = b, b = next_[static_cast<size_t>(b)]) {
    if (b < 0 || b > sentinel || prev_[static_cast<size_t>(b)] != prev) {
      return absl::InternalError(absl::StrCat("prefix cache: broken LRU link at block ", b));
    }
    if (++count > num_unused_) {
      return absl::InternalError("prefix cache: LRU longer than its count");
    }
    if (!IsRegistered(b)) {
      return absl::InternalError(
          absl::StrCat("prefix cache: block ", b, " is in the LRU but not registered"));
    }
  }
  if (count != num_unused_) {
    return absl::InternalError(
        absl::StrCat("prefix cache: LRU holds ", count, " blocks, count says ", num_unused_));
  }
  int64_t linked = 0;
  for (int64_t b = 0; b < num_blocks(); ++b) linked += IsUnused(static_cast<BlockId>(b)) ? 1 : 0;
  if (linked != num_unused_) {
    return absl::InternalError(absl::StrCat(
        "prefix cache: ", linked, " blocks marked as in the LRU, count says ", num_unused_));
  }
  return absl::OkStatus();
}

}  // namespace moeserve::engine
