// The Grafana dashboard of docker/compose.yaml against what the server really exports: every
// metric name a query uses, and every label it groups by or shows in a legend, must appear in
// the exposition text of a PrometheusMetrics (the server's exporter) with MoE series and one
// event of each kind recorded. A renamed metric, or a typo in the dashboard, fails here
// instead of showing an empty panel in production.
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/prometheus_metrics.h"

namespace moeserve::server {
namespace {

const std::filesystem::path kDockerDir = std::filesystem::path(MOESERVE_SOURCE_DIR) / "docker";

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Series names (histograms as _bucket/_sum/_count) and label names of an exposition text.
struct Exported {
  std::set<std::string> names;
  std::set<std::string> labels;
};

Exported ParseExposition(const std::string& text) {
  Exported exported;
  std::istringstream in(text);
  std::string line;
  const std::regex label_name(R"(([A-Za-z_][A-Za-z0-9_]*)=")");
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t end = line.find_first_of("{ ");
    exported.names.insert(line.substr(0, end));
    if (line[end] != '{') continue;
    const std::string labels = line.substr(end, line.rfind('}') - end);
    for (std::sregex_iterator it(labels.begin(), labels.end(), label_name), last; it != last;
         ++it) {
      exported.labels.insert((*it)[1]);
    }
  }
  return exported;
}

// What the server exports: every family, with the optional MoE and per-expert series on and one
// finished request and gRPC call recorded, so labelled families have a series.
Exported ServerExports() {
  PrometheusMetrics metrics({.model_name = "kjv-v3-tiny",
                             .num_layers = 3,
                             .num_routed_experts = 4,
                             .moe_layers = {false, true, true},
                             .num_kv_blocks = 16,
                             .per_expert_counters = true});
  const engine::Clock::time_point start = engine::Clock::now();
  metrics.OnFirstToken(0.05);
  metrics.OnInterTokenLatency(0.01);
  metrics.OnRequestFinished(engine::FinishReason::kLength,
                            {.prompt_tokens = 5, .completion_tokens = 3},
                            {.queued = start,
                             .scheduled = start + std::chrono::milliseconds(1),
                             .first_token = start + std::chrono::milliseconds(50),
                             .finished = start + std::chrono::milliseconds(70)},
                            /*max_tokens=*/3);
  metrics.OnGrpcCall("Generate", "OK");
  return ParseExposition(metrics.Serialize());
}

// Every PromQL string of the dashboard: panel targets and template-variable queries.
void CollectQueries(const nlohmann::json& node, std::vector<std::string>& queries) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      if ((key == "expr" || key == "definition") && value.is_string()) {
        queries.push_back(value.get<std::string>());
      } else if (key == "query" && value.is_string()) {
        queries.push_back(value.get<std::string>());
      } else {
        CollectQueries(value, queries);
      }
    }
  } else if (node.is_array()) {
    for (const nlohmann::json& child : node) CollectQueries(child, queries);
  }
}

// Metric names a PromQL expression refers to (this project's metrics all start moeserve_).
std::set<std::string> MetricNames(const std::string& query) {
  static const std::regex name(R"(\bmoeserve_[A-Za-z0-9_:]*)");
  std::set<std::string> names;
  for (std::sregex_iterator it(query.begin(), query.end(), name), last; it != last; ++it) {
    names.insert(it->str());
  }
  return names;
}

// Labels of `by (a, b)` / `without (a)` clauses, label_values(metric, label) and {{label}} in
// legends.
std::set<std::string> LabelNames(const std::string& text) {
  static const std::regex grouping(R"(\b(?:by|without)\s*\(([^)]*)\))");
  static const std::regex label_values(R"(label_values\([^,]*,\s*([A-Za-z_][A-Za-z0-9_]*)\))");
  static const std::regex legend(R"(\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\})");
  static const std::regex identifier(R"([A-Za-z_][A-Za-z0-9_]*)");
  std::set<std::string> labels;
  for (std::sregex_iterator it(text.begin(), text.end(), grouping), last; it != last; ++it) {
    const std::string list = (*it)[1];
    for (std::sregex_iterator l(list.begin(), list.end(), identifier); l != last; ++l) {
      labels.insert(l->str());
    }
  }
  for (const std::regex* re : {&label_values, &legend}) {
    for (std::sregex_iterator it(text.begin(), text.end(), *re), last; it != last; ++it) {
      labels.insert((*it)[1]);
    }
  }
  return labels;
}

nlohmann::json Dashboard() {
  return nlohmann::json::parse(ReadFile(kDockerDir / "grafana/dashboards/moeserve.json"));
}

TEST(DashboardMetricsTest, ExtractorsFindNamesAndLabels) {
  EXPECT_EQ(MetricNames("histogram_quantile(0.9, sum by (le) (rate(moeserve_x_bucket{a=\"1\"}"
                        "[5m]))) / moeserve_y_total"),
            (std::set<std::string>{"moeserve_x_bucket", "moeserve_y_total"}));
  EXPECT_EQ(LabelNames("sum by (method, code) (rate(x[1m])) {{layer}} label_values(m, model_name)"),
            (std::set<std::string>{"method", "code", "layer", "model_name"}));
}

TEST(DashboardMetricsTest, EveryQueriedMetricAndLabelIsExported) {
  const Exported exported = ServerExports();
  ASSERT_TRUE(exported.names.contains("moeserve_time_to_first_token_seconds_bucket"));
  ASSERT_TRUE(exported.names.contains("moeserve_moe_expert_balancedness"));

  std::vector<std::string> queries;
  CollectQueries(Dashboard(), queries);
  ASSERT_GE(queries.size(), 10u);
  std::set<std::string> used;
  for (const std::string& query : queries) {
    const std::set<std::string> names = MetricNames(query);
    EXPECT_FALSE(names.empty()) << "query without a moeserve metric: " << query;
    for (const std::string& name : names) {
      used.insert(name);
      EXPECT_TRUE(exported.names.contains(name))
          << name << " (in `" << query << "`) is not exported by the server";
    }
  }
  std::set<std::string> exported_labels = exported.labels;
  exported_labels.insert("le");  // histogram buckets
  const std::string text = ReadFile(kDockerDir / "grafana/dashboards/moeserve.json");
  for (const std::string& label : LabelNames(text)) {
    EXPECT_TRUE(exported_labels.contains(label)) << "label '" << label << "' is not exported";
  }

  // What the dashboard is for (issue 11): latency percentiles, throughput, queue, KV usage and
  // expert balance.
  for (const char* required :
       {"moeserve_time_to_first_token_seconds_bucket",
        "moeserve_inter_token_latency_seconds_bucket", "moeserve_generation_tokens_total",
        "moeserve_num_requests_waiting", "moeserve_kv_cache_usage_perc",
        "moeserve_moe_expert_balancedness"}) {
    EXPECT_TRUE(used.contains(required)) << "the dashboard does not show " << required;
  }
}

TEST(DashboardMetricsTest, PanelsUseTheProvisionedDatasourceAndHaveQueries) {
  const nlohmann::json dashboard = Dashboard();
  // The uid the Grafana datasource provisioning file gives the compose Prometheus.
  const std::string provisioning =
      ReadFile(kDockerDir / "grafana/provisioning/datasources/prometheus.yaml");
  ASSERT_NE(provisioning.find("uid: prometheus\n"), std::string::npos);

  std::set<int> ids;
  int graphs = 0;
  for (const nlohmann::json& panel : dashboard.at("panels")) {
    EXPECT_TRUE(ids.insert(panel.at("id").get<int>()).second) << "duplicate panel id";
    if (panel.at("type") == "row") continue;
    ++graphs;
    const std::string title = panel.at("title");
    EXPECT_EQ(panel.at("datasource").at("uid"), "prometheus") << title;
    ASSERT_FALSE(panel.at("targets").empty()) << title;
    for (const nlohmann::json& target : panel.at("targets")) {
      EXPECT_FALSE(target.at("expr").get<std::string>().empty()) << title;
    }
  }
  EXPECT_GE(graphs, 10);
}

}  // namespace
}  // namespace moeserve::server
