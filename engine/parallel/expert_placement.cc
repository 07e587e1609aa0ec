#include "engine/parallel/expert_placement.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/io/bounded_file.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {
namespace {

constexpr char kFormat[] = "moeserve-expert-placement/v1";

LayerPlacement ContiguousLayer(int64_t num_experts, int num_ranks) {
  LayerPlacement layer;
  const int64_t per_rank = num_experts / num_ranks;
  layer.rank_experts.resize(static_cast<size_t>(num_ranks));
  for (int r = 0; r < num_ranks; ++r) {
    for (int64_t e = r * per_rank; e < (r + 1) * per_rank; ++e) {
      layer.rank_experts[r].push_back(static_cast<int32_t>(e));
    }
  }
  return layer;
}

absl::Status ParseError(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("expert placement ", source, ": ", what));
}

}  // namespace

std::vector<std::vector<LayerPlacement::Replica>> LayerPlacement::ReplicasByExpert(
    int64_t num_experts) const {
  std::vector<std::vector<Replica>> replicas(static_cast<size_t>(num_experts));
  for (size_t r = 0; r < rank_experts.size(); ++r) {
    for (size_t s = 0; s < rank_experts[r].size(); ++s) {
      replicas[rank_experts[r][s]].push_back({static_cast<int32_t>(r), static_cast<int32_t>(s)});
    }
  }
  return replicas;
}

LocalExpertSlots ExpertSlotsOnRank(const LayerPlacement& layer, int64_t num_experts, int rank) {
  const auto replicas = layer.ReplicasByExpert(num_experts);
  LocalExpertSlots slots;
  slots.num_experts = num_experts;
  slots.num_slots = static_cast<int64_t>(layer.rank_experts[static_cast<size_t>(rank)].size());
  for (const auto& copies : replicas) {
    slots.max_replicas = std::max<int64_t>(slots.max_replicas, static_cast<int64_t>(copies.size()));
  }
  slots.replica_count.assign(static_cast<size_t>(num_experts), 1);
  slots.local_slot.assign(static_cast<size_t>(num_experts * slots.max_replicas), -1);
  for (int64_t e = 0; e < num_experts; ++e) {
    const auto& copies = replicas[static_cast<size_t>(e)];
    slots.replica_count[static_cast<size_t>(e)] =
        std::max<int32_t>(1, static_cast<int32_t>(copies.size()));
    for (size_t r = 0; r < copies.size(); ++r) {
      if (copies[r].rank == rank) {
        slots.local_slot[static_cast<size_t>(e * slots.max_replicas) + r] = copies[r].slot;
      }
    }
  }
  return slots;
}

bool ExpertPlacement::IsContiguousDefault() const {
  const LayerPlacement contiguous = ContiguousLayer(num_experts, num_ranks);
  for (const LayerPlacement& layer : layers) {
    if (!layer.rank_experts.empty() && layer.rank_experts != contiguous.rank_experts) return false;
  }
  return true;
}

ExpertPlacement ContiguousPlacement(const std::vector<bool>& is_moe_layer, int64_t num_experts,
                                    int num_ranks) {
  ExpertPlacement placement{.num_experts = num_experts, .num_ranks = num_ranks, .layers = {}};
  for (bool moe : is_moe_layer) {
    placement.layers.push_back(moe ? ContiguousLayer(num_experts, num_ranks) : LayerPlacement{});
  }
  return placement;
}

LayerPlacement MtpLayerPlacement(int64_t num_experts, int num_ranks) {
  return ContiguousLayer(num_experts, num_ranks);
}

absl::Status ValidatePlacement(const ExpertPlacement& p, const std::vector<bool>& is_moe_layer,
                               int64_t num_experts, int num_ranks) {
  if (p.num_experts != num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("expert placement is for ", p.num_experts,
                                                   " experts; the model has ", num_experts));
  }
  if (p.num_ranks != num_ranks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert placement is for ", p.num_ranks, " ranks; --expert-parallel-size is ", num_ranks));
  }
  if (p.layers.size() != is_moe_layer.size()) {
    return absl::InvalidArgumentError(absl::StrCat("expert placement has ", p.layers.size(),
                                                   " layers; the model has ", is_moe_layer.size()));
  }
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const auto& ranks = p.layers[l].rank_experts;
    if (!is_moe_layer[l]) {
      if (!ranks.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("expert placement: layer ", l, " is not a MoE layer"));
      }
      continue;
    }
    if (static_cast<int>(ranks.size()) != num_ranks) {
      return absl::InvalidArgumentError(absl::StrCat("expert placement: layer ", l, " lists ",
                                                     ranks.size(), " ranks, expected ", num_ranks));
    }
    std::vector<int> copies(static_cast<size_t>(num_experts));
    for (int r = 0; r < num_ranks; ++r) {
      if (ranks[r].size() != ranks[0].size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("expert placement: layer ", l, " rank ", r, " has ", ranks[r].size(),
                         " slots, rank 0 has ", ranks[0].size(), " (slots must be equal)"));
      }
      std::vector<int32_t> sorted = ranks[r];
      std::sort(sorted.begin(), sorted.end());
      for (size_t i = 0; i < sorted.size(); ++i) {
        if (sorted[i] < 0 || sorted[i] >= num_experts) {
          return absl::InvalidArgumentError(absl::StrCat("expert placement: layer ", l, " rank ", r,
                                                         " holds expert ", sorted[i],
                                                         ", outside [0, ", num_experts, ")"));
        }
        if (i > 0 && sorted[i] == sorted[i - 1]) {
          return absl::InvalidArgumentError(absl::StrCat("expert placement: layer ", l, " rank ", r,
                                                         " holds expert ", sorted[i], " twice"));
        }
        ++copies[sorted[i]];
      }
    }
    for (int64_t e = 0; e < num_experts; ++e) {
      if (copies[e] == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("expert placement: layer ", l, " has no replica of expert ", e));
      }
    }
  }
  return absl::OkStatus();
}

std::string PlacementToJson(const ExpertPlacement& p) {
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (size_t l = 0; l < p.layers.size(); ++l) {
    if (p.layers[l].rank_experts.empty()) continue;
    layers.push_back({{"layer", l}, {"rank_experts", p.layers[l].rank_experts}});
  }
  nlohmann::ordered_json j = {{"format", kFormat},
                              {"num_experts", p.num_experts},
                              {"num_ranks", p.num_ranks},
                              {"layers", layers}};
  return j.dump(1) + "\n";
}

absl::StatusOr<ExpertPlacement> ParsePlacementJson(const std::string& text,
                                                   const std::string& source,
                                                   const std::vector<bool>& is_moe_layer) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return ParseError(source, "is not valid JSON");
  if (!j.is_object()) return ParseError(source, "must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    if (key != "format" && key != "num_experts" && key != "num_ranks" && key != "layers") {
      return ParseError(source, absl::StrCat("unknown key '", key, "'"));
    }
  }
  if (!j.contains("format") || j["format"] != kFormat) {
    return ParseError(source, absl::StrCat("'format' must be \"", kFormat, "\""));
  }
  for (const char* key : {"num_experts", "num_ranks"}) {
    if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() < 1 ||
        j[key].get<int64_t>() > (1 << 20)) {
      return ParseError(source, absl::StrCat("'", key, "' must be a positive integer"));
    }
  }
  const int64_t num_experts = j["num_experts"].get<int64_t>();
  const int num_ranks = j["num_ranks"].get<int>();
  ExpertPlacement placement{.num_experts = num_experts, .num_ranks = num_ranks, .layers = {}};
  placement.layers.resize(is_moe_layer.size());
  std::vector<bool> listed(is_moe_layer.size());
  if (!j.contains("layers") || !j["layers"].is_array()) {
    return ParseError(source, "'layers' must be an array");
  }
  for (size_t i = 0; i < j["layers"].size(); ++i) {
    const nlohmann::json& entry = j["layers"][i];
    const std::string where = absl::StrCat("layers[", i, "]");
    if (!entry.is_object() || entry.size() != 2 || !entry.contains("layer") ||
        !entry.contains("rank_experts")) {
      return ParseError(source,
                        absl::StrCat(where, " must be {\"layer\": N, \"rank_experts\": [[...]]}"));
    }
    if (!entry["layer"].is_number_integer()) {
      return ParseError(source, absl::StrCat(where, ".layer must be an integer"));
    }
    const int64_t l = entry["layer"].get<int64_t>();
    if (l < 0 || l >= static_cast<int64_t>(is_moe_layer.size()) || !is_moe_layer[l]) {
      return ParseError(source, absl::StrCat(where, ".layer ", l, " is not a MoE layer"));
    }
    if (listed[l]) return ParseError(source, absl::StrCat(where, ": layer ", l, " listed twice"));
    listed[l] = true;
    const nlohmann::json& ranks = entry["rank_experts"];
    if (!ranks.is_array()) {
      return ParseError(source, absl::StrCat(where, ".rank_experts must be an array of arrays"));
    }
    for (size_t r = 0; r < ranks.size(); ++r) {
      if (!ranks[r].is_array()) {
        return ParseError(source, absl::StrCat(where, ".rank_experts[", r, "] must be an array"));
      }
      std::vector<int32_t> experts;
      for (const nlohmann::json& e : ranks[r]) {
        if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() >= num_experts) {
          return ParseError(
              source,
              absl::StrCat(where, ".rank_experts[", r,
                           "] holds an entry that is not an expert id in [0, ", num_experts, ")"));
        }
        experts.push_back(e.get<int32_t>());
      }
      placement.layers[l].rank_experts.push_back(std::move(experts));
    }
  }
  for (size_t l = 0; l < is_moe_layer.size(); ++l) {
    if (!is_moe_layer[l] || listed[l]) continue;
    if (num_experts % num_ranks != 0) {
      return ParseError(source,
                        absl::StrCat("layer ", l, " is not listed and ", num_experts,
                                     " experts do not split evenly over ", num_ranks, " ranks"));
    }
    placement.layers[l] = ContiguousLayer(num_experts, num_ranks);
  }
  if (absl::Status s = ValidatePlacement(placement, is_moe_layer, num_experts, num_ranks);
      !s.ok()) {
    return ParseError(source, std::string(s.message()));
  }
  return placement;
}

absl::StatusOr<ExpertPlacement> LoadPlacementFile(const std::string& path,
                                                  const std::vector<bool>& is_moe_layer) {
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxConfigFileBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("expert placement file: ", text.status().message()));
  }
  return ParsePlacementJson(*text, path, is_moe_layer);
}

LayerPlacement BalanceLayer(absl::Span<const int64_t> counts, int num_ranks, int slots_per_rank) {
  const int64_t num_experts = static_cast<int64_t>(counts.size());
  const int64_t total_slots = static_cast<int64_t>(num_ranks) * slots_per_rank;
  // 1. Replicas: each expert once, then the extra slots to the highest load per replica (ties
  //    to the lower expert id, so the result is deterministic).
  std::vector<int> replicas(static_cast<size_t>(num_experts), 1);
  for (int64_t extra = num_experts; extra < total_slots; ++extra) {
    // At most one replica per rank. counts[e] / replicas[e] > counts[best] / replicas[best],
    // compared without division.
    int64_t best = -1;
    for (int64_t e = 0; e < num_experts; ++e) {
      if (replicas[e] >= num_ranks) continue;
      if (best < 0 || counts[e] * replicas[best] > counts[best] * replicas[e]) best = e;
    }
    ++replicas[best];
  }
  // 2. Pack: replicas heaviest first onto the least-loaded rank with a free slot that does not
  //    already hold the expert.
  struct Unit {
    double load;
    int32_t expert;
  };
  std::vector<Unit> units;
  for (int64_t e = 0; e < num_experts; ++e) {
    for (int i = 0; i < replicas[e]; ++i) {
      units.push_back({static_cast<double>(counts[e]) / replicas[e], static_cast<int32_t>(e)});
    }
  }
  std::stable_sort(units.begin(), units.end(),
                   [](const Unit& a, const Unit& b) { return a.load > b.load; });
  LayerPlacement layer;
  layer.rank_experts.resize(static_cast<size_t>(num_ranks));
  std::vector<double> load(static_cast<size_t>(num_ranks));
  for (const Unit& u : units) {
    int best = -1;
    for (int r = 0; r < num_ranks; ++r) {
      const auto& held = layer.rank_experts[r];
      if (static_cast<int>(held.size()) >= slots_per_rank) continue;
      if (std::find(held.begin(), held.end(), u.expert) != held.end()) continue;
      if (best < 0 || load[r] < load[best]) best = r;
    }
    if (best < 0) {
      // Every rank with a free slot holds this expert already (possible only for the last
      // units): hand that slot an expert x from a rank q without this expert, which takes
      // this replica in x's place.
      int free_rank = 0;
      while (static_cast<int>(layer.rank_experts[free_rank].size()) >= slots_per_rank) {
        ++free_rank;
      }
      auto& room = layer.rank_experts[free_rank];
      for (int q = 0; q < num_ranks && best < 0; ++q) {
        auto& held = layer.rank_experts[q];
        if (std::find(held.begin(), held.end(), u.expert) != held.end()) continue;
        for (int32_t& x : held) {
          if (std::find(room.begin(), room.end(), x) != room.end()) continue;
          room.push_back(x);
          x = u.expert;
          best = q;
          break;
        }
      }
      if (best < 0) {
        room.push_back(u.expert);  // no way out: ValidatePlacement reports the duplicate
      } else {
        load[best] += u.load;
      }
      continue;
    }
    layer.rank_experts[best].push_back(u.expert);
    load[best] += u.load;
  }
  for (auto& held : layer.rank_experts) std::sort(held.begin(), held.end());
  return layer;
}

absl::StatusOr<ExpertPlacement> ComputeBalancedPlacement(absl::Span<const int64_t> counts,
                                                         const std::vector<bool>& is_moe_layer,
                                                         int64_t num_experts, int num_ranks,
                                                         int slots_per_rank) {
  const int64_t num_layers = static_cast<int64_t>(is_moe_layer.size());
  if (num_ranks < 1 || num_experts < 1) {
    return absl::InvalidArgumentError("num_ranks and num_experts must be positive");
  }
  if (static_cast<int64_t>(counts.size()) != num_layers * num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("counts has ", counts.size(),
                                                   " entries, expected ", num_layers, " layers × ",
                                                   num_experts, " experts"));
  }
  if (static_cast<int64_t>(slots_per_rank) * num_ranks < num_experts) {
    return absl::InvalidArgumentError(absl::StrCat(slots_per_rank, " slots per rank × ", num_ranks,
                                                   " ranks cannot hold ", num_experts, " experts"));
  }
  if (slots_per_rank > num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("slots_per_rank ", slots_per_rank,
                                                   " exceeds the number of experts ", num_experts));
  }
  for (int64_t c : counts) {
    if (c < 0) return absl::InvalidArgumentError("token counts must not be negative");
  }
  ExpertPlacement placement{.num_experts = num_experts, .num_ranks = num_ranks, .layers = {}};
  for (int64_t l = 0; l < num_layers; ++l) {
    if (!is_moe_layer[l]) {
      placement.layers.emplace_back();
      continue;
    }
    placement.layers.push_back(
        BalanceLayer(counts.subspan(l * num_experts, num_experts), num_ranks, slots_per_rank));
  }
  if (absl::Status s = ValidatePlacement(placement, is_moe_layer, num_experts, num_ranks);
      !s.ok()) {
    return absl::InternalError(absl::StrCat("balanced placement is invalid: ", s.message()));
  }
  return placement;
}

std::vector<double> RankLoads(const LayerPlacement& layer, absl::Span<const int64_t> counts) {
  const auto replicas = layer.ReplicasByExpert(static_cast<int64_t>(counts.size()));
  std::vector<double> loads(layer.rank_experts.size());
  for (size_t e = 0; e < counts.size(); ++e) {
    for (const auto& replica : replicas[e]) {
      loads[replica.rank] += static_cast<double>(counts[e]) / replicas[e].size();
    }
  }
  return loads;
}

double MaxOverMeanLoad(const LayerPlacement& layer, absl::Span<const int64_t> counts) {
  const std::vector<double> loads = RankLoads(layer, counts);
  const double total = std::accumulate(loads.begin(), loads.end(), 0.0);
  if (total == 0.0) return 1.0;
  return *std::max_element(loads.begin(), loads.end()) / (total / loads.size());
}

}  // namespace moeserve::engine
