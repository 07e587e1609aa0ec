#include "engine/parallel/thread_communicator.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/ops/dtype.h"

namespace moeserve::engine {
namespace {

template <typename T>
void SumChunk(const std::vector<const void*>& inputs, int64_t begin, int64_t end, void* out) {
  T* dst = static_cast<T*>(out);
  const T* first = static_cast<const T*>(inputs[0]);
  std::copy(first + begin, first + end, dst + begin);
  for (size_t r = 1; r < inputs.size(); ++r) {
    const T* src = static_cast<const T*>(inputs[r]);
    for (int64_t i = begin; i < end; ++i) dst[i] += src[i];
  }
}

// bf16 sums: fp32 accumulation in ascending rank order, one rounding at the end.
void SumBf16Chunk(const std::vector<const void*>& inputs, int64_t begin, int64_t end, void* out) {
  uint16_t* dst = static_cast<uint16_t*>(out);
  for (int64_t i = begin; i < end; ++i) {
    float sum = 0.0f;
    for (const void* input : inputs) sum += Bf16ToFloat(static_cast<const uint16_t*>(input)[i]);
    dst[i] = FloatToBf16(sum);
  }
}

}  // namespace

ThreadCommGroup::ThreadCommGroup(int world_size)
    : world_size_(world_size), slots_(static_cast<size_t>(world_size)) {
  for (int r = 0; r < world_size; ++r) {
    endpoints_.push_back(std::make_unique<ThreadCommunicator>(this, r));
  }
}

void ThreadCommGroup::Abort() {
  {
    std::lock_guard lock(mu_);
    aborted_ = true;
  }
  cv_.notify_all();
}

bool ThreadCommGroup::aborted() const {
  std::lock_guard lock(mu_);
  return aborted_;
}

absl::Status ThreadCommGroup::Sync(const std::function<void()>& on_complete) {
  std::unique_lock lock(mu_);
  if (aborted_) return absl::AbortedError("the communicator group was aborted");
  const int64_t generation = generation_;
  if (++arrived_ == world_size_) {
    if (on_complete) on_complete();
    arrived_ = 0;
    ++generation_;
    lock.unlock();
    cv_.notify_all();
    return absl::OkStatus();
  }
  cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
  if (generation_ == generation) return absl::AbortedError("the communicator group was aborted");
  return absl::OkStatus();
}

int ThreadCommunicator::world_size() const { return group_->world_size(); }

absl::Status ThreadCommunicator::AllReduceSum(void* data, int64_t count, CommDataType type) {
  ThreadCommGroup& g = *group_;
  const int world = g.world_size_;
  g.slots_[rank_] = {.in = data, .count = count};
  const int64_t bytes = count * CommDataTypeSize(type);
  absl::Status status = g.Sync([&] {
    g.collective_status_ = absl::OkStatus();
    for (int r = 0; r < world; ++r) {
      if (g.slots_[r].count != count) {
        g.collective_status_ = absl::InvalidArgumentError(
            absl::StrCat("AllReduceSum: rank ", r, " passed ", g.slots_[r].count,
                         " elements, rank ", rank_, " ", count));
      }
    }
    if (static_cast<int64_t>(g.scratch_.size()) < bytes) g.scratch_.resize(bytes);
  });
  if (!status.ok()) return status;
  status = g.collective_status_;
  if (status.ok()) {
    // Reduce-scatter: this rank sums its chunk over all ranks into the scratch.
    std::vector<const void*> inputs(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) inputs[r] = g.slots_[r].in;
    const int64_t chunk = (count + world - 1) / world;
    const int64_t begin = std::min(count, rank_ * chunk), end = std::min(count, begin + chunk);
    switch (type) {
      case CommDataType::kFloat32:
        SumChunk<float>(inputs, begin, end, g.scratch_.data());
        break;
      case CommDataType::kInt32:
        SumChunk<int32_t>(inputs, begin, end, g.scratch_.data());
        break;
      case CommDataType::kInt64:
        SumChunk<int64_t>(inputs, begin, end, g.scratch_.data());
        break;
      case CommDataType::kBfloat16:
        SumBf16Chunk(inputs, begin, end, g.scratch_.data());
        break;
    }
  }
  // Nobody overwrites its input with the sum before every chunk has been read.
  if (absl::Status s = g.Sync(); !s.ok()) return s;
  if (status.ok() && bytes > 0) std::memcpy(data, g.scratch_.data(), static_cast<size_t>(bytes));
  // The scratch may be reused by the next collective only after everyone has copied it out.
  if (absl::Status s = g.Sync(); !s.ok()) return s;
  return status;
}

absl::Status ThreadCommunicator::AllGather(const void* in, int64_t count, void* out,
                                           CommDataType type) {
  ThreadCommGroup& g = *group_;
  g.slots_[rank_] = {.in = in, .count = count};
  if (absl::Status s = g.Sync(); !s.ok()) return s;
  absl::Status status;
  const int64_t elem = CommDataTypeSize(type);
  for (int r = 0; r < g.world_size_; ++r) {
    if (g.slots_[r].count != count) {
      status = absl::InvalidArgumentError(absl::StrCat("AllGather: rank ", r, " passed ",
                                                       g.slots_[r].count, " elements, rank ", rank_,
                                                       " ", count));
      continue;
    }
    if (count > 0) {
      std::memcpy(static_cast<char*>(out) + r * count * elem, g.slots_[r].in,
                  static_cast<size_t>(count * elem));
    }
  }
  if (absl::Status s = g.Sync(); !s.ok()) return s;
  return status;
}

absl::Status ThreadCommunicator::AllToAllV(const void* send, absl::Span<const int64_t> send_counts,
                                           void* recv, absl::Span<const int64_t> recv_counts,
                                           CommDataType type) {
  ThreadCommGroup& g = *group_;
  const int world = g.world_size_;
  if (static_cast<int>(send_counts.size()) != world ||
      static_cast<int>(recv_counts.size()) != world) {
    // Still meet the peers twice so that they fail instead of waiting forever.
    g.slots_[rank_] = {};
    if (absl::Status s = g.Sync(); !s.ok()) return s;
    if (absl::Status s = g.Sync(); !s.ok()) return s;
    return absl::InvalidArgumentError(absl::StrCat("AllToAllV: counts for ", send_counts.size(),
                                                   " / ", recv_counts.size(), " ranks, world is ",
                                                   world));
  }
  g.slots_[rank_] = {.in = send, .counts = send_counts.data()};
  if (absl::Status s = g.Sync(); !s.ok()) return s;
  absl::Status status;
  const int64_t elem = CommDataTypeSize(type);
  int64_t recv_offset = 0;
  for (int r = 0; r < world; ++r) {
    const int64_t* peer_counts = g.slots_[r].counts;
    if (peer_counts == nullptr || peer_counts[rank_] != recv_counts[r]) {
      status = absl::InvalidArgumentError(absl::StrCat(
          "AllToAllV: rank ", rank_, " expects ", recv_counts[r], " elements from rank ", r,
          ", which sends ", peer_counts == nullptr ? -1 : peer_counts[rank_]));
      recv_offset += recv_counts[r];
      continue;
    }
    int64_t send_offset = 0;
    for (int j = 0; j < rank_; ++j) send_offset += peer_counts[j];
    // An empty exchange may come with null buffers, and memcpy(nullptr, ..., 0) is undefined
    // (UBSan reported it in scripts/sanitize asan).
    if (recv_counts[r] > 0) {
      std::memcpy(static_cast<char*>(recv) + recv_offset * elem,
                  static_cast<const char*>(g.slots_[r].in) + send_offset * elem,
                  static_cast<size_t>(recv_counts[r] * elem));
    }
    recv_offset += recv_counts[r];
  }
  if (absl::Status s = g.Sync(); !s.ok()) return s;
  return status;
}

absl::Status ThreadCommunicator::Broadcast(void* data, int64_t count, CommDataType type, int root) {
  ThreadCommGroup& g = *group_;
  g.slots_[rank_] = {.in = data, .count = count, .root = root};
  if (absl::Status s = g.Sync(); !s.ok()) return s;
  absl::Status status;
  if (root < 0 || root >= g.world_size_) {
    status = absl::InvalidArgumentError(absl::StrCat("Broadcast: root ", root, " out of range"));
  } else if (g.slots_[root].count != count) {
    status =
        absl::InvalidArgumentError(absl::StrCat("Broadcast: root sends ", g.slots_[root].count,
                                                " elements, rank ", rank_, " expects ", count));
  } else if (rank_ != root) {
    std::memcpy(data, g.slots_[root].in, static_cast<size_t>(count * CommDataTypeSize(type)));
  }
  if (absl::Status s = g.Sync(); !s.ok()) return s;
  return status;
}

absl::Status ThreadCommunicator::Barrier() { return group_->Sync(); }

}  // namespace moeserve::engine
