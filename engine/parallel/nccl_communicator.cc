#include "engine/parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/parallel/rendezvous.h"

namespace moeserve::engine {
namespace {

absl::Status NcclError(const char* what, ncclResult_t result) {
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(result)));
}

absl::Status CudaError(const char* what, cudaError_t error) {
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(error)));
}

ncclDataType_t NcclType(CommDataType type) {
  switch (type) {
    case CommDataType::kFloat32:
      return ncclFloat32;
    case CommDataType::kInt32:
      return ncclInt32;
    case CommDataType::kInt64:
      return ncclInt64;
    case CommDataType::kBfloat16:
      return ncclBfloat16;
  }
  return ncclFloat32;
}

#define MOESERVE_NCCL(call)                                                     \
  do {                                                                          \
    const ncclResult_t moeserve_nccl_ = (call);                                 \
    if (moeserve_nccl_ != ncclSuccess) return NcclError(#call, moeserve_nccl_); \
  } while (0)

#define MOESERVE_CUDA(call)                                                     \
  do {                                                                          \
    const cudaError_t moeserve_cuda_ = (call);                                  \
    if (moeserve_cuda_ != cudaSuccess) return CudaError(#call, moeserve_cuda_); \
  } while (0)

}  // namespace

struct NcclCommunicator::State {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  bool owns_stream = true;     // false: the caller's stream, collectives only enqueue
  int64_t* scratch = nullptr;  // device: Barrier's token and AllToAllCounts' staging
  int64_t scratch_elements = 0;

  absl::Status Sync() {
    MOESERVE_CUDA(cudaStreamSynchronize(stream));
    return absl::OkStatus();
  }
  // The end of a collective: wait only in the synchronous mode.
  absl::Status Done() { return owns_stream ? Sync() : absl::OkStatus(); }
  absl::Status EnsureScratch(int64_t elements) {
    if (elements <= scratch_elements) return absl::OkStatus();
    if (scratch != nullptr) MOESERVE_CUDA(cudaFree(scratch));
    MOESERVE_CUDA(cudaMalloc(&scratch, static_cast<size_t>(elements) * sizeof(int64_t)));
    scratch_elements = elements;
    return absl::OkStatus();
  }
};

NcclCommunicator::NcclCommunicator(int rank, int world_size, std::unique_ptr<State> state)
    : rank_(rank), world_size_(world_size), state_(std::move(state)) {}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(state_->device);
  if (state_->comm != nullptr && !aborted_.load()) ncclCommDestroy(state_->comm);
  if (state_->scratch != nullptr) cudaFree(state_->scratch);
  if (state_->stream != nullptr && state_->owns_stream) cudaStreamDestroy(state_->stream);
}

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  MOESERVE_NCCL(ncclGetUniqueId(&id));
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

absl::StatusOr<std::string> ShareNcclUniqueId(const std::string& rendezvous, int node_rank,
                                              int nnodes, std::chrono::milliseconds timeout) {
  std::string id;
  if (node_rank == 0) {
    absl::StatusOr<std::string> fresh = NewNcclUniqueId();
    if (!fresh.ok()) return fresh.status();
    id = *std::move(fresh);
  }
  if (nnodes == 1) return id;
  absl::StatusOr<std::string> shared = ExchangeBlob(rendezvous, node_rank, nnodes, id, timeout);
  if (!shared.ok()) return shared.status();
  if (shared->size() != sizeof(ncclUniqueId)) {
    return absl::DataLossError(absl::StrCat("NCCL: the rendezvous returned ", shared->size(),
                                            " bytes, a unique id has ", sizeof(ncclUniqueId)));
  }
  return shared;
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(const NcclOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL: rank ", o.rank, " outside a world of ", o.world_size));
  }
  int devices = 0;
  MOESERVE_CUDA(cudaGetDeviceCount(&devices));
  if (o.device < 0 || o.device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL: device ", o.device, " but this machine has ", devices, " GPUs"));
  }
  MOESERVE_CUDA(cudaSetDevice(o.device));

  std::string id_bytes = o.unique_id;
  if (id_bytes.empty()) {
    if (o.world_size > 1 && o.rendezvous.empty()) {
      return absl::InvalidArgumentError(
          "NCCL: a world of several ranks needs a rendezvous address or a shared unique id");
    }
    absl::StatusOr<std::string> shared =
        ShareNcclUniqueId(o.rendezvous, o.rank, o.world_size, o.timeout);
    if (!shared.ok()) return shared.status();
    id_bytes = *std::move(shared);
  }
  ncclUniqueId id;
  if (id_bytes.size() != sizeof(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL: a unique id has ", sizeof(id), " bytes, got ", id_bytes.size()));
  }
  std::memcpy(&id, id_bytes.data(), sizeof(id));

  auto state = std::make_unique<State>();
  state->device = o.device;
  if (o.stream != nullptr) {
    state->stream = static_cast<cudaStream_t>(o.stream);
    state->owns_stream = false;
  } else {
    MOESERVE_CUDA(cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking));
  }
  const ncclResult_t init = ncclCommInitRank(&state->comm, o.world_size, id, o.rank);
  if (init != ncclSuccess) {
    if (state->owns_stream) cudaStreamDestroy(state->stream);
    return NcclError("ncclCommInitRank", init);
  }
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(o.rank, o.world_size, std::move(state)));
}

void NcclCommunicator::Abort() {
  if (aborted_.exchange(true)) return;
  cudaSetDevice(state_->device);
  (void)ncclCommAbort(state_->comm);
}

absl::Status NcclCommunicator::AllReduceSum(void* data, int64_t count, CommDataType type) {
  if (aborted_.load()) return absl::AbortedError("the NCCL communicator was aborted");
  MOESERVE_NCCL(ncclAllReduce(data, data, static_cast<size_t>(count), NcclType(type), ncclSum,
                              state_->comm, state_->stream));
  return state_->Done();
}

absl::Status NcclCommunicator::AllGather(const void* in, int64_t count, void* out,
                                         CommDataType type) {
  if (aborted_.load()) return absl::AbortedError("the NCCL communicator was aborted");
  MOESERVE_NCCL(ncclAllGather(in, out, static_cast<size_t>(count), NcclType(type), state_->comm,
                              state_->stream));
  return state_->Done();
}

absl::Status NcclCommunicator::AllToAllV(const void* send, absl::Span<const int64_t> send_counts,
                                         void* recv, absl::Span<const int64_t> recv_counts,
                                         CommDataType type) {
  if (aborted_.load()) return absl::AbortedError("the NCCL communicator was aborted");
  if (static_cast<int>(send_counts.size()) != world_size_ ||
      static_cast<int>(recv_counts.size()) != world_size_) {
    return absl::InvalidArgumentError(absl::StrCat("AllToAllV: counts for ", send_counts.size(),
                                                   " / ", recv_counts.size(), " ranks, world is ",
                                                   world_size_));
  }
  const int64_t elem = CommDataTypeSize(type);
  const ncclDataType_t nccl_type = NcclType(type);
  MOESERVE_NCCL(ncclGroupStart());
  int64_t send_offset = 0, recv_offset = 0;
  for (int peer = 0; peer < world_size_; ++peer) {
    if (send_counts[peer] > 0) {
      MOESERVE_NCCL(ncclSend(static_cast<const char*>(send) + send_offset * elem,
                             static_cast<size_t>(send_counts[peer]), nccl_type, peer, state_->comm,
                             state_->stream));
    }
    if (recv_counts[peer] > 0) {
      MOESERVE_NCCL(ncclRecv(static_cast<char*>(recv) + recv_offset * elem,
                             static_cast<size_t>(recv_counts[peer]), nccl_type, peer, state_->comm,
                             state_->stream));
    }
    send_offset += send_counts[peer];
    recv_offset += recv_counts[peer];
  }
  MOESERVE_NCCL(ncclGroupEnd());
  return state_->Done();
}

absl::Status NcclCommunicator::Broadcast(void* data, int64_t count, CommDataType type, int root) {
  if (aborted_.load()) return absl::AbortedError("the NCCL communicator was aborted");
  MOESERVE_NCCL(ncclBroadcast(data, data, static_cast<size_t>(count), NcclType(type), root,
                              state_->comm, state_->stream));
  return state_->Done();
}

absl::Status NcclCommunicator::Barrier() {
  if (absl::Status s = state_->EnsureScratch(1); !s.ok()) return s;
  if (absl::Status s = AllReduceSum(state_->scratch, 1, CommDataType::kInt64); !s.ok()) return s;
  return state_->Sync();
}

absl::Status NcclCommunicator::BroadcastBytes(std::string& bytes, int root) {
  // [length, payload words...] through the device scratch: two broadcasts, one wait each.
  int64_t length = static_cast<int64_t>(bytes.size());
  if (absl::Status s = state_->EnsureScratch(1); !s.ok()) return s;
  MOESERVE_CUDA(cudaMemcpyAsync(state_->scratch, &length, sizeof(length), cudaMemcpyHostToDevice,
                                state_->stream));
  if (absl::Status s = Broadcast(state_->scratch, 1, CommDataType::kInt64, root); !s.ok()) {
    return s;
  }
  MOESERVE_CUDA(cudaMemcpyAsync(&length, state_->scratch, sizeof(length), cudaMemcpyDeviceToHost,
                                state_->stream));
  if (absl::Status s = state_->Sync(); !s.ok()) return s;
  if (length < 0 || length > kMaxBroadcastBytes) {
    return absl::DataLossError(
        absl::StrCat("BroadcastBytes: length ", length, " outside [0, ", kMaxBroadcastBytes, "]"));
  }
  if (length == 0) {
    bytes.clear();
    return absl::OkStatus();
  }
  const int64_t words = (length + 7) / 8;
  if (absl::Status s = state_->EnsureScratch(words); !s.ok()) return s;
  if (rank_ == root) {
    MOESERVE_CUDA(cudaMemcpyAsync(state_->scratch, bytes.data(), static_cast<size_t>(length),
                                  cudaMemcpyHostToDevice, state_->stream));
  }
  if (absl::Status s = Broadcast(state_->scratch, words, CommDataType::kInt64, root); !s.ok()) {
    return s;
  }
  bytes.resize(static_cast<size_t>(length));
  MOESERVE_CUDA(cudaMemcpyAsync(bytes.data(), state_->scratch, static_cast<size_t>(length),
                                cudaMemcpyDeviceToHost, state_->stream));
  return state_->Sync();
}

absl::StatusOr<std::vector<int64_t>> NcclCommunicator::AllToAllCounts(
    absl::Span<const int64_t> send_counts) {
  if (static_cast<int>(send_counts.size()) != world_size_) {
    return absl::InvalidArgumentError(absl::StrCat("AllToAllCounts: ", send_counts.size(),
                                                   " send counts for ", world_size_, " ranks"));
  }
  if (absl::Status s = state_->EnsureScratch(2 * world_size_); !s.ok()) return s;
  int64_t* device_send = state_->scratch;
  int64_t* device_recv = state_->scratch + world_size_;
  const size_t bytes = static_cast<size_t>(world_size_) * sizeof(int64_t);
  MOESERVE_CUDA(cudaMemcpyAsync(device_send, send_counts.data(), bytes, cudaMemcpyHostToDevice,
                                state_->stream));
  const std::vector<int64_t> ones(static_cast<size_t>(world_size_), 1);
  if (absl::Status s = AllToAllV(device_send, ones, device_recv, ones, CommDataType::kInt64);
      !s.ok()) {
    return s;
  }
  std::vector<int64_t> recv_counts(static_cast<size_t>(world_size_));
  MOESERVE_CUDA(cudaMemcpyAsync(recv_counts.data(), device_recv, bytes, cudaMemcpyDeviceToHost,
                                state_->stream));
  if (absl::Status s = state_->Sync(); !s.ok()) return s;
  return recv_counts;
}

}  // namespace moeserve::engine
