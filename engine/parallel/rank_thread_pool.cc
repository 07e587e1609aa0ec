#include "engine/parallel/rank_thread_pool.h"

#include <omp.h>

#include <algorithm>

namespace moeserve::engine {

RankThreadPool::RankThreadPool(int world_size, int omp_threads_per_rank)
    : omp_threads_per_rank_(omp_threads_per_rank > 0
                                ? omp_threads_per_rank
                                : std::max(1, omp_get_max_threads() / std::max(1, world_size))),
      results_(static_cast<size_t>(world_size)) {
  for (int r = 0; r < world_size; ++r) threads_.emplace_back([this, r] { ThreadMain(r); });
}

RankThreadPool::~RankThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

std::vector<absl::Status> RankThreadPool::Run(const std::function<absl::Status(int)>& fn) {
  std::unique_lock lock(mu_);
  job_ = &fn;
  pending_ = world_size();
  ++generation_;
  work_cv_.notify_all();
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
  return results_;
}

void RankThreadPool::ThreadMain(int rank) {
  omp_set_num_threads(omp_threads_per_rank_);
  int64_t seen = 0;
  while (true) {
    const std::function<absl::Status(int)>* job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    absl::Status status = (*job)(rank);
    {
      std::lock_guard lock(mu_);
      results_[static_cast<size_t>(rank)] = std::move(status);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

absl::Status FirstRankError(const std::vector<absl::Status>& statuses) {
  for (const absl::Status& s : statuses) {
    if (!s.ok() && !absl::IsAborted(s)) return s;
  }
  for (const absl::Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace moeserve::engine
