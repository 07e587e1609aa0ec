// Every binary of the build behaves alike on the command line (engine/cli/command_line.h):
// --version prints "<binary> <project version> (<commit>)" on stdout and exits 0, --help exits 0,
// and an unknown flag exits 2 with one message naming it and the --help hint, on stderr only,
// even where a required option is missing too. CMake passes the binaries' paths.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_status = -1;  // -1: killed by a signal
  std::string out;
  std::string err;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

CommandResult RunBinary(const std::string& binary, const std::string& args) {
  static int counter = 0;
  const fs::path base =
      fs::path(::testing::TempDir()) /
      ("moeserve_binary_flags_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  const std::string command = "'" + binary + "' " + args + " > '" + base.string() + ".out' 2> '" +
                              base.string() + ".err' < /dev/null";
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadFile(base.string() + ".out");
  result.err = ReadFile(base.string() + ".err");
  fs::remove(base.string() + ".out");
  fs::remove(base.string() + ".err");
  return result;
}

std::vector<std::string> Binaries() {
  return absl::StrSplit(MOESERVE_BINARIES, ',', absl::SkipEmpty());
}

size_t CountOccurrences(const std::string& text, const std::string& word) {
  size_t count = 0;
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    ++count;
  }
  return count;
}

TEST(BinaryFlagsTest, EveryBinaryIsListed) { EXPECT_GE(Binaries().size(), 15u); }

TEST(BinaryFlagsTest, Version_PrintsNameAndProjectVersionAndExitsZero) {
  for (const std::string& binary : Binaries()) {
    SCOPED_TRACE(binary);
    const CommandResult r = RunBinary(binary, "--version");
    EXPECT_EQ(r.exit_status, 0) << r.err;
    const std::string expected_start =
        fs::path(binary).filename().string() + " " + MOESERVE_PROJECT_VERSION;
    EXPECT_EQ(r.out.rfind(expected_start, 0), 0u) << "stdout: " << r.out;
    EXPECT_EQ(CountOccurrences(r.out, "\n"), 1u) << "stdout: " << r.out;
    EXPECT_EQ(r.err, "");
  }
}

TEST(BinaryFlagsTest, Help_ExitsZeroAndMentionsVersion) {
  for (const std::string& binary : Binaries()) {
    SCOPED_TRACE(binary);
    const CommandResult r = RunBinary(binary, "--help");
    EXPECT_EQ(r.exit_status, 0) << r.err;
    EXPECT_NE(r.out.find("--version"), std::string::npos) << r.out;
    EXPECT_EQ(r.err, "");
  }
}

TEST(BinaryFlagsTest, UnknownFlag_ExitsTwoWithOneMessageNamingIt) {
  for (const std::string& binary : Binaries()) {
    SCOPED_TRACE(binary);
    const CommandResult r = RunBinary(binary, "--no-such-flag");
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(CountOccurrences(r.err, "--no-such-flag"), 1u) << "stderr: " << r.err;
    EXPECT_NE(r.err.find("Run with --help for more information."), std::string::npos) << r.err;
    EXPECT_EQ(CountOccurrences(r.err, "\n"), 2u) << "stderr: " << r.err;
  }
}

TEST(BinaryFlagsTest, BadValue_ExitsTwoNamingTheFlag) {
  // --shards takes an integer.
  const CommandResult r =
      RunBinary(MOESERVE_MAKE_MODEL_BINARY, "--preset tiny-v3 --out /nonexistent --shards many");
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_NE(r.err.find("--shards"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Run with --help for more information."), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moeserve
