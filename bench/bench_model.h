// The model a CPU benchmark runs: the checkpoint given with --model, or else a tiny-v3 random
// checkpoint (seed 1) generated into the temp directory, so a benchmark runs on a fresh clone.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace moeserve::bench {

struct BenchModel {
  std::string dir;
  std::string name;  // for the report: the directory, or "tiny-v3 (random, seed 1)"
};

absl::StatusOr<BenchModel> ResolveBenchModel(const std::string& model_dir);

}  // namespace moeserve::bench
