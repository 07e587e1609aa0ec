// How many threads the CPU kernels run on.
//
// The CPU kernels parallelise with OpenMP, and OpenMP's team size is a per-thread setting: the
// thread that runs the forward pass (the engine's loop thread, or each rank thread of a
// model-parallel CPU group) must set it itself. The server's `--threads` reaches those threads
// through EngineOptions::cpu_threads and ParallelModel's threads per rank; nothing else in the
// process starts compute threads (no BLAS library is linked), so that is the whole pool.
#pragma once

namespace moeserve::engine {

// CPUs this process may run on (sched_getaffinity; a container's cpuset counts), at least 1.
int CpusAllowed();

// The OpenMP team size of parallel regions entered from the calling thread: `threads`, or
// CpusAllowed() when threads <= 0.
void SetCpuThreadsOfThisThread(int threads);

// The team size parallel regions entered from the calling thread get.
int CpuThreadsOfThisThread();

}  // namespace moeserve::engine
