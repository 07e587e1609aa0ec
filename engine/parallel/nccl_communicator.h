// The Communicator across GPUs: NCCL collectives, one rank per GPU.
//
// Ranks may be threads of one process (one per local GPU) or separate processes on one or
// several nodes. Rank 0 creates the NCCL unique id and spreads it through a rendezvous address
// (rendezvous.h: "file:/shared/path" or "tcp:HOST:PORT"), then every rank calls
// ncclCommInitRank on its device. Buffers passed to the collectives are device pointers;
// each call enqueues on the communicator's stream and waits for it, so a collective has
// finished when it returns, as with ThreadCommunicator. AllToAllCounts takes host counts and
// stages them through the device. Built only with MOESERVE_CUDA (docs/parallel.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/parallel/communicator.h"

namespace moeserve::engine {

struct NcclOptions {
  int rank = 0;
  int world_size = 1;
  int device = 0;               // CUDA device of this rank (local index)
  std::string rendezvous = "";  // "file:PATH" or "tcp:HOST:PORT" (rank 0's address)
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

class NcclCommunicator final : public Communicator {
 public:
  // Collective over the world: every rank must call it (rank 0 first publishes the id).
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(const NcclOptions& options);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

  absl::Status AllReduceSum(void* data, int64_t count, CommDataType type) override;
  absl::Status AllGather(const void* in, int64_t count, void* out, CommDataType type) override;
  absl::Status AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                         absl::Span<const int64_t> recv_counts, CommDataType type) override;
  absl::Status Broadcast(void* data, int64_t count, CommDataType type, int root) override;
  absl::Status Barrier() override;
  absl::StatusOr<std::vector<int64_t>> AllToAllCounts(
      absl::Span<const int64_t> send_counts) override;

  using Communicator::AllGather;
  using Communicator::AllReduceSum;
  using Communicator::Broadcast;

 private:
  struct State;  // NCCL and CUDA handles, kept out of this header
  NcclCommunicator(int rank, int world_size, std::unique_ptr<State> state);

  int rank_;
  int world_size_;
  std::unique_ptr<State> state_;
};

}  // namespace moeserve::engine
