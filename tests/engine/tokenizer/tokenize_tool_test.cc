// End to end through moeserve-tokenize: JSON lines in, JSON lines out; bad lines answer null,
// are reported on stderr with their line number, and do not stop the tool.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using engine::testing::ReadTextFile;
using engine::testing::TokenizerDir;

struct ToolRun {
  int exit_code;
  std::vector<std::string> lines;
  std::string stderr_text;
};

ToolRun Tokenize(const std::string& args, const std::string& input) {
  // One directory per test process: CTest runs the cases in parallel.
  const fs::path work =
      fs::path(::testing::TempDir()) / ("moeserve_tokenize_tool_" + std::to_string(getpid()));
  fs::create_directories(work);
  std::ofstream(work / "in.txt", std::ios::binary) << input;
  const std::string command = std::string(MOESERVE_BINARY_DIR) +
                              "/tools/tokenize/moeserve-tokenize " + args + " < " +
                              (work / "in.txt").string() + " > " + (work / "out.txt").string() +
                              " 2> " + (work / "err.txt").string();
  const int status = std::system(command.c_str());
  ToolRun run{WIFEXITED(status) ? WEXITSTATUS(status) : -1, {}, ReadTextFile(work / "err.txt")};
  std::ifstream out(work / "out.txt");
  for (std::string line; std::getline(out, line);) run.lines.push_back(line);
  return run;
}

TEST(TokenizeToolTest, EncodesLinesAndReportsBadOnes) {
  const std::string model = "--model " + TokenizerDir("deepseek-coder-6.7b-instruct");
  const ToolRun run = Tokenize(model, "\"hello world\"\nnot json\n\"\\ud800\"\n42\n\"über\"\n");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.lines, (std::vector<std::string>{"[32013,31702,1835]", "null", "null", "null",
                                                 "[32013,32009,696]"}));
  for (const char* line :
       {"line 2: not valid JSON", "line 3: not valid JSON", "line 4: expected a JSON string"}) {
    EXPECT_NE(run.stderr_text.find(line), std::string::npos) << run.stderr_text;
  }

  const ToolRun plain = Tokenize(model + " --no-special-tokens", "\"hello world\"\n");
  EXPECT_EQ(plain.exit_code, 0) << plain.stderr_text;
  EXPECT_EQ(plain.lines, std::vector<std::string>{"[31702,1835]"});
}

TEST(TokenizeToolTest, DecodesLines) {
  const std::string model = "--model " + TokenizerDir("deepseek-coder-6.7b-instruct");
  const ToolRun run =
      Tokenize(model + " --decode", "[32013,31702,1835]\n[1,2,99999]\n[]\n[\"x\"]\n[32009,696]\n");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.lines, (std::vector<std::string>{"\"<｜begin▁of▁sentence｜>hello world\"", "null",
                                                 "\"\"", "null", "\"über\""}));
  EXPECT_NE(run.stderr_text.find("line 2: token id 99999 is not in the vocabulary"),
            std::string::npos)
      << run.stderr_text;

  const ToolRun skip = Tokenize(model + " --decode --skip-special-tokens", "[32013,31702,1835]\n");
  EXPECT_EQ(skip.lines, std::vector<std::string>{"\"hello world\""});
}

TEST(TokenizeToolTest, MissingModelFails) {
  const ToolRun run = Tokenize("--model /nonexistent", "\"x\"\n");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.stderr_text.find("/nonexistent/tokenizer.json"), std::string::npos);
}

}  // namespace
}  // namespace moeserve
