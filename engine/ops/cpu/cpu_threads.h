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

// Ends the calling thread's idle OpenMP team (its worker threads exit). Called by a thread that
// hands the compute over to another one, as the thread that loads a model does when it starts
// the engine's loop thread: libgomp counts every team's threads, and once they outnumber the
// CPUs it stops spinning between parallel regions and puts workers to sleep after ~100 spins,
// so each of a step's many regions pays a futex wake-up (measured: kjv-v3-tiny batch-1 decode
// on 2 cores 440 -> 1,629 tok/s). A later parallel region on the calling thread starts a new
// team. Must not be called inside a parallel region.
void ReleaseCpuThreadsOfThisThread();

}  // namespace moeserve::engine
