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
  }
  return 0;
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
