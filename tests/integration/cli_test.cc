// moeserve-cli against the real server: what it prints equals what the library computes
// (greedy text, token ids), --json prints parseable response lines ending in `complete`, and
// the exit statuses scripts rely on (0 ok, 1 failed call or not SERVING, 2 usage error).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model/deepseek_model.h"
#include "engine/model/model_config.h"
#include "engine/runner/offline_runner.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;

constexpr char kServedModelName[] = "cli-test-model";

struct CommandResult {
  int exit_status = -1;  // -1: killed by a signal
  std::string out;
  std::string err;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs moeserve-cli with `args` (already shell-quoted where needed) through the shell.
CommandResult RunCli(const std::string& args) {
  static int counter = 0;
  const fs::path base =
      fs::path(::testing::TempDir()) /
      ("moeserve_cli_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  const std::string command = std::string(MOESERVE_BINARY_DIR) + "/clients/cli/moeserve-cli " +
                              args + " > " + base.string() + ".out 2> " + base.string() + ".err";
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadFile(base.string() + ".out");
  result.err = ReadFile(base.string() + ".err");
  return result;
}

std::string Describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_status) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

// A loopback port nobody listens on: bound, then released.
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    return 1;  // port 1 is closed on any test machine too
  }
  close(fd);
  return ntohs(address.sin_port);
}

// One server for the suite (each CTest case is its own process, so each starts one).
class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = testing::TestCheckpointDir("tiny-v3", false);
    server_ = new testing::ServerProcess();
    if (!server_->Start(testing::ServerBinary(),
                        {"--model", model_dir_, "--served-model-name", kServedModelName})) {
      start_error_ = server_->error();
    }
  }
  static void TearDownTestSuite() {
    delete server_;  // SIGTERM and wait
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(start_error_.empty()) << start_error_; }

  std::string Target() const { return "--target " + server_->target(); }

  static inline std::string model_dir_;
  static inline testing::ServerProcess* server_ = nullptr;
  static inline std::string start_error_;
};

TEST_F(CliTest, GenerateGreedy_PrintsTheLibrarysContinuation) {
  const std::string prompt = "In the beginning God";
  constexpr int kTokens = 12;
  auto tokenizer = engine::Tokenizer::Load(model_dir_);
  auto model = engine::DeepseekModel::Load(model_dir_);
  ASSERT_TRUE(tokenizer.ok() && model.ok());
  auto prompt_ids = (*tokenizer)->Encode(prompt);
  ASSERT_TRUE(prompt_ids.ok());
  auto generated = engine::GenerateGreedy(**model, {*prompt_ids}, kTokens);
  ASSERT_TRUE(generated.ok()) << generated.status();
  const std::string expected =
      engine::LossyUtf8((*tokenizer)->Decode((*generated)[0], /*skip_special_tokens=*/true));

  const CommandResult r = RunCli(Target() + " generate --temperature 0 --ignore-eos --max-tokens " +
                                 std::to_string(kTokens) + " --stats '" + prompt + "'");
  ASSERT_EQ(r.exit_status, 0) << Describe(r);
  EXPECT_EQ(r.out, expected + "\n");
  EXPECT_NE(r.err.find("completion_tokens=" + std::to_string(kTokens)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("finish_reason=length"), std::string::npos) << r.err;
}

// Issue 22, item 6: `generate -` reads the prompt from stdin (a multi-line one here, with a
// quote the shell would need escaping for) and prints what the same prompt as an argument does.
TEST_F(CliTest, GenerateDash_ReadsThePromptFromStdin) {
  const std::string prompt = "And the earth was without form,\nand void; and \"darkness\"";
  const fs::path file = fs::path(::testing::TempDir()) / "moeserve_cli_stdin_prompt.txt";
  std::ofstream(file, std::ios::binary) << prompt;
  const std::string flags = " generate --temperature 0 --ignore-eos --max-tokens 8 ";
  const CommandResult piped = RunCli(Target() + flags + "- < " + file.string());
  ASSERT_EQ(piped.exit_status, 0) << Describe(piped);
  // The same bytes as one argument: the shell's command substitution (no trailing newline to
  // strip).
  const std::string quoted = "\"$(cat " + file.string() + ")\"";
  const CommandResult argument = RunCli(Target() + flags + quoted);
  ASSERT_EQ(argument.exit_status, 0) << Describe(argument);
  EXPECT_EQ(piped.out, argument.out);
  EXPECT_FALSE(piped.out.empty());
}

TEST_F(CliTest, GenerateJson_EveryLineParsesAndTheLastIsComplete) {
  const CommandResult ok = RunCli(Target() +
                                  " generate --json --temperature 0 --ignore-eos --max-tokens 6 "
                                  "--logprobs 2 --top-k 5 --request-id cli-json-2 'Hello there'");
  ASSERT_EQ(ok.exit_status, 0) << Describe(ok);
  std::vector<nlohmann::json> lines;
  std::istringstream in(ok.out);
  for (std::string line; std::getline(in, line);) {
    const auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(parsed.is_discarded()) << "not JSON: " << line;
    lines.push_back(parsed);
  }
  ASSERT_GE(lines.size(), 2u) << ok.out;
  std::vector<uint32_t> streamed;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    ASSERT_TRUE(lines[i].contains("chunk")) << lines[i];
    for (const auto& id : lines[i]["chunk"]["token_ids"]) streamed.push_back(id);
    EXPECT_TRUE(lines[i]["chunk"].contains("output_logprobs")) << lines[i];
  }
  const nlohmann::json& last = lines.back();
  ASSERT_TRUE(last.contains("complete")) << last;
  EXPECT_EQ(last["complete"]["finish_reason"], "length");
  EXPECT_EQ(last["complete"]["completion_tokens"], 6);
  EXPECT_EQ(last["complete"]["output_ids"].get<std::vector<uint32_t>>(), streamed);
}

TEST_F(CliTest, Tokenize_MatchesTheLibraryTokenizer) {
  const std::string text = "In the beginning God created the heaven and the earth.";
  auto tokenizer = engine::Tokenizer::Load(model_dir_);
  ASSERT_TRUE(tokenizer.ok());
  for (bool add_special : {true, false}) {
    auto ids = (*tokenizer)->Encode(text, add_special);
    ASSERT_TRUE(ids.ok());
    const CommandResult r =
        RunCli(Target() + " tokenize " + (add_special ? "" : "--no-add-special-tokens ") + "'" +
               text + "'");
    ASSERT_EQ(r.exit_status, 0) << Describe(r);
    EXPECT_EQ(nlohmann::json::parse(r.out).get<std::vector<int32_t>>(), *ids)
        << "add_special_tokens=" << add_special;
  }
}

TEST_F(CliTest, Info_ShowsTheServedModel) {
  const CommandResult text = RunCli(Target() + " info");
  ASSERT_EQ(text.exit_status, 0) << Describe(text);
  EXPECT_NE(text.out.find(kServedModelName), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("DeepseekV3ForCausalLM"), std::string::npos) << text.out;

  const CommandResult json = RunCli(Target() + " info --json");
  ASSERT_EQ(json.exit_status, 0) << Describe(json);
  const auto info = nlohmann::json::parse(json.out);
  EXPECT_EQ(info["model"]["served_model_name"], kServedModelName);
  auto config = engine::LoadModelConfig(model_dir_ + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(info["model"]["vocab_size"].get<int64_t>(), config->vocab_size);
  EXPECT_EQ(info["server"]["is_draining"], false);
}

TEST_F(CliTest, Health_ServingExitsZero) {
  const CommandResult r = RunCli(Target() + " health");
  EXPECT_EQ(r.exit_status, 0) << Describe(r);
  EXPECT_EQ(r.out, "SERVING\n");
}

TEST_F(CliTest, BadRequest_PrintsCodeAndFieldAndExitsOne) {
  const CommandResult top_p = RunCli(Target() + " generate --top-p 0 hello");
  EXPECT_EQ(top_p.exit_status, 1) << Describe(top_p);
  EXPECT_NE(top_p.err.find("INVALID_ARGUMENT: sampling_params.top_p"), std::string::npos)
      << top_p.err;
  // Token id 9999 is outside tiny-v3's vocabulary.
  const CommandResult stop_id = RunCli(Target() + " generate --stop-token-id 9999 hello");
  EXPECT_EQ(stop_id.exit_status, 1) << Describe(stop_id);
  EXPECT_NE(stop_id.err.find("INVALID_ARGUMENT: sampling_params.stop_token_ids"), std::string::npos)
      << stop_id.err;
  // The server is still serving.
  EXPECT_EQ(RunCli(Target() + " health").exit_status, 0);
}

TEST_F(CliTest, GenerateTimeout_IsDeadlineExceeded) {
  const CommandResult r =
      RunCli(Target() + " generate --ignore-eos --max-tokens 2000 --timeout 0.3 hello");
  EXPECT_EQ(r.exit_status, 1) << Describe(r);
  EXPECT_NE(r.err.find("DEADLINE_EXCEEDED"), std::string::npos) << r.err;
}

// No server needed below.

TEST(CliWithoutServerTest, Health_ClosedPortFails) {
  const CommandResult r =
      RunCli("--target 127.0.0.1:" + std::to_string(ClosedPort()) + " health --timeout 3");
  EXPECT_EQ(r.exit_status, 1) << Describe(r);
  EXPECT_NE(r.err.find("UNAVAILABLE"), std::string::npos) << r.err;
}

TEST(CliWithoutServerTest, UsageErrors_ExitTwo) {
  for (const std::string args :
       {"", "generate", "generate --token-ids 1,2 'also text'", "generate --token-ids 1,x",
        "generate --logit-bias 5 hi", "generate --temperature warm hi", "frobnicate", "tokenize"}) {
    const CommandResult r = RunCli(args);
    EXPECT_EQ(r.exit_status, 2) << "moeserve-cli " << args << "\n" << Describe(r);
  }
}

}  // namespace
}  // namespace moeserve
