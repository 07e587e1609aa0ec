#include "engine/kv_cache/block_pool.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve::engine {
namespace {

TEST(BlockPoolTest, FreshPoolHandsOutIdsInOrderWithRefCountOne) {
  BlockPool pool(4);
  EXPECT_EQ(pool.num_blocks(), 4);
  EXPECT_EQ(pool.num_free(), 4);
  for (BlockId expected = 0; expected < 4; ++expected) {
    const BlockId id = pool.TakeFree();
    EXPECT_EQ(id, expected);
    EXPECT_EQ(pool.ref_count(id), 1);
  }
  EXPECT_EQ(pool.num_free(), 0);
}

TEST(BlockPoolTest, RefCountsCountUpAndDownAndDecRefDoesNotFree) {
  BlockPool pool(2);
  const BlockId id = pool.TakeFree();
  pool.IncRef(id);
  EXPECT_EQ(pool.ref_count(id), 2);
  EXPECT_EQ(pool.DecRef(id), 1);
  EXPECT_EQ(pool.DecRef(id), 0);
  EXPECT_EQ(pool.num_free(), 1);  // the caller decides where an unreferenced block goes
  pool.PutFree(id);
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(BlockPoolTest, MostRecentlyFreedBlockIsTakenFirst) {
  BlockPool pool(3);
  const BlockId a = pool.TakeFree();
  const BlockId b = pool.TakeFree();
  pool.DecRef(a);
  pool.PutFree(a);
  pool.DecRef(b);
  pool.PutFree(b);
  EXPECT_EQ(pool.free_list().back(), b);
  EXPECT_EQ(pool.TakeFree(), b);
  EXPECT_EQ(pool.TakeFree(), a);
  EXPECT_EQ(pool.TakeFree(), 2);
}

TEST(BlockPoolTest, EmptyAndNegativeSizesGiveAnEmptyPool) {
  EXPECT_EQ(BlockPool(0).num_free(), 0);
  EXPECT_EQ(BlockPool(-3).num_blocks(), 0);
}

}  // namespace
}  // namespace moeserve::engine
