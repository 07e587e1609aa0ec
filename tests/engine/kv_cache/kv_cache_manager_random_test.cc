// Randomized tests of KvCacheManager: thousands of operations by sequences that share prefixes
// (prefill in chunks, decode, commit, finish, abort, preemption when blocks run out), checking
// after every operation the manager's invariants, that every prefix hit hands out blocks whose
// KV was computed for exactly that prefix, and, where no hash collisions are forced, that the
// manager behaves exactly like a simple reference model.
#include <algorithm>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "engine/batch/forward_batch.h"
#include "engine/kv_cache/block_table.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "gtest/gtest.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kB = kKvBlockSize;

std::vector<int32_t> Prefix(const std::vector<int32_t>& tokens, int64_t n) {
  return std::vector<int32_t>(tokens.begin(), tokens.begin() + n);
}

// The manager's policy written the simple way: the prefix cache is a std::map keyed by the
// whole token prefix up to a block's end (no hashing), the LRU a std::list, the free list a
// std::set, and block ids its own. Same rules: a lookup walks from the first block and takes an
// entry only if it hangs off the node just matched; registration stops when the parent is gone,
// keeps an identical existing entry, and replaces one that hangs off an evicted parent; Free
// releases last block first; Allocate takes free blocks before evicting the LRU's oldest.
class ReferenceKvCache {
 public:
  struct Table {
    std::vector<int> ids;
    int64_t cursor = 0;
    uint64_t last_node = 0;
    bool broken = false;
  };
  struct Block {
    int ref = 0;
    bool cached = false;
    std::vector<int32_t> prefix;
    uint64_t node = 0;
    uint64_t parent_node = 0;
  };

  ReferenceKvCache(int num_blocks, bool caching)
      : blocks_(static_cast<size_t>(num_blocks)), caching_(caching) {
    for (int b = 0; b < num_blocks; ++b) free_.insert(b);
  }

  int64_t MatchPrefix(const std::vector<int32_t>& tokens, Table& t, bool all_but_last_block) {
    if (!caching_) return 0;
    const auto n = static_cast<int64_t>(tokens.size());
    stats_.prefix_query_tokens += n;
    const int64_t max_blocks = n > 0 ? (n - 1) / kB : 0;
    uint64_t node = 0;
    for (int64_t i = 0; i < max_blocks; ++i) {
      const auto it = cache_.find(Prefix(tokens, (i + 1) * kB));
      if (it == cache_.end() || mutable_block(it->second).parent_node != node) break;
      Block& b = mutable_block(it->second);
      if (b.ref == 0) lru_.remove(it->second);
      ++b.ref;
      t.ids.push_back(it->second);
      node = b.node;
    }
    if (all_but_last_block && !t.ids.empty()) {
      const int last = t.ids.back();
      t.ids.pop_back();
      if (--mutable_block(last).ref == 0) lru_.push_back(last);
      node = mutable_block(last).parent_node;
    }
    t.cursor = static_cast<int64_t>(t.ids.size());
    t.last_node = node;
    stats_.prefix_hit_tokens += t.cursor * kB;
    return t.cursor * kB;
  }

  bool Allocate(Table& t, int64_t num_tokens) {
    const int64_t needed =
        std::max<int64_t>((num_tokens + kB - 1) / kB - static_cast<int64_t>(t.ids.size()), 0);
    if (needed > static_cast<int64_t>(free_.size() + lru_.size())) return false;
    for (int64_t i = 0; i < needed; ++i) {
      int id;
      if (!free_.empty()) {
        id = *free_.begin();
        free_.erase(free_.begin());
      } else {
        id = lru_.front();
        lru_.pop_front();
        cache_.erase(mutable_block(id).prefix);
        mutable_block(id) = Block{};
        ++stats_.evictions;
      }
      mutable_block(id).ref = 1;
      t.ids.push_back(id);
    }
    return true;
  }

  void Commit(Table& t, const std::vector<int32_t>& tokens, int64_t computed) {
    if (!caching_ || t.broken) return;
    const int64_t full =
        std::min(std::min<int64_t>(computed, static_cast<int64_t>(tokens.size())) / kB,
                 static_cast<int64_t>(t.ids.size()));
    for (int64_t i = t.cursor; i < full; ++i) {
      if (t.last_node != 0) {
        const auto parent = cache_.find(Prefix(tokens, i * kB));
        if (parent == cache_.end() || mutable_block(parent->second).node != t.last_node) {
          t.broken = true;
          return;
        }
      }
      std::vector<int32_t> prefix = Prefix(tokens, (i + 1) * kB);
      const auto it = cache_.find(prefix);
      if (it != cache_.end()) {
        Block& existing = mutable_block(it->second);
        if (existing.parent_node == t.last_node) {
          ++duplicates_;
          t.last_node = existing.node;
          t.cursor = i + 1;
          continue;
        }
        // Same prefix, but computed under an evicted copy of the parent: unreachable; replace.
        ++replacements_;
        const int old = it->second;
        cache_.erase(it);
        const int ref = existing.ref;
        existing = Block{};
        existing.ref = ref;
        if (ref == 0) {
          lru_.remove(old);
          free_.insert(old);
        }
      }
      Block& b = mutable_block(t.ids[static_cast<size_t>(i)]);
      b.cached = true;
      b.prefix = prefix;
      b.node = next_node_++;
      b.parent_node = t.last_node;
      cache_[std::move(prefix)] = t.ids[static_cast<size_t>(i)];
      t.last_node = b.node;
      t.cursor = i + 1;
    }
  }

  void Free(Table& t) {
    for (auto it = t.ids.rbegin(); it != t.ids.rend(); ++it) {
      if (--mutable_block(*it).ref != 0) continue;
      if (mutable_block(*it).cached) {
        lru_.push_back(*it);
      } else {
        free_.insert(*it);
      }
    }
    t = Table{};
  }

  KvCacheStats Stats() const {
    KvCacheStats stats = stats_;
    stats.num_blocks = static_cast<int64_t>(blocks_.size());
    stats.num_blocks_free = static_cast<int64_t>(free_.size());
    stats.num_blocks_cached_unused = static_cast<int64_t>(lru_.size());
    stats.num_blocks_used =
        stats.num_blocks - stats.num_blocks_free - stats.num_blocks_cached_unused;
    return stats;
  }
  const Block& block(int id) const { return blocks_[static_cast<size_t>(id)]; }
  int64_t duplicates() const { return duplicates_; }
  int64_t replacements() const { return replacements_; }

 private:
  Block& mutable_block(int id) { return blocks_[static_cast<size_t>(id)]; }

  std::vector<Block> blocks_;
  bool caching_;
  std::map<std::vector<int32_t>, int> cache_;
  std::list<int> lru_;  // oldest first
  std::set<int> free_;
  uint64_t next_node_ = 1;
  KvCacheStats stats_;
  int64_t duplicates_ = 0;
  int64_t replacements_ = 0;
};

struct SimulationOptions {
  uint32_t seed = testing::kDefaultTestSeed;
  int num_blocks = 28;
  bool prefix_caching = true;
  uint64_t key_mask = PrefixCache::kFullKeyMask;
  bool compare_with_reference = true;  // only meaningful without forced collisions
  int num_ops = 20000;
  int max_live = 8;
};

struct Coverage {
  int64_t starts = 0;
  int64_t preemptions = 0;
  int64_t aborts = 0;
  int64_t finishes = 0;
  int64_t failed_allocations = 0;
};

// Drives the manager (and the reference) the way a scheduler would.
class Simulation {
 public:
  explicit Simulation(const SimulationOptions& options)
      : options_(options),
        rng_(options.seed),
        kv_(options.num_blocks, options.prefix_caching, options.key_mask),
        ref_(options.num_blocks, options.prefix_caching),
        content_(static_cast<size_t>(options.num_blocks)) {
    for (auto& base : bases_) {
      base.resize(400);
      for (int32_t& t : base) t = Token();
    }
  }

  void Run() {
    for (int op = 0; op < options_.num_ops && !::testing::Test::HasFailure(); ++op) {
      const int64_t r = rng_.Int(0, 99);
      if (live_.empty() || (r < 25 && static_cast<int>(live_.size()) < options_.max_live)) {
        Start();
      } else if (r < 99) {
        Step(*live_[static_cast<size_t>(rng_.Int(0, static_cast<int64_t>(live_.size()) - 1))]);
      } else {
        ++coverage_.aborts;
        Release(*live_[static_cast<size_t>(rng_.Int(0, static_cast<int64_t>(live_.size()) - 1))]);
      }
      Verify();
    }
    while (!live_.empty()) Release(*live_.back());
    Verify();
    const KvCacheStats stats = kv_.Stats();
    EXPECT_EQ(stats.num_blocks_used, 0);
    EXPECT_EQ(stats.num_blocks_free + stats.num_blocks_cached_unused, stats.num_blocks);
    EXPECT_EQ(kv_.NumAvailableBlocks(), stats.num_blocks);
  }

  const KvCacheManager& kv() const { return kv_; }
  const ReferenceKvCache& ref() const { return ref_; }
  const Coverage& coverage() const { return coverage_; }

 private:
  struct Seq {
    std::vector<int32_t> tokens;
    int64_t max_len = 0;
    int64_t computed = 0;   // tokens whose KV is in the cache
    int64_t scheduled = 0;  // the next step computes tokens [computed, scheduled)
    BlockTable table;
    ReferenceKvCache::Table ref;
  };

  int32_t Token() { return static_cast<int32_t>(rng_.Int(0, 49999)); }

  // Shared system prompts, exact repeats (concurrent identical prompts compute duplicate
  // blocks), and fresh prompts.
  std::vector<int32_t> MakePrompt() {
    std::vector<int32_t> prompt;
    const int64_t kind = rng_.Int(0, 9);
    if (kind < 2 && !recent_prompts_.empty()) {
      return recent_prompts_[static_cast<size_t>(
          rng_.Int(0, static_cast<int64_t>(recent_prompts_.size()) - 1))];
    }
    if (kind < 7) {
      static constexpr int64_t kCuts[] = {0, 63, 64, 65, 128, 130, 191, 192, 256};
      const int64_t cut = rng_.Int(0, 1) ? kCuts[rng_.Int(0, 8)] : rng_.Int(0, 400);
      prompt = Prefix(bases_[static_cast<size_t>(rng_.Int(0, 3))], cut);
      const int64_t suffix = rng_.Int(1, 120);
      for (int64_t i = 0; i < suffix; ++i) prompt.push_back(Token());
    } else {
      const int64_t len = rng_.Int(1, 300);
      for (int64_t i = 0; i < len; ++i) prompt.push_back(Token());
    }
    recent_prompts_.push_back(prompt);
    if (recent_prompts_.size() > 8) recent_prompts_.erase(recent_prompts_.begin());
    return prompt;
  }

  // A deterministic "model": the same prompt always continues the same way, so sequences with
  // one prompt also share (and duplicate) their decode blocks.
  static int32_t NextToken(const std::vector<int32_t>& tokens) {
    const size_t n = tokens.size();
    const int64_t a = tokens[n - 1];
    const int64_t b = n >= 2 ? tokens[n - 2] : 0;
    return static_cast<int32_t>((a * 31 + b * 17 + static_cast<int64_t>(n)) % 50000);
  }

  void Start() {
    ++coverage_.starts;
    auto seq = std::make_unique<Seq>();
    seq->tokens = MakePrompt();
    seq->max_len = static_cast<int64_t>(seq->tokens.size()) + rng_.Int(1, 100);
    // Half the prompts reuse their hit but its last block, as under speculative decoding.
    const bool all_but_last = rng_.Int(0, 1) == 1;
    const int64_t hit = kv_.MatchPrefix(seq->tokens, seq->table,
                                        all_but_last ? KvCacheManager::PrefixReuse::kAllButLastBlock
                                                     : KvCacheManager::PrefixReuse::kAllBlocks);
    if (options_.compare_with_reference) {
      EXPECT_EQ(ref_.MatchPrefix(seq->tokens, seq->ref, all_but_last), hit);
    }
    EXPECT_EQ(hit % kB, 0);
    EXPECT_LT(hit, static_cast<int64_t>(seq->tokens.size()));
    if (!options_.prefix_caching) {
      EXPECT_EQ(hit, 0);
    }
    EXPECT_EQ(seq->table.capacity_tokens(), hit);
    // Every block handed out holds KV computed for exactly this prefix.
    for (int64_t j = 0; j < hit / kB; ++j) {
      EXPECT_EQ(content_[static_cast<size_t>(seq->table.ids()[static_cast<size_t>(j)])],
                Prefix(seq->tokens, (j + 1) * kB))
          << "block " << j << " of a " << hit << "-token hit";
    }
    seq->computed = hit;
    live_.push_back(std::move(seq));
    Schedule(*live_.back());
  }

  // Allocates blocks for the next step; when that fails the sequence is preempted.
  void Schedule(Seq& seq) {
    const auto len = static_cast<int64_t>(seq.tokens.size());
    const int64_t target = std::min(len, seq.computed + rng_.Int(1, 160));
    const std::vector<BlockId> before = seq.table.ids();
    const KvCacheStats stats_before = kv_.Stats();
    const bool can = kv_.CanAllocate(seq.table, target);
    const bool ok = kv_.Allocate(seq.table, target);
    EXPECT_EQ(ok, can);
    EXPECT_EQ(ok, kv_.BlocksNeeded(BlockTable(), target) - static_cast<int64_t>(before.size()) <=
                      stats_before.num_blocks_free + stats_before.num_blocks_cached_unused);
    if (options_.compare_with_reference) {
      EXPECT_EQ(ref_.Allocate(seq.ref, target), ok);
    }
    if (!ok) {
      // All or nothing: the table and every count are unchanged.
      EXPECT_EQ(seq.table.ids(), before);
      const KvCacheStats stats_after = kv_.Stats();
      EXPECT_EQ(stats_after.num_blocks_free, stats_before.num_blocks_free);
      EXPECT_EQ(stats_after.num_blocks_cached_unused, stats_before.num_blocks_cached_unused);
      EXPECT_EQ(stats_after.evictions, stats_before.evictions);
      ++coverage_.failed_allocations;
      ++coverage_.preemptions;
      Release(seq);
      return;
    }
    EXPECT_GE(seq.table.capacity_tokens(), target);
    EXPECT_LT(seq.table.capacity_tokens() - target, kB);
    for (size_t j = before.size(); j < seq.table.ids().size(); ++j) {
      content_[static_cast<size_t>(seq.table.ids()[j])].clear();  // not written yet
    }
    seq.scheduled = target;
  }

  // The model computes [computed, scheduled); then commit, and decode or finish.
  void Step(Seq& seq) {
    for (int64_t j = seq.computed / kB; j < seq.scheduled / kB; ++j) {
      content_[static_cast<size_t>(seq.table.ids()[static_cast<size_t>(j)])] =
          Prefix(seq.tokens, (j + 1) * kB);
    }
    seq.computed = seq.scheduled;
    kv_.CommitComputedBlocks(seq.table, seq.tokens, seq.computed);
    if (options_.compare_with_reference) ref_.Commit(seq.ref, seq.tokens, seq.computed);
    if (seq.computed == static_cast<int64_t>(seq.tokens.size())) {
      if (seq.computed >= seq.max_len) {
        ++coverage_.finishes;
        Release(seq);
        return;
      }
      seq.tokens.push_back(NextToken(seq.tokens));
    }
    Schedule(seq);
  }

  void Release(Seq& seq) {
    kv_.Free(seq.table);
    EXPECT_TRUE(seq.table.empty());
    if (options_.compare_with_reference) ref_.Free(seq.ref);
    const auto it = std::find_if(live_.begin(), live_.end(),
                                 [&](const std::unique_ptr<Seq>& s) { return s.get() == &seq; });
    live_.erase(it);
  }

  void Verify() {
    std::vector<const BlockTable*> tables;
    for (const auto& seq : live_) tables.push_back(&seq->table);
    const absl::Status status = kv_.CheckInvariants(tables);
    EXPECT_TRUE(status.ok()) << status;
    const KvCacheStats stats = kv_.Stats();
    EXPECT_EQ(stats.num_blocks_used + stats.num_blocks_cached_unused + stats.num_blocks_free,
              stats.num_blocks);
    EXPECT_EQ(kv_.NumAvailableBlocks(), stats.num_blocks_free + stats.num_blocks_cached_unused);
    if (!options_.prefix_caching) {
      EXPECT_EQ(stats.num_blocks_cached_unused, 0);
    }
    if (!options_.compare_with_reference) return;

    const KvCacheStats expected = ref_.Stats();
    EXPECT_EQ(stats.num_blocks_used, expected.num_blocks_used);
    EXPECT_EQ(stats.num_blocks_cached_unused, expected.num_blocks_cached_unused);
    EXPECT_EQ(stats.num_blocks_free, expected.num_blocks_free);
    EXPECT_EQ(stats.evictions, expected.evictions);
    EXPECT_EQ(stats.prefix_query_tokens, expected.prefix_query_tokens);
    EXPECT_EQ(stats.prefix_hit_tokens, expected.prefix_hit_tokens);
    // Block ids differ between the two, but the sharing structure must be the same: a
    // bijection between the ids held, with equal ref counts and cache registration.
    std::map<BlockId, int> to_ref;
    std::map<int, BlockId> to_kv;
    for (const auto& seq : live_) {
      ASSERT_EQ(seq->table.num_blocks(), static_cast<int64_t>(seq->ref.ids.size()));
      EXPECT_EQ(seq->table.num_cached_blocks_registered(), seq->ref.cursor);
      for (size_t j = 0; j < seq->ref.ids.size(); ++j) {
        const BlockId x = seq->table.ids()[j];
        const int y = seq->ref.ids[j];
        const auto [it_x, new_x] = to_ref.emplace(x, y);
        const auto [it_y, new_y] = to_kv.emplace(y, x);
        ASSERT_EQ(it_x->second, y) << "block " << x << " maps to two reference blocks";
        ASSERT_EQ(it_y->second, x) << "reference block " << y << " maps to two blocks";
        EXPECT_EQ(kv_.RefCount(x), ref_.block(y).ref);
        EXPECT_EQ(kv_.IsCached(x), ref_.block(y).cached);
      }
    }
  }

  SimulationOptions options_;
  testing::TestRng rng_;
  KvCacheManager kv_;
  ReferenceKvCache ref_;
  std::vector<std::unique_ptr<Seq>> live_;
  std::vector<int32_t> bases_[4];
  std::vector<std::vector<int32_t>> recent_prompts_;
  // What each block's KV was computed for: the whole token prefix up to the block's end (empty
  // while the block is not fully written).
  std::vector<std::vector<int32_t>> content_;
  Coverage coverage_;
};

TEST(KvCacheManagerRandomTest, MatchesReferenceModelAndKeepsInvariantsWithPrefixCaching) {
  for (const uint32_t seed : {1u, 2u, 3u}) {
    SimulationOptions options;
    options.seed = seed;
    Simulation sim(options);
    sim.Run();
    // The run exercised what it is meant to.
    const KvCacheStats stats = sim.kv().Stats();
    EXPECT_GT(stats.prefix_hit_tokens, 0);
    EXPECT_GT(stats.evictions, 0);
    EXPECT_GT(sim.ref().duplicates(), 0);
    EXPECT_GT(sim.coverage().preemptions, 0);
    EXPECT_GT(sim.coverage().finishes, 0);
    RecordProperty("replacements_seed" + std::to_string(seed),
                   static_cast<int>(sim.ref().replacements()));
    if (HasFailure()) return;
  }
}

TEST(KvCacheManagerRandomTest, MatchesReferenceModelWithPrefixCachingOff) {
  SimulationOptions options;
  options.prefix_caching = false;
  Simulation sim(options);
  sim.Run();
  const KvCacheStats stats = sim.kv().Stats();
  EXPECT_EQ(stats.prefix_hit_tokens, 0);
  EXPECT_EQ(stats.evictions, 0);
  EXPECT_EQ(stats.num_blocks_free, stats.num_blocks);
  EXPECT_GT(sim.coverage().preemptions, 0);
}

// Keys narrowed to 0, 3 and 8 bits: collisions everywhere. Hits may be lost, but every hit
// must still hand out blocks computed for exactly the query's prefix, and the accounting must
// hold.
TEST(KvCacheManagerRandomTest, ForcedHashCollisionsNeverHandOutWrongBlocks) {
  for (const uint64_t mask : {uint64_t{0}, uint64_t{0x7}, uint64_t{0xFF}}) {
    SCOPED_TRACE(::testing::Message() << "key mask " << mask);
    SimulationOptions options;
    options.seed = static_cast<uint32_t>(100 + mask);
    options.key_mask = mask;
    options.compare_with_reference = false;
    Simulation sim(options);
    sim.Run();
    EXPECT_GT(sim.kv().Stats().prefix_hit_tokens, 0);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace moeserve::engine
