// --threads reaches OpenMP per thread: the team size set in one thread is the size of the
// parallel regions it enters, and leaves other threads alone.
#include "engine/ops/cpu/cpu_threads.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <thread>

namespace moeserve::engine {
namespace {

int TeamSize() {
  int size = 0;
#pragma omp parallel
  {
#pragma omp single
    size = omp_get_num_threads();
  }
  return size;
}

TEST(CpuThreadsTest, TeamSizeIsSetPerThread) {
  EXPECT_GE(CpusAllowed(), 1);
  int inside = 0, default_elsewhere = 0;
  std::thread limited([&] {
    SetCpuThreadsOfThisThread(3);
    inside = TeamSize();
  });
  limited.join();
  EXPECT_EQ(inside, 3);
  std::thread other([&] {
    SetCpuThreadsOfThisThread(0);
    default_elsewhere = TeamSize();
  });
  other.join();
  EXPECT_EQ(default_elsewhere, CpusAllowed());
  std::thread single([&] {
    SetCpuThreadsOfThisThread(1);
    EXPECT_EQ(CpuThreadsOfThisThread(), 1);
    EXPECT_EQ(TeamSize(), 1);
  });
  single.join();
}

}  // namespace
}  // namespace moeserve::engine
