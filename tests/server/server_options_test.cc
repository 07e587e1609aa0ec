// The command line: defaults, negation flags, checks that name the flag, and the KV capacity /
// max_model_len arithmetic of MakeEngineOptions.
#include "server/server_options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/kv_cache/kv_cache_spec.h"
#include "engine/ops/dtype.h"

namespace moeserve::server {
namespace {

// Parses `args` (without the program name) with the server's flags.
ServerOptions Parse(std::vector<std::string> args) {
  CLI::App app;
  ServerOptions options;
  AddServerFlags(app, options);
  args.insert(args.begin(), "moeserve");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return options;
}

engine::ModelConfig Config(int64_t layers = 3, int64_t max_positions = 163840) {
  engine::ModelConfig config;
  config.num_hidden_layers = layers;
  config.kv_lora_rank = 512;
  config.qk_rope_head_dim = 64;
  config.max_position_embeddings = max_positions;
  return config;
}

TEST(ServerOptionsTest, Defaults) {
  const ServerOptions o = Parse({"--model", "/models/DeepSeek-V3/"});
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.port, 50051);
  EXPECT_EQ(o.metrics_port, 9400);
  EXPECT_EQ(o.device, "auto");
  EXPECT_TRUE(o.enable_prefix_caching);
  EXPECT_EQ(o.shutdown_grace_seconds, 30.0);
  EXPECT_FALSE(o.per_expert_metrics);
  EXPECT_TRUE(CheckServerOptions(o).ok());
  EXPECT_EQ(ServedModelName(o), "DeepSeek-V3");
}

TEST(ServerOptionsTest, FlagsReachTheOptions) {
  const ServerOptions o = Parse({"--model",
                                 "m",
                                 "--served-model-name",
                                 "ds",
                                 "--host",
                                 "0.0.0.0",
                                 "--port",
                                 "0",
                                 "--metrics-port",
                                 "0",
                                 "--device",
                                 "cpu",
                                 "--max-num-batched-tokens",
                                 "256",
                                 "--max-num-seqs",
                                 "8",
                                 "--kv-cache-tokens",
                                 "1000",
                                 "--max-queue",
                                 "5",
                                 "--max-model-len",
                                 "512",
                                 "--no-enable-prefix-caching",
                                 "--log-level",
                                 "debug",
                                 "--port-file",
                                 "/tmp/p.json",
                                 "--shutdown-grace-seconds",
                                 "2.5",
                                 "--per-expert-metrics",
                                 "--grpc-max-threads",
                                 "4"});
  EXPECT_EQ(ServedModelName(o), "ds");
  EXPECT_EQ(o.host, "0.0.0.0");
  EXPECT_EQ(o.port, 0);
  EXPECT_EQ(o.device, "cpu");
  EXPECT_EQ(o.max_num_batched_tokens, 256);
  EXPECT_EQ(o.max_num_seqs, 8);
  EXPECT_EQ(o.kv_cache_tokens, 1000);
  EXPECT_EQ(o.max_queue, 5);
  EXPECT_EQ(o.max_model_len, 512);
  EXPECT_FALSE(o.enable_prefix_caching);
  EXPECT_EQ(o.log_level, "debug");
  EXPECT_EQ(o.port_file, "/tmp/p.json");
  EXPECT_EQ(o.shutdown_grace_seconds, 2.5);
  EXPECT_TRUE(o.per_expert_metrics);
  EXPECT_EQ(o.grpc_max_threads, 4);
  EXPECT_TRUE(CheckServerOptions(o).ok());

  const absl::StatusOr<engine::EngineOptions> e = MakeEngineOptions(o, Config());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->num_kv_blocks, 16);  // 1000 tokens → 16 blocks of 64 (rounded up)
  EXPECT_EQ(e->max_num_seqs, 8);
  EXPECT_EQ(e->max_num_batched_tokens, 256);
  EXPECT_EQ(e->max_model_len, 512);
  EXPECT_EQ(e->max_waiting_requests, 5);
  EXPECT_FALSE(e->enable_prefix_caching);
}

TEST(ServerOptionsTest, CliRejectsUnknownDeviceAndBothKvSizes) {
  EXPECT_THROW(Parse({"--model", "m", "--device", "tpu"}), CLI::ValidationError);
  EXPECT_THROW(Parse({"--model", "m", "--quantization", "int4"}), CLI::ValidationError);
  EXPECT_THROW(Parse({"--model", "m", "--kv-cache-tokens", "64", "--kv-cache-memory-bytes", "9"}),
               CLI::ExcludesError);
  EXPECT_THROW(Parse({}), CLI::RequiredError);
}

TEST(ServerOptionsTest, QuantizationDefaultsToTheCheckpointAndAcceptsFp8) {
  EXPECT_EQ(Parse({"--model", "m"}).quantization, "");
  const ServerOptions fp8 = Parse({"--model", "m", "--quantization", "fp8"});
  EXPECT_EQ(fp8.quantization, "fp8");
  EXPECT_TRUE(CheckServerOptions(fp8).ok());
  ServerOptions bad = fp8;
  bad.quantization = "awq";
  EXPECT_EQ(std::string(CheckServerOptions(bad).message()).rfind("--quantization", 0), 0u);
}

TEST(ServerOptionsTest, ChecksNameTheFlag) {
  auto check = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"--model", "m"});
    return std::string(CheckServerOptions(Parse(args)).message());
  };
  EXPECT_EQ(check({"--port", "70000"}).rfind("--port ", 0), 0u);
  EXPECT_EQ(check({"--metrics-port", "-1"}).rfind("--metrics-port", 0), 0u);
  EXPECT_EQ(
      check({"--port", "9000", "--metrics-port", "9000"}).rfind("--port and --metrics-port", 0),
      0u);
  EXPECT_EQ(check({"--max-num-seqs", "0"}).rfind("--max-num-seqs", 0), 0u);
  EXPECT_EQ(check({"--max-num-batched-tokens", "0"}).rfind("--max-num-batched-tokens", 0), 0u);
  EXPECT_EQ(check({"--max-queue", "-1"}).rfind("--max-queue", 0), 0u);
  EXPECT_EQ(check({"--kv-cache-tokens", "-5"}).rfind("--kv-cache-tokens", 0), 0u);
  EXPECT_EQ(check({"--shutdown-grace-seconds", "-1"}).rfind("--shutdown-grace-seconds", 0), 0u);
  EXPECT_EQ(check({"--grpc-max-threads", "1"}).rfind("--grpc-max-threads", 0), 0u);
}

TEST(ServerOptionsTest, DefaultKvCacheAndMaxModelLen) {
  const ServerOptions o = Parse({"--model", "m"});
  const auto e = MakeEngineOptions(o, Config());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->num_kv_blocks * engine::kKvBlockSize, kDefaultKvCacheTokens);
  EXPECT_EQ(e->max_model_len, kDefaultKvCacheTokens);  // min(163840, capacity)
  // A model with a short context caps it instead.
  const auto short_context = MakeEngineOptions(o, Config(3, 1000));
  ASSERT_TRUE(short_context.ok());
  EXPECT_EQ(short_context->max_model_len, 1000);
}

TEST(ServerOptionsTest, KvMemoryBudgetUsesTheFp32CpuCache) {
  const engine::ModelConfig config = Config(3);
  const int64_t block_bytes = engine::KvCacheSpecFor(config, engine::DType::kF32).BytesPerBlock();
  EXPECT_EQ(block_bytes, 64 * 576 * 3 * 4);
  ServerOptions o = Parse({"--model", "m", "--kv-cache-memory-bytes",
                           std::to_string(10 * block_bytes + block_bytes / 2)});
  const auto e = MakeEngineOptions(o, config);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->num_kv_blocks, 10);
  o.kv_cache_memory_bytes = block_bytes - 1;
  const auto none = MakeEngineOptions(o, config);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message().rfind("--kv-cache-memory-bytes", 0), 0u);
}

TEST(ServerOptionsTest, MaxModelLenMustFitCapacityAndPositions) {
  const auto too_long = MakeEngineOptions(
      Parse({"--model", "m", "--kv-cache-tokens", "1024", "--max-model-len", "2048"}), Config());
  EXPECT_EQ(too_long.status().message().rfind("--max-model-len 2048 exceeds the KV cache", 0), 0u);
  const auto beyond_positions = MakeEngineOptions(
      Parse({"--model", "m", "--kv-cache-tokens", "8192", "--max-model-len", "4096"}),
      Config(3, 2048));
  EXPECT_EQ(
      beyond_positions.status().message().rfind("--max-model-len 4096 exceeds the model's", 0), 0u);
}

}  // namespace
}  // namespace moeserve::server
