// End to end through the command-line tools: moeserve-make-model writes tiny-v2-lite with
// three shards, moeserve-logits runs the golden prompts from a JSON file, and the .npy it
// writes matches transformers' golden logits, NaN padding included.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/io/npy.h"
#include "nlohmann/json.hpp"

namespace moeserve {
namespace {

namespace fs = std::filesystem;

int RunCommand(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(LogitsToolTest, MakeModelThenLogitsMatchesGolden) {
  const fs::path work = fs::path(::testing::TempDir()) / "moeserve_logits_tool";
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string bin = MOESERVE_BINARY_DIR;
  const std::string golden = std::string(MOESERVE_SOURCE_DIR) + "/tests/golden/tiny-v2-lite";

  ASSERT_EQ(RunCommand(bin +
                       "/tools/make_model/moeserve-make-model --preset tiny-v2-lite --seed 1234 "
                       "--shards 3 --out " +
                       (work / "model").string()),
            0);
  EXPECT_TRUE(fs::exists(work / "model" / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(work / "model" / "model-00003-of-00003.safetensors"));

  std::ifstream manifest_in(golden + "/manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(manifest_in);
  std::ofstream(work / "ids.json") << manifest["prompts"].dump();
  ASSERT_EQ(RunCommand(bin + "/tools/logits/moeserve-logits --model " + (work / "model").string() +
                       " --input " + (work / "ids.json").string() + " --output " +
                       (work / "logits.npy").string()),
            0);

  auto ours = engine::ReadNpyFloat32((work / "logits.npy").string());
  auto ref = engine::ReadNpyFloat32(golden + "/logits.npy");
  ASSERT_TRUE(ours.ok() && ref.ok());
  ASSERT_EQ(ours->shape, ref->shape);
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < ref->data.size(); ++i) {
    ASSERT_EQ(std::isnan(ours->data[i]), std::isnan(ref->data[i])) << "padding differs at " << i;
    if (std::isnan(ref->data[i])) continue;
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(ours->data[i]) - ref->data[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref->data[i])));
  }
  EXPECT_LE(max_diff / max_ref, 1e-4);
}

TEST(LogitsToolTest, BadInputFailsWithMessage) {
  const fs::path work = fs::path(::testing::TempDir()) / "moeserve_logits_tool_bad";
  fs::create_directories(work);
  std::ofstream(work / "ids.json") << "[[1, 2], \"not a list\"]";
  const std::string bin = MOESERVE_BINARY_DIR;
  EXPECT_NE(RunCommand(bin + "/tools/logits/moeserve-logits --model " + (work / "nope").string() +
                       " --input " + (work / "ids.json").string() + " --output " +
                       (work / "x.npy").string() + " 2>/dev/null"),
            0);
}

}  // namespace
}  // namespace moeserve
