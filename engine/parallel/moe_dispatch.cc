#include "engine/parallel/moe_dispatch.h"

#include <algorithm>
#include <numeric>

#include "engine/status_macros.h"

namespace moeserve::engine {

DispatchPlan PlanDispatch(const int32_t* expert_ids, int64_t num_tokens, int64_t top_k,
                          int64_t first_global_token,
                          const std::vector<std::vector<LayerPlacement::Replica>>& replicas,
                          int world_size) {
  // Bucket the (token, k) pairs by destination rank, keeping token order inside a bucket.
  std::vector<DispatchPlan> buckets(static_cast<size_t>(world_size));
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t k = 0; k < top_k; ++k) {
      const auto& choices = replicas[expert_ids[t * top_k + k]];
      const auto& replica = choices[static_cast<size_t>((first_global_token + t) %
                                                        static_cast<int64_t>(choices.size()))];
      DispatchPlan& b = buckets[replica.rank];
      b.token.push_back(static_cast<int32_t>(t));
      b.pick.push_back(static_cast<int32_t>(k));
      b.slot.push_back(replica.slot);
    }
  }
  DispatchPlan plan;
  for (const DispatchPlan& b : buckets) {
    plan.send_counts.push_back(static_cast<int64_t>(b.token.size()));
    plan.token.insert(plan.token.end(), b.token.begin(), b.token.end());
    plan.pick.insert(plan.pick.end(), b.pick.begin(), b.pick.end());
    plan.slot.insert(plan.slot.end(), b.slot.begin(), b.slot.end());
  }
  return plan;
}

namespace {

std::vector<int64_t> Scaled(const std::vector<int64_t>& counts, int64_t factor) {
  std::vector<int64_t> scaled(counts);
  for (int64_t& c : scaled) c *= factor;
  return scaled;
}

}  // namespace

absl::StatusOr<DispatchedTokens> DispatchTokens(Communicator& comm, const DispatchPlan& plan,
                                                const float* x, int64_t hidden) {
  DispatchedTokens received;
  MOESERVE_ASSIGN_OR_RETURN(received.recv_counts, comm.AllToAllCounts(plan.send_counts));
  const int64_t num_recv =
      std::accumulate(received.recv_counts.begin(), received.recv_counts.end(), int64_t{0});
  const int64_t num_send = static_cast<int64_t>(plan.token.size());
  std::vector<float> send_rows(static_cast<size_t>(num_send * hidden));
  for (int64_t i = 0; i < num_send; ++i) {
    std::copy(x + plan.token[i] * hidden, x + (plan.token[i] + 1) * hidden,
              send_rows.begin() + i * hidden);
  }
  received.rows.resize(static_cast<size_t>(num_recv * hidden));
  received.slots.resize(static_cast<size_t>(num_recv));
  MOESERVE_RETURN_IF_ERROR(
      comm.AllToAllV(send_rows.data(), Scaled(plan.send_counts, hidden), received.rows.data(),
                     Scaled(received.recv_counts, hidden), CommDataType::kFloat32));
  MOESERVE_RETURN_IF_ERROR(comm.AllToAllV(plan.slot.data(), plan.send_counts, received.slots.data(),
                                          received.recv_counts, CommDataType::kInt32));
  return received;
}

absl::StatusOr<std::vector<float>> ReturnResults(Communicator& comm, const DispatchPlan& plan,
                                                 const DispatchedTokens& received,
                                                 const float* results, int64_t hidden) {
  std::vector<float> returned(plan.token.size() * static_cast<size_t>(hidden));
  MOESERVE_RETURN_IF_ERROR(comm.AllToAllV(results, Scaled(received.recv_counts, hidden),
                                          returned.data(), Scaled(plan.send_counts, hidden),
                                          CommDataType::kFloat32));
  return returned;
}

void CombineResults(const DispatchPlan& plan, const int32_t* expert_ids, const float* weights,
                    int64_t num_tokens, int64_t top_k, const std::vector<float>& returned,
                    int64_t hidden, float* out) {
  // row_of[t * top_k + k]: where the output of token t's k-th choice landed.
  std::vector<int64_t> row_of(static_cast<size_t>(num_tokens * top_k));
  for (size_t i = 0; i < plan.token.size(); ++i) {
    row_of[plan.token[i] * top_k + plan.pick[i]] = static_cast<int64_t>(i);
  }
  std::fill(out, out + num_tokens * hidden, 0.0f);
  std::vector<int64_t> order(static_cast<size_t>(top_k));
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int32_t* ids = expert_ids + t * top_k;
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
    float* dst = out + t * hidden;
    for (int64_t k : order) {
      const float* src = returned.data() + row_of[t * top_k + k] * hidden;
      const float w = weights[t * top_k + k];
      for (int64_t d = 0; d < hidden; ++d) dst[d] += w * src[d];
    }
  }
}

}  // namespace moeserve::engine
