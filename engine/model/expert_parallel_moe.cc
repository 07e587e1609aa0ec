#include "engine/model/expert_parallel_moe.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/dense_mlp.h"
#include "engine/model/moe_layer.h"
#include "engine/ops/linear/gemm.h"
#include "engine/parallel/communicator.h"
#include "engine/parallel/moe_dispatch.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

// Runs every received row through the expert in its slot; results in received order.
absl::StatusOr<std::vector<float>> RunLocalExperts(const MoeWeights& moe,
                                                   const DispatchedTokens& received, int64_t hidden,
                                                   bool quantize) {
  const int64_t n = received.num_rows();
  const int64_t num_slots = static_cast<int64_t>(moe.experts.size());
  std::vector<std::vector<int64_t>> rows_of_slot(static_cast<size_t>(num_slots));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t slot = received.slots[i];
    if (slot < 0 || slot >= num_slots) {
      return absl::InternalError(
          absl::StrCat("expert parallel: received a token for slot ", slot, " of ", num_slots));
    }
    rows_of_slot[slot].push_back(i);
  }
  std::vector<float> results(static_cast<size_t>(n * hidden));
  std::vector<float> gathered, expert_out;
  for (int64_t s = 0; s < num_slots; ++s) {
    const auto& rows = rows_of_slot[s];
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    gathered.resize(static_cast<size_t>(m * hidden));
    for (int64_t i = 0; i < m; ++i) {
      std::copy(received.rows.begin() + rows[i] * hidden,
                received.rows.begin() + (rows[i] + 1) * hidden, gathered.begin() + i * hidden);
    }
    expert_out.resize(static_cast<size_t>(m * hidden));
    MlpForward(moe.experts[s], gathered.data(), m, quantize, expert_out.data());
    for (int64_t i = 0; i < m; ++i) {
      std::copy(expert_out.begin() + i * hidden, expert_out.begin() + (i + 1) * hidden,
                results.begin() + rows[i] * hidden);
    }
  }
  return results;
}

}  // namespace

absl::Status ExpertParallelMoeForward(const ModelConfig& c, const MoeWeights& moe,
                                      const LayerPlacement& layer, const RankContext& rank,
                                      const float* x, int64_t rows, bool quantize, float* out,
                                      int64_t* expert_token_counts) {
  Communicator& comm = *rank.comm;
  const int world = comm.world_size();
  const int64_t hidden = c.hidden_size, num_experts = c.n_routed_experts;
  const int64_t top_k = c.num_experts_per_tok;
  const IndexRange share = EvenShare(rows, world, comm.rank());
  const float* x_share = x + share.begin * hidden;

  // Route this rank's share (router logits in fp32, as in MoeForward).
  std::vector<float> logits(static_cast<size_t>(share.size() * num_experts));
  GemmCpu(x_share, hidden, moe.router.data(), logits.data(), num_experts, share.size(), num_experts,
          hidden);
  std::vector<int32_t> expert_ids(static_cast<size_t>(share.size() * top_k));
  std::vector<float> weights(static_cast<size_t>(share.size() * top_k));
  RouteCpu(MakeRoutingParams(c, moe), logits.data(), share.size(), expert_ids.data(),
           weights.data());
  if (expert_token_counts != nullptr) {
    for (int32_t e : expert_ids) ++expert_token_counts[e];
  }

  const DispatchPlan plan = PlanDispatch(expert_ids.data(), share.size(), top_k, share.begin,
                                         layer.ReplicasByExpert(num_experts), world);
  MOESERVE_ASSIGN_OR_RETURN(DispatchedTokens received, DispatchTokens(comm, plan, x_share, hidden));
  MOESERVE_ASSIGN_OR_RETURN(std::vector<float> results,
                            RunLocalExperts(moe, received, hidden, quantize));
  MOESERVE_ASSIGN_OR_RETURN(std::vector<float> returned,
                            ReturnResults(comm, plan, received, results.data(), hidden));

  if (rank.tp_size() > 1) {
    // Shared experts are split over the ranks: this rank's routed rows plus its part of the
    // shared experts on all rows, summed over ranks by one all-reduce.
    std::fill(out, out + rows * hidden, 0.0f);
    CombineResults(plan, expert_ids.data(), weights.data(), share.size(), top_k, returned, hidden,
                   out + share.begin * hidden);
    if (moe.shared.has_value()) {
      MlpForward(*moe.shared, x, rows, quantize, out, /*accumulate=*/true);
    }
    return comm.AllReduceSum(absl::MakeSpan(out, static_cast<size_t>(rows * hidden)));
  }

  // Replicated shared experts: finish the share exactly as MoeForward would, then all-gather
  // the shares (padded to the largest).
  const int64_t chunk = (rows + world - 1) / world;
  std::vector<float> mine(static_cast<size_t>(chunk * hidden));
  CombineResults(plan, expert_ids.data(), weights.data(), share.size(), top_k, returned, hidden,
                 mine.data());
  if (moe.shared.has_value() && share.size() > 0) {
    MlpForward(*moe.shared, x_share, share.size(), quantize, mine.data(), /*accumulate=*/true);
  }
  std::vector<float> all(static_cast<size_t>(world * chunk * hidden));
  MOESERVE_RETURN_IF_ERROR(comm.AllGather(absl::Span<const float>(mine), absl::MakeSpan(all)));
  for (int r = 0; r < world; ++r) {
    const IndexRange theirs = EvenShare(rows, world, r);
    std::copy(all.begin() + r * chunk * hidden, all.begin() + (r * chunk + theirs.size()) * hidden,
              out + theirs.begin * hidden);
  }
  return absl::OkStatus();
}

}  // namespace moeserve::engine
