// The `moeserve` command line: every flag, its default and its checks, and how the flags and
// the model's config.json become the engine's EngineOptions.
//
// main.cc registers the flags with AddServerFlags, runs CLI11, then calls CheckServerOptions
// (ranges and combinations CLI11 cannot express) before loading anything, and
// MakeEngineOptions once the model's config is known (the KV cache size in blocks depends on
// the model's layers). Errors name the flag, so a bad command line fails at once with a line
// an operator can act on.
#pragma once

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/engine_options.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_loader.h"

namespace moeserve::server {

// The KV cache when neither --kv-cache-tokens nor --kv-cache-memory-bytes is given: enough for
// the bundled model's context on a laptop-sized CPU budget.
inline constexpr int64_t kDefaultKvCacheTokens = 4096;
inline constexpr int kMaxThreads = 4096;  // --threads beyond any machine is a typo

struct ServerOptions {
  std::string model_dir;          // --model: HF checkpoint directory with tokenizer.json
  std::string served_model_name;  // --served-model-name; empty = the model directory's name
  std::string host = "127.0.0.1";
  int port = 50051;              // gRPC; 0 = ephemeral (tests)
  int metrics_port = 9400;       // HTTP /metrics; 0 = ephemeral
  int http_port = 8000;          // OpenAI API (and /metrics); 0 = off, -1 = ephemeral (tests)
  int http_threads = 4;          // HttpServer::Options::threads
  std::string chat_template;     // --chat-template FILE; empty = tokenizer_config.json's
  std::string reasoning_parser;  // "" or "deepseek_r1" (server/http/reasoning_parser.h)
  std::string device = "auto";   // auto | cpu | cuda
  // "" = as the checkpoint is (FP8 checkpoints stay FP8); "fp8" = quantize a BF16/F16/F32
  // checkpoint's linear weights to 128x128 FP8 blocks at load (engine::LoadOptions).
  std::string quantization;
  // --device cpu: "fast" = weights in checkpoint precision on this CPU's best instruction set
  // (AVX-512 / AVX2 / portable); "bf16" = the same, BF16 linears on vdpbf16ps with their inputs
  // rounded to bf16; "reference" = every linear in fp32 on the portable kernel, the
  // exact backend the golden tests pin (engine::CpuKernels).
  std::string cpu_kernels = "fast";
  // --device cpu: the latent KV cache's elements, "auto" (BF16 with the fast kernel sets, fp32
  // with reference), "bf16" or "fp32" (engine::CpuKvCacheDtype).
  std::string kv_cache_dtype = "auto";
  bool check_weights = false;  // --check-weights: LoadOptions::check_all_weights
  bool deterministic = false;  // --deterministic: LoadOptions::deterministic
  // --generation-config: "auto" applies the model's generation_config.json to unset request
  // fields (engine/model/generation_config.h), "none" keeps the plain defaults.
  std::string generation_config = "auto";
  int threads = 0;  // --threads: CPU kernel threads in all; 0 = the CPUs this process may use
  // --device cuda: the share of the GPU's memory the server may use; what the weights and
  // activations leave of it becomes the KV cache (engine/runner/memory_planner.h).
  double gpu_memory_utilization = 0.9;
  bool enforce_eager = false;  // --device cuda: no CUDA graphs for decode steps

  // Engine limits (0 = unset where noted).
  int64_t max_num_batched_tokens = 512;
  int64_t max_num_partial_prefills = 4;      // prompts prefilled in one step at most
  int64_t long_prefill_token_threshold = 0;  // chunk cap while prompts compete; 0 = budget / 4
  int64_t max_num_seqs = 64;
  // --speculative-tokens: draft tokens per step from the model's MTP module (0: off).
  int64_t speculative_tokens = 0;
  // --speculative-disable-by-batch-size: no drafts while more sequences decode (0: never).
  int64_t speculative_disable_by_batch_size = 0;
  int64_t kv_cache_memory_bytes = 0;  // 0 = unset
  int64_t kv_cache_tokens = 0;        // 0 = unset
  int64_t max_queue = 1024;           // waiting requests beyond the running ones
  int64_t max_model_len = 0;          // 0 = min(max_position_embeddings, KV capacity)
  bool enable_prefix_caching = true;

  std::string log_level = "info";
  // Written once SERVING: {"grpc_port": N, "metrics_port": M, "http_port": H (0 = off)}.
  std::string port_file;
  double shutdown_grace_seconds = 30.0;
  bool per_expert_metrics = false;
  // Upper bound on the threads gRPC may create for this server (ResourceQuota).
  int grpc_max_threads = 16;

  // Model parallelism over rank threads (engine/parallel, docs/parallel.md).
  int tensor_parallel_size = 1;  // --tensor-parallel-size: MLA heads, dense MLP, shared experts
  int expert_parallel_size = 1;  // --expert-parallel-size: routed experts over the ranks
  std::string expert_placement;  // --expert-placement: JSON from moeserve-expert-placement
  // Several nodes (--device cuda): one process per node, `world / nnodes` GPUs each; node 0
  // serves gRPC and schedules, the others follow its steps (docs/parallel.md).
  int nnodes = 1;          // --nnodes
  int node_rank = 0;       // --node-rank
  std::string rendezvous;  // --rendezvous: file:PATH or tcp:HOST:PORT (node 0's address)

  // Security and limits (issue: untrusted clients). The API key may come from the environment
  // (MOESERVE_API_KEY) so it does not show in the process list.
  std::string api_key;        // --api-key: required as 'authorization: Bearer KEY'; empty = open
  std::string tls_cert;       // --tls-cert: PEM chain; with --tls-key enables TLS
  std::string tls_key;        // --tls-key
  std::string tls_client_ca;  // --tls-client-ca: require client certificates (mTLS)
  int max_message_bytes = 4 << 20;    // largest request message accepted
  int max_concurrent_streams = 2048;  // open Generate streams; 0 = no cap
  // Transport limits (docs/hardening.md): HTTP/2 streams one connection may hold open; a
  // Generate stream whose client reads nothing for this long is cancelled and its KV freed;
  // connections without calls are closed after the idle time; handshakes (TLS, HTTP/2
  // preface and SETTINGS) must finish within theirs.
  int max_streams_per_connection = 64;
  double stream_write_timeout_seconds = 30;
  double connection_idle_seconds = 300;
  double handshake_timeout_seconds = 10;
};

void AddServerFlags(CLI::App& app, ServerOptions& options);

// Checks that need no model: ranges, exclusive flags, --device values.
absl::Status CheckServerOptions(const ServerOptions& options);

// --served-model-name, or the last component of --model ("/models/DeepSeek-V3/" → "DeepSeek-V3").
std::string ServedModelName(const ServerOptions& options);

// How the CPU backend loads the model: --quantization, --cpu-kernels, --kv-cache-dtype.
engine::LoadOptions CpuLoadOptions(const ServerOptions& options);

// Latent layers the MTP module adds to the KV cache: num_nextn_predict_layers under
// --speculative-tokens, else 0.
int64_t MtpKvLayers(const ServerOptions& options, const engine::ModelConfig& config);

// The KV capacity in 64-token blocks: --kv-cache-tokens rounded up to whole blocks, or the
// blocks of the CPU cache ((num_hidden_layers + MtpKvLayers) × kv_cache_dim elements of the
// CpuLoadOptions cache dtype per token) that fit in --kv-cache-memory-bytes, or
// kDefaultKvCacheTokens.
absl::StatusOr<int64_t> KvCacheBlocks(const ServerOptions& options,
                                      const engine::ModelConfig& config);

// The engine's options; max_model_len defaults to min(max_position_embeddings, KV capacity)
// and an explicit one must fit both. The parallel sizes must divide what they split (heads,
// widths, experts); the message names the flag.
absl::StatusOr<engine::EngineOptions> MakeEngineOptions(const ServerOptions& options,
                                                        const engine::ModelConfig& config);

// --device cuda, before the GPU memory plan: the longest sequence (--max-model-len, else the
// model's max_position_embeddings) and the cap --kv-cache-tokens / --kv-cache-memory-bytes put
// on the KV pool in blocks of BF16 latents (0 = no cap: the plan gives it what memory allows).
struct CudaKvRequest {
  int64_t max_model_len = 0;
  int64_t max_num_kv_blocks = 0;
};
absl::StatusOr<CudaKvRequest> MakeCudaKvRequest(const ServerOptions& options,
                                                const engine::ModelConfig& config);

// --device cuda, after the plan: the engine options for a KV pool of num_kv_blocks blocks.
absl::StatusOr<engine::EngineOptions> MakeCudaEngineOptions(const ServerOptions& options,
                                                            const engine::ModelConfig& config,
                                                            int64_t max_model_len,
                                                            int64_t num_kv_blocks);

}  // namespace moeserve::server
