// The scheduler against its rules, without a model: thousands of random arrivals, cancels
// and lengths, checking after every step the token budget, the sequence limit, KV capacity
// and accounting, priority/FCFS admission, and that every request ends exactly once.
#include "engine/scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"

namespace moeserve::engine {
namespace {

std::unique_ptr<Sequence> MakeSequence(const std::string& id, int64_t prompt_len, int64_t max_new,
                                       int32_t priority, int64_t arrival, std::mt19937& rng,
                                       const std::vector<int32_t>& prefix) {
  GenerateRequest r;
  r.request_id = id;
  r.prompt_token_ids = prefix;
  while (static_cast<int64_t>(r.prompt_token_ids.size()) < prompt_len) {
    r.prompt_token_ids.push_back(static_cast<int32_t>(rng() % 50));
  }
  r.prompt_token_ids.resize(static_cast<size_t>(prompt_len));
  r.stop.max_new_tokens = max_new;
  r.priority = priority;
  return std::make_unique<Sequence>(std::move(r), nullptr, arrival, 1, nullptr);
}

TEST(SchedulerTest, RandomWorkloadFollowsTheRules) {
  for (uint64_t seed : {1, 2, 3}) {
    std::mt19937 rng(seed);
    EngineOptions options{.num_kv_blocks = 12,
                          .max_num_seqs = 5,
                          .max_num_batched_tokens = 96,
                          .admission_watermark = 0.1};
    Scheduler scheduler(options);
    std::vector<int32_t> shared_prefix(130);
    for (auto& t : shared_prefix) t = static_cast<int32_t>(rng() % 50);

    std::map<std::string, int> ended;  // request id → times ended
    std::set<std::string> live;
    int64_t arrivals = 0;
    for (int step = 0; step < 3000 || scheduler.HasWork(); ++step) {
      ASSERT_LT(step, 100000) << "scheduler made no progress";
      // Arrivals (only during the first 3000 steps).
      if (step < 3000 && rng() % 3 == 0) {
        const std::string id = absl::StrCat("r", arrivals);
        const int64_t prompt_len = 1 + rng() % 200;
        const int64_t max_new = 1 + rng() % 60;
        scheduler.Add(MakeSequence(id, prompt_len, max_new, static_cast<int32_t>(rng() % 3),
                                   arrivals, rng,
                                   rng() % 2 ? shared_prefix : std::vector<int32_t>()));
        live.insert(id);
        ++arrivals;
      }
      // Random cancels.
      if (!live.empty() && rng() % 20 == 0) {
        auto it = live.begin();
        std::advance(it, rng() % live.size());
        scheduler.Finish(scheduler.Find(*it));
        ++ended[*it];
        live.erase(it);
      }

      const std::vector<Sequence*> waiting_before = scheduler.waiting();
      ScheduledBatch batch = scheduler.Schedule();
      // Admission is strictly in service order: the admitted ones are a prefix of the queue.
      std::set<Sequence*> admitted;
      for (const ScheduledSequence& e : batch.sequences) {
        if (std::find(waiting_before.begin(), waiting_before.end(), e.sequence) !=
            waiting_before.end()) {
          admitted.insert(e.sequence);
        }
      }
      for (size_t i = 0; i < admitted.size(); ++i) {
        ASSERT_TRUE(admitted.contains(waiting_before[i])) << "admitted out of priority order";
      }

      int64_t tokens = 0;
      std::set<Sequence*> in_batch;
      for (const ScheduledSequence& e : batch.sequences) {
        tokens += e.num_new_tokens;
        ASSERT_GT(e.num_new_tokens, 0);
        ASSERT_TRUE(in_batch.insert(e.sequence).second) << "scheduled twice";
        ASSERT_EQ(e.sequence->status, SequenceStatus::kRunning);
        ASSERT_GE(e.sequence->block_table.capacity_tokens(),
                  e.sequence->num_computed_tokens + e.num_new_tokens);
        ASSERT_LE(e.sequence->num_computed_tokens + e.num_new_tokens, e.sequence->num_tokens());
        ASSERT_EQ(e.samples,
                  e.sequence->num_computed_tokens + e.num_new_tokens == e.sequence->num_tokens());
      }
      ASSERT_LE(tokens, options.max_num_batched_tokens);
      ASSERT_LE(scheduler.num_running(), options.max_num_seqs);
      ASSERT_TRUE(scheduler.kv_cache().CheckInvariants(scheduler.LiveBlockTables()).ok())
          << scheduler.kv_cache().CheckInvariants(scheduler.LiveBlockTables());

      // Execute: every scheduled token is computed; completed chunks sample a token.
      scheduler.CommitComputed(batch);
      for (const ScheduledSequence& e : batch.sequences) {
        if (!e.samples) continue;
        Sequence* s = e.sequence;
        scheduler.AppendToken(*s, static_cast<int32_t>(rng() % 50));
        if (s->num_generated() >= s->request.stop.max_new_tokens) {
          const std::string id = s->request.request_id;
          scheduler.Finish(s);
          ++ended[id];
          live.erase(id);
        }
      }
    }
    EXPECT_EQ(static_cast<int64_t>(ended.size()), arrivals);
    for (const auto& [id, count] : ended) EXPECT_EQ(count, 1) << id;
    const KvCacheStats kv = scheduler.kv_cache().Stats();
    EXPECT_EQ(kv.num_blocks_used, 0);
    EXPECT_EQ(kv.num_blocks_free + kv.num_blocks_cached_unused, kv.num_blocks);
    EXPECT_GT(scheduler.total_preemptions(), 0);
    EXPECT_GT(kv.prefix_hit_tokens, 0);
  }
}

TEST(SchedulerTest, HigherPriorityAdmittedFirstAndFcfsWithinPriority) {
  std::mt19937 rng(4);
  EngineOptions options{.num_kv_blocks = 64, .max_num_seqs = 1, .max_num_batched_tokens = 1000};
  Scheduler scheduler(options);
  scheduler.Add(MakeSequence("low-early", 10, 1, 5, 0, rng, {}));
  scheduler.Add(MakeSequence("high-late", 10, 1, 0, 1, rng, {}));
  scheduler.Add(MakeSequence("high-later", 10, 1, 0, 2, rng, {}));
  std::vector<std::string> order;
  while (scheduler.HasWork()) {
    ScheduledBatch batch = scheduler.Schedule();
    ASSERT_EQ(batch.sequences.size(), 1u);
    scheduler.CommitComputed(batch);
    Sequence* s = batch.sequences[0].sequence;
    order.push_back(s->request.request_id);
    scheduler.Finish(s);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"high-late", "high-later", "low-early"}));
}

TEST(SchedulerTest, DecodesComeBeforeNewPrefillsAndPrefillIsChunked) {
  std::mt19937 rng(5);
  EngineOptions options{.num_kv_blocks = 64, .max_num_batched_tokens = 32};
  Scheduler scheduler(options);
  scheduler.Add(MakeSequence("a", 5, 10, 0, 0, rng, {}));
  ScheduledBatch first = scheduler.Schedule();
  scheduler.CommitComputed(first);
  scheduler.AppendToken(*first.sequences[0].sequence, 1);
  scheduler.Add(MakeSequence("b", 100, 10, 0, 1, rng, {}));
  ScheduledBatch second = scheduler.Schedule();
  ASSERT_EQ(second.sequences.size(), 2u);
  EXPECT_EQ(second.sequences[0].sequence->request.request_id, "a");
  EXPECT_EQ(second.sequences[0].num_new_tokens, 1);
  EXPECT_EQ(second.sequences[1].num_new_tokens, 31);  // the rest of the 32-token budget
  EXPECT_FALSE(second.sequences[1].samples);
  EXPECT_EQ(second.num_decode_tokens, 1);
  EXPECT_EQ(second.num_prefill_tokens, 31);
}

// A short prompt that arrives while a long one is being prefilled is prefilled in the very
// next step (the long prompt's chunk shrinks to long_prefill_token_threshold meanwhile), decodes
// still come first, and the long prompt takes the whole budget again once it is alone.
TEST(SchedulerTest, ShortPromptBehindALongOneStartsInTheNextStep) {
  std::mt19937 rng(6);
  EngineOptions options{.num_kv_blocks = 256, .max_num_batched_tokens = 64};
  Scheduler scheduler(options);
  scheduler.Add(MakeSequence("decoding", 3, 50, 0, 0, rng, {}));
  ScheduledBatch first = scheduler.Schedule();
  scheduler.CommitComputed(first);
  scheduler.AppendToken(*first.sequences[0].sequence, 1);
  scheduler.Add(MakeSequence("long", 4000, 1, 0, 1, rng, {}));
  ScheduledBatch second = scheduler.Schedule();  // the long prompt alone: all the budget left
  ASSERT_EQ(second.sequences.size(), 2u);
  EXPECT_EQ(second.sequences[1].num_new_tokens, 63);
  scheduler.CommitComputed(second);
  scheduler.AppendToken(*second.sequences[0].sequence, 1);

  scheduler.Add(MakeSequence("short", 8, 1, 0, 2, rng, {}));
  ScheduledBatch third = scheduler.Schedule();
  ASSERT_EQ(third.sequences.size(), 3u);
  EXPECT_EQ(third.sequences[0].sequence->request.request_id, "decoding");
  EXPECT_EQ(third.sequences[0].num_new_tokens, 1);
  EXPECT_EQ(third.sequences[1].sequence->request.request_id, "long");
  EXPECT_EQ(third.sequences[1].num_new_tokens, 16);  // a quarter of the budget
  EXPECT_EQ(third.sequences[2].sequence->request.request_id, "short");
  EXPECT_EQ(third.sequences[2].num_new_tokens, 8);
  EXPECT_TRUE(third.sequences[2].samples);  // its first token comes out of this step
  scheduler.CommitComputed(third);
  scheduler.AppendToken(*third.sequences[0].sequence, 1);
  scheduler.Finish(third.sequences[2].sequence);

  ScheduledBatch fourth = scheduler.Schedule();  // alone again: the rest of the budget
  ASSERT_EQ(fourth.sequences.size(), 2u);
  EXPECT_EQ(fourth.sequences[1].sequence->request.request_id, "long");
  EXPECT_EQ(fourth.sequences[1].num_new_tokens, 63);
}

// No more than max_num_partial_prefills prompts are prefilled in one step.
TEST(SchedulerTest, PartialPrefillsPerStepAreBounded) {
  std::mt19937 rng(7);
  EngineOptions options{.num_kv_blocks = 256,
                        .max_num_batched_tokens = 1000,
                        .max_num_partial_prefills = 2,
                        .long_prefill_token_threshold = 100};
  Scheduler scheduler(options);
  for (int i = 0; i < 5; ++i) {
    scheduler.Add(MakeSequence(absl::StrCat("p", i), 300, 1, 0, i, rng, {}));
  }
  ScheduledBatch batch = scheduler.Schedule();
  ASSERT_EQ(batch.sequences.size(), 2u);
  for (const ScheduledSequence& e : batch.sequences) EXPECT_EQ(e.num_new_tokens, 100);
}

// A prompt that shares three full blocks with a finished one reuses all three, or under
// speculative decoding two: the MTP module's cache entry at the third block's last position was
// computed from the finished prompt's next token, which the new prompt does not share.
TEST(SchedulerTest, SpeculationReusesAPrefixHitButItsLastBlock) {
  for (const int64_t k : {0, 1, 3}) {
    SCOPED_TRACE(absl::StrCat("speculative_tokens ", k));
    std::mt19937 rng(8);
    EngineOptions options{.num_kv_blocks = 32,
                          .max_num_batched_tokens = 512,
                          .enable_prefix_caching = true,
                          .speculative_tokens = k};
    Scheduler scheduler(options);
    std::vector<int32_t> shared(3 * kKvBlockSize);
    for (auto& t : shared) t = static_cast<int32_t>(rng() % 50);
    scheduler.Add(MakeSequence("first", 3 * kKvBlockSize + 5, 1, 0, 0, rng, shared));
    ScheduledBatch first = scheduler.Schedule();
    ASSERT_EQ(first.sequences.size(), 1u);
    scheduler.CommitComputed(first);
    scheduler.Finish(first.sequences[0].sequence);

    scheduler.Add(MakeSequence("second", 3 * kKvBlockSize + 9, 1, 0, 1, rng, shared));
    ScheduledBatch second = scheduler.Schedule();
    ASSERT_EQ(second.sequences.size(), 1u);
    const int64_t reused = k > 0 ? 2 * kKvBlockSize : 3 * kKvBlockSize;
    EXPECT_EQ(second.sequences[0].sequence->num_cached_tokens, reused);
    EXPECT_EQ(second.sequences[0].num_new_tokens, 3 * kKvBlockSize + 9 - reused);
    EXPECT_EQ(scheduler.kv_cache().Stats().prefix_hit_tokens, reused);
  }
}

}  // namespace
}  // namespace moeserve::engine
