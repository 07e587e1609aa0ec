#include "tests/testing/test_checkpoints.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tools/make_model/checkpoint_maker.h"
#include "tools/make_model/model_presets.h"

namespace moeserve::testing {

std::string TestCheckpointDir(const std::string& preset, bool fp8, uint64_t seed,
                              std::optional<int64_t> mtp_layers) {
  namespace fs = std::filesystem;
  // Test binaries carried to another machine (bench/gpu/run_all.sh) have no build tree there.
  const char* override_root = std::getenv("MOESERVE_TEST_CHECKPOINT_DIR");
  const fs::path root = override_root != nullptr && *override_root != 0
                            ? fs::path(override_root)
                            : fs::path(MOESERVE_BINARY_DIR) / "test_checkpoints";
  const std::string mtp = mtp_layers ? absl::StrCat("-mtp", *mtp_layers) : "";
  const fs::path final_dir = root / absl::StrCat(preset, fp8 ? "-fp8" : "", mtp, "-s", seed);
  if (fs::exists(final_dir / "config.json")) return final_dir.string();

  auto config = tools::PresetConfig(preset);
  if (config.ok() && mtp_layers) config->num_nextn_predict_layers = *mtp_layers;
  const fs::path temp_dir = root / absl::StrCat(".tmp-", preset, mtp, "-", getpid());
  tools::MakeCheckpointOptions options{
      .out_dir = temp_dir.string(), .fp8 = fp8, .shards = 2, .seed = seed};
  absl::Status status =
      config.ok() ? tools::MakeRandomCheckpoint(*config, options) : config.status();
  if (!status.ok()) {
    std::fprintf(stderr, "cannot write test checkpoint %s: %s\n", preset.c_str(),
                 status.ToString().c_str());
    std::abort();
  }
  std::error_code ec;
  fs::rename(temp_dir, final_dir, ec);
  if (ec) fs::remove_all(temp_dir);  // another process got there first
  return final_dir.string();
}

}  // namespace moeserve::testing
