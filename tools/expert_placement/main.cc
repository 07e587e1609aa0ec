// moeserve-expert-placement: computes an EPLB-style expert placement from observed routing.
//
//   moeserve-expert-placement --model DIR --counts counts.json|metrics.txt
//       --expert-parallel-size 8 [--redundant-experts 32] --out placement.json
//
// Reads per-(layer, expert) token counts (an EngineStats dump or a /metrics scrape), gives the
// hottest experts extra replicas, packs them so every rank has the same number of slots and
// about the same load, writes the JSON that `moeserve --expert-placement` loads, and prints
// max/mean rank load per MoE layer before (contiguous partition) and after.
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "engine/cli/command_line.h"
#include "engine/model/model_config.h"
#include "engine/parallel/expert_placement.h"
#include "engine/parallel/parallel_config.h"
#include "tools/expert_placement/expert_counts.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "moeserve-expert-placement: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace moeserve;
  CLI::App app{"Expert placement with redundant replicas of hot experts (EPLB-style)"};
  std::string model_dir, counts_path, out_path;
  int ranks = 0, redundant = -1;
  app.add_option("--model", model_dir, "checkpoint directory (its config.json)")->required();
  app.add_option("--counts", counts_path,
                 "token counts: JSON {num_layers, num_experts, expert_token_counts} or a "
                 "/metrics scrape")
      ->required();
  app.add_option("--expert-parallel-size", ranks, "ranks the experts are spread over")->required();
  app.add_option("--redundant-experts", redundant,
                 "extra slots in total, a multiple of the ranks (default: one per rank)");
  app.add_option("--out", out_path, "placement JSON to write")->required();
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  absl::StatusOr<engine::ModelConfig> config = engine::LoadModelConfig(model_dir + "/config.json");
  if (!config.ok()) return Fail(std::string(config.status().message()));
  const int64_t experts = config->n_routed_experts;
  if (ranks < 1 || experts % ranks != 0) {
    return Fail(absl::StrCat("--expert-parallel-size ", ranks, " must divide the model's ", experts,
                             " routed experts"));
  }
  if (redundant < 0) redundant = ranks;
  if (redundant % ranks != 0) {
    return Fail(absl::StrCat("--redundant-experts ", redundant, " must be a multiple of ", ranks));
  }
  std::ifstream in(counts_path);
  if (!in) return Fail(absl::StrCat("cannot read ", counts_path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<tools::ExpertCounts> counts =
      tools::ParseExpertCounts(text.str(), counts_path, config->num_hidden_layers, experts);
  if (!counts.ok()) return Fail(std::string(counts.status().message()));

  const std::vector<bool> moe = engine::MoeLayerMask(*config);
  const int slots = static_cast<int>(experts / ranks + redundant / ranks);
  absl::StatusOr<engine::ExpertPlacement> placement =
      engine::ComputeBalancedPlacement(counts->counts, moe, experts, ranks, slots);
  if (!placement.ok()) return Fail(std::string(placement.status().message()));
  std::ofstream out(out_path);
  out << engine::PlacementToJson(*placement);
  if (!out) return Fail(absl::StrCat("cannot write ", out_path));

  const engine::ExpertPlacement contiguous = engine::ContiguousPlacement(moe, experts, ranks);
  std::printf("%d ranks x %d slots (%d redundant); max/mean tokens per rank:\n", ranks, slots,
              redundant);
  std::printf("%6s %12s %10s %10s\n", "layer", "tokens", "before", "after");
  for (int64_t l = 0; l < config->num_hidden_layers; ++l) {
    if (!moe[l]) continue;
    const absl::Span<const int64_t> layer(counts->counts.data() + l * experts, experts);
    int64_t total = 0;
    for (int64_t c : layer) total += c;
    std::printf("%6ld %12ld %10.3f %10.3f\n", static_cast<long>(l), static_cast<long>(total),
                engine::MaxOverMeanLoad(contiguous.layers[l], layer),
                engine::MaxOverMeanLoad(placement->layers[l], layer));
  }
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}
