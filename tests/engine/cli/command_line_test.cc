// ParseCommandLine in process: what each kind of command line returns and prints (help and
// version on stdout, errors with the --help hint on stderr), and that an unknown argument is
// named in the order typed even when a required option is missing too. Every real binary is run
// by tests/integration/binary_flags_test.cc.
#include "engine/cli/command_line.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace moeserve::engine {
namespace {

struct Parsed {
  std::optional<int> exit_status;
  std::string out;
  std::string err;
  int count = 0;
};

// Parses `args` (argv[0] is "tool") with a required --name and an integer --count.
Parsed Parse(std::vector<std::string> args) {
  CLI::App app{"a test tool"};
  Parsed parsed;
  std::string name;
  app.add_option("--name", name, "a name")->required();
  app.add_option("--count", parsed.count, "an integer");
  args.insert(args.begin(), "/some/dir/tool");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  parsed.exit_status = ParseCommandLine(app, static_cast<int>(argv.size()), argv.data());
  parsed.out = ::testing::internal::GetCapturedStdout();
  parsed.err = ::testing::internal::GetCapturedStderr();
  return parsed;
}

TEST(ParseCommandLineTest, GoodFlags_GoOn) {
  const Parsed parsed = Parse({"--name", "x", "--count", "3"});
  EXPECT_FALSE(parsed.exit_status.has_value());
  EXPECT_EQ(parsed.count, 3);
  EXPECT_EQ(parsed.out + parsed.err, "");
}

TEST(ParseCommandLineTest, Version_PrintsTheLineOnStdoutAndExitsZero) {
  const Parsed parsed = Parse({"--version"});  // --name is required, yet --version wins
  EXPECT_EQ(parsed.exit_status, 0);
  EXPECT_EQ(parsed.out, VersionLine("tool") + "\n");
  EXPECT_EQ(parsed.err, "");
  EXPECT_EQ(VersionLine("tool").rfind("tool ", 0), 0u);
}

TEST(ParseCommandLineTest, Help_PrintsUsageOnStdoutAndExitsZero) {
  const Parsed parsed = Parse({"--help"});
  EXPECT_EQ(parsed.exit_status, 0);
  EXPECT_NE(parsed.out.find("--version"), std::string::npos) << parsed.out;
  EXPECT_EQ(parsed.err, "");
}

TEST(ParseCommandLineTest, UsageErrors_ExitTwoWithTheHintOnStderr) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {}, {"--name"}, {"--name", "x", "--count", "many"}, {"--name", "x", "--what"}}) {
    const Parsed parsed = Parse(args);
    EXPECT_EQ(parsed.exit_status, kExitUsage) << parsed.err;
    EXPECT_EQ(parsed.out, "");
    EXPECT_NE(parsed.err.find("Run with --help for more information."), std::string::npos)
        << parsed.err;
  }
}

TEST(ParseCommandLineTest, UnknownArguments_NamedAsTypedBeforeAMissingRequiredOption) {
  const Parsed parsed = Parse({"--nmae", "x", "--other"});
  EXPECT_EQ(parsed.exit_status, kExitUsage);
  EXPECT_EQ(parsed.err,
            "The following arguments were not expected: --nmae x --other\n"
            "Run with --help for more information.\n");
}

}  // namespace
}  // namespace moeserve::engine
