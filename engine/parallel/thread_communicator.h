// Ranks that are threads of one process: the Communicator the CPU backend and the multi-rank
// tests use.
//
// A ThreadCommGroup owns the shared state; rank r's endpoint (group.rank(r)) must be used by
// exactly one thread at a time. A collective publishes each rank's buffers, meets at a
// barrier, lets every rank read its peers' buffers directly, and meets again before anyone
// may touch its buffers. AllReduceSum is a reduce-scatter into shared scratch (rank r sums
// chunk r over ranks 0, 1, …, W−1, in that order) followed by a copy-out, so the sum never
// depends on thread timing.
//
// Abort() wakes every rank blocked in a collective with an Aborted status and fails every later
// collective: it is how a rank that hit an error unblocks its peers instead of deadlocking them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "engine/parallel/communicator.h"

namespace moeserve::engine {

class ThreadCommGroup;

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(ThreadCommGroup* group, int rank) : group_(group), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override;

  absl::Status AllReduceSum(void* data, int64_t count, CommDataType type) override;
  absl::Status AllGather(const void* in, int64_t count, void* out, CommDataType type) override;
  absl::Status AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                         absl::Span<const int64_t> recv_counts, CommDataType type) override;
  absl::Status Broadcast(void* data, int64_t count, CommDataType type, int root) override;
  absl::Status Barrier() override;

  using Communicator::AllGather;
  using Communicator::AllReduceSum;
  using Communicator::Broadcast;

 private:
  ThreadCommGroup* group_;
  int rank_;
};

class ThreadCommGroup {
 public:
  explicit ThreadCommGroup(int world_size);
  ThreadCommGroup(const ThreadCommGroup&) = delete;
  ThreadCommGroup& operator=(const ThreadCommGroup&) = delete;

  int world_size() const { return world_size_; }
  ThreadCommunicator& rank(int r) { return *endpoints_[static_cast<size_t>(r)]; }

  // Fails the collectives in progress and all later ones with Aborted.
  void Abort();
  bool aborted() const;

 private:
  friend class ThreadCommunicator;

  // What each rank publishes for the collective in progress.
  struct Slot {
    const void* in = nullptr;
    void* out = nullptr;
    int64_t count = 0;
    const int64_t* counts = nullptr;  // AllToAllV send counts
    int root = 0;
  };

  // Barrier of all ranks; Aborted if the group was aborted before or while waiting. The last
  // rank to arrive runs `on_complete` (if given) under the lock before releasing the others,
  // e.g. to size the scratch or to check that every rank passed matching sizes.
  absl::Status Sync(const std::function<void()>& on_complete = nullptr);

  const int world_size_;
  std::vector<std::unique_ptr<ThreadCommunicator>> endpoints_;
  std::vector<Slot> slots_;         // written by their rank before a Sync, read after it
  std::vector<char> scratch_;       // AllReduceSum's reduce-scatter target
  absl::Status collective_status_;  // set by on_complete hooks: a mismatch every rank reports
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  bool aborted_ = false;
};

}  // namespace moeserve::engine
