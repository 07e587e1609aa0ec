#include "engine/ops/cpu/cpu_threads.h"

#include <omp.h>
#include <sched.h>

namespace moeserve::engine {

int CpusAllowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  const int count = CPU_COUNT(&set);
  return count > 0 ? count : 1;
}

void SetCpuThreadsOfThisThread(int threads) {
  omp_set_num_threads(threads > 0 ? threads : CpusAllowed());
}

int CpuThreadsOfThisThread() { return omp_get_max_threads(); }

void ReleaseCpuThreadsOfThisThread() { omp_pause_resource_all(omp_pause_soft); }

}  // namespace moeserve::engine
