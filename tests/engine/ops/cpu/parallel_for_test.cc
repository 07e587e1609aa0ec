// ParallelFor runs every index exactly once; it forks a team only when asked to split and not
// already inside a parallel region, so a kernel called from a parallel loop runs inline.
#include "engine/ops/cpu/parallel_for.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <thread>
#include <vector>

#include "engine/ops/cpu/cpu_threads.h"

namespace moeserve::engine {
namespace {

// Runs `check` on a fresh thread whose OpenMP team size is `threads`.
template <typename Check>
void WithTeamOf(int threads, const Check& check) {
  std::thread runner([&] {
    SetCpuThreadsOfThisThread(threads);
    check();
  });
  runner.join();
}

TEST(ParallelForTest, EveryIndexOnceWhetherSplitOrNot) {
  for (const bool split : {false, true}) {
    for (const int64_t n : {0, 1, 2, 7, 1000}) {
      WithTeamOf(3, [&] {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        ParallelFor(n, split, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << i << " split " << split;
      });
    }
  }
}

TEST(ParallelForTest, SplitsOverTheTeamOnlyWhenAsked) {
  WithTeamOf(3, [] {
    std::atomic<int> in_region{0}, max_thread{0};
    ParallelFor(64, /*split=*/true, [&](int64_t) {
      if (omp_in_parallel()) in_region.fetch_add(1);
      int t = omp_get_thread_num(), seen = max_thread.load();
      while (t > seen && !max_thread.compare_exchange_weak(seen, t)) {
      }
    });
    EXPECT_EQ(in_region.load(), 64);
    EXPECT_EQ(max_thread.load(), 2) << "static schedule: 64 indices over a team of 3";
    int outside = 0;
    ParallelFor(64, /*split=*/false, [&](int64_t) { outside += omp_in_parallel() ? 100 : 1; });
    EXPECT_EQ(outside, 64) << "not split: no parallel region, on the calling thread";
  });
}

TEST(ParallelForTest, InsideAParallelRegionRunsInlineWithoutNesting) {
  WithTeamOf(2, [] {
    std::atomic<int> inner_levels_above_one{0}, inner_calls{0};
    ParallelFor(4, /*split=*/true, [&](int64_t) {
      const int outer_thread = omp_get_thread_num();
      ParallelFor(8, /*split=*/true, [&](int64_t) {
        inner_calls.fetch_add(1);
        if (omp_get_level() != 1 || omp_get_thread_num() != outer_thread) {
          inner_levels_above_one.fetch_add(1);
        }
      });
    });
    EXPECT_EQ(inner_calls.load(), 32);
    EXPECT_EQ(inner_levels_above_one.load(), 0) << "a nested ParallelFor must not fork a team";
  });
}

}  // namespace
}  // namespace moeserve::engine
