// Per-(layer, expert) token counts as the placement tool reads them: a JSON dump of
// EngineStats::expert_token_counts, or a Prometheus scrape of the server's /metrics with
// `--per-expert-metrics` (moeserve_moe_expert_tokens_total{layer="L",expert="E"}).
//
// Used by moeserve-expert-placement and bench/expert_placement_bench; tested in
// tests/tools/expert_placement_tool_test.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve::tools {

struct ExpertCounts {
  int64_t num_layers = 0;
  int64_t num_experts = 0;
  std::vector<int64_t> counts;  // [num_layers, num_experts]
};

// {"num_layers": L, "num_experts": E, "expert_token_counts": [L·E integers, layer-major]}
std::string ExpertCountsToJson(const ExpertCounts& counts);

// Either format, detected from the first non-blank character ('{' = JSON). For a Prometheus
// scrape num_layers and num_experts must be given (from the model's config); samples of other
// metrics are ignored, and a layer or expert out of range is an error naming the line.
absl::StatusOr<ExpertCounts> ParseExpertCounts(const std::string& text, const std::string& source,
                                               int64_t num_layers, int64_t num_experts);

}  // namespace moeserve::tools
