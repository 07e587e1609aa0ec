// ThreadCommunicator against naive references on random data with 2, 3 and 4 thread ranks.
#include "engine/parallel/thread_communicator.h"

#include <gtest/gtest.h>

#include <functional>
#include <thread>
#include <vector>

#include "engine/ops/dtype.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using testing::TestRng;

// Runs body(rank) on one thread per rank and returns each rank's status.
std::vector<absl::Status> RunRanks(ThreadCommGroup& group,
                                   const std::function<absl::Status(int)>& body) {
  std::vector<absl::Status> statuses(static_cast<size_t>(group.world_size()));
  std::vector<std::thread> threads;
  for (int r = 0; r < group.world_size(); ++r) {
    threads.emplace_back([&, r] { statuses[r] = body(r); });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

void ExpectAllOk(const std::vector<absl::Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r) EXPECT_TRUE(statuses[r].ok()) << r << statuses[r];
}

class ThreadCommunicatorTest : public ::testing::TestWithParam<int> {};

TEST_P(ThreadCommunicatorTest, AllReduceSumEqualsAscendingRankSum) {
  const int world = GetParam();
  TestRng rng(1000 + world);
  ThreadCommGroup group(world);
  for (int64_t count : {1, 7, 1000, 4099}) {
    std::vector<std::vector<float>> data(world);
    std::vector<std::vector<int32_t>> ints(world);
    for (int r = 0; r < world; ++r) {
      data[r] = rng.NormalFloats(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i)
        ints[r].push_back(static_cast<int32_t>(rng.Int(-1000, 1000)));
    }
    std::vector<float> expected = data[0];
    std::vector<int32_t> expected_ints = ints[0];
    for (int r = 1; r < world; ++r) {
      for (int64_t i = 0; i < count; ++i) {
        expected[i] += data[r][i];
        expected_ints[i] += ints[r][i];
      }
    }
    ExpectAllOk(RunRanks(group, [&](int r) -> absl::Status {
      ThreadCommunicator& comm = group.rank(r);
      if (absl::Status s = comm.AllReduceSum(absl::MakeSpan(data[r])); !s.ok()) return s;
      return comm.AllReduceSum(absl::MakeSpan(ints[r]));
    }));
    for (int r = 0; r < world; ++r) {
      // Bit-exact: the reference adds ranks in the same ascending order.
      ASSERT_EQ(data[r], expected) << "rank " << r << " count " << count;
      ASSERT_EQ(ints[r], expected_ints) << "rank " << r;
    }
  }
}

TEST_P(ThreadCommunicatorTest, Bf16AllReduceAccumulatesInFp32AndRoundsOnce) {
  const int world = GetParam();
  TestRng rng(1500 + world);
  ThreadCommGroup group(world);
  const int64_t count = 1027;
  std::vector<std::vector<uint16_t>> data(world);
  for (int r = 0; r < world; ++r) data[r] = rng.NormalBf16(static_cast<size_t>(count));
  std::vector<uint16_t> expected(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    float sum = 0.0f;
    for (int r = 0; r < world; ++r) sum += Bf16ToFloat(data[r][i]);
    expected[i] = FloatToBf16(sum);
  }
  ExpectAllOk(RunRanks(group, [&](int r) -> absl::Status {
    return group.rank(r).AllReduceSum(data[r].data(), count, CommDataType::kBfloat16);
  }));
  for (int r = 0; r < world; ++r) ASSERT_EQ(data[r], expected) << "rank " << r;
}

TEST_P(ThreadCommunicatorTest, AllGatherConcatenatesInRankOrder) {
  const int world = GetParam();
  TestRng rng(2000 + world);
  ThreadCommGroup group(world);
  const int64_t count = 333;
  std::vector<std::vector<float>> in(world), out(world);
  std::vector<float> expected;
  for (int r = 0; r < world; ++r) {
    in[r] = rng.NormalFloats(count);
    expected.insert(expected.end(), in[r].begin(), in[r].end());
    out[r].assign(static_cast<size_t>(world * count), -1.0f);
  }
  ExpectAllOk(RunRanks(group, [&](int r) {
    return group.rank(r).AllGather(absl::Span<const float>(in[r]), absl::MakeSpan(out[r]));
  }));
  for (int r = 0; r < world; ++r) EXPECT_EQ(out[r], expected) << "rank " << r;
}

TEST_P(ThreadCommunicatorTest, AllToAllVWithCountsExchangedFirst) {
  const int world = GetParam();
  TestRng rng(3000 + world);
  ThreadCommGroup group(world);
  for (int round = 0; round < 5; ++round) {
    // send[r][j]: the block rank r sends to rank j, random length (zero included).
    std::vector<std::vector<std::vector<int64_t>>> blocks(world);
    std::vector<std::vector<int64_t>> send(world), send_counts(world);
    for (int r = 0; r < world; ++r) {
      for (int j = 0; j < world; ++j) {
        const int64_t n = rng.Int(0, 3) == 0 ? 0 : rng.Int(1, 50);
        std::vector<int64_t> block;
        for (int64_t i = 0; i < n; ++i) block.push_back(static_cast<int64_t>(rng.Bits()));
        send[r].insert(send[r].end(), block.begin(), block.end());
        send_counts[r].push_back(n);
        blocks[r].push_back(std::move(block));
      }
    }
    std::vector<std::vector<int64_t>> recv(world), recv_counts(world);
    ExpectAllOk(RunRanks(group, [&](int r) -> absl::Status {
      ThreadCommunicator& comm = group.rank(r);
      absl::StatusOr<std::vector<int64_t>> counts = comm.AllToAllCounts(send_counts[r]);
      if (!counts.ok()) return counts.status();
      recv_counts[r] = *counts;
      int64_t total = 0;
      for (int64_t c : *counts) total += c;
      recv[r].resize(static_cast<size_t>(total));
      return comm.AllToAllV(send[r].data(), send_counts[r], recv[r].data(), *counts,
                            CommDataType::kInt64);
    }));
    for (int r = 0; r < world; ++r) {
      std::vector<int64_t> expected;
      for (int i = 0; i < world; ++i) {
        EXPECT_EQ(recv_counts[r][i], send_counts[i][r]);
        expected.insert(expected.end(), blocks[i][r].begin(), blocks[i][r].end());
      }
      EXPECT_EQ(recv[r], expected) << "rank " << r << " round " << round;
    }
  }
}

TEST_P(ThreadCommunicatorTest, BroadcastFromEveryRoot) {
  const int world = GetParam();
  TestRng rng(4000 + world);
  ThreadCommGroup group(world);
  for (int root = 0; root < world; ++root) {
    std::vector<std::vector<float>> data(world);
    for (int r = 0; r < world; ++r) data[r] = rng.NormalFloats(129);
    const std::vector<float> expected = data[root];
    ExpectAllOk(RunRanks(group, [&](int r) {
      ThreadCommunicator& comm = group.rank(r);
      if (absl::Status s = comm.Barrier(); !s.ok()) return s;
      return comm.Broadcast(absl::MakeSpan(data[r]), root);
    }));
    for (int r = 0; r < world; ++r) EXPECT_EQ(data[r], expected) << "root " << root;
  }
}

TEST_P(ThreadCommunicatorTest, MismatchedSizesFailOnEveryRankWithoutDeadlock) {
  const int world = GetParam();
  ThreadCommGroup group(world);
  std::vector<std::vector<float>> data(world);
  for (int r = 0; r < world; ++r) data[r].assign(static_cast<size_t>(10 + r), 1.0f);
  const std::vector<absl::Status> statuses =
      RunRanks(group, [&](int r) { return group.rank(r).AllReduceSum(absl::MakeSpan(data[r])); });
  for (const absl::Status& s : statuses) EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // The group is still usable.
  std::vector<std::vector<float>> ok(world, std::vector<float>(4, 1.0f));
  ExpectAllOk(
      RunRanks(group, [&](int r) { return group.rank(r).AllReduceSum(absl::MakeSpan(ok[r])); }));
  EXPECT_EQ(ok[0][3], static_cast<float>(world));
}

TEST_P(ThreadCommunicatorTest, AbortWakesRanksWaitingInACollective) {
  const int world = GetParam();
  ThreadCommGroup group(world);
  // Every rank but the last enters a barrier; the last aborts instead of joining.
  const std::vector<absl::Status> statuses = RunRanks(group, [&](int r) -> absl::Status {
    if (r == world - 1) {
      group.Abort();
      return absl::OkStatus();
    }
    return group.rank(r).Barrier();
  });
  for (int r = 0; r + 1 < world; ++r) EXPECT_EQ(statuses[r].code(), absl::StatusCode::kAborted);
  EXPECT_EQ(group.rank(0).Barrier().code(), absl::StatusCode::kAborted);
}

INSTANTIATE_TEST_SUITE_P(Ranks, ThreadCommunicatorTest, ::testing::Values(2, 3, 4));

}  // namespace
}  // namespace moeserve::engine
