// The Communicator across GPUs: NCCL collectives, one rank per GPU.
//
// Ranks may be threads of one process (one per local GPU) or separate processes on one or
// several nodes. Rank 0 creates the NCCL unique id and spreads it through a rendezvous address
// (rendezvous.h: "file:/shared/path" or "tcp:HOST:PORT"), then every rank calls
// ncclCommInitRank on its device; ranks that are threads of one process share one id instead
// (NewNcclUniqueId on one node, ShareNcclUniqueId once per process across nodes). Buffers
// passed to the collectives are device pointers. By default each call enqueues on the
// communicator's own stream and waits for it, so a collective has finished when it returns, as
// with ThreadCommunicator; given the model's stream (NcclOptions::stream) it only enqueues, in
// stream order with the surrounding kernels, which is what the GPU forward and its CUDA graphs
// need. AllToAllCounts and BroadcastBytes take host memory and stage it through the device.
// Built only with MOESERVE_CUDA (docs/parallel.md).
#pragma once

#include <atomic>
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
  // The NCCL unique id when the caller already has one (threads of one process); empty: rank 0
  // makes one and spreads it through `rendezvous`.
  std::string unique_id = "";
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // A cudaStream_t to queue the collectives on without waiting (null: an own stream, and each
  // collective waits). The host must synchronise that stream before it reads a result.
  void* stream = nullptr;
};

// A fresh NCCL unique id (ncclGetUniqueId), as bytes.
absl::StatusOr<std::string> NewNcclUniqueId();

// One id for a group spread over `nnodes` processes: node 0 makes it and publishes it at
// `rendezvous` ("file:PATH" or "tcp:HOST:PORT", rendezvous.h); the other nodes read it. Called
// once per process; its rank threads then pass the id in NcclOptions::unique_id.
absl::StatusOr<std::string> ShareNcclUniqueId(const std::string& rendezvous, int node_rank,
                                              int nnodes, std::chrono::milliseconds timeout);

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
  absl::Status BroadcastBytes(std::string& bytes, int root) override;

  // ncclCommAbort: operations in flight on this communicator end (their waits return), and
  // every later call fails with Aborted. Callable from another thread while a rank is blocked
  // in a collective — what a rank that failed mid-step does to its local peers so that the
  // group's threads all come back instead of waiting forever.
  void Abort();

  using Communicator::AllGather;
  using Communicator::AllReduceSum;
  using Communicator::Broadcast;

 private:
  struct State;  // NCCL and CUDA handles, kept out of this header
  NcclCommunicator(int rank, int world_size, std::unique_ptr<State> state);

  int rank_;
  int world_size_;
  std::unique_ptr<State> state_;
  std::atomic<bool> aborted_{false};
};

}  // namespace moeserve::engine
