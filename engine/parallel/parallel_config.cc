#include "engine/parallel/parallel_config.h"

#include "absl/strings/str_cat.h"
#include "engine/parallel/expert_placement.h"

namespace moeserve::engine {
namespace {

absl::Status Indivisible(const char* flag, int size, const char* what, int64_t value) {
  return absl::InvalidArgumentError(
      absl::StrCat(flag, " ", size, " does not divide the model's ", what, " (", value, ")"));
}

}  // namespace

absl::Status ValidateParallelConfig(const ParallelConfig& p, const ModelConfig& c) {
  const int tp = p.tensor_parallel_size, ep = p.expert_parallel_size;
  if (tp < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tensor-parallel-size must be at least 1, got ", tp));
  }
  if (ep < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--expert-parallel-size must be at least 1, got ", ep));
  }
  if (tp > 1 && ep > 1 && tp != ep) {
    return absl::InvalidArgumentError(
        absl::StrCat("--expert-parallel-size ", ep, " must be 1 or equal --tensor-parallel-size ",
                     tp, " (experts are spread over the same ranks as the heads)"));
  }
  constexpr char kTp[] = "--tensor-parallel-size";
  constexpr char kEp[] = "--expert-parallel-size";
  if (c.num_attention_heads % tp != 0) {
    return Indivisible(kTp, tp, "num_attention_heads", c.num_attention_heads);
  }
  if (c.intermediate_size > 0 && c.intermediate_size % tp != 0) {
    return Indivisible(kTp, tp, "intermediate_size", c.intermediate_size);
  }
  const bool has_moe = c.n_routed_experts > 0 && c.num_hidden_layers > c.first_k_dense_replace;
  if (!has_moe) {
    if (ep > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(kEp, " ", ep, " needs a MoE model; this one has no routed experts"));
    }
    return absl::OkStatus();
  }
  if (c.n_shared_experts > 0 && c.shared_expert_intermediate_size() % tp != 0) {
    return Indivisible(kTp, tp, "shared experts' width (n_shared_experts × moe_intermediate_size)",
                       c.shared_expert_intermediate_size());
  }
  if (ep == 1 && c.moe_intermediate_size % tp != 0) {
    return Indivisible(kTp, tp, "moe_intermediate_size", c.moe_intermediate_size);
  }
  if (c.n_routed_experts % ep != 0) {
    return Indivisible(kEp, ep, "n_routed_experts", c.n_routed_experts);
  }
  return absl::OkStatus();
}

std::vector<bool> MoeLayerMask(const ModelConfig& config) {
  std::vector<bool> mask;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) mask.push_back(config.IsMoeLayer(l));
  return mask;
}

absl::StatusOr<WeightShard> WeightShardFor(const RankContext& rank, const ModelConfig& config) {
  WeightShard shard;
  shard.tp_rank = rank.tp_rank();
  shard.tp_size = rank.tp_size();
  shard.split_routed_experts = rank.tp_size() > 1 && rank.ep_size() == 1;
  if (rank.ep_size() > 1) {
    if (rank.placement == nullptr) {
      return absl::InvalidArgumentError("expert parallelism needs an expert placement");
    }
    if (absl::Status s = ValidatePlacement(*rank.placement, MoeLayerMask(config),
                                           config.n_routed_experts, rank.ep_size());
        !s.ok()) {
      return s;
    }
    for (const LayerPlacement& layer : rank.placement->layers) {
      shard.layer_experts.push_back(
          layer.rank_experts.empty() ? std::vector<int32_t>{} : layer.rank_experts[rank.ep_rank()]);
    }
    if (config.n_routed_experts > 0) {
      shard.mtp_layer_experts =
          MtpLayerPlacement(config.n_routed_experts, rank.ep_size()).rank_experts[rank.ep_rank()];
    }
  }
  return shard;
}

}  // namespace moeserve::engine
