#include "server/server_options.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/batch/forward_batch.h"
#include "engine/exact_number.h"
#include "engine/kv_cache/kv_cache_spec.h"
#include "engine/model/weight_loader.h"
#include "engine/ops/dtype.h"
#include "engine/parallel/parallel_config.h"
#include "engine/parallel/rendezvous.h"

namespace moeserve::server {
namespace {

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// A timeout beyond a day, or a KV budget beyond a pebibyte, is a typo (or an attempt to make
// the server allocate without bound), not a configuration.
constexpr double kMaxTimeoutSeconds = 86400;
constexpr int64_t kMaxKvCacheMemoryBytes = int64_t{1} << 50;
// HTTP/2 allows 2^31-1; more than this per connection only helps one client crowd out others.
constexpr int kMaxStreamsPerConnection = 1 << 16;

absl::Status CheckPort(const char* flag, int port) {
  if (port < 0 || port > 65535) {
    return Invalid(absl::StrCat(flag, " must be in [0, 65535], got ", port));
  }
  return absl::OkStatus();
}

absl::Status CheckPositive(const char* flag, int64_t value) {
  if (value < 1) return Invalid(absl::StrCat(flag, " must be >= 1, got ", value));
  return absl::OkStatus();
}

}  // namespace

void AddServerFlags(CLI::App& app, ServerOptions& o) {
  // The listen address, ports and model also come from MOESERVE_* variables, so a container
  // image can default to 0.0.0.0 and its bundled model while `docker run IMAGE --flag ...`
  // replaces only the image's CMD; a flag on the command line wins over the variable.
  app.add_option("--model", o.model_dir,
                 "checkpoint directory (HF layout: config.json, *.safetensors, tokenizer.json)")
      ->envname("MOESERVE_MODEL")
      ->required();
  app.add_option("--served-model-name", o.served_model_name,
                 "model name in GetModelInfo and the metrics' model_name label "
                 "(default: the model directory's name)");
  app.add_option("--host", o.host, "address to listen on (gRPC, HTTP and /metrics)")
      ->envname("MOESERVE_HOST")
      ->capture_default_str();
  app.add_option("--port", o.port, "gRPC port (0 = ephemeral)")
      ->envname("MOESERVE_PORT")
      ->capture_default_str();
  app.add_option("--metrics-port", o.metrics_port, "Prometheus /metrics port (0 = ephemeral)")
      ->envname("MOESERVE_METRICS_PORT")
      ->capture_default_str();
  app.add_option("--http-port", o.http_port,
                 "OpenAI-compatible HTTP API port, which also serves /metrics (0 = off, "
                 "-1 = ephemeral)")
      ->envname("MOESERVE_HTTP_PORT")
      ->capture_default_str();
  app.add_option("--http-threads", o.http_threads,
                 "threads polling the HTTP connections (requests are parsed and tokenized on "
                 "them; generation runs on the engine)")
      ->capture_default_str();
  app.add_option("--chat-template", o.chat_template,
                 "a Jinja2 chat template file to use instead of tokenizer_config.json's "
                 "chat_template");
  app.add_option("--reasoning-parser", o.reasoning_parser,
                 "split chat output into reasoning_content and content: deepseek_r1 "
                 "(<think>...</think>)");
  app.add_option("--device", o.device, "where the model runs")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--quantization", o.quantization,
                 "fp8: quantize the checkpoint's linear weights to 128x128 FP8 blocks at load, "
                 "DeepSeek's recipe (default: as the checkpoint is)")
      ->check(CLI::IsMember({"", "fp8"}));
  app.add_option("--cpu-kernels", o.cpu_kernels,
                 "--device cpu: fast (weights in checkpoint precision, AVX-512/AVX2 chosen at run "
                 "time), bf16 (as fast, BF16 linears on AVX-512-BF16 dot products with "
                 "bf16-rounded inputs) or reference (fp32 weights, portable kernel)")
      ->check(CLI::IsMember({"fast", "bf16", "reference"}))
      ->capture_default_str();
  app.add_option("--kv-cache-dtype", o.kv_cache_dtype,
                 "--device cpu: latent KV cache elements: auto (bf16 with the fast and bf16 kernel "
                 "sets, as on the GPU; fp32 with reference), bf16 or fp32")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}))
      ->capture_default_str();
  app.add_option("--generation-config", o.generation_config,
                 "auto: requests that leave temperature, top_p, top_k, min_p, "
                 "repetition_penalty or max_tokens unset take the model's generation_config.json "
                 "values (as vLLM); none: the plain defaults")
      ->check(CLI::IsMember({"auto", "none"}))
      ->capture_default_str();
  app.add_flag("--deterministic", o.deterministic,
               "--device cpu: every GEMM on moeserve's own kernels, so a request's output is "
               "bit-identical alone and batched (--cpu-kernels bf16 otherwise hands BF16 GEMMs "
               "of 32+ rows to oneDNN, faster; docs/cpu-numerics.md)");
  app.add_flag("--check-weights", o.check_weights,
               "--device cpu: also scan every floating linear and expert weight for NaN/inf at "
               "load (norms, routers, embeddings and FP8 scales are always checked)");
  app.add_option("--threads", o.threads,
                 "--device cpu: threads of the CPU kernels in all, split evenly over the ranks "
                 "(0: every CPU this process may use, from its affinity mask)")
      ->capture_default_str();
  app.add_option("--gpu-memory-utilization", o.gpu_memory_utilization,
                 "--device cuda: share of GPU memory for weights, activations and the KV cache, "
                 "which gets what the others leave")
      ->capture_default_str();
  app.add_flag("--enforce-eager", o.enforce_eager,
               "--device cuda: run every step eagerly instead of replaying CUDA graphs (decode, "
               "speculative verification and drafts)");
  app.add_option("--max-num-batched-tokens", o.max_num_batched_tokens,
                 "token budget of one engine step (chunked prefill)")
      ->capture_default_str();
  app.add_option("--max-num-seqs", o.max_num_seqs, "sequences running at once")
      ->capture_default_str();
  app.add_option("--speculative-tokens", o.speculative_tokens,
                 "speculative decoding with the model's multi-token-prediction (MTP) module: "
                 "draft tokens each decode step verifies (0: off; the checkpoint needs "
                 "num_nextn_predict_layers >= 1; on a tensor/expert-parallel group, CPU only)")
      ->capture_default_str();
  app.add_option("--speculative-disable-by-batch-size", o.speculative_disable_by_batch_size,
                 "with --speculative-tokens: no drafts while more than this many sequences decode, "
                 "where verifying them costs more than it gains (0: never)")
      ->capture_default_str();
  app.add_option("--max-num-partial-prefills", o.max_num_partial_prefills,
                 "prompts prefilled in one engine step at most")
      ->capture_default_str();
  app.add_option("--long-prefill-token-threshold", o.long_prefill_token_threshold,
                 "while several prompts wait, each prefill chunk takes at most this many tokens, "
                 "so short prompts are not held up by long ones (0 = a quarter of "
                 "--max-num-batched-tokens)")
      ->capture_default_str();
  auto* kv_bytes = app.add_option("--kv-cache-memory-bytes", o.kv_cache_memory_bytes,
                                  "KV cache size in bytes (whole 64-token blocks)");
  auto* kv_tokens =
      app.add_option("--kv-cache-tokens", o.kv_cache_tokens,
                     absl::StrCat("KV cache size in tokens (default ", kDefaultKvCacheTokens, ")"));
  kv_bytes->excludes(kv_tokens);
  app.add_option("--max-queue", o.max_queue,
                 "requests waiting for admission beyond the running ones; more are refused "
                 "with RESOURCE_EXHAUSTED")
      ->capture_default_str();
  app.add_option("--max-model-len", o.max_model_len,
                 "prompt + generated tokens of one request (default: min(config "
                 "max_position_embeddings, KV capacity))");
  app.add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", o.enable_prefix_caching,
               "reuse the KV of shared prompt prefixes (default on)");
  app.add_option("--log-level", o.log_level)
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}))
      ->capture_default_str();
  app.add_option("--port-file", o.port_file,
                 "once SERVING, write {\"grpc_port\": N, \"metrics_port\": M, \"http_port\": H} "
                 "here (atomically)");
  app.add_option("--shutdown-grace-seconds", o.shutdown_grace_seconds,
                 "on SIGTERM/SIGINT, how long in-flight requests may run before they are aborted")
      ->capture_default_str();
  app.add_flag("--per-expert-metrics", o.per_expert_metrics,
               "export routed tokens per (layer, expert) (layers x experts series)");
  app.add_option("--api-key", o.api_key,
                 "require 'authorization: Bearer KEY' metadata on every Moeserve RPC (health "
                 "stays open); prefer the MOESERVE_API_KEY environment variable")
      ->envname("MOESERVE_API_KEY");
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate chain: serve gRPC over TLS");
  app.add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", o.tls_client_ca,
                 "PEM CA bundle: require client certificates signed by it (mutual TLS)");
  app.add_option("--max-message-bytes", o.max_message_bytes,
                 "largest request message accepted (bigger: RESOURCE_EXHAUSTED)")
      ->capture_default_str();
  app.add_option("--max-concurrent-streams", o.max_concurrent_streams,
                 "open Generate streams at once; more are refused with RESOURCE_EXHAUSTED "
                 "(0 = no cap)")
      ->capture_default_str();
  app.add_option("--max-streams-per-connection", o.max_streams_per_connection,
                 "HTTP/2 streams one client connection may have open at once (its "
                 "SETTINGS_MAX_CONCURRENT_STREAMS); keeps one connection from taking every "
                 "Generate slot")
      ->capture_default_str();
  app.add_option("--stream-write-timeout", o.stream_write_timeout_seconds,
                 "seconds a Generate stream may wait for its client to read a response before "
                 "it is cancelled and its KV cache freed")
      ->capture_default_str();
  app.add_option("--connection-idle-timeout", o.connection_idle_seconds,
                 "seconds a client connection may stay open without a call before the server "
                 "closes it (GOAWAY)")
      ->capture_default_str();
  app.add_option("--handshake-timeout", o.handshake_timeout_seconds,
                 "seconds a new connection has to complete its TLS handshake and HTTP/2 "
                 "preface before it is closed")
      ->capture_default_str();
  app.add_option("--grpc-max-threads", o.grpc_max_threads,
                 "upper bound on gRPC's threads for this server")
      ->capture_default_str();
  app.add_option("--tensor-parallel-size", o.tensor_parallel_size,
                 "ranks the MLA heads, dense MLP and shared experts are split over")
      ->capture_default_str();
  app.add_option("--expert-parallel-size", o.expert_parallel_size,
                 "ranks the routed experts are spread over (1 or the tensor-parallel size, or "
                 "any divisor of the experts with --tensor-parallel-size 1)")
      ->capture_default_str();
  app.add_option("--expert-placement", o.expert_placement,
                 "expert placement JSON (tools/expert_placement); needs "
                 "--expert-parallel-size > 1");
  app.add_option("--nnodes", o.nnodes,
                 "--device cuda: nodes the group spans, one moeserve process each")
      ->capture_default_str();
  app.add_option("--node-rank", o.node_rank,
                 "this node's index; node 0 serves, the others follow its steps")
      ->capture_default_str();
  app.add_option("--rendezvous", o.rendezvous,
                 "with --nnodes > 1: where node 0 publishes NCCL's id (file:PATH on a shared "
                 "filesystem, or tcp:HOST:PORT of node 0)");
}

absl::Status CheckServerOptions(const ServerOptions& o) {
  if (o.model_dir.empty()) return Invalid("--model must not be empty");
  if (o.host.empty()) return Invalid("--host must not be empty");
  if (absl::Status s = CheckPort("--port", o.port); !s.ok()) return s;
  if (absl::Status s = CheckPort("--metrics-port", o.metrics_port); !s.ok()) return s;
  if (o.port != 0 && o.port == o.metrics_port) {
    return Invalid(absl::StrCat("--port and --metrics-port must differ, both are ", o.port));
  }
  if (o.http_port != -1) {
    if (absl::Status s = CheckPort("--http-port", o.http_port); !s.ok()) return s;
  }
  if (o.http_port > 0 && (o.http_port == o.port || o.http_port == o.metrics_port)) {
    return Invalid(
        absl::StrCat("--http-port must differ from --port and --metrics-port, got ", o.http_port));
  }
  if (o.http_threads < 1 || o.http_threads > 256) {
    return Invalid(absl::StrCat("--http-threads must be in [1, 256], got ", o.http_threads));
  }
  if (!o.reasoning_parser.empty() && o.reasoning_parser != "deepseek_r1") {
    return Invalid(absl::StrCat("--reasoning-parser must be deepseek_r1 (or unset), got '",
                                o.reasoning_parser, "'"));
  }
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda") {
    return Invalid(absl::StrCat("--device must be auto, cpu or cuda, got '", o.device, "'"));
  }
  if (!o.quantization.empty() && o.quantization != "fp8") {
    return Invalid(
        absl::StrCat("--quantization must be fp8 (or unset), got '", o.quantization, "'"));
  }
  if (!engine::ParseCpuKernels(o.cpu_kernels).has_value()) {
    return Invalid(
        absl::StrCat("--cpu-kernels must be fast, bf16 or reference, got '", o.cpu_kernels, "'"));
  }
  if (o.kv_cache_dtype != "auto" && !engine::ParseKvCacheDtype(o.kv_cache_dtype).has_value()) {
    return Invalid(
        absl::StrCat("--kv-cache-dtype must be auto, bf16 or fp32, got '", o.kv_cache_dtype, "'"));
  }
  if (o.generation_config != "auto" && o.generation_config != "none") {
    return Invalid(
        absl::StrCat("--generation-config must be auto or none, got '", o.generation_config, "'"));
  }
  if (o.device == "cuda" && o.kv_cache_dtype == "fp32") {
    return Invalid("--kv-cache-dtype fp32 is for --device cpu; the CUDA latent cache is BF16");
  }
  if (o.threads < 0 || o.threads > kMaxThreads) {
    return Invalid(absl::StrCat("--threads must be in [0, ", kMaxThreads, "], got ", o.threads));
  }
  if (!(o.gpu_memory_utilization > 0.0 && o.gpu_memory_utilization <= 1.0)) {
    return Invalid(absl::StrCat("--gpu-memory-utilization must be in (0, 1], got ",
                                engine::ExactNumber(o.gpu_memory_utilization)));
  }
  if (absl::Status s = CheckPositive("--max-num-batched-tokens", o.max_num_batched_tokens);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPositive("--max-num-seqs", o.max_num_seqs); !s.ok()) return s;
  if (o.speculative_tokens < 0 || o.speculative_tokens > engine::kMaxSpeculativeTokens) {
    return Invalid(absl::StrCat("--speculative-tokens must be in [0, ",
                                engine::kMaxSpeculativeTokens, "], got ", o.speculative_tokens));
  }
  if (o.speculative_disable_by_batch_size < 0) {
    return Invalid(absl::StrCat("--speculative-disable-by-batch-size must be >= 0, got ",
                                o.speculative_disable_by_batch_size));
  }
  if (o.speculative_disable_by_batch_size > 0 && o.speculative_tokens == 0) {
    return Invalid("--speculative-disable-by-batch-size needs --speculative-tokens >= 1");
  }
  if (o.speculative_tokens > 0 && o.device == "cuda" &&
      (o.tensor_parallel_size > 1 || o.expert_parallel_size > 1)) {
    return Invalid(
        "--speculative-tokens with --device cuda runs the MTP module on one GPU: it cannot be "
        "combined with --tensor-parallel-size or --expert-parallel-size above 1 yet (the CPU "
        "backend can)");
  }
  if (absl::Status s = CheckPositive("--max-num-partial-prefills", o.max_num_partial_prefills);
      !s.ok()) {
    return s;
  }
  if (o.long_prefill_token_threshold < 0) {
    return Invalid(absl::StrCat("--long-prefill-token-threshold must be >= 0, got ",
                                o.long_prefill_token_threshold));
  }
  if (o.max_queue < 0) return Invalid(absl::StrCat("--max-queue must be >= 0, got ", o.max_queue));
  if (o.kv_cache_memory_bytes < 0 || o.kv_cache_memory_bytes > kMaxKvCacheMemoryBytes) {
    return Invalid(absl::StrCat("--kv-cache-memory-bytes must be in [1, ", kMaxKvCacheMemoryBytes,
                                "], got ", o.kv_cache_memory_bytes,
                                " (the memory plan then checks it against the device's memory)"));
  }
  if (o.kv_cache_tokens < 0) {
    return Invalid(absl::StrCat("--kv-cache-tokens must be > 0, got ", o.kv_cache_tokens));
  }
  if (o.kv_cache_memory_bytes > 0 && o.kv_cache_tokens > 0) {
    return Invalid("--kv-cache-memory-bytes and --kv-cache-tokens are exclusive: give one");
  }
  if (o.max_model_len < 0) {
    return Invalid(absl::StrCat("--max-model-len must be >= 1, got ", o.max_model_len));
  }
  if (!std::isfinite(o.shutdown_grace_seconds) || o.shutdown_grace_seconds < 0) {
    return Invalid(absl::StrCat("--shutdown-grace-seconds must be finite and >= 0, got ",
                                engine::ExactNumber(o.shutdown_grace_seconds)));
  }
  if (o.max_message_bytes < 1024) {
    return Invalid(absl::StrCat("--max-message-bytes must be >= 1024, got ", o.max_message_bytes));
  }
  if (o.max_concurrent_streams < 0) {
    return Invalid(
        absl::StrCat("--max-concurrent-streams must be >= 0, got ", o.max_concurrent_streams));
  }
  if (o.max_streams_per_connection < 1 || o.max_streams_per_connection > kMaxStreamsPerConnection) {
    return Invalid(absl::StrCat("--max-streams-per-connection must be in [1, ",
                                kMaxStreamsPerConnection, "], got ", o.max_streams_per_connection));
  }
  for (const auto& [flag, seconds] :
       {std::pair{"--stream-write-timeout", o.stream_write_timeout_seconds},
        std::pair{"--connection-idle-timeout", o.connection_idle_seconds},
        std::pair{"--handshake-timeout", o.handshake_timeout_seconds}}) {
    if (!(seconds >= 0.1 && seconds <= kMaxTimeoutSeconds)) {  // written so that NaN fails
      return Invalid(absl::StrCat(flag, " must be in [0.1, ", kMaxTimeoutSeconds, "] seconds, got ",
                                  engine::ExactNumber(seconds)));
    }
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return Invalid("--tls-cert and --tls-key must be given together");
  }
  if (!o.tls_client_ca.empty() && o.tls_cert.empty()) {
    return Invalid("--tls-client-ca needs --tls-cert and --tls-key");
  }
  if (o.tensor_parallel_size < 1) {
    return Invalid(
        absl::StrCat("--tensor-parallel-size must be >= 1, got ", o.tensor_parallel_size));
  }
  if (o.expert_parallel_size < 1) {
    return Invalid(
        absl::StrCat("--expert-parallel-size must be >= 1, got ", o.expert_parallel_size));
  }
  if (!o.expert_placement.empty() && o.expert_parallel_size < 2) {
    return Invalid("--expert-placement needs --expert-parallel-size > 1");
  }
  if (o.nnodes < 1) return Invalid(absl::StrCat("--nnodes must be >= 1, got ", o.nnodes));
  if (o.node_rank < 0 || o.node_rank >= o.nnodes) {
    return Invalid(
        absl::StrCat("--node-rank must be in [0, --nnodes ", o.nnodes, "), got ", o.node_rank));
  }
  if (o.nnodes > 1) {
    if (o.device != "cuda") {
      return Invalid("--nnodes > 1 needs --device cuda (ranks on other nodes talk through NCCL)");
    }
    if (o.rendezvous.empty()) {
      return Invalid("--nnodes > 1 needs --rendezvous (file:PATH or tcp:HOST:PORT of node 0)");
    }
    if (absl::Status s = engine::ValidateRendezvousAddress(o.rendezvous); !s.ok()) {
      return Invalid(absl::StrCat("--rendezvous: ", s.message()));
    }
    const int world = std::max(o.tensor_parallel_size, o.expert_parallel_size);
    if (world % o.nnodes != 0) {
      return Invalid(absl::StrCat("--nnodes ", o.nnodes, " must divide the group of ", world,
                                  " ranks (max of --tensor-parallel-size and "
                                  "--expert-parallel-size)"));
    }
  } else if (!o.rendezvous.empty()) {
    return Invalid("--rendezvous is for --nnodes > 1");
  }
  if (o.grpc_max_threads < 2) {
    // gRPC needs a poller and a worker; fewer deadlocks the server.
    return Invalid(absl::StrCat("--grpc-max-threads must be >= 2, got ", o.grpc_max_threads));
  }
  return absl::OkStatus();
}

std::string ServedModelName(const ServerOptions& o) {
  if (!o.served_model_name.empty()) return o.served_model_name;
  std::filesystem::path path(o.model_dir);
  if (!path.has_filename()) path = path.parent_path();  // "dir/" → "dir"
  const std::string name = path.filename().string();
  return name.empty() ? o.model_dir : name;
}

engine::LoadOptions CpuLoadOptions(const ServerOptions& o) {
  return {.quantize_fp8 = o.quantization == "fp8",
          .cpu_kernels = engine::ParseCpuKernels(o.cpu_kernels).value_or(engine::CpuKernels::kFast),
          .kv_cache_dtype = engine::ParseKvCacheDtype(o.kv_cache_dtype),
          .check_all_weights = o.check_weights,
          .deterministic = o.deterministic,
          .load_mtp = o.speculative_tokens > 0};
}

int64_t MtpKvLayers(const ServerOptions& o, const engine::ModelConfig& config) {
  return o.speculative_tokens > 0 ? config.num_nextn_predict_layers : 0;
}

absl::StatusOr<int64_t> KvCacheBlocks(const ServerOptions& o, const engine::ModelConfig& config) {
  if (o.kv_cache_memory_bytes > 0) {
    const engine::KvCacheSpec spec = engine::KvCacheSpecFor(
        config, engine::CpuKvCacheDtype(CpuLoadOptions(o)), MtpKvLayers(o, config));
    const int64_t blocks = engine::NumBlocksForBudget(o.kv_cache_memory_bytes, spec);
    if (blocks < 1) {
      return Invalid(absl::StrCat("--kv-cache-memory-bytes ", o.kv_cache_memory_bytes,
                                  " holds no KV block: one block of ", engine::kKvBlockSize,
                                  " tokens takes ", spec.BytesPerBlock(), " bytes for this model"));
    }
    return blocks;
  }
  const int64_t tokens = o.kv_cache_tokens > 0 ? o.kv_cache_tokens : kDefaultKvCacheTokens;
  return (tokens + engine::kKvBlockSize - 1) / engine::kKvBlockSize;
}

absl::StatusOr<engine::EngineOptions> MakeEngineOptions(const ServerOptions& o,
                                                        const engine::ModelConfig& config) {
  absl::StatusOr<int64_t> blocks = KvCacheBlocks(o, config);
  if (!blocks.ok()) return blocks.status();
  const int64_t capacity_tokens = *blocks * engine::kKvBlockSize;
  const int64_t position_limit =
      config.max_position_embeddings > 0 ? config.max_position_embeddings : capacity_tokens;
  int64_t max_model_len = std::min(position_limit, capacity_tokens);
  if (o.max_model_len > 0) {
    if (o.max_model_len > position_limit) {
      return Invalid(absl::StrCat("--max-model-len ", o.max_model_len,
                                  " exceeds the model's max_position_embeddings ", position_limit));
    }
    if (o.max_model_len > capacity_tokens) {
      return Invalid(absl::StrCat("--max-model-len ", o.max_model_len,
                                  " exceeds the KV cache capacity of ", capacity_tokens,
                                  " tokens; raise --kv-cache-tokens or --kv-cache-memory-bytes"));
    }
    max_model_len = o.max_model_len;
  }
  if (o.speculative_tokens > 0 && config.num_nextn_predict_layers < 1) {
    return Invalid(absl::StrCat("--speculative-tokens needs a multi-token-prediction module, and ",
                                o.model_dir, "/config.json has num_nextn_predict_layers 0"));
  }
  engine::EngineOptions options;
  options.num_kv_blocks = *blocks;
  options.max_num_seqs = o.max_num_seqs;
  options.speculative_tokens = o.speculative_tokens;
  options.speculative_disable_by_batch_size = o.speculative_disable_by_batch_size;
  options.max_num_batched_tokens = o.max_num_batched_tokens;
  options.max_num_partial_prefills = o.max_num_partial_prefills;
  options.cpu_threads = o.threads;
  options.long_prefill_token_threshold = o.long_prefill_token_threshold;
  options.max_model_len = max_model_len;
  options.max_waiting_requests = o.max_queue;
  options.enable_prefix_caching = o.enable_prefix_caching;
  options.tensor_parallel_size = o.tensor_parallel_size;
  options.expert_parallel_size = o.expert_parallel_size;
  if (absl::Status s =
          engine::ValidateParallelConfig({.tensor_parallel_size = o.tensor_parallel_size,
                                          .expert_parallel_size = o.expert_parallel_size},
                                         config);
      !s.ok()) {
    return s;
  }
  return options;
}

absl::StatusOr<CudaKvRequest> MakeCudaKvRequest(const ServerOptions& o,
                                                const engine::ModelConfig& config) {
  CudaKvRequest request;
  const int64_t position_limit = config.max_position_embeddings;
  request.max_model_len = o.max_model_len > 0 ? o.max_model_len : position_limit;
  if (request.max_model_len < 1) {
    return Invalid(
        "--device cuda needs --max-model-len (config.json has no max_position_embeddings)");
  }
  if (position_limit > 0 && request.max_model_len > position_limit) {
    return Invalid(absl::StrCat("--max-model-len ", request.max_model_len,
                                " exceeds the model's max_position_embeddings ", position_limit));
  }
  if (o.kv_cache_memory_bytes > 0) {
    const engine::KvCacheSpec spec =
        engine::KvCacheSpecFor(config, engine::DType::kBF16, MtpKvLayers(o, config));
    request.max_num_kv_blocks = engine::NumBlocksForBudget(o.kv_cache_memory_bytes, spec);
  } else if (o.kv_cache_tokens > 0) {
    request.max_num_kv_blocks =
        (o.kv_cache_tokens + engine::kKvBlockSize - 1) / engine::kKvBlockSize;
  }
  return request;
}

absl::StatusOr<engine::EngineOptions> MakeCudaEngineOptions(const ServerOptions& o,
                                                            const engine::ModelConfig& config,
                                                            int64_t max_model_len,
                                                            int64_t num_kv_blocks) {
  ServerOptions sized = o;
  sized.kv_cache_memory_bytes = 0;
  sized.kv_cache_tokens = num_kv_blocks * engine::kKvBlockSize;
  sized.max_model_len = max_model_len;
  return MakeEngineOptions(sized, config);
}

}  // namespace moeserve::server
