#include "engine/kv_cache/prefix_cache.h"

#include <cstdint>
#include <optional>
#include <set>
#include <vector>

#include "engine/batch/forward_batch.h"
#include "gtest/gtest.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using Outcome = PrefixCache::RegisterOutcome;

std::vector<int32_t> RandomBlock(testing::TestRng& rng) {
  std::vector<int32_t> tokens(static_cast<size_t>(kKvBlockSize));
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng.Int(0, 129279));
  return tokens;
}

TEST(PrefixCacheHashTest, IsDeterministicAndDependsOnParentEveryTokenAndOrder) {
  testing::TestRng rng;
  const std::vector<int32_t> block = RandomBlock(rng);
  const uint64_t h = PrefixCache::HashBlock(0, block);
  EXPECT_EQ(PrefixCache::HashBlock(0, block), h);
  EXPECT_NE(PrefixCache::HashBlock(1, block), h);
  std::set<uint64_t> seen = {h};
  for (size_t i = 0; i < block.size(); ++i) {
    std::vector<int32_t> changed = block;
    changed[i] ^= 1;
    EXPECT_TRUE(seen.insert(PrefixCache::HashBlock(0, changed)).second) << i;
  }
  std::vector<int32_t> swapped = block;
  std::swap(swapped[0], swapped[1]);
  if (swapped != block) {
    EXPECT_NE(PrefixCache::HashBlock(0, swapped), h);
  }
  // All-zero input is not a fixed point.
  EXPECT_NE(PrefixCache::HashBlock(0, std::vector<int32_t>(64, 0)), 0u);
}

// 20,000 random blocks: all keys distinct, and each output bit is set about half of the time.
TEST(PrefixCacheHashTest, KeysOfRandomBlocksAreDistinctAndBalanced) {
  testing::TestRng rng(7);
  std::set<uint64_t> keys;
  std::vector<int> bit_counts(64, 0);
  constexpr int kBlocks = 20000;
  for (int n = 0; n < kBlocks; ++n) {
    const uint64_t h = PrefixCache::HashBlock(rng.Bits(), RandomBlock(rng));
    keys.insert(h);
    for (int b = 0; b < 64; ++b) bit_counts[static_cast<size_t>(b)] += (h >> b) & 1 ? 1 : 0;
  }
  EXPECT_EQ(keys.size(), static_cast<size_t>(kBlocks));
  // Binomial(20000, 0.5) has stddev ~71; 6 sigma.
  for (int b = 0; b < 64; ++b) EXPECT_NEAR(bit_counts[static_cast<size_t>(b)], kBlocks / 2, 425);
}

TEST(PrefixCacheTest, RegisteredChainIsFoundBlockByBlock) {
  testing::TestRng rng;
  PrefixCache cache(8);
  const std::vector<int32_t> b0 = RandomBlock(rng);
  const std::vector<int32_t> b1 = RandomBlock(rng);
  const auto r0 = cache.Register(PrefixLink{}, b0, 3);
  ASSERT_EQ(r0.outcome, Outcome::kRegistered);
  const auto r1 = cache.Register(r0.link, b1, 5);
  ASSERT_EQ(r1.outcome, Outcome::kRegistered);
  EXPECT_EQ(cache.num_registered(), 2);
  EXPECT_TRUE(cache.IsRegistered(3));
  EXPECT_FALSE(cache.IsRegistered(4));

  const auto f0 = cache.Find(PrefixLink{}, b0);
  ASSERT_TRUE(f0.has_value());
  EXPECT_EQ(f0->block, 3);
  EXPECT_EQ(f0->link, r0.link);
  const auto f1 = cache.Find(f0->link, b1);
  ASSERT_TRUE(f1.has_value());
  EXPECT_EQ(f1->block, 5);
  // b1 does not follow the empty prefix, and b0 does not follow b0.
  EXPECT_FALSE(cache.Find(PrefixLink{}, b1).has_value());
  EXPECT_FALSE(cache.Find(f0->link, b0).has_value());
  EXPECT_TRUE(cache.CheckConsistency().ok());
}

TEST(PrefixCacheTest, RegisteringIdenticalContentReturnsTheExistingBlock) {
  testing::TestRng rng;
  PrefixCache cache(4);
  const std::vector<int32_t> b0 = RandomBlock(rng);
  const auto first = cache.Register(PrefixLink{}, b0, 0);
  const auto second = cache.Register(PrefixLink{}, b0, 1);
  EXPECT_EQ(second.outcome, Outcome::kAlreadyCached);
  EXPECT_EQ(second.link, first.link);
  EXPECT_FALSE(cache.IsRegistered(1));
  EXPECT_EQ(cache.Find(PrefixLink{}, b0)->block, 0);
}

TEST(PrefixCacheTest, RegisteringUnderAnEvictedParentFails) {
  testing::TestRng rng;
  PrefixCache cache(4);
  const auto r0 = cache.Register(PrefixLink{}, RandomBlock(rng), 0);
  cache.AddUnused(0);
  EXPECT_EQ(cache.EvictOldest(), 0);
  EXPECT_EQ(cache.Register(r0.link, RandomBlock(rng), 1).outcome, Outcome::kParentEvicted);
  EXPECT_EQ(cache.num_registered(), 0);
}

// Mask 0: every block gets key 0, so the second, different block collides with the first. The
// stored tokens tell them apart: no wrong block is ever found.
TEST(PrefixCacheTest, CollidingKeyIsRejectedByStoredTokens) {
  testing::TestRng rng;
  PrefixCache cache(4, /*key_mask=*/0);
  const std::vector<int32_t> a = RandomBlock(rng);
  const std::vector<int32_t> b = RandomBlock(rng);
  ASSERT_EQ(cache.Key(0, a), cache.Key(0, b));
  ASSERT_EQ(cache.Register(PrefixLink{}, a, 0).outcome, Outcome::kRegistered);
  EXPECT_FALSE(cache.Find(PrefixLink{}, b).has_value());
  EXPECT_EQ(cache.Register(PrefixLink{}, b, 1).outcome, Outcome::kHashCollision);
  EXPECT_FALSE(cache.IsRegistered(1));
  EXPECT_EQ(cache.Find(PrefixLink{}, a)->block, 0);
}

// An entry whose parent was evicted is unreachable; a registration under its key replaces it,
// and when it was waiting in the LRU it is handed back for the free list.
TEST(PrefixCacheTest, UnreachableEntryIsReplacedAndReturnedWhenUnused) {
  testing::TestRng rng;
  PrefixCache cache(6);
  const std::vector<int32_t> b0 = RandomBlock(rng);
  const std::vector<int32_t> b1 = RandomBlock(rng);
  const auto r0 = cache.Register(PrefixLink{}, b0, 0);
  const auto r1 = cache.Register(r0.link, b1, 1);
  ASSERT_EQ(r1.outcome, Outcome::kRegistered);
  cache.AddUnused(0);  // parent older than child: evicted first
  cache.AddUnused(1);
  EXPECT_EQ(cache.EvictOldest(), 0);
  EXPECT_TRUE(cache.IsRegistered(1));

  const auto r0_again = cache.Register(PrefixLink{}, b0, 2);
  ASSERT_EQ(r0_again.outcome, Outcome::kRegistered);
  EXPECT_NE(r0_again.link.node, r0.link.node);  // node ids are never reused
  ASSERT_EQ(r0_again.link.key, r0.link.key);
  // Block 1's content is right, but it hangs off the evicted node: not found...
  EXPECT_FALSE(cache.Find(r0_again.link, b1).has_value());
  // ...and replaced by the next registration of that content.
  const auto r1_again = cache.Register(r0_again.link, b1, 3);
  EXPECT_EQ(r1_again.outcome, Outcome::kRegistered);
  EXPECT_EQ(r1_again.unregistered_unused, std::optional<BlockId>(1));
  EXPECT_FALSE(cache.IsRegistered(1));
  EXPECT_FALSE(cache.IsUnused(1));
  EXPECT_EQ(cache.num_unused(), 0);
  EXPECT_EQ(cache.Find(r0_again.link, b1)->block, 3);
  EXPECT_TRUE(cache.CheckConsistency().ok());
}

TEST(PrefixCacheTest, LruEvictsInOrderOfAdditionAndRemovalTakesOut) {
  testing::TestRng rng;
  PrefixCache cache(5);
  for (BlockId b = 0; b < 5; ++b) cache.Register(PrefixLink{}, RandomBlock(rng), b);
  for (BlockId b : {3, 1, 4, 0}) cache.AddUnused(b);
  EXPECT_EQ(cache.UnusedOldestFirst(), (std::vector<BlockId>{3, 1, 4, 0}));
  cache.RemoveUnused(1);  // revived
  cache.AddUnused(1);     // unreferenced again: now the newest
  EXPECT_EQ(cache.UnusedOldestFirst(), (std::vector<BlockId>{3, 4, 0, 1}));
  EXPECT_EQ(cache.num_unused(), 4);
  EXPECT_EQ(cache.EvictOldest(), 3);
  EXPECT_FALSE(cache.IsRegistered(3));
  EXPECT_EQ(cache.EvictOldest(), 4);
  EXPECT_EQ(cache.num_registered(), 3);
  EXPECT_EQ(cache.UnusedOldestFirst(), (std::vector<BlockId>{0, 1}));
  EXPECT_TRUE(cache.CheckConsistency().ok());
}

}  // namespace
}  // namespace moeserve::engine
