// The step announcement of multi-node serving: random steps survive EncodeStep/DecodeStep and
// the broadcast; every truncation or corrupted field of an encoding is DataLoss, never a crash;
// ranks that only follow (FollowSteps) run the same steps as the driver and stop when told;
// and a tensor-/expert-parallel group whose rank 1 learns each step only from the
// announcement computes the single-rank logits.
#include "engine/parallel/step_broadcast.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "engine/model/deepseek_model.h"
#include "engine/parallel/expert_placement.h"
#include "engine/parallel/parallel_config.h"
#include "engine/parallel/thread_communicator.h"
#include "tests/testing/random.h"
#include "tests/testing/tensor_compare.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

// Ranks and a single model compare to 2e-5: their sums differ in the last bits, which a BF16
// latent cache could round to neighbouring values, so these runs keep the cache in fp32.
const LoadOptions kFp32Cache{.kv_cache_dtype = DType::kF32};

using testing::TestRng;

StepMessage RandomStep(TestRng& rng) {
  ForwardBatchBuilder builder;
  const int64_t seqs = rng.Int(1, 5);
  int32_t next_block = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    const int64_t computed = rng.Int(0, 100), fresh = rng.Int(1, 70);
    std::vector<int32_t> table;
    for (int64_t b = 0; b * kKvBlockSize < computed + fresh; ++b) table.push_back(next_block++);
    std::vector<int32_t> tokens;
    for (int64_t i = 0; i < fresh; ++i) tokens.push_back(static_cast<int32_t>(rng.Int(0, 999)));
    builder.AddSequence(table, computed, tokens);
  }
  StepMessage step;
  step.kind = rng.Int(0, 1) == 0 ? StepMessage::Kind::kForward : StepMessage::Kind::kForwardArgmax;
  step.batch = std::move(builder).Build();
  step.options = {.mla_form = static_cast<MlaForm>(rng.Int(0, 2)),
                  .logits_for = static_cast<LogitsFor>(rng.Int(0, 1)),
                  .quantize_activations = rng.Int(0, 1) == 1};
  return step;
}

void ExpectSameStep(const StepMessage& a, const StepMessage& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.options.mla_form, b.options.mla_form);
  EXPECT_EQ(a.options.logits_for, b.options.logits_for);
  EXPECT_EQ(a.options.quantize_activations, b.options.quantize_activations);
  EXPECT_EQ(a.batch.token_ids, b.batch.token_ids);
  EXPECT_EQ(a.batch.positions, b.batch.positions);
  EXPECT_EQ(a.batch.slot_mapping, b.batch.slot_mapping);
  EXPECT_EQ(a.batch.query_start_loc, b.batch.query_start_loc);
  EXPECT_EQ(a.batch.seq_lens, b.batch.seq_lens);
  EXPECT_EQ(a.batch.block_tables, b.batch.block_tables);
  EXPECT_EQ(a.batch.max_blocks_per_seq, b.batch.max_blocks_per_seq);
}

TEST(StepBroadcastTest, RandomStepsRoundTrip) {
  TestRng rng(71);
  for (int i = 0; i < 50; ++i) {
    const StepMessage step = RandomStep(rng);
    absl::StatusOr<StepMessage> decoded = DecodeStep(EncodeStep(step));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ExpectSameStep(step, *decoded);
  }
  StepMessage stop;
  stop.kind = StepMessage::Kind::kStop;
  absl::StatusOr<StepMessage> decoded = DecodeStep(EncodeStep(stop));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->kind, StepMessage::Kind::kStop);
  EXPECT_EQ(decoded->batch.num_tokens(), 0);
}

TEST(StepBroadcastTest, EveryTruncationIsDataLoss) {
  TestRng rng(72);
  const std::string full = EncodeStep(RandomStep(rng));
  for (size_t length = 0; length < full.size(); ++length) {
    absl::StatusOr<StepMessage> decoded = DecodeStep(full.substr(0, length));
    ASSERT_FALSE(decoded.ok()) << "prefix of " << length << " bytes decoded";
    EXPECT_TRUE(absl::IsDataLoss(decoded.status())) << decoded.status();
  }
  EXPECT_FALSE(DecodeStep(full + "x").ok());
}

TEST(StepBroadcastTest, CorruptFieldsAreRefusedByName) {
  TestRng rng(73);
  const std::string full = EncodeStep(RandomStep(rng));
  auto with_word = [&](size_t word, int64_t value) {
    std::string bytes = full;
    std::memcpy(bytes.data() + word * 8, &value, 8);
    return DecodeStep(bytes).status();
  };
  EXPECT_NE(with_word(0, 7).message().find("magic"), std::string::npos);
  EXPECT_NE(with_word(1, 9).message().find("kind"), std::string::npos);
  EXPECT_NE(with_word(2, -1).message().find("mla_form"), std::string::npos);
  EXPECT_NE(with_word(3, 2).message().find("logits_for"), std::string::npos);
  EXPECT_NE(with_word(4, 3).message().find("quantize_activations"), std::string::npos);
  // token_ids' count claims more than the message holds.
  EXPECT_NE(with_word(5, int64_t{1} << 40).message().find("token_ids"), std::string::npos);
  // A block table width crafted so that seqs × width wraps to the table's size.
  {
    StepMessage step = RandomStep(rng);
    step.batch.block_tables.resize(step.batch.seq_lens.size() - 1);
    step.batch.max_blocks_per_seq = 0x5555555555555556;
    const absl::Status status = DecodeStep(EncodeStep(step)).status();
    EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  }
  // Random single-byte corruption: decoded or refused, never a crash.
  for (int i = 0; i < 2000; ++i) {
    std::string bytes = full;
    bytes[static_cast<size_t>(rng.Int(0, static_cast<int64_t>(bytes.size()) - 1))] ^=
        static_cast<char>(rng.Int(1, 255));
    absl::StatusOr<StepMessage> decoded = DecodeStep(bytes);
    if (!decoded.ok()) {
      EXPECT_TRUE(absl::IsDataLoss(decoded.status())) << decoded.status();
    }
  }
}

TEST(StepBroadcastTest, BroadcastBytesCarriesAnyLength) {
  ThreadCommGroup group(3);
  TestRng rng(74);
  for (int64_t length : {0, 1, 3, 4, 5, 1000, 4097}) {
    std::string payload(static_cast<size_t>(length), '\0');
    for (char& c : payload) c = static_cast<char>(rng.Int(0, 255));
    std::vector<std::string> received(3, std::string("stale"));
    received[0] = payload;
    std::vector<std::thread> threads;
    std::vector<absl::Status> statuses(3);
    for (int r = 0; r < 3; ++r) {
      threads.emplace_back([&, r] { statuses[r] = group.rank(r).BroadcastBytes(received[r], 0); });
    }
    for (std::thread& t : threads) t.join();
    for (int r = 0; r < 3; ++r) {
      EXPECT_TRUE(statuses[r].ok()) << statuses[r];
      EXPECT_EQ(received[r], payload) << "rank " << r << ", length " << length;
    }
  }
}

TEST(StepBroadcastTest, FollowersRunEveryStepThenStop) {
  constexpr int kWorld = 3;
  ThreadCommGroup group(kWorld);
  TestRng rng(75);
  std::vector<StepMessage> sent;
  for (int i = 0; i < 8; ++i) sent.push_back(RandomStep(rng));
  std::vector<std::vector<StepMessage>> seen(kWorld);
  std::vector<absl::Status> statuses(kWorld);
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (StepMessage step : sent) {
      if (absl::Status s = ExchangeStep(group.rank(0), step); !s.ok()) {
        statuses[0] = s;
        return;
      }
    }
    StepMessage stop;
    stop.kind = StepMessage::Kind::kStop;
    statuses[0] = ExchangeStep(group.rank(0), stop);
  });
  for (int r = 1; r < kWorld; ++r) {
    threads.emplace_back([&, r] {
      statuses[r] = FollowSteps(group.rank(r), [&, r](const StepMessage& step) {
        seen[r].push_back(step);
        return absl::OkStatus();
      });
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < kWorld; ++r) EXPECT_TRUE(statuses[r].ok()) << r << ": " << statuses[r];
  for (int r = 1; r < kWorld; ++r) {
    ASSERT_EQ(seen[r].size(), sent.size());
    for (size_t i = 0; i < sent.size(); ++i) ExpectSameStep(sent[i], seen[r][i]);
  }
}

TEST(StepBroadcastTest, FollowerErrorEndsItsLoop) {
  ThreadCommGroup group(2);
  TestRng rng(76);
  absl::Status driver, follower;
  std::thread t0([&] {
    StepMessage step = RandomStep(rng);
    driver = ExchangeStep(group.rank(0), step);
  });
  std::thread t1([&] {
    follower = FollowSteps(
        group.rank(1), [](const StepMessage&) { return absl::InternalError("the shard failed"); });
  });
  t0.join();
  t1.join();
  EXPECT_TRUE(driver.ok()) << driver;
  EXPECT_EQ(follower.message(), "the shard failed");
}

// Rank 0 drives; rank 1 runs its shard only on what FollowSteps hands it.
struct ShardCase {
  const char* preset;
  int tp;
  int ep;
};

class FollowedShardTest : public ::testing::TestWithParam<ShardCase> {};

TEST_P(FollowedShardTest, FollowedGroupEqualsSingleRank) {
  const ShardCase c = GetParam();
  const std::string dir = moeserve::testing::TestCheckpointDir(c.preset, /*fp8=*/false);
  absl::StatusOr<std::unique_ptr<DeepseekModel>> single = DeepseekModel::Load(dir, kFp32Cache);
  ASSERT_TRUE(single.ok()) << single.status();
  const ModelConfig& config = (*single)->config();
  const ParallelConfig parallel{.tensor_parallel_size = c.tp, .expert_parallel_size = c.ep};
  const ExpertPlacement placement =
      ContiguousPlacement(MoeLayerMask(config), config.n_routed_experts, c.ep);
  ThreadCommGroup group(2);
  std::vector<std::unique_ptr<DeepseekModel>> shards(2);
  {
    std::vector<std::thread> loaders;
    std::vector<absl::Status> statuses(2);
    for (int r = 0; r < 2; ++r) {
      loaders.emplace_back([&, r] {
        absl::StatusOr<std::unique_ptr<DeepseekModel>> shard =
            DeepseekModel::LoadShard(dir, kFp32Cache,
                                     RankContext{.rank = r,
                                                 .parallel = parallel,
                                                 .comm = &group.rank(r),
                                                 .placement = c.ep > 1 ? &placement : nullptr});
        statuses[r] = shard.status();
        if (shard.ok()) shards[r] = *std::move(shard);
      });
    }
    for (std::thread& t : loaders) t.join();
    for (const absl::Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
  }

  TestRng rng(77);
  // Two prefill steps then decode steps on the same sequences, driven by rank 0.
  std::vector<StepMessage> steps;
  const std::vector<int32_t> table = {0, 1, 2};
  int64_t computed = 0;
  for (int64_t fresh : {37, 29, 1, 1, 1}) {
    std::vector<int32_t> tokens;
    for (int64_t i = 0; i < fresh; ++i) {
      tokens.push_back(static_cast<int32_t>(rng.Int(2, config.vocab_size - 1)));
    }
    ForwardBatchBuilder builder;
    builder.AddSequence(table, computed, tokens);
    computed += fresh;
    StepMessage step;
    step.batch = std::move(builder).Build();
    step.options.logits_for = LogitsFor::kAllTokens;
    steps.push_back(std::move(step));
  }

  KvPages single_pages = (*single)->MakeKvPages(3);
  std::vector<float> expected;
  for (const StepMessage& step : steps) {
    absl::StatusOr<std::vector<float>> logits =
        (*single)->Forward(step.batch, single_pages, step.options);
    ASSERT_TRUE(logits.ok()) << logits.status();
    expected.insert(expected.end(), logits->begin(), logits->end());
  }

  std::vector<float> driven;
  absl::Status driver_status, follower_status;
  std::thread driver([&] {
    KvPages pages = shards[0]->MakeKvPages(3);
    driver_status = [&]() -> absl::Status {
      for (StepMessage step : steps) {
        if (absl::Status s = ExchangeStep(group.rank(0), step); !s.ok()) return s;
        absl::StatusOr<std::vector<float>> logits =
            shards[0]->Forward(step.batch, pages, step.options);
        if (!logits.ok()) return logits.status();
        driven.insert(driven.end(), logits->begin(), logits->end());
      }
      StepMessage stop;
      stop.kind = StepMessage::Kind::kStop;
      return ExchangeStep(group.rank(0), stop);
    }();
  });
  std::thread follower([&] {
    KvPages pages = shards[1]->MakeKvPages(3);
    follower_status = FollowSteps(group.rank(1), [&](const StepMessage& step) {
      return shards[1]->Forward(step.batch, pages, step.options).status();
    });
  });
  driver.join();
  follower.join();
  ASSERT_TRUE(driver_status.ok()) << driver_status;
  ASSERT_TRUE(follower_status.ok()) << follower_status;
  ASSERT_EQ(driven.size(), expected.size());
  if (c.tp == 1) {
    EXPECT_EQ(driven, expected);  // only experts moved: the same arithmetic
  } else {
    EXPECT_LT(testing::MaxRelativeError(driven, expected), 2e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, FollowedShardTest,
                         ::testing::Values(ShardCase{"tiny-v3", 2, 1}, ShardCase{"tiny-v3", 1, 2},
                                           ShardCase{"tiny-v2-lite", 2, 2}),
                         [](const ::testing::TestParamInfo<ShardCase>& info) {
                           std::string name = std::string(info.param.preset) + "_tp" +
                                              std::to_string(info.param.tp) + "_ep" +
                                              std::to_string(info.param.ep);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace moeserve::engine
