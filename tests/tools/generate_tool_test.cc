// moeserve-generate prints the prompt followed by the greedy continuation that the library
// computes (GenerateGreedy + the tokenizer's decode), and fails cleanly on a bad model dir.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/model/deepseek_model.h"
#include "engine/runner/offline_runner.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;

TEST(GenerateToolTest, GreedyOutputMatchesLibrary) {
  const std::string model_dir = testing::TestCheckpointDir("tiny-v3", false);
  const std::string prompt = "In the beginning God";
  auto tokenizer = engine::Tokenizer::Load(model_dir);
  auto model = engine::DeepseekModel::Load(model_dir);
  ASSERT_TRUE(tokenizer.ok() && model.ok());
  auto prompt_ids = (*tokenizer)->Encode(prompt);
  ASSERT_TRUE(prompt_ids.ok());
  auto generated = engine::GenerateGreedy(**model, {*prompt_ids}, 12);
  ASSERT_TRUE(generated.ok());
  const std::string expected =
      prompt + engine::LossyUtf8((*tokenizer)->Decode((*generated)[0], true)) + "\n";

  const fs::path out =
      fs::path(::testing::TempDir()) / ("moeserve_generate_" + std::to_string(getpid()) + ".txt");
  const std::string command =
      std::string(MOESERVE_BINARY_DIR) + "/tools/generate/moeserve-generate --model " + model_dir +
      " --prompt '" + prompt + "' --max-new-tokens 12 --ignore-eos > " + out.string();
  ASSERT_EQ(std::system(command.c_str()), 0);
  std::ifstream in(out, std::ios::binary);
  const std::string printed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(printed, expected);
}

TEST(GenerateToolTest, MissingModelFails) {
  const std::string command = std::string(MOESERVE_BINARY_DIR) +
                              "/tools/generate/moeserve-generate --model /nonexistent "
                              "--prompt hi 2>/dev/null";
  EXPECT_NE(std::system(command.c_str()), 0);
}

}  // namespace
}  // namespace moeserve
