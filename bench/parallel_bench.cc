// Expert-parallel costs on in-process (thread) ranks, and what expert placement buys.
//
// 1. Dispatch/combine: bytes and time per MoE step for W thread ranks exchanging T tokens of
//    `hidden` floats with top_k experts each (routing uniform at random; the experts are the
//    identity, so only the exchange is timed: plan, counts, payload all-to-all, return
//    all-to-all, weighted combine).
// 2. Load imbalance (max/mean tokens per rank) before (contiguous experts) and after the
//    EPLB-style placement, calibrated on one half of a trace and measured on the other half:
//    (a) a trace recorded from the engine's forward on the bench model (random weights: close
//        to uniform routing), (b) a synthetic Zipf(s) trace with DeepSeek-V3's 256 experts.
//   moeserve-bench-parallel [--model DIR] [--output FILE]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <random>
#include <thread>

#include "CLI/CLI.hpp"
#include "bench/bench_model.h"
#include "bench/bench_report.h"
#include "engine/cli/command_line.h"
#include "engine/parallel/expert_placement.h"
#include "engine/parallel/moe_dispatch.h"
#include "engine/parallel/parallel_model.h"
#include "engine/parallel/thread_communicator.h"

namespace {

using namespace moeserve::engine;
using Clock = std::chrono::steady_clock;

struct ExchangeRow {
  int world;
  int64_t tokens, hidden, top_k;
  double bytes_per_step;  // sent by all ranks, dispatch + return
  double median_ms;
};

ExchangeRow MeasureExchange(int world, int64_t tokens, int64_t hidden, int64_t experts,
                            int64_t top_k, int iterations) {
  std::mt19937 rng(7);
  const LayerPlacement layer = ContiguousPlacement({true}, experts, world).layers[0];
  const auto replicas = layer.ReplicasByExpert(experts);
  // Each rank's share of the step's tokens and their routing.
  std::vector<std::vector<float>> x(world), weights(world);
  std::vector<std::vector<int32_t>> ids(world);
  std::vector<int64_t> first(world);
  std::normal_distribution<float> normal;
  for (int r = 0; r < world; ++r) {
    const IndexRange share = EvenShare(tokens, world, r);
    first[r] = share.begin;
    for (int64_t i = 0; i < share.size() * hidden; ++i) x[r].push_back(normal(rng));
    for (int64_t t = 0; t < share.size(); ++t) {
      std::vector<int32_t> all(static_cast<size_t>(experts));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      for (int64_t k = 0; k < top_k; ++k) {
        ids[r].push_back(all[k]);
        weights[r].push_back(1.0f / top_k);
      }
    }
  }
  ThreadCommGroup group(world);
  std::vector<double> times;
  double bytes = 0;
  for (int it = 0; it < iterations; ++it) {
    std::vector<std::thread> threads;
    std::vector<int64_t> sent(world);
    const auto begin = Clock::now();
    for (int r = 0; r < world; ++r) {
      threads.emplace_back([&, r] {
        ThreadCommunicator& comm = group.rank(r);
        const int64_t n = static_cast<int64_t>(x[r].size()) / hidden;
        const DispatchPlan plan = PlanDispatch(ids[r].data(), n, top_k, first[r], replicas, world);
        auto received = DispatchTokens(comm, plan, x[r].data(), hidden);
        auto returned = ReturnResults(comm, plan, *received, received->rows.data(), hidden);
        std::vector<float> out(static_cast<size_t>(n * hidden));
        CombineResults(plan, ids[r].data(), weights[r].data(), n, top_k, *returned, hidden,
                       out.data());
        // Counts (int64) + rows and slots out, rows back.
        sent[r] = world * 8 + static_cast<int64_t>(plan.token.size()) * (2 * hidden * 4 + 4);
      });
    }
    for (std::thread& t : threads) t.join();
    times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
    bytes = static_cast<double>(std::accumulate(sent.begin(), sent.end(), int64_t{0}));
  }
  std::sort(times.begin(), times.end());
  return {world, tokens, hidden, top_k, bytes, times[times.size() / 2]};
}

struct ImbalanceRow {
  std::string trace;
  int64_t layer;
  int ranks;
  int slots_per_rank;
  double before, after;  // max/mean on the held-out half
};

void Balance(const std::string& trace, const std::vector<int64_t>& calibrate,
             const std::vector<int64_t>& evaluate, const std::vector<bool>& moe, int64_t experts,
             int ranks, int extra_slots, std::vector<ImbalanceRow>& rows) {
  const int slots = static_cast<int>(experts / ranks) + extra_slots;
  auto placement = ComputeBalancedPlacement(calibrate, moe, experts, ranks, slots);
  if (!placement.ok()) {
    std::fprintf(stderr, "%s\n", placement.status().ToString().c_str());
    std::exit(1);
  }
  const ExpertPlacement contiguous = ContiguousPlacement(moe, experts, ranks);
  for (size_t l = 0; l < moe.size(); ++l) {
    if (!moe[l]) continue;
    const absl::Span<const int64_t> counts(evaluate.data() + l * experts, experts);
    rows.push_back({trace, static_cast<int64_t>(l), ranks, slots,
                    MaxOverMeanLoad(contiguous.layers[l], counts),
                    MaxOverMeanLoad(placement->layers[l], counts)});
  }
}

// Routing counts of the bench model over `prompts` random prompts of `length` tokens.
std::vector<int64_t> RecordTrace(ParallelModel& model, uint32_t seed, int prompts, int length) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> token(2,
                                               static_cast<int32_t>(model.config().vocab_size - 1));
  const std::vector<int64_t> before = model.expert_token_counts();
  std::vector<KvPages> pages = model.MakeKvPages((length + 63) / 64);
  for (int p = 0; p < prompts; ++p) {
    std::vector<int32_t> ids(static_cast<size_t>(length));
    for (auto& id : ids) id = token(rng);
    std::vector<int32_t> table;
    for (int b = 0; b < (length + 63) / 64; ++b) table.push_back(b);
    ForwardBatchBuilder builder;
    builder.AddSequence(table, 0, ids);
    if (!model.Forward(std::move(builder).Build(), pages).ok()) std::exit(1);
  }
  std::vector<int64_t> after = model.expert_token_counts();
  for (size_t i = 0; i < after.size(); ++i) after[i] -= before[i];
  return after;
}

std::vector<int64_t> ZipfTrace(std::mt19937& rng, const std::vector<int32_t>& order, double s,
                               int64_t tokens) {
  const int64_t experts = static_cast<int64_t>(order.size());
  std::vector<double> cdf;
  double total = 0;
  for (int64_t i = 1; i <= experts; ++i) cdf.push_back(total += std::pow(i, -s));
  std::uniform_real_distribution<double> u(0, total);
  std::vector<int64_t> counts(static_cast<size_t>(experts));
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t rank = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
    ++counts[order[rank]];
  }
  return counts;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Expert-parallel dispatch/combine cost and placement balance."};
  std::string model_dir, output = "bench/results/parallel.json";
  int iterations = 20;
  app.add_option("--model", model_dir, "checkpoint dir for the recorded trace (default tiny-v3)");
  app.add_option("--iterations", iterations);
  app.add_option("--output", output, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "parallel";

  std::printf(
      "dispatch + combine on thread ranks (hidden 7168, 256 experts, top-8; identity "
      "experts, exchange only)\n");
  std::printf("%6s %8s %14s %12s %12s\n", "ranks", "tokens", "MiB/step", "ms/step", "GiB/s");
  for (int world : {2, 4, 8}) {
    for (int64_t tokens : {16, 128, 512}) {
      const ExchangeRow row = MeasureExchange(world, tokens, 7168, 256, 8, iterations);
      std::printf("%6d %8ld %14.2f %12.3f %12.2f\n", row.world, static_cast<long>(row.tokens),
                  row.bytes_per_step / 1048576.0, row.median_ms,
                  row.bytes_per_step / 1073741824.0 / (row.median_ms / 1e3));
      report["dispatch_combine"].push_back({{"ranks", row.world},
                                            {"tokens", row.tokens},
                                            {"hidden", row.hidden},
                                            {"top_k", row.top_k},
                                            {"bytes_per_step", row.bytes_per_step},
                                            {"median_ms", row.median_ms}});
    }
  }

  std::vector<ImbalanceRow> rows;
  // (a) recorded from the engine's forward on the bench model.
  auto bench_model = moeserve::bench::ResolveBenchModel(model_dir);
  if (!bench_model.ok()) return 1;
  auto model = ParallelModel::Load(bench_model->dir, {}, {});
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const ModelConfig& c = (*model)->config();
  const std::vector<int64_t> calibrate = RecordTrace(**model, 1, 8, 256);
  const std::vector<int64_t> evaluate = RecordTrace(**model, 2, 8, 256);
  Balance("recorded " + bench_model->name, calibrate, evaluate, MoeLayerMask(c), c.n_routed_experts,
          4, 2, rows);
  // (b) synthetic Zipf traces, V3-sized: one MoE layer per exponent.
  std::mt19937 rng(3);
  for (double s : {0.6, 1.0, 1.4}) {
    std::vector<int32_t> order(256);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    const auto cal = ZipfTrace(rng, order, s, 200000);
    const auto eval = ZipfTrace(rng, order, s, 200000);
    char name[64];
    std::snprintf(name, sizeof(name), "zipf s=%.1f, 256 experts", s);
    for (int ranks : {8, 32}) Balance(name, cal, eval, {true}, 256, ranks, 1, rows);
  }
  std::printf("\nload imbalance, max/mean tokens per rank on the held-out half of the trace\n");
  std::printf("%-36s %5s %6s %6s %8s %8s\n", "trace", "layer", "ranks", "slots", "before", "after");
  for (const ImbalanceRow& r : rows) {
    std::printf("%-36s %5ld %6d %6d %8.3f %8.3f\n", r.trace.c_str(), static_cast<long>(r.layer),
                r.ranks, r.slots_per_rank, r.before, r.after);
    report["placement"].push_back({{"trace", r.trace},
                                   {"layer", r.layer},
                                   {"ranks", r.ranks},
                                   {"slots_per_rank", r.slots_per_rank},
                                   {"max_over_mean_before", r.before},
                                   {"max_over_mean_after", r.after}});
  }
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
