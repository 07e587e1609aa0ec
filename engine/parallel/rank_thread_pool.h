// A persistent thread per rank for running a model-parallel group inside one process.
//
// The CPU backend's multi-rank forward (ParallelModel) hands every step to these threads
// instead of creating threads per step. Each rank thread caps its own OpenMP team at
// omp_threads_per_rank, so W ranks × their GEMM teams do not oversubscribe the cores (OpenMP's
// thread count is per calling thread, so the cap is set once on each rank thread).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace moeserve::engine {

// The first error of a group's step, preferring a rank's own failure over the Aborted its
// peers report once it aborted the group.
absl::Status FirstRankError(const std::vector<absl::Status>& statuses);

class RankThreadPool {
 public:
  // omp_threads_per_rank <= 0: the machine's OpenMP threads divided evenly, at least 1.
  explicit RankThreadPool(int world_size, int omp_threads_per_rank = 0);
  ~RankThreadPool();
  RankThreadPool(const RankThreadPool&) = delete;
  RankThreadPool& operator=(const RankThreadPool&) = delete;

  int world_size() const { return static_cast<int>(threads_.size()); }
  int omp_threads_per_rank() const { return omp_threads_per_rank_; }

  // Runs fn(rank) on every rank's thread and waits for all of them. Returns each rank's
  // status. One Run at a time (the engine thread is the only caller).
  std::vector<absl::Status> Run(const std::function<absl::Status(int rank)>& fn);

 private:
  void ThreadMain(int rank);

  int omp_threads_per_rank_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  const std::function<absl::Status(int)>* job_ = nullptr;
  int64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::vector<absl::Status> results_;
  std::vector<std::thread> threads_;
};

}  // namespace moeserve::engine
