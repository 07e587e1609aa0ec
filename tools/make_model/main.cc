// moeserve-make-model: writes a random-weight DeepSeek checkpoint in HF layout.
//   moeserve-make-model --preset tiny-v3 --out DIR [--fp8] [--shards N] [--seed S]
//                       [--num-layers L] [--mtp-layers N]
#include <cstdio>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "engine/cli/command_line.h"
#include "tools/make_model/checkpoint_maker.h"
#include "tools/make_model/model_presets.h"

int main(int argc, char** argv) {
  using namespace moeserve::tools;
  CLI::App app{"Writes a random-weight DeepSeek checkpoint (config.json + safetensors)."};
  std::string preset;
  int64_t num_layers = 0;
  std::optional<int64_t> mtp_layers;
  MakeCheckpointOptions options;
  app.add_option("--preset", preset, "one of: " + absl::StrJoin(PresetNames(), ", "))->required();
  app.add_option("--out", options.out_dir, "output directory")->required();
  app.add_flag("--fp8", options.fp8, "FP8 E4M3 linears with 128x128 weight_scale_inv");
  app.add_option("--shards", options.shards, "number of safetensors files (0: ~4 GiB each)");
  app.add_option("--seed", options.seed, "random seed (output is deterministic per seed)");
  app.add_option("--num-layers", num_layers, "override num_hidden_layers");
  app.add_option("--mtp-layers", mtp_layers,
                 "override num_nextn_predict_layers: MTP modules stored after the main stack")
      ->check(CLI::Range(0, 8));
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  auto config = PresetConfig(preset);
  if (!config.ok()) {
    std::fprintf(stderr, "moeserve-make-model: %s\n", config.status().ToString().c_str());
    return 2;
  }
  if (num_layers > 0) config->num_hidden_layers = num_layers;
  if (mtp_layers) config->num_nextn_predict_layers = *mtp_layers;
  if (absl::Status status = MakeRandomCheckpoint(*config, options); !status.ok()) {
    std::fprintf(stderr, "moeserve-make-model: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s checkpoint%s to %s\n", preset.c_str(), options.fp8 ? " (fp8)" : "",
              options.out_dir.c_str());
  return 0;
}
