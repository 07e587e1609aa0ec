// The command line: defaults, negation flags, checks that name the flag, and the KV capacity /
// max_model_len arithmetic of MakeEngineOptions.
#include "server/server_options.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
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
                                 "--max-num-partial-prefills",
                                 "3",
                                 "--long-prefill-token-threshold",
                                 "64",
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
  EXPECT_EQ(o.max_num_partial_prefills, 3);
  EXPECT_EQ(o.long_prefill_token_threshold, 64);
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
  EXPECT_THROW(Parse({"--model", "m", "--kv-cache-dtype", "fp8"}), CLI::ValidationError);
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
  EXPECT_EQ(check({"--max-num-partial-prefills", "0"}).rfind("--max-num-partial-prefills", 0), 0u);
  EXPECT_EQ(
      check({"--long-prefill-token-threshold", "-1"}).rfind("--long-prefill-token-threshold", 0),
      0u);
  EXPECT_EQ(check({"--cpu-kernels", "reference"}), "");
  EXPECT_EQ(check({"--max-queue", "-1"}).rfind("--max-queue", 0), 0u);
  EXPECT_EQ(check({"--kv-cache-tokens", "-5"}).rfind("--kv-cache-tokens", 0), 0u);
  EXPECT_EQ(check({"--shutdown-grace-seconds", "-1"}).rfind("--shutdown-grace-seconds", 0), 0u);
  EXPECT_EQ(check({"--grpc-max-threads", "1"}).rfind("--grpc-max-threads", 0), 0u);
  EXPECT_EQ(check({"--gpu-memory-utilization", "0"}).rfind("--gpu-memory-utilization", 0), 0u);
  EXPECT_EQ(check({"--gpu-memory-utilization", "1.5"}).rfind("--gpu-memory-utilization", 0), 0u);
}

// Issue 21, rows 7 and 12: flags that would make the server allocate or wait without bound are
// refused before anything loads, and the message carries the exact value given.
TEST(ServerOptionsTest, TransportAndSizeFlagsAreRangeCheckedWithTheExactValue) {
  auto check = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"--model", "m"});
    return std::string(CheckServerOptions(Parse(args)).message());
  };
  EXPECT_EQ(check({"--kv-cache-memory-bytes", "9223372036854775807"}),
            "--kv-cache-memory-bytes must be in [1, 1125899906842624], got 9223372036854775807 "
            "(the memory plan then checks it against the device's memory)");
  EXPECT_EQ(check({"--kv-cache-memory-bytes", "1125899906842624"}), "");
  EXPECT_EQ(check({"--max-streams-per-connection", "0"}).rfind("--max-streams-per-connection", 0),
            0u);
  EXPECT_EQ(check({"--max-streams-per-connection", "65537"})
                .rfind("--max-streams-per-connection must be in [1, 65536], got 65537", 0),
            0u);
  for (const char* flag :
       {"--stream-write-timeout", "--connection-idle-timeout", "--handshake-timeout"}) {
    EXPECT_EQ(check({flag, "0.05"}),
              std::string(flag) + " must be in [0.1, 86400] seconds, got 0.05");
    EXPECT_EQ(check({flag, "86400.000001"}),
              std::string(flag) + " must be in [0.1, 86400] seconds, got 86400.000001");
    EXPECT_EQ(check({flag, "nan"}).rfind(flag, 0), 0u);
    EXPECT_EQ(check({flag, "2.5"}), "");
  }
  EXPECT_EQ(check({"--gpu-memory-utilization", "1.0000000001"}),
            "--gpu-memory-utilization must be in (0, 1], got 1.0000000001");
}

TEST(ServerOptionsTest, CudaKvRequestTakesTheModelsContextAndTheKvCaps) {
  const ServerOptions defaults = Parse({"--model", "m", "--gpu-memory-utilization", "0.8"});
  EXPECT_DOUBLE_EQ(defaults.gpu_memory_utilization, 0.8);
  EXPECT_FALSE(defaults.enforce_eager);
  EXPECT_TRUE(Parse({"--model", "m", "--enforce-eager"}).enforce_eager);
  ASSERT_TRUE(CheckServerOptions(defaults).ok());
  const auto request = MakeCudaKvRequest(defaults, Config(3, 163840));
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->max_model_len, 163840);  // the GPU plan, not the CPU default, sizes the cache
  EXPECT_EQ(request->max_num_kv_blocks, 0);

  const auto capped = MakeCudaKvRequest(
      Parse({"--model", "m", "--kv-cache-tokens", "1000", "--max-model-len", "512"}), Config());
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(capped->max_model_len, 512);
  EXPECT_EQ(capped->max_num_kv_blocks, 16);
  // BF16 latents on the GPU: half the CPU's fp32 bytes per block.
  const int64_t bf16_block = 64 * 576 * 3 * 2;
  const auto by_bytes = MakeCudaKvRequest(
      Parse({"--model", "m", "--kv-cache-memory-bytes", std::to_string(7 * bf16_block)}),
      Config(3));
  ASSERT_TRUE(by_bytes.ok()) << by_bytes.status();
  EXPECT_EQ(by_bytes->max_num_kv_blocks, 7);

  const auto beyond =
      MakeCudaKvRequest(Parse({"--model", "m", "--max-model-len", "4096"}), Config(3, 2048));
  EXPECT_EQ(beyond.status().message().rfind("--max-model-len 4096 exceeds the model's", 0), 0u);

  const auto engine = MakeCudaEngineOptions(defaults, Config(3, 163840), 163840, 3000);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(engine->num_kv_blocks, 3000);
  EXPECT_EQ(engine->max_model_len, 163840);
  EXPECT_EQ(engine->max_num_seqs, defaults.max_num_seqs);
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

// --kv-cache-memory-bytes counts blocks of the cache the CPU backend will allocate: BF16 with
// the default kernels, fp32 with --cpu-kernels reference or --kv-cache-dtype fp32.
TEST(ServerOptionsTest, KvMemoryBudgetUsesTheCpuCacheDtype) {
  const engine::ModelConfig config = Config(3);
  const int64_t fp32_block = engine::KvCacheSpecFor(config, engine::DType::kF32).BytesPerBlock();
  EXPECT_EQ(fp32_block, 64 * 576 * 3 * 4);
  const std::string budget = std::to_string(10 * fp32_block + fp32_block / 2);
  for (const auto& [flags, blocks] : std::vector<std::pair<std::vector<std::string>, int64_t>>{
           {{}, 21},
           {{"--kv-cache-dtype", "bf16"}, 21},
           {{"--kv-cache-dtype", "fp32"}, 10},
           {{"--cpu-kernels", "reference"}, 10},
           {{"--cpu-kernels", "reference", "--kv-cache-dtype", "bf16"}, 21}}) {
    std::vector<std::string> args = {"--model", "m", "--kv-cache-memory-bytes", budget};
    args.insert(args.end(), flags.begin(), flags.end());
    const auto e = MakeEngineOptions(Parse(args), config);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->num_kv_blocks, blocks) << absl::StrJoin(flags, " ");
  }
  ServerOptions o = Parse({"--model", "m", "--kv-cache-memory-bytes", budget});
  o.kv_cache_memory_bytes = fp32_block / 2 - 1;  // under one BF16 block
  const auto none = MakeEngineOptions(o, config);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message().rfind("--kv-cache-memory-bytes", 0), 0u);
}

TEST(ServerOptionsTest, SpeculativeTokensNeedAnMtpModule) {
  engine::ModelConfig config = Config(3);
  const ServerOptions o = Parse({"--model", "m", "--speculative-tokens", "2"});
  EXPECT_TRUE(CpuLoadOptions(o).load_mtp);
  EXPECT_FALSE(CpuLoadOptions(Parse({"--model", "m"})).load_mtp);
  const auto no_module = MakeEngineOptions(o, config);
  ASSERT_EQ(no_module.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_module.status().message().find("m/config.json has num_nextn_predict_layers 0"),
            std::string::npos)
      << no_module.status();
  config.num_nextn_predict_layers = 1;
  const auto e = MakeEngineOptions(o, config);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->speculative_tokens, 2);
  // The module's latent layer counts in the KV memory budget.
  EXPECT_EQ(MtpKvLayers(o, config), 1);
  EXPECT_EQ(MtpKvLayers(Parse({"--model", "m"}), config), 0);
  const int64_t four_layer_block =
      engine::KvCacheSpecFor(config, engine::DType::kBF16, 1).BytesPerBlock();
  EXPECT_EQ(four_layer_block, 64 * 576 * 4 * 2);
  const auto budgeted =
      MakeEngineOptions(Parse({"--model", "m", "--speculative-tokens", "1",
                               "--kv-cache-memory-bytes", std::to_string(10 * four_layer_block)}),
                        config);
  ASSERT_TRUE(budgeted.ok()) << budgeted.status();
  EXPECT_EQ(budgeted->num_kv_blocks, 10);
  // Range and parallelism are checked before any model is read.
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--speculative-tokens", "-1"},
        std::vector<std::string>{"--speculative-tokens", "9"},
        std::vector<std::string>{"--speculative-tokens", "1", "--tensor-parallel-size", "2",
                                 "--device", "cuda"}}) {
    std::vector<std::string> args = {"--model", "m"};
    args.insert(args.end(), bad.begin(), bad.end());
    const absl::Status s = CheckServerOptions(Parse(args));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << absl::StrJoin(bad, " ");
    EXPECT_NE(s.message().find("--speculative-tokens"), std::string::npos) << s;
  }
  // The CPU backend speculates on a tensor/expert-parallel group (it shards the module).
  EXPECT_TRUE(CheckServerOptions(
                  Parse({"--model", "m", "--speculative-tokens", "1", "--tensor-parallel-size", "2",
                         "--expert-parallel-size", "2", "--device", "cpu"}))
                  .ok());
  // The CUDA backend speculates too; its KV budget counts the module's layer as the CPU's does.
  const auto cuda = MakeCudaEngineOptions(o, config, 512, 10);
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  EXPECT_EQ(cuda->speculative_tokens, 2);
  const auto cuda_kv = MakeCudaKvRequest(
      Parse({"--model", "m", "--device", "cuda", "--max-model-len", "512", "--speculative-tokens",
             "1", "--kv-cache-memory-bytes", std::to_string(10 * four_layer_block)}),
      config);
  ASSERT_TRUE(cuda_kv.ok()) << cuda_kv.status();
  EXPECT_EQ(cuda_kv->max_num_kv_blocks, 10);
}

TEST(ServerOptionsTest, SpeculativeDisableByBatchSizeNeedsSpeculation) {
  engine::ModelConfig config = Config(3);
  config.num_nextn_predict_layers = 1;
  const auto e = MakeEngineOptions(Parse({"--model", "m", "--speculative-tokens", "1",
                                          "--speculative-disable-by-batch-size", "4"}),
                                   config);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->speculative_disable_by_batch_size, 4);
  const auto unset =
      MakeEngineOptions(Parse({"--model", "m", "--speculative-tokens", "1"}), config);
  ASSERT_TRUE(unset.ok()) << unset.status();
  EXPECT_EQ(unset->speculative_disable_by_batch_size, 0);
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--speculative-disable-by-batch-size", "4"},
        std::vector<std::string>{"--speculative-tokens", "1", "--speculative-disable-by-batch-size",
                                 "-2"}}) {
    std::vector<std::string> args = {"--model", "m"};
    args.insert(args.end(), bad.begin(), bad.end());
    const absl::Status s = CheckServerOptions(Parse(args));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << absl::StrJoin(bad, " ");
    EXPECT_NE(s.message().find("--speculative-disable-by-batch-size"), std::string::npos) << s;
  }
}

TEST(ServerOptionsTest, KvCacheDtypeFp32IsCpuOnly) {
  const auto cuda = Parse({"--model", "m", "--device", "cuda", "--kv-cache-dtype", "fp32"});
  EXPECT_NE(CheckServerOptions(cuda).message().find("--kv-cache-dtype fp32"), std::string::npos);
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

TEST(ServerOptionsTest, ThreadsAreBoundedAndReachTheEngine) {
  for (const char* bad : {"-1", "4097"}) {
    const absl::Status s = CheckServerOptions(Parse({"--model", "m", "--threads", bad}));
    EXPECT_EQ(std::string(s.message()).rfind("--threads", 0), 0u) << bad << ": " << s;
  }
  const ServerOptions o = Parse({"--model", "m", "--threads", "3"});
  EXPECT_TRUE(CheckServerOptions(o).ok());
  EXPECT_EQ(Parse({"--model", "m"}).threads, 0);
  const auto e = MakeEngineOptions(o, Config());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->cpu_threads, 3);
}

TEST(ServerOptionsTest, ParallelSizesReachTheEngineAndMustDivideTheModel) {
  ServerOptions o =
      Parse({"--model", "m", "--tensor-parallel-size", "2", "--expert-parallel-size", "2"});
  ASSERT_TRUE(CheckServerOptions(o).ok());
  engine::ModelConfig config = Config();
  config.num_attention_heads = 4;
  config.intermediate_size = 512;
  config.moe_intermediate_size = 128;
  config.n_routed_experts = 8;
  config.n_shared_experts = 1;
  config.first_k_dense_replace = 1;
  config.moe_layer_freq = 1;
  const auto e = MakeEngineOptions(o, config);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->tensor_parallel_size, 2);
  EXPECT_EQ(e->expert_parallel_size, 2);

  o = Parse({"--model", "m", "--tensor-parallel-size", "3"});
  EXPECT_EQ(std::string(MakeEngineOptions(o, config).status().message())
                .rfind("--tensor-parallel-size 3 does not divide", 0),
            0u);
  o = Parse({"--model", "m", "--expert-parallel-size", "3"});
  EXPECT_EQ(std::string(MakeEngineOptions(o, config).status().message())
                .rfind("--expert-parallel-size 3 does not divide", 0),
            0u);
  EXPECT_EQ(
      std::string(
          CheckServerOptions(Parse({"--model", "m", "--tensor-parallel-size", "0"})).message())
          .rfind("--tensor-parallel-size", 0),
      0u);
  EXPECT_EQ(
      std::string(
          CheckServerOptions(Parse({"--model", "m", "--expert-placement", "p.json"})).message())
          .rfind("--expert-placement needs --expert-parallel-size", 0),
      0u);
}

TEST(ServerOptionsTest, MultiNodeFlagsAreCheckedBeforeLoading) {
  const auto message = [](std::vector<std::string> args) {
    std::vector<std::string> all = {"--model", "m"};
    all.insert(all.end(), args.begin(), args.end());
    return std::string(CheckServerOptions(Parse(all)).message());
  };
  EXPECT_EQ(message({"--device", "cuda", "--expert-parallel-size", "16", "--nnodes", "2",
                     "--node-rank", "1", "--rendezvous", "tcp:10.0.0.1:29500"}),
            "");
  EXPECT_EQ(message({"--device", "cuda", "--tensor-parallel-size", "8", "--nnodes", "2",
                     "--rendezvous", "file:/shared/nccl-id"}),
            "");
  EXPECT_EQ(message({"--nnodes", "0"}).rfind("--nnodes must be >= 1", 0), 0u);
  EXPECT_EQ(message({"--nnodes", "2", "--node-rank", "2", "--device", "cuda"})
                .rfind("--node-rank must be in [0, --nnodes 2)", 0),
            0u);
  EXPECT_EQ(message({"--node-rank", "-1"}).rfind("--node-rank must be in", 0), 0u);
  EXPECT_EQ(message({"--nnodes", "2", "--expert-parallel-size", "2", "--rendezvous", "tcp:h:1"})
                .rfind("--nnodes > 1 needs --device cuda", 0),
            0u);
  EXPECT_EQ(message({"--device", "cuda", "--nnodes", "2", "--expert-parallel-size", "2"})
                .rfind("--nnodes > 1 needs --rendezvous", 0),
            0u);
  EXPECT_EQ(message({"--device", "cuda", "--nnodes", "2", "--expert-parallel-size", "2",
                     "--rendezvous", "tcp:host"})
                .rfind("--rendezvous: rendezvous address 'tcp:host' must be tcp:HOST:PORT", 0),
            0u);
  EXPECT_EQ(message({"--device", "cuda", "--nnodes", "2", "--expert-parallel-size", "2",
                     "--rendezvous", "udp:h:1"})
                .rfind("--rendezvous: rendezvous address 'udp:h:1' must start with", 0),
            0u);
  EXPECT_EQ(message({"--device", "cuda", "--nnodes", "2", "--expert-parallel-size", "3",
                     "--rendezvous", "tcp:h:1"})
                .rfind("--nnodes 2 must divide the group of 3 ranks", 0),
            0u);
  EXPECT_EQ(message({"--rendezvous", "tcp:h:1"}).rfind("--rendezvous is for --nnodes > 1", 0), 0u);
}

// The container image sets these variables (docker/Dockerfile) so that `docker run IMAGE` serves
// its bundled model on 0.0.0.0 while arguments after the image name still win.
TEST(ServerOptionsTest, EnvironmentSuppliesModelAddressAndPortsAndFlagsWin) {
  const std::vector<std::pair<const char*, const char*>> env = {
      {"MOESERVE_MODEL", "/models/default"},
      {"MOESERVE_HOST", "0.0.0.0"},
      {"MOESERVE_PORT", "6001"},
      {"MOESERVE_METRICS_PORT", "6002"}};
  for (const auto& [name, value] : env) ASSERT_EQ(setenv(name, value, 1), 0);

  const ServerOptions from_env = Parse({});
  EXPECT_EQ(from_env.model_dir, "/models/default");
  EXPECT_EQ(from_env.host, "0.0.0.0");
  EXPECT_EQ(from_env.port, 6001);
  EXPECT_EQ(from_env.metrics_port, 6002);
  EXPECT_TRUE(CheckServerOptions(from_env).ok());

  const ServerOptions flags = Parse({"--model", "/models/mine", "--port", "7001"});
  EXPECT_EQ(flags.model_dir, "/models/mine");
  EXPECT_EQ(flags.port, 7001);
  EXPECT_EQ(flags.host, "0.0.0.0");  // not on the command line: still the variable

  ASSERT_EQ(setenv("MOESERVE_PORT", "not-a-port", 1), 0);
  EXPECT_THROW(Parse({}), CLI::ParseError);

  for (const auto& [name, value] : env) ASSERT_EQ(unsetenv(name), 0);
  EXPECT_THROW(Parse({}), CLI::RequiredError);  // no --model and no MOESERVE_MODEL
}

}  // namespace
}  // namespace moeserve::server
