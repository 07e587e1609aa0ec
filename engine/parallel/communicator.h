// Collective communication between the ranks of one model-parallel group.
//
// The tensor- and expert-parallel forward (engine/model, engine/model/expert_parallel_moe)
// talks to its peers only through this interface, so the same code runs with ranks that are
// threads of one process (ThreadCommunicator, CPU tests and the CPU backend) and with one GPU
// per rank (NcclCommunicator). Every rank calls the same collectives in the same order with
// matching sizes, as with MPI/NCCL. Buffers are host pointers for the thread implementation
// and device pointers for NCCL.
//
// Results are deterministic: AllReduce sums in ascending rank order on every rank, whatever
// the thread timing, so all ranks hold bit-identical sums.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moeserve::engine {

// kBfloat16 is for activations (the GPU forward all-reduces its bf16 partial sums); sums of
// bf16 are accumulated in fp32 in ascending rank order by ThreadCommunicator and rounded once.
enum class CommDataType { kFloat32, kInt32, kInt64, kBfloat16 };

template <typename T>
constexpr CommDataType CommDataTypeOf();
template <>
constexpr CommDataType CommDataTypeOf<float>() {
  return CommDataType::kFloat32;
}
template <>
constexpr CommDataType CommDataTypeOf<int32_t>() {
  return CommDataType::kInt32;
}
template <>
constexpr CommDataType CommDataTypeOf<int64_t>() {
  return CommDataType::kInt64;
}

int64_t CommDataTypeSize(CommDataType type);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // data[i] = Σ_r data_r[i] over all ranks, in place (sum in ascending rank order).
  virtual absl::Status AllReduceSum(void* data, int64_t count, CommDataType type) = 0;

  // out = concat_r(in_r): every rank contributes `count` elements; out holds world × count.
  virtual absl::Status AllGather(const void* in, int64_t count, void* out, CommDataType type) = 0;

  // Variable-count all-to-all. send holds world blocks back to back, block j (send_counts[j]
  // elements) going to rank j; recv gets block i from rank i at offset Σ_{i'<i} recv_counts[i'].
  // recv_counts must be what the peers send (exchange the counts first: AllToAllCounts).
  virtual absl::Status AllToAllV(const void* send, absl::Span<const int64_t> send_counts,
                                 void* recv, absl::Span<const int64_t> recv_counts,
                                 CommDataType type) = 0;

  // data on every rank = data on `root`.
  virtual absl::Status Broadcast(void* data, int64_t count, CommDataType type, int root) = 0;

  virtual absl::Status Barrier() = 0;

  // Typed conveniences.
  template <typename T>
  absl::Status AllReduceSum(absl::Span<T> data) {
    return AllReduceSum(data.data(), static_cast<int64_t>(data.size()), CommDataTypeOf<T>());
  }
  template <typename T>
  absl::Status AllGather(absl::Span<const T> in, absl::Span<T> out) {
    return AllGather(in.data(), static_cast<int64_t>(in.size()), out.data(), CommDataTypeOf<T>());
  }
  template <typename T>
  absl::Status Broadcast(absl::Span<T> data, int root) {
    return Broadcast(data.data(), static_cast<int64_t>(data.size()), CommDataTypeOf<T>(), root);
  }

  // `bytes` on every rank = `bytes` on `root` (host memory in every implementation: the length
  // goes first, then the payload). How a driving rank hands each step to the ranks of other
  // processes (step_broadcast.h). A length above kMaxBroadcastBytes fails on every rank.
  static constexpr int64_t kMaxBroadcastBytes = int64_t{1} << 30;
  virtual absl::Status BroadcastBytes(std::string& bytes, int root);

  // The first half of a variable all-to-all: given how many elements this rank sends to each
  // peer, returns how many it will receive from each (an all-to-all of one int64 per pair).
  // Counts are host memory in every implementation (NCCL stages them through the device).
  virtual absl::StatusOr<std::vector<int64_t>> AllToAllCounts(
      absl::Span<const int64_t> send_counts);
};

}  // namespace moeserve::engine
