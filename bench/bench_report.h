// Shared by the benchmarks: the device and build a result was measured on, and the JSON file
// every benchmark writes next to its printed table (DESIGN.md §6).
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace moeserve::bench {

// {"device": CPU model and core count, "date": UTC ISO-8601, "commit": git HEAD or "unknown"}.
nlohmann::json MeasurementContext();

// Writes `report` (pretty-printed) to `path`, creating parent directories. Returns false and
// prints why on failure.
bool WriteReport(const std::string& path, const nlohmann::json& report);

}  // namespace moeserve::bench
