#include "bench/bench_model.h"

#include <filesystem>

#include "tools/make_model/checkpoint_maker.h"
#include "tools/make_model/model_presets.h"

namespace moeserve::bench {

absl::StatusOr<BenchModel> ResolveBenchModel(const std::string& model_dir) {
  if (!model_dir.empty()) return BenchModel{model_dir, model_dir};
  BenchModel model{(std::filesystem::temp_directory_path() / "moeserve-bench-tiny-v3").string(),
                   "tiny-v3 (random, seed 1)"};
  auto config = tools::PresetConfig("tiny-v3");
  if (!config.ok()) return config.status();
  tools::MakeCheckpointOptions options{.out_dir = model.dir, .seed = 1};
  if (absl::Status s = tools::MakeRandomCheckpoint(*config, options); !s.ok()) return s;
  return model;
}

}  // namespace moeserve::bench
