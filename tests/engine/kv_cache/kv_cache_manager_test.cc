#include "engine/kv_cache/kv_cache_manager.h"

#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "engine/batch/forward_batch.h"
#include "engine/kv_cache/block_table.h"
#include "gtest/gtest.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kB = kKvBlockSize;

std::vector<int32_t> RandomTokens(testing::TestRng& rng, int64_t n) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng.Int(0, 102399));
  return tokens;
}

std::vector<int32_t> Concat(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  std::vector<int32_t> out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::vector<int32_t> Head(const std::vector<int32_t>& tokens, int64_t n) {
  return std::vector<int32_t>(tokens.begin(), tokens.begin() + n);
}

// A whole prefill in one step: match, allocate the prompt, compute it, commit. Returns the hit.
int64_t Prefill(KvCacheManager& kv, const std::vector<int32_t>& tokens, BlockTable& table) {
  const int64_t hit = kv.MatchPrefix(tokens, table);
  EXPECT_TRUE(kv.Allocate(table, static_cast<int64_t>(tokens.size())));
  kv.CommitComputedBlocks(table, tokens, static_cast<int64_t>(tokens.size()));
  return hit;
}

void ExpectInvariants(const KvCacheManager& kv, std::initializer_list<const BlockTable*> tables) {
  const absl::Status status = kv.CheckInvariants(std::vector<const BlockTable*>(tables));
  EXPECT_TRUE(status.ok()) << status;
}

std::vector<BlockId> Ids(std::initializer_list<BlockId> ids) { return ids; }

TEST(KvCacheManagerTest, FreshManagerHasEveryBlockFree) {
  KvCacheManager kv(16, /*enable_prefix_caching=*/true);
  const KvCacheStats stats = kv.Stats();
  EXPECT_EQ(stats.num_blocks, 16);
  EXPECT_EQ(stats.num_blocks_free, 16);
  EXPECT_EQ(stats.num_blocks_used, 0);
  EXPECT_EQ(stats.num_blocks_cached_unused, 0);
  EXPECT_EQ(stats.usage(), 0.0);
  EXPECT_EQ(kv.NumAvailableBlocks(), 16);
  ExpectInvariants(kv, {});
}

TEST(KvCacheManagerTest, AllocateTakesCeilOfTokensOverBlockSizeAndFreeReturnsEveryBlock) {
  KvCacheManager kv(10, true);
  BlockTable table;
  EXPECT_EQ(kv.BlocksNeeded(table, 0), 0);
  EXPECT_EQ(kv.BlocksNeeded(table, 1), 1);
  EXPECT_EQ(kv.BlocksNeeded(table, 64), 1);
  EXPECT_EQ(kv.BlocksNeeded(table, 65), 2);
  ASSERT_TRUE(kv.Allocate(table, 65));
  EXPECT_EQ(table.num_blocks(), 2);
  EXPECT_EQ(table.capacity_tokens(), 128);
  EXPECT_EQ(table.ids(), Ids({0, 1}));
  EXPECT_EQ(kv.BlocksNeeded(table, 128), 0);
  ASSERT_TRUE(kv.Allocate(table, 100));  // already fits
  EXPECT_EQ(table.num_blocks(), 2);
  ASSERT_TRUE(kv.Allocate(table, 129));  // grows by one
  EXPECT_EQ(table.ids(), Ids({0, 1, 2}));
  KvCacheStats stats = kv.Stats();
  EXPECT_EQ(stats.num_blocks_used, 3);
  EXPECT_EQ(stats.num_blocks_free, 7);
  EXPECT_DOUBLE_EQ(stats.usage(), 0.3);
  for (BlockId id : table.ids()) EXPECT_EQ(kv.RefCount(id), 1);
  ExpectInvariants(kv, {&table});

  kv.Free(table);
  EXPECT_TRUE(table.empty());
  stats = kv.Stats();
  EXPECT_EQ(stats.num_blocks_used, 0);
  EXPECT_EQ(stats.num_blocks_free, 10);  // nothing was committed, so nothing is cached
  kv.Free(table);                        // safe on an empty table
  ExpectInvariants(kv, {});
}

TEST(KvCacheManagerTest, ShrinkGivesBackTrailingBlocksButNeverRegisteredOnes) {
  testing::TestRng rng;
  KvCacheManager kv(8, true);
  BlockTable table;
  const std::vector<int32_t> tokens = RandomTokens(rng, 2 * kB);
  ASSERT_TRUE(kv.Allocate(table, 2 * kB + 3 * kB / 2));  // 4 blocks: 2 computed, 2 look-ahead
  kv.CommitComputedBlocks(table, tokens, 2 * kB);
  ASSERT_EQ(table.num_cached_blocks_registered(), 2);
  const std::vector<BlockId> first_three(table.ids().begin(), table.ids().begin() + 3);
  kv.Shrink(table, 2 * kB + 1);  // the next token's slot is in block 2
  EXPECT_EQ(table.ids(), first_three);
  EXPECT_EQ(kv.Stats().num_blocks_free, 5);
  ExpectInvariants(kv, {&table});
  kv.Shrink(table, 1);  // the registered prefix stays
  EXPECT_EQ(table.num_blocks(), 2);
  EXPECT_EQ(kv.Stats().num_blocks_free, 6);
  ExpectInvariants(kv, {&table});
  kv.Shrink(table, 5 * kB);  // never grows
  EXPECT_EQ(table.num_blocks(), 2);
  kv.Free(table);
  EXPECT_EQ(kv.Stats().num_blocks_cached_unused, 2);
  ExpectInvariants(kv, {});
}

TEST(KvCacheManagerTest, AllocateIsAllOrNothing) {
  KvCacheManager kv(5, false);
  BlockTable a;
  BlockTable b;
  ASSERT_TRUE(kv.Allocate(a, 3 * kB));
  ASSERT_TRUE(kv.Allocate(b, 10));
  const std::vector<BlockId> b_before = b.ids();
  EXPECT_FALSE(kv.CanAllocate(b, 4 * kB));
  EXPECT_FALSE(kv.Allocate(b, 4 * kB));  // needs 3, 1 available
  EXPECT_EQ(b.ids(), b_before);
  EXPECT_EQ(kv.Stats().num_blocks_free, 1);
  EXPECT_TRUE(kv.CanAllocate(b, 2 * kB));
  EXPECT_TRUE(kv.Allocate(b, 2 * kB));
  EXPECT_EQ(kv.Stats().num_blocks_free, 0);
  EXPECT_FALSE(kv.Allocate(a, 3 * kB + 1));
  EXPECT_EQ(a.num_blocks(), 3);
  ExpectInvariants(kv, {&a, &b});
}

TEST(KvCacheManagerTest, FailedAllocateEvictsNothing) {
  testing::TestRng rng;
  KvCacheManager kv(4, true);
  BlockTable a;
  Prefill(kv, RandomTokens(rng, 129), a);  // 3 blocks, 2 full
  kv.Free(a);
  EXPECT_EQ(kv.Stats().num_blocks_cached_unused, 2);
  EXPECT_EQ(kv.NumAvailableBlocks(), 4);
  BlockTable b;
  EXPECT_FALSE(kv.Allocate(b, 5 * kB));
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(kv.Stats().num_blocks_cached_unused, 2);
  EXPECT_EQ(kv.Stats().evictions, 0);
  EXPECT_TRUE(kv.Allocate(b, 4 * kB));
  EXPECT_EQ(kv.Stats().evictions, 2);
  EXPECT_EQ(kv.Stats().num_blocks_cached_unused, 0);
  ExpectInvariants(kv, {&b});
}

TEST(KvCacheManagerTest, TwoPromptsSharing130TokensShareExactlyTwoBlocks) {
  testing::TestRng rng;
  KvCacheManager kv(16, true);
  const std::vector<int32_t> shared = RandomTokens(rng, 130);
  const std::vector<int32_t> p1 = Concat(shared, RandomTokens(rng, 70));
  const std::vector<int32_t> p2 = Concat(shared, RandomTokens(rng, 90));
  BlockTable t1;
  BlockTable t2;
  EXPECT_EQ(Prefill(kv, p1, t1), 0);
  EXPECT_EQ(t1.num_blocks(), 4);
  EXPECT_EQ(Prefill(kv, p2, t2), 128);
  ASSERT_EQ(t2.num_blocks(), 4);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(t2.ids()[static_cast<size_t>(i)], t1.ids()[static_cast<size_t>(i)]);
    EXPECT_EQ(kv.RefCount(t1.ids()[static_cast<size_t>(i)]), 2);
  }
  for (int i = 2; i < 4; ++i) {
    EXPECT_NE(t2.ids()[static_cast<size_t>(i)], t1.ids()[static_cast<size_t>(i)]);
    EXPECT_EQ(kv.RefCount(t2.ids()[static_cast<size_t>(i)]), 1);
  }
  EXPECT_EQ(kv.Stats().num_blocks_used, 6);
  EXPECT_EQ(kv.Stats().prefix_query_tokens, 200 + 220);
  EXPECT_EQ(kv.Stats().prefix_hit_tokens, 128);
  ExpectInvariants(kv, {&t1, &t2});
}

TEST(KvCacheManagerTest, MatchNeverCoversTheLastToken) {
  testing::TestRng rng;
  KvCacheManager kv(16, true);
  const std::vector<int32_t> prompt = RandomTokens(rng, 128);
  BlockTable a;
  Prefill(kv, prompt, a);
  EXPECT_TRUE(kv.IsCached(a.ids()[0]));
  EXPECT_TRUE(kv.IsCached(a.ids()[1]));

  BlockTable same;
  EXPECT_EQ(kv.MatchPrefix(prompt, same), 64);  // not 128: the last token is computed
  EXPECT_EQ(same.ids(), Ids({a.ids()[0]}));
  BlockTable longer;
  EXPECT_EQ(kv.MatchPrefix(Concat(prompt, {7}), longer), 128);
  BlockTable one_block;
  EXPECT_EQ(kv.MatchPrefix(Head(prompt, 64), one_block), 0);
  EXPECT_TRUE(one_block.empty());
  BlockTable empty;
  EXPECT_EQ(kv.MatchPrefix({}, empty), 0);
  ExpectInvariants(kv, {&a, &same, &longer});
}

TEST(KvCacheManagerTest, MatchIntoANonEmptyTableDoesNothing) {
  testing::TestRng rng;
  KvCacheManager kv(8, true);
  const std::vector<int32_t> prompt = RandomTokens(rng, 200);
  BlockTable a;
  Prefill(kv, prompt, a);
  BlockTable b;
  ASSERT_TRUE(kv.Allocate(b, 1));
  EXPECT_EQ(kv.MatchPrefix(prompt, b), 0);
  EXPECT_EQ(b.num_blocks(), 1);
  EXPECT_EQ(kv.Stats().prefix_query_tokens, 200);  // only a's query
  ExpectInvariants(kv, {&a, &b});
}

TEST(KvCacheManagerTest, FreedCachedBlocksReviveOnALaterHit) {
  testing::TestRng rng;
  KvCacheManager kv(8, true);
  const std::vector<int32_t> prompt = RandomTokens(rng, 150);
  BlockTable a;
  Prefill(kv, prompt, a);
  const std::vector<BlockId> a_ids = a.ids();
  kv.Free(a);
  KvCacheStats stats = kv.Stats();
  EXPECT_EQ(stats.num_blocks_used, 0);
  EXPECT_EQ(stats.num_blocks_cached_unused, 2);  // the third block was partial
  EXPECT_EQ(stats.num_blocks_free, 6);
  EXPECT_EQ(kv.NumAvailableBlocks(), 8);
  ExpectInvariants(kv, {});

  BlockTable b;
  EXPECT_EQ(kv.MatchPrefix(Concat(prompt, RandomTokens(rng, 5)), b), 128);
  EXPECT_EQ(b.ids(), Ids({a_ids[0], a_ids[1]}));
  stats = kv.Stats();
  EXPECT_EQ(stats.num_blocks_used, 2);
  EXPECT_EQ(stats.num_blocks_cached_unused, 0);
  EXPECT_EQ(stats.evictions, 0);
  EXPECT_EQ(kv.RefCount(a_ids[0]), 1);
  EXPECT_EQ(kv.NumAvailableBlocks(), 6);
  ExpectInvariants(kv, {&b});
}

// A and B (3 blocks each, 2 of them full) are freed in that order: the LRU holds A's full
// blocks, tail first, then B's; partial blocks go straight to the free list. Fresh blocks come
// from the free list before anything is evicted.
TEST(KvCacheManagerTest, EvictsLeastRecentlyFreedFirstAndTailBeforeHead) {
  testing::TestRng rng;
  KvCacheManager kv(6, true);
  const std::vector<int32_t> prompt_a = RandomTokens(rng, 129);
  const std::vector<int32_t> prompt_b = RandomTokens(rng, 129);
  BlockTable a;
  BlockTable b;
  Prefill(kv, prompt_a, a);
  Prefill(kv, prompt_b, b);
  const std::vector<BlockId> a_ids = a.ids();
  const std::vector<BlockId> b_ids = b.ids();
  kv.Free(a);
  kv.Free(b);
  EXPECT_EQ(kv.EvictionOrder(), Ids({a_ids[1], a_ids[0], b_ids[1], b_ids[0]}));
  EXPECT_EQ(kv.Stats().num_blocks_free, 2);

  BlockTable c;
  ASSERT_TRUE(kv.Allocate(c, 2 * kB));  // the two free blocks
  EXPECT_EQ(kv.Stats().evictions, 0);
  ASSERT_TRUE(kv.Allocate(c, 3 * kB));  // evicts A's tail
  EXPECT_EQ(c.ids()[2], a_ids[1]);
  EXPECT_EQ(kv.Stats().evictions, 1);
  EXPECT_FALSE(kv.IsCached(a_ids[1]));
  EXPECT_EQ(kv.EvictionOrder(), Ids({a_ids[0], b_ids[1], b_ids[0]}));

  // A's first block still hits; its second is gone.
  BlockTable d;
  EXPECT_EQ(kv.MatchPrefix(prompt_a, d), 64);
  EXPECT_EQ(d.ids(), Ids({a_ids[0]}));
  ASSERT_TRUE(kv.Allocate(c, 4 * kB));  // next oldest: B's tail
  EXPECT_EQ(c.ids()[3], b_ids[1]);
  BlockTable e;
  EXPECT_EQ(kv.MatchPrefix(prompt_b, e), 64);
  ExpectInvariants(kv, {&c, &d, &e});
}

TEST(KvCacheManagerTest, RevivedBlockBecomesNewestInTheLruWhenFreedAgain) {
  testing::TestRng rng;
  KvCacheManager kv(8, true);
  const std::vector<int32_t> prompt_a = RandomTokens(rng, 129);
  const std::vector<int32_t> prompt_b = RandomTokens(rng, 129);
  BlockTable a;
  BlockTable b;
  Prefill(kv, prompt_a, a);
  Prefill(kv, prompt_b, b);
  const std::vector<BlockId> a_ids = a.ids();
  const std::vector<BlockId> b_ids = b.ids();
  kv.Free(a);
  kv.Free(b);
  BlockTable c;
  EXPECT_EQ(kv.MatchPrefix(Head(prompt_a, 65), c), 64);
  EXPECT_EQ(kv.EvictionOrder(), Ids({a_ids[1], b_ids[1], b_ids[0]}));
  kv.Free(c);
  EXPECT_EQ(kv.EvictionOrder(), Ids({a_ids[1], b_ids[1], b_ids[0], a_ids[0]}));
  ExpectInvariants(kv, {});
}

TEST(KvCacheManagerTest, PrefixCachingOffGivesNoHitsAndFreesStraightToTheFreeList) {
  testing::TestRng rng;
  KvCacheManager kv(8, /*enable_prefix_caching=*/false);
  EXPECT_FALSE(kv.prefix_caching_enabled());
  const std::vector<int32_t> prompt = RandomTokens(rng, 200);
  BlockTable a;
  BlockTable b;
  EXPECT_EQ(Prefill(kv, prompt, a), 0);
  EXPECT_EQ(Prefill(kv, prompt, b), 0);
  for (BlockId id : a.ids()) {
    EXPECT_FALSE(kv.IsCached(id));
    EXPECT_EQ(kv.RefCount(id), 1);
  }
  kv.Free(a);
  kv.Free(b);
  const KvCacheStats stats = kv.Stats();
  EXPECT_EQ(stats.num_blocks_free, 8);
  EXPECT_EQ(stats.num_blocks_cached_unused, 0);
  EXPECT_EQ(stats.prefix_query_tokens, 0);
  EXPECT_EQ(stats.prefix_hit_tokens, 0);
  EXPECT_TRUE(kv.EvictionOrder().empty());
  ExpectInvariants(kv, {});
}

// A and B prefill the same prompt in the same step, so neither hits. A commits first; B's
// identical blocks stay unregistered, later hits get A's, and B's go to the free list.
TEST(KvCacheManagerTest, DuplicateComputedBlockKeepsTheExistingEntry) {
  testing::TestRng rng;
  KvCacheManager kv(12, true);
  const std::vector<int32_t> prompt = RandomTokens(rng, 140);
  BlockTable a;
  BlockTable b;
  EXPECT_EQ(kv.MatchPrefix(prompt, a), 0);
  EXPECT_EQ(kv.MatchPrefix(prompt, b), 0);
  ASSERT_TRUE(kv.Allocate(a, 140));
  ASSERT_TRUE(kv.Allocate(b, 140));
  kv.CommitComputedBlocks(a, prompt, 140);
  kv.CommitComputedBlocks(b, prompt, 140);
  EXPECT_EQ(b.num_cached_blocks_registered(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(kv.IsCached(a.ids()[static_cast<size_t>(i)]));
    EXPECT_FALSE(kv.IsCached(b.ids()[static_cast<size_t>(i)]));
  }
  BlockTable c;
  EXPECT_EQ(kv.MatchPrefix(prompt, c), 128);
  EXPECT_EQ(c.ids(), Ids({a.ids()[0], a.ids()[1]}));

  // B decodes on: its third block fills and registers as the child of A's second block.
  std::vector<int32_t> tokens = prompt;
  for (int i = 0; i < 52; ++i) tokens.push_back(static_cast<int32_t>(rng.Int(0, 1000)));
  ASSERT_TRUE(kv.Allocate(b, 192));
  kv.CommitComputedBlocks(b, tokens, 192);
  EXPECT_TRUE(kv.IsCached(b.ids()[2]));
  BlockTable d;
  EXPECT_EQ(kv.MatchPrefix(Concat(tokens, {1}), d), 192);
  EXPECT_EQ(d.ids(), Ids({a.ids()[0], a.ids()[1], b.ids()[2]}));

  const int64_t free_before = kv.Stats().num_blocks_free;
  kv.Free(b);  // two duplicates to the free list; the shared third block stays with d
  EXPECT_EQ(kv.Stats().num_blocks_free, free_before + 2);
  ExpectInvariants(kv, {&a, &c, &d});
}

TEST(KvCacheManagerTest, CommitRegistersOnlyFullyComputedBlocksAndIsIdempotent) {
  testing::TestRng rng;
  KvCacheManager kv(8, true);
  std::vector<int32_t> tokens = RandomTokens(rng, 200);
  BlockTable a;
  ASSERT_TRUE(kv.Allocate(a, 100));  // chunked prefill: first 100 tokens
  kv.CommitComputedBlocks(a, tokens, 100);
  EXPECT_EQ(a.num_cached_blocks_registered(), 1);
  EXPECT_TRUE(kv.IsCached(a.ids()[0]));
  EXPECT_FALSE(kv.IsCached(a.ids()[1]));
  kv.CommitComputedBlocks(a, tokens, 100);
  EXPECT_EQ(a.num_cached_blocks_registered(), 1);
  kv.CommitComputedBlocks(a, tokens, 64);  // going back changes nothing
  EXPECT_EQ(a.num_cached_blocks_registered(), 1);

  ASSERT_TRUE(kv.Allocate(a, 200));
  kv.CommitComputedBlocks(a, tokens, 200);
  EXPECT_EQ(a.num_cached_blocks_registered(), 3);
  EXPECT_FALSE(kv.IsCached(a.ids()[3]));
  // Decode to 256 tokens: the fourth block registers once its 64th token is computed.
  while (tokens.size() < 256) {
    tokens.push_back(static_cast<int32_t>(rng.Int(0, 1000)));
    ASSERT_TRUE(kv.Allocate(a, static_cast<int64_t>(tokens.size())));
    kv.CommitComputedBlocks(a, tokens, static_cast<int64_t>(tokens.size()) - 1);
  }
  EXPECT_FALSE(kv.IsCached(a.ids()[3]));
  kv.CommitComputedBlocks(a, tokens, 1000);  // clamped to the tokens given
  EXPECT_TRUE(kv.IsCached(a.ids()[3]));
  EXPECT_EQ(a.num_cached_blocks_registered(), 4);
  ExpectInvariants(kv, {&a});
}

TEST(KvCacheManagerTest, CommitAfterAHitExtendsTheMatchedChain) {
  testing::TestRng rng;
  KvCacheManager kv(12, true);
  const std::vector<int32_t> system = RandomTokens(rng, 128);
  const std::vector<int32_t> p1 = Concat(system, RandomTokens(rng, 10));
  const std::vector<int32_t> p2 = Concat(system, RandomTokens(rng, 150));
  BlockTable a;
  BlockTable b;
  Prefill(kv, p1, a);
  EXPECT_EQ(Prefill(kv, p2, b), 128);
  EXPECT_EQ(b.num_cached_blocks_registered(), 4);
  BlockTable c;
  EXPECT_EQ(kv.MatchPrefix(p2, c), 256);
  EXPECT_EQ(c.ids(), Ids({a.ids()[0], a.ids()[1], b.ids()[2], b.ids()[3]}));
  EXPECT_EQ(kv.RefCount(a.ids()[0]), 3);
  ExpectInvariants(kv, {&a, &b, &c});
}

// Under speculative decoding the last block a match finds is given back (the MTP module's
// entry at its last position depends on the token after it): the hit stops one block short,
// the block goes back to the LRU untouched, and a recomputed copy registers as a duplicate
// while the chain goes on from the block before it.
TEST(KvCacheManagerTest, ReuseAllButLastBlockStopsOneBlockShort) {
  testing::TestRng rng;
  KvCacheManager kv(12, true);
  const std::vector<int32_t> system = RandomTokens(rng, 3 * kB);
  BlockTable a;
  Prefill(kv, Concat(system, RandomTokens(rng, 10)), a);
  const std::vector<BlockId> a_blocks = a.ids();
  kv.Free(a);
  const KvCacheStats before = kv.Stats();
  ASSERT_EQ(before.num_blocks_cached_unused, 3);

  const std::vector<int32_t> prompt = Concat(system, RandomTokens(rng, 20));
  BlockTable b;
  EXPECT_EQ(kv.MatchPrefix(prompt, b, KvCacheManager::PrefixReuse::kAllButLastBlock), 2 * kB);
  EXPECT_EQ(b.ids(), Ids({a_blocks[0], a_blocks[1]}));
  EXPECT_EQ(kv.RefCount(a_blocks[2]), 0);
  EXPECT_TRUE(kv.IsCached(a_blocks[2]));
  KvCacheStats after = kv.Stats();
  EXPECT_EQ(after.num_blocks_cached_unused, 1);
  EXPECT_EQ(after.num_blocks_used, 2);
  EXPECT_EQ(after.prefix_hit_tokens - before.prefix_hit_tokens, 2 * kB);
  ExpectInvariants(kv, {&b});

  // B computes the third block again; the cache keeps A's copy under that key, and B's fourth
  // block registers as its child.
  ASSERT_TRUE(kv.Allocate(b, static_cast<int64_t>(prompt.size())));
  std::vector<int32_t> tokens = prompt;
  while (static_cast<int64_t>(tokens.size()) < 4 * kB) {
    tokens.push_back(static_cast<int32_t>(rng.Int(0, 1000)));
  }
  ASSERT_TRUE(kv.Allocate(b, 4 * kB));
  kv.CommitComputedBlocks(b, tokens, 4 * kB);
  EXPECT_NE(b.ids()[2], a_blocks[2]);
  EXPECT_EQ(b.num_cached_blocks_registered(), 4);
  BlockTable c;
  EXPECT_EQ(kv.MatchPrefix(Concat(tokens, {7}), c), 4 * kB);
  EXPECT_EQ(c.ids(), Ids({a_blocks[0], a_blocks[1], a_blocks[2], b.ids()[3]}));
  ExpectInvariants(kv, {&b, &c});

  // One block found: nothing is reused, and the table starts from the root again.
  BlockTable d;
  EXPECT_EQ(kv.MatchPrefix(Concat(Head(system, kB), {1, 2, 3}), d,
                           KvCacheManager::PrefixReuse::kAllButLastBlock),
            0);
  EXPECT_TRUE(d.empty());
  ASSERT_TRUE(kv.Allocate(d, kB + 3));
  kv.CommitComputedBlocks(d, Concat(Head(system, kB), {1, 2, 3}), kB + 3);
  EXPECT_FALSE(kv.IsCached(d.ids()[0]));  // a duplicate of A's first block, under the root
  ExpectInvariants(kv, {&b, &c, &d});
}

// With every key equal (mask 0), a different block under the same key is told apart by its
// stored tokens: no hit, and the colliding block is simply not registered.
TEST(KvCacheManagerTest, HashCollisionNeverHandsOutAWrongBlock) {
  testing::TestRng rng;
  KvCacheManager kv(12, true, /*prefix_key_mask=*/0);
  const std::vector<int32_t> p1 = RandomTokens(rng, 129);
  const std::vector<int32_t> p2 = RandomTokens(rng, 129);
  BlockTable a;
  BlockTable b;
  Prefill(kv, p1, a);
  EXPECT_TRUE(kv.IsCached(a.ids()[0]));
  EXPECT_FALSE(kv.IsCached(a.ids()[1]));  // collides with block 0's key: chain stops
  EXPECT_EQ(Prefill(kv, p2, b), 0);
  EXPECT_FALSE(kv.IsCached(b.ids()[0]));
  BlockTable c;
  EXPECT_EQ(kv.MatchPrefix(p1, c), 64);
  EXPECT_EQ(c.ids(), Ids({a.ids()[0]}));
  kv.Free(b);
  EXPECT_EQ(kv.Stats().num_blocks_cached_unused, 0);  // b's blocks went to the free list
  ExpectInvariants(kv, {&a, &c});
}

// The case that needs node ids rather than parent keys. With 4-bit keys, prompt P = [p0, q1]
// is built so that key(p0) == key(q0). B holds [q0, q1] with q1 registered under A's q0 block,
// which is then evicted; C registers p0 under the same key. q1's entry now has the right key,
// the right tokens and the right parent *key* after p0, but its KV was computed after q0: a
// lookup for P must not return it.
TEST(KvCacheManagerTest, EntryWhoseParentWasEvictedIsNeverReachedThroughACollidingKey) {
  testing::TestRng rng;
  constexpr uint64_t kMask = 0xF;
  const std::vector<int32_t> q0 = RandomTokens(rng, 64);
  const uint64_t k0 = PrefixCache::HashBlock(0, q0) & kMask;
  std::vector<int32_t> q1;
  do {
    q1 = RandomTokens(rng, 64);
  } while ((PrefixCache::HashBlock(k0, q1) & kMask) == k0);
  std::vector<int32_t> p0;
  do {
    p0 = RandomTokens(rng, 64);
  } while ((PrefixCache::HashBlock(0, p0) & kMask) != k0);

  KvCacheManager kv(6, true, kMask);
  BlockTable a;  // [q0 | x]: registers q0
  BlockTable b;  // [q0 | q1 | y], computed alongside a: q0 is a duplicate, q1 registers
  const std::vector<int32_t> prompt_a = Concat(q0, {11});
  const std::vector<int32_t> prompt_b = Concat(Concat(q0, q1), {12});
  EXPECT_EQ(kv.MatchPrefix(prompt_a, a), 0);
  EXPECT_EQ(kv.MatchPrefix(prompt_b, b), 0);
  ASSERT_TRUE(kv.Allocate(a, 65));
  ASSERT_TRUE(kv.Allocate(b, 129));
  kv.CommitComputedBlocks(a, prompt_a, 65);
  kv.CommitComputedBlocks(b, prompt_b, 129);
  const BlockId a_q0 = a.ids()[0];
  const BlockId b_q1 = b.ids()[1];
  EXPECT_FALSE(kv.IsCached(b.ids()[0]));
  EXPECT_TRUE(kv.IsCached(b_q1));
  kv.Free(a);  // a's q0 to the LRU, its partial block to the free list

  // C = [p0 | q1 | z] fills the free list and evicts A's q0; it computes p0 first.
  const std::vector<int32_t> prompt_c = Concat(Concat(p0, q1), {13});
  BlockTable c;
  EXPECT_EQ(kv.MatchPrefix(prompt_c, c), 0);  // q0's entry has key(p0) but other tokens
  ASSERT_TRUE(kv.Allocate(c, 129));
  EXPECT_EQ(kv.Stats().evictions, 1);
  EXPECT_FALSE(kv.IsCached(a_q0));
  kv.CommitComputedBlocks(c, prompt_c, 64);
  EXPECT_TRUE(kv.IsCached(c.ids()[0]));

  BlockTable d;
  EXPECT_EQ(kv.MatchPrefix(prompt_c, d), 64);  // c's p0, and not b's q1
  EXPECT_EQ(d.ids(), Ids({c.ids()[0]}));

  // C's own q1 replaces the unreachable entry.
  kv.CommitComputedBlocks(c, prompt_c, 129);
  EXPECT_FALSE(kv.IsCached(b_q1));
  EXPECT_TRUE(kv.IsCached(c.ids()[1]));
  BlockTable e;
  EXPECT_EQ(kv.MatchPrefix(prompt_c, e), 128);
  EXPECT_EQ(e.ids(), Ids({c.ids()[0], c.ids()[1]}));
  ExpectInvariants(kv, {&b, &c, &d, &e});
  kv.Free(b);  // b_q1 is no longer registered: straight to the free list
  EXPECT_EQ(kv.RefCount(b_q1), 0);
  EXPECT_FALSE(kv.IsCached(b_q1));
  ExpectInvariants(kv, {&c, &d, &e});
}

TEST(KvCacheManagerTest, CheckInvariantsReportsLeaksAndWrongHolders) {
  KvCacheManager kv(4, true);
  BlockTable a;
  ASSERT_TRUE(kv.Allocate(a, 100));
  EXPECT_TRUE(kv.CheckInvariants({&a}).ok());
  const absl::Status leaked = kv.CheckInvariants({});
  EXPECT_EQ(leaked.code(), absl::StatusCode::kInternal);
  EXPECT_NE(leaked.message().find("ref count 1 but is held by 0"), std::string::npos) << leaked;
  EXPECT_FALSE(kv.CheckInvariants({&a, &a}).ok());
  kv.Free(a);
}

TEST(KvCacheManagerTest, MovedTableCarriesItsBlocksAndLeavesTheSourceEmpty) {
  testing::TestRng rng;
  KvCacheManager kv(8, true);
  const std::vector<int32_t> prompt = RandomTokens(rng, 150);
  BlockTable a;
  Prefill(kv, prompt, a);
  const std::vector<BlockId> ids = a.ids();
  BlockTable b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_EQ(a.num_cached_blocks_registered(), 0);
  EXPECT_EQ(b.ids(), ids);
  EXPECT_EQ(b.num_cached_blocks_registered(), 2);
  BlockTable c;
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  ExpectInvariants(kv, {&c});
  kv.Free(c);
  EXPECT_EQ(kv.Stats().num_blocks_used, 0);
  ExpectInvariants(kv, {});
}

}  // namespace
}  // namespace moeserve::engine
