// Dispatch → experts → return → combine round trips over thread ranks, against a naive
// single-process reference, on random routing including empty experts, every token to one
// expert, ranks without tokens and placements with replicas.
#include "engine/parallel/moe_dispatch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <thread>

#include "engine/parallel/thread_communicator.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using testing::TestRng;

constexpr int64_t kHidden = 24;

// The stand-in for expert e: distinct per expert so that a token sent to the wrong one shows.
float ExpertFunction(int32_t e, float x, int64_t d) {
  return x * static_cast<float>(e + 1) + 0.25f * static_cast<float>(e) - 0.01f * d;
}

struct RankInput {
  std::vector<float> x;             // [n, hidden]
  std::vector<int32_t> expert_ids;  // [n, top_k], distinct per token
  std::vector<float> weights;       // [n, top_k]
  int64_t n = 0;
};

enum class Routing { kRandom, kSomeExpertsEmpty, kAllToOneExpert };

std::vector<int32_t> ChooseExperts(TestRng& rng, Routing routing, int64_t num_experts,
                                   int64_t top_k) {
  std::vector<int32_t> pool;
  switch (routing) {
    case Routing::kRandom:
      pool.resize(static_cast<size_t>(num_experts));
      std::iota(pool.begin(), pool.end(), 0);
      break;
    case Routing::kSomeExpertsEmpty:  // only the even experts get tokens
      for (int32_t e = 0; e < num_experts; e += 2) pool.push_back(e);
      break;
    case Routing::kAllToOneExpert: {  // expert 3 always, the rest random
      std::vector<int32_t> chosen = {3};
      while (static_cast<int64_t>(chosen.size()) < top_k) {
        const int32_t e = static_cast<int32_t>(rng.Int(0, num_experts - 1));
        if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
      }
      std::swap(chosen[0], chosen[static_cast<size_t>(rng.Int(0, top_k - 1))]);
      return chosen;
    }
  }
  std::vector<int32_t> chosen;
  while (static_cast<int64_t>(chosen.size()) < top_k) {
    const int32_t e = pool[static_cast<size_t>(rng.Int(0, static_cast<int64_t>(pool.size()) - 1))];
    if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
  }
  return chosen;
}

struct Case {
  int world;
  int64_t num_experts;
  int64_t top_k;
  Routing routing;
  bool replicas;  // a balanced placement with extra slots instead of the contiguous one
};

void RunCase(const Case& c, uint32_t seed) {
  TestRng rng(seed);
  std::vector<RankInput> inputs(c.world);
  std::vector<int64_t> counts(static_cast<size_t>(c.num_experts));
  for (int r = 0; r < c.world; ++r) {
    RankInput& in = inputs[r];
    in.n = (r == 1) ? 0 : rng.Int(1, 40);  // rank 1 has no tokens
    in.x = rng.NormalFloats(static_cast<size_t>(in.n * kHidden));
    for (int64_t t = 0; t < in.n; ++t) {
      for (int32_t e : ChooseExperts(rng, c.routing, c.num_experts, c.top_k)) {
        in.expert_ids.push_back(e);
        in.weights.push_back(static_cast<float>(rng.Uniform(0.1, 1.0)));
        ++counts[e];
      }
    }
  }
  LayerPlacement layer;
  if (c.replicas) {
    layer = BalanceLayer(counts, c.world, static_cast<int>(c.num_experts / c.world + 2));
  } else {
    layer = ContiguousPlacement({true}, c.num_experts, c.world).layers[0];
  }
  const auto replicas = layer.ReplicasByExpert(c.num_experts);

  ThreadCommGroup group(c.world);
  std::vector<std::vector<float>> outputs(c.world);
  std::vector<int64_t> first_token(c.world);
  for (int r = 1; r < c.world; ++r) first_token[r] = first_token[r - 1] + inputs[r - 1].n;
  std::vector<absl::Status> statuses(c.world);
  std::vector<std::thread> threads;
  for (int r = 0; r < c.world; ++r) {
    threads.emplace_back([&, r] {
      statuses[r] = [&]() -> absl::Status {
        ThreadCommunicator& comm = group.rank(r);
        const RankInput& in = inputs[r];
        const DispatchPlan plan =
            PlanDispatch(in.expert_ids.data(), in.n, c.top_k, first_token[r], replicas, c.world);
        absl::StatusOr<DispatchedTokens> received =
            DispatchTokens(comm, plan, in.x.data(), kHidden);
        if (!received.ok()) return received.status();
        std::vector<float> results(received->rows.size());
        for (int64_t i = 0; i < received->num_rows(); ++i) {
          const int32_t e = layer.rank_experts[r][received->slots[i]];
          for (int64_t d = 0; d < kHidden; ++d) {
            results[i * kHidden + d] = ExpertFunction(e, received->rows[i * kHidden + d], d);
          }
        }
        absl::StatusOr<std::vector<float>> returned =
            ReturnResults(comm, plan, *received, results.data(), kHidden);
        if (!returned.ok()) return returned.status();
        outputs[r].resize(static_cast<size_t>(in.n * kHidden));
        CombineResults(plan, in.expert_ids.data(), in.weights.data(), in.n, c.top_k, *returned,
                       kHidden, outputs[r].data());
        return absl::OkStatus();
      }();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < c.world; ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r];

  // Naive reference: each token's experts applied locally, added in ascending expert order.
  for (int r = 0; r < c.world; ++r) {
    const RankInput& in = inputs[r];
    for (int64_t t = 0; t < in.n; ++t) {
      std::vector<int64_t> order(static_cast<size_t>(c.top_k));
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return in.expert_ids[t * c.top_k + a] < in.expert_ids[t * c.top_k + b];
      });
      for (int64_t d = 0; d < kHidden; ++d) {
        float expected = 0.0f;
        for (int64_t k : order) {
          expected += in.weights[t * c.top_k + k] *
                      ExpertFunction(in.expert_ids[t * c.top_k + k], in.x[t * kHidden + d], d);
        }
        ASSERT_EQ(outputs[r][t * kHidden + d], expected) << "rank " << r << " token " << t;
      }
    }
  }
}

TEST(MoeDispatchTest, RoundTripsOnRandomRouting) {
  uint32_t seed = 500;
  for (int world : {2, 3, 4}) {
    for (Routing routing :
         {Routing::kRandom, Routing::kSomeExpertsEmpty, Routing::kAllToOneExpert}) {
      for (bool replicas : {false, true}) {
        for (int64_t top_k : {1, 4}) {
          SCOPED_TRACE(::testing::Message()
                       << "world " << world << " routing " << static_cast<int>(routing)
                       << " replicas " << replicas << " top_k " << top_k);
          RunCase({world, 12, top_k, routing, replicas}, ++seed);
        }
      }
    }
  }
}

TEST(MoeDispatchTest, PlanSpreadsAHotExpertOverItsReplicas) {
  // Expert 0 has replicas on ranks 0 and 1; consecutive tokens alternate between them.
  LayerPlacement layer{.rank_experts = {{0, 1}, {0, 2}, {3, 4}}};
  const auto replicas = layer.ReplicasByExpert(5);
  const std::vector<int32_t> ids = {0, 0, 0, 0};
  const DispatchPlan plan = PlanDispatch(ids.data(), 4, 1, /*first_global_token=*/7, replicas, 3);
  EXPECT_EQ(plan.send_counts, (std::vector<int64_t>{2, 2, 0}));
  // Global tokens 7, 9 go to replica 1 (rank 1), 8, 10 to replica 0 (rank 0).
  EXPECT_EQ(plan.token, (std::vector<int32_t>{1, 3, 0, 2}));
  EXPECT_EQ(plan.slot, (std::vector<int32_t>{0, 0, 0, 0}));
}

}  // namespace
}  // namespace moeserve::engine
