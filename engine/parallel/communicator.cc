#include "engine/parallel/communicator.h"

#include "absl/strings/str_cat.h"

namespace moeserve::engine {

int64_t CommDataTypeSize(CommDataType type) {
  switch (type) {
    case CommDataType::kFloat32:
    case CommDataType::kInt32:
      return 4;
    case CommDataType::kInt64:
      return 8;
    case CommDataType::kBfloat16:
      return 2;
  }
  return 0;
}

absl::Status Communicator::BroadcastBytes(std::string& bytes, int root) {
  int64_t length = static_cast<int64_t>(bytes.size());
  if (absl::Status s = Broadcast(&length, 1, CommDataType::kInt64, root); !s.ok()) return s;
  if (length < 0 || length > kMaxBroadcastBytes) {
    return absl::DataLossError(
        absl::StrCat("BroadcastBytes: length ", length, " outside [0, ", kMaxBroadcastBytes, "]"));
  }
  if (rank() != root) bytes.resize(static_cast<size_t>(length));
  if (length == 0) return absl::OkStatus();
  // Broadcast counts elements: send whole int32 words, the last one padded.
  const int64_t words = (length + 3) / 4;
  std::string padded = bytes;
  padded.resize(static_cast<size_t>(words * 4), '\0');
  if (absl::Status s = Broadcast(padded.data(), words, CommDataType::kInt32, root); !s.ok()) {
    return s;
  }
  bytes.assign(padded.data(), static_cast<size_t>(length));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> Communicator::AllToAllCounts(
    absl::Span<const int64_t> send_counts) {
  if (static_cast<int>(send_counts.size()) != world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("AllToAllCounts: ", send_counts.size(),
                                                   " send counts for ", world_size(), " ranks"));
  }
  const std::vector<int64_t> ones(static_cast<size_t>(world_size()), 1);
  std::vector<int64_t> recv_counts(static_cast<size_t>(world_size()));
  absl::Status status =
      AllToAllV(send_counts.data(), ones, recv_counts.data(), ones, CommDataType::kInt64);
  if (!status.ok()) return status;
  return recv_counts;
}

}  // namespace moeserve::engine
