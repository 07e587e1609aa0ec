// How a model is split over ranks: the `--tensor-parallel-size` and `--expert-parallel-size`
// flags, and what one rank needs to know about its place in the group.
//
// The group has world_size = max(tp, ep) ranks; each size is 1 or the world size:
//   tp = W: MLA heads, the dense MLP and the shared experts are split over the ranks (Megatron
//           style, one all-reduce after each); with ep = 1 the routed experts are split on their
//           intermediate dimension too.
//   ep = W: routed experts are partitioned over the ranks and tokens travel by all-to-all.
//   tp = 1, ep = W: attention and the dense layers run replicated on every rank.
// Used by ParallelModel, the weight loader (which shard to read) and the server's flag checks.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_loader.h"
#include "engine/ops/cpu/parallel_for.h"  // EvenShare, IndexRange

namespace moeserve::engine {

class Communicator;
struct ExpertPlacement;

struct ParallelConfig {
  int tensor_parallel_size = 1;
  int expert_parallel_size = 1;

  int world_size() const {
    return tensor_parallel_size > expert_parallel_size ? tensor_parallel_size
                                                       : expert_parallel_size;
  }
};

// Sizes positive, each 1 or the world size, and dividing what they split (heads, MLP widths,
// experts). Messages name the flag (`--tensor-parallel-size` / `--expert-parallel-size`).
absl::Status ValidateParallelConfig(const ParallelConfig& parallel, const ModelConfig& config);

// Rank r's view of the group, handed to its DeepseekModel shard. comm is null for one rank.
struct RankContext {
  int rank = 0;
  ParallelConfig parallel;
  Communicator* comm = nullptr;
  const ExpertPlacement* placement = nullptr;  // required when expert_parallel_size > 1

  int tp_size() const { return parallel.tensor_parallel_size; }
  int ep_size() const { return parallel.expert_parallel_size; }
  int tp_rank() const { return tp_size() > 1 ? rank : 0; }
  int ep_rank() const { return ep_size() > 1 ? rank : 0; }
};

// The rows, columns and experts rank `rank` loads (both backends). Expert parallelism needs
// rank.placement, which is validated here against the config.
absl::StatusOr<WeightShard> WeightShardFor(const RankContext& rank, const ModelConfig& config);

// MoE layers of the config, as a mask over layers.
std::vector<bool> MoeLayerMask(const ModelConfig& config);

}  // namespace moeserve::engine
