#include "tools/expert_placement/expert_counts.h"

#include <cmath>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace moeserve::tools {
namespace {

constexpr char kMetric[] = "moeserve_moe_expert_tokens_total";

absl::Status Error(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("expert counts ", source, ": ", what));
}

absl::StatusOr<ExpertCounts> ParseJson(const std::string& text, const std::string& source) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Error(source, "is not a JSON object");
  for (const char* key : {"num_layers", "num_experts"}) {
    if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() < 1) {
      return Error(source, absl::StrCat("'", key, "' must be a positive integer"));
    }
  }
  ExpertCounts counts{.num_layers = j["num_layers"].get<int64_t>(),
                      .num_experts = j["num_experts"].get<int64_t>(),
                      .counts = {}};
  if (!j.contains("expert_token_counts") || !j["expert_token_counts"].is_array() ||
      static_cast<int64_t>(j["expert_token_counts"].size()) !=
          counts.num_layers * counts.num_experts) {
    return Error(source, absl::StrCat("'expert_token_counts' must hold num_layers × num_experts = ",
                                      counts.num_layers * counts.num_experts, " integers"));
  }
  for (const nlohmann::json& c : j["expert_token_counts"]) {
    if (!c.is_number_integer() || c.get<int64_t>() < 0) {
      return Error(source, "'expert_token_counts' entries must be non-negative integers");
    }
    counts.counts.push_back(c.get<int64_t>());
  }
  return counts;
}

// Label `name` of a sample's {a="x",b="y"} block.
bool FindLabel(absl::string_view labels, absl::string_view name, int64_t& value) {
  for (absl::string_view pair : absl::StrSplit(labels, ',')) {
    const size_t eq = pair.find('=');
    if (eq == absl::string_view::npos) continue;
    if (absl::StripAsciiWhitespace(pair.substr(0, eq)) != name) continue;
    absl::string_view quoted = absl::StripAsciiWhitespace(pair.substr(eq + 1));
    if (!absl::ConsumePrefix(&quoted, "\"") || !absl::ConsumeSuffix(&quoted, "\"")) return false;
    return absl::SimpleAtoi(quoted, &value);
  }
  return false;
}

absl::StatusOr<ExpertCounts> ParsePrometheus(const std::string& text, const std::string& source,
                                             int64_t num_layers, int64_t num_experts) {
  ExpertCounts counts{.num_layers = num_layers, .num_experts = num_experts, .counts = {}};
  counts.counts.assign(static_cast<size_t>(num_layers * num_experts), 0);
  std::istringstream in(text);
  std::string line;
  int64_t line_number = 0, samples = 0;
  while (std::getline(in, line)) {
    ++line_number;
    absl::string_view view(line);
    if (!absl::ConsumePrefix(&view, kMetric) || !absl::ConsumePrefix(&view, "{")) continue;
    const size_t close = view.find('}');
    if (close == absl::string_view::npos) {
      return Error(source, absl::StrCat("line ", line_number, ": unterminated labels"));
    }
    int64_t layer = -1, expert = -1;
    if (!FindLabel(view.substr(0, close), "layer", layer) ||
        !FindLabel(view.substr(0, close), "expert", expert)) {
      return Error(source, absl::StrCat("line ", line_number, ": needs layer and expert labels"));
    }
    if (layer < 0 || layer >= num_layers || expert < 0 || expert >= num_experts) {
      return Error(source, absl::StrCat("line ", line_number, ": layer ", layer, " / expert ",
                                        expert, " outside the model's ", num_layers, " layers × ",
                                        num_experts, " experts"));
    }
    absl::string_view value = absl::StripAsciiWhitespace(view.substr(close + 1));
    value = value.substr(0, value.find(' '));  // an optional timestamp follows
    double parsed = 0.0;
    if (!absl::SimpleAtod(value, &parsed) || !std::isfinite(parsed) || parsed < 0) {
      return Error(source, absl::StrCat("line ", line_number, ": bad value"));
    }
    counts.counts[layer * num_experts + expert] = static_cast<int64_t>(std::llround(parsed));
    ++samples;
  }
  if (samples == 0) {
    return Error(source, absl::StrCat("no ", kMetric,
                                      " samples (start the server with --per-expert-metrics)"));
  }
  return counts;
}

}  // namespace

std::string ExpertCountsToJson(const ExpertCounts& counts) {
  nlohmann::ordered_json j = {{"num_layers", counts.num_layers},
                              {"num_experts", counts.num_experts},
                              {"expert_token_counts", counts.counts}};
  return j.dump() + "\n";
}

absl::StatusOr<ExpertCounts> ParseExpertCounts(const std::string& text, const std::string& source,
                                               int64_t num_layers, int64_t num_experts) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') {
    absl::StatusOr<ExpertCounts> counts = ParseJson(text, source);
    if (!counts.ok()) return counts;
    if (counts->num_layers != num_layers || counts->num_experts != num_experts) {
      return Error(source,
                   absl::StrCat("holds ", counts->num_layers, " layers × ", counts->num_experts,
                                " experts; the model has ", num_layers, " × ", num_experts));
    }
    return counts;
  }
  return ParsePrometheus(text, source, num_layers, num_experts);
}

}  // namespace moeserve::tools
