// The `moeserve` process over its life: health NOT_SERVING while the model loads and SERVING
// after warmup; on SIGTERM health NOT_SERVING, new requests refused, in-flight ones drained
// (or aborted when the grace period ends) and exit code 0; clear startup errors.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/model/deepseek_model.h"
#include "engine/runner/offline_runner.h"
#include "tests/integration/server_test_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::testing {
namespace {

namespace fs = std::filesystem;
using grpc::health::v1::HealthCheckResponse;

fs::path TempDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat(name, "_", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Runs the server binary with `args`, output to `log`; returns the pid.
pid_t Spawn(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // A server outlives no test process, even one that stopped at a failed ASSERT.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv = {const_cast<char*>(ServerBinary().c_str())};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(ServerBinary().c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Exit code of `pid`, waiting up to `timeout`; -1 for a signal death or a timeout (then killed).
int WaitExit(pid_t pid, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Whether a TCP connection to 127.0.0.1:port succeeds now.
bool CanConnect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

v1::GenerateRequest LongGreedy(uint32_t max_tokens) {
  v1::GenerateRequest request;
  request.set_text("A long story:");
  request.mutable_sampling_params()->set_temperature(0.0f);
  request.mutable_sampling_params()->set_max_tokens(max_tokens);
  request.mutable_sampling_params()->set_ignore_eos(true);
  return request;
}

// Health answers NOT_SERVING while the model loads, then SERVING. The load is made to take a
// while: tokenizer.json is the real file followed by 240 MiB of JSON whitespace (under the
// tokenizer size cap), which the server must read and parse before anything else. (A FIFO
// held it open deterministically before; the server now refuses FIFOs, issue 21 row 6.)
TEST(ServerLifecycleTest, HealthIsNotServingUntilLoadedThenServing) {
  const fs::path model = TestCheckpointDir("tiny-v3", false);
  const fs::path dir = TempDir("moeserve_slow_model");
  for (const auto& entry : fs::directory_iterator(model)) {
    if (entry.path().filename() == "tokenizer.json") continue;
    fs::create_symlink(entry.path(), dir / entry.path().filename());
  }
  {
    std::ofstream padded(dir / "tokenizer.json", std::ios::binary);
    padded << ReadFile(model / "tokenizer.json");
    const std::string spaces(1 << 20, ' ');
    for (int i = 0; i < 240; ++i) padded << spaces;
  }

  const int port = FreeLoopbackPort();
  const fs::path log = dir / "server.log";
  const pid_t pid = Spawn({"--model", dir.string(), "--host", "127.0.0.1", "--port",
                           std::to_string(port), "--metrics-port", "0", "--http-port", "-1"},
                          log);
  // Connect only once the port accepts: a gRPC channel that saw "connection refused" backs off
  // for seconds before its next attempt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!CanConnect(port) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto channel = MakeChannel(absl::StrCat("127.0.0.1:", port));
  auto stub = v1::Moeserve::NewStub(channel);

  std::optional<HealthCheckResponse::ServingStatus> status = HealthStatus(*channel);
  ASSERT_EQ(status, HealthCheckResponse::NOT_SERVING) << ReadFile(log);
  // RPCs that need the model say so rather than hang.
  const StreamResult early = Generate(*stub, LongGreedy(2));
  EXPECT_EQ(early.status.error_code(), grpc::StatusCode::UNAVAILABLE);

  while (status != HealthCheckResponse::SERVING && std::chrono::steady_clock::now() < deadline) {
    status = HealthStatus(*channel);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(status, HealthCheckResponse::SERVING) << ReadFile(log);
  const StreamResult served = Generate(*stub, LongGreedy(2));
  EXPECT_TRUE(served.status.ok()) << served.status.error_message();

  kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid), 0) << ReadFile(log);
  const std::string text = ReadFile(log);
  // The startup line names model, dtype, device and KV capacity.
  EXPECT_NE(text.find("SERVING model"), std::string::npos) << text;
  EXPECT_NE(text.find("dtype float32"), std::string::npos) << text;
  EXPECT_NE(text.find("device cpu"), std::string::npos) << text;
  EXPECT_NE(text.find("KV cache 4096 tokens"), std::string::npos) << text;
}

// SIGTERM during a long request: health flips to NOT_SERVING, new requests get UNAVAILABLE,
// the running request still completes, and the process exits 0.
TEST(ServerLifecycleTest, SigtermDrainsInFlightRequestsAndExitsZero) {
  ServerProcess server;
  ASSERT_TRUE(server.Start(ServerBinary(), {"--model", TestCheckpointDir("tiny-v3", false),
                                            "--shutdown-grace-seconds", "120"}))
      << server.error();
  auto channel = MakeChannel(server.target());
  auto stub = v1::Moeserve::NewStub(channel);
  ASSERT_EQ(HealthStatus(*channel), HealthCheckResponse::SERVING);

  constexpr uint32_t kTokens = 600;
  grpc::ClientContext context;
  auto reader = stub->Generate(&context, LongGreedy(kTokens));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);

  // While the request drains.
  std::optional<HealthCheckResponse::ServingStatus> health;
  for (int i = 0; i < 200 && health != HealthCheckResponse::NOT_SERVING; ++i) {
    health = HealthStatus(*channel);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(health, HealthCheckResponse::NOT_SERVING);
  const StreamResult refused = Generate(*stub, LongGreedy(2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << refused.status.error_message();
  EXPECT_TRUE(ServerInfo(*stub).is_draining());

  uint32_t tokens = response.chunk().token_ids_size();
  std::optional<v1::GenerateComplete> complete;
  while (reader->Read(&response)) {
    if (response.has_chunk()) tokens += response.chunk().token_ids_size();
    if (response.has_complete()) complete = response.complete();
  }
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(complete.has_value());
  EXPECT_EQ(complete->finish_reason(), "length");
  EXPECT_EQ(tokens, kTokens);
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

// When the grace period ends first, the running request ends with finish_reason "abort" and
// the process still exits 0.
TEST(ServerLifecycleTest, GracePeriodOverAbortsRemainingRequests) {
  ServerProcess server;
  ASSERT_TRUE(server.Start(ServerBinary(), {"--model", TestCheckpointDir("tiny-v3", false),
                                            "--shutdown-grace-seconds", "0.3"}))
      << server.error();
  auto stub = v1::Moeserve::NewStub(MakeChannel(server.target()));
  grpc::ClientContext context;
  auto reader = stub->Generate(&context, LongGreedy(4000));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  const auto begin = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
  std::optional<v1::GenerateComplete> complete;
  while (reader->Read(&response)) {
    if (response.has_complete()) complete = response.complete();
  }
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(complete.has_value());
  EXPECT_EQ(complete->finish_reason(), "abort");
  EXPECT_LT(complete->completion_tokens(), 4000u);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(10));
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

// This machine has no GPU (and CPU-only builds no CUDA backend): --device cuda must refuse to
// start, saying why, rather than run on the CPU.
TEST(ServerLifecycleTest, DeviceCudaWithoutGpuFailsClearly) {
  const fs::path dir = TempDir("moeserve_cuda");
  const pid_t pid = Spawn({"--model", TestCheckpointDir("tiny-v3", false), "--device", "cuda",
                           "--port", "0", "--metrics-port", "0", "--http-port", "-1"},
                          dir / "log");
  EXPECT_EQ(WaitExit(pid), 1);
  const std::string log = ReadFile(dir / "log");
  EXPECT_NE(log.find("--device cuda: "), std::string::npos) << log;
  EXPECT_TRUE(log.find("no CUDA backend") != std::string::npos ||
              log.find("no CUDA device") != std::string::npos ||
              log.find("not implemented yet") != std::string::npos)
      << log;
}

// --quantization fp8 on a BF16 checkpoint: reported as online FP8, and the served greedy tokens
// are those of the library loading the same checkpoint with LoadOptions{.quantize_fp8}, which
// differ from the unquantized model's (so the flag demonstrably reached the loader).
TEST(ServerLifecycleTest, OnlineFp8QuantizationServesTheQuantizedModel) {
  const std::string model_dir = TestCheckpointDir("tiny-v3", false);
  ServerProcess server;
  ASSERT_TRUE(server.Start(ServerBinary(), {"--model", model_dir, "--quantization", "fp8"}))
      << server.error();
  auto channel = MakeChannel(server.target());
  auto stub = v1::Moeserve::NewStub(channel);
  grpc::ClientContext context;
  v1::GetModelInfoResponse info;
  ASSERT_TRUE(stub->GetModelInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.quantization(), "fp8 (online)");

  const std::vector<int32_t> prompt = {3, 141, 59, 265, 358, 97, 93, 238, 46};
  constexpr int64_t kTokens = 24;
  auto quantized = engine::DeepseekModel::Load(model_dir, {.quantize_fp8 = true});
  auto plain = engine::DeepseekModel::Load(model_dir);
  ASSERT_TRUE(quantized.ok() && plain.ok());
  // The engine attends in the absorbed form for every token (EngineOptions::mla_form); FP8
  // activation rounding would amplify the last-bit differences of the naive form.
  const engine::ForwardOptions absorbed{.mla_form = engine::MlaForm::kAbsorbed};
  auto expected = engine::GenerateGreedy(**quantized, {prompt}, kTokens, absorbed);
  auto unquantized = engine::GenerateGreedy(**plain, {prompt}, kTokens, absorbed);
  ASSERT_TRUE(expected.ok() && unquantized.ok());

  v1::GenerateRequest request;
  for (int32_t id : prompt) request.mutable_tokenized()->add_input_ids(id);
  request.mutable_sampling_params()->set_temperature(0.0f);
  request.mutable_sampling_params()->set_max_tokens(kTokens);
  request.mutable_sampling_params()->set_ignore_eos(true);
  const StreamResult result = Generate(*stub, request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.token_ids, std::vector<uint32_t>((*expected)[0].begin(), (*expected)[0].end()));
  EXPECT_NE((*expected)[0], (*unquantized)[0])
      << "FP8 quantization changed no greedy token: the test cannot tell the paths apart";
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

TEST(ServerLifecycleTest, MissingModelFailsNamingTheFile) {
  const fs::path dir = TempDir("moeserve_missing");
  fs::create_directories(dir / "empty_model");
  const pid_t pid = Spawn({"--model", (dir / "empty_model").string(), "--port", "0",
                           "--metrics-port", "0", "--http-port", "-1"},
                          dir / "log");
  EXPECT_EQ(WaitExit(pid), 1);
  const std::string log = ReadFile(dir / "log");
  EXPECT_NE(log.find("tokenizer.json"), std::string::npos) << log;
}

// Issue 22, item 6: a --model path that does not exist, or is a file, is named as such (it was
// reported as a missing tokenizer.json).
TEST(ServerLifecycleTest, MissingModelDirectoryIsNamedAsSuch) {
  const fs::path dir = TempDir("moeserve_no_model_dir");
  const pid_t missing = Spawn({"--model", (dir / "nowhere").string(), "--port", "0",
                               "--metrics-port", "0", "--http-port", "-1"},
                              dir / "log1");
  EXPECT_EQ(WaitExit(missing), 1);
  const std::string log1 = ReadFile(dir / "log1");
  EXPECT_NE(log1.find("--model " + (dir / "nowhere").string() + ": no such directory"),
            std::string::npos)
      << log1;
  std::ofstream(dir / "a_file") << "x";
  const pid_t file = Spawn({"--model", (dir / "a_file").string(), "--port", "0", "--metrics-port",
                            "0", "--http-port", "-1"},
                           dir / "log2");
  EXPECT_EQ(WaitExit(file), 1);
  const std::string log2 = ReadFile(dir / "log2");
  EXPECT_NE(log2.find(": not a directory"), std::string::npos) << log2;
}

TEST(ServerLifecycleTest, BadFlagsFailBeforeLoading) {
  const fs::path dir = TempDir("moeserve_flags");
  const std::string model = TestCheckpointDir("tiny-v3", false);
  const pid_t both_kv =
      Spawn({"--model", model, "--kv-cache-tokens", "1024", "--kv-cache-memory-bytes", "1000000"},
            dir / "log1");
  EXPECT_NE(WaitExit(both_kv), 0);
  const pid_t too_long =
      Spawn({"--model", model, "--port", "0", "--metrics-port", "0", "--http-port", "-1",
             "--kv-cache-tokens", "1024", "--max-model-len", "2048"},
            dir / "log2");
  EXPECT_EQ(WaitExit(too_long), 1);
  EXPECT_NE(ReadFile(dir / "log2").find("--max-model-len 2048 exceeds the KV cache capacity"),
            std::string::npos)
      << ReadFile(dir / "log2");
}

// A KV cache larger than the machine: refused by the CPU memory plan, before any weight is read,
// with both figures; never std::bad_alloc (an abort) or the OOM killer.
TEST(ServerLifecycleTest, KvCacheLargerThanMemoryIsAStartupErrorWithTheFigures) {
  const fs::path dir = TempDir("moeserve_memory_plan");
  const pid_t pid = Spawn({"--model", TestCheckpointDir("tiny-v3", false), "--port", "0",
                           "--metrics-port", "0", "--http-port", "-1", "--kv-cache-memory-bytes",
                           std::to_string(int64_t{1} << 49)},  // 512 TiB, within the flag's range
                          dir / "log");
  EXPECT_EQ(WaitExit(pid), 1);
  const std::string log = ReadFile(dir / "log");
  EXPECT_NE(log.find("the model does not fit in memory: it needs"), std::string::npos) << log;
  EXPECT_NE(log.find(") are available ("), std::string::npos) << log;
  EXPECT_EQ(log.find("bad_alloc"), std::string::npos) << log;
}

}  // namespace
}  // namespace moeserve::testing
