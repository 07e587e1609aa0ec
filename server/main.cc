// moeserve: the gRPC inference server.
//   moeserve --model DIR [--port 50051] [--metrics-port 9400] [--device auto|cpu|cuda] ...
// (server_options.cc lists every flag.) Startup order, chosen so that an orchestrator always
// gets an answer: block signals → listen for gRPC with health NOT_SERVING → load tokenizer and
// model → metrics endpoint → engine → warmup → SERVING → --port-file. Then wait for
// SIGTERM/SIGINT and drain (shutdown.h). Any startup failure prints one line naming the cause
// (the file, the flag) and exits 1; a command line CLI11 rejects exits 2 (command_line.h).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/batch/forward_batch.h"
#include "engine/chat/chat_template.h"
#include "engine/cli/command_line.h"
#include "engine/engine.h"
#include "engine/io/bounded_file.h"
#include "engine/kv_cache/kv_cache_spec.h"
#include "engine/model/deepseek_model.h"
#include "engine/model/generation_config.h"
#include "engine/model/weight_loader.h"
#include "engine/ops/cpu/cpu_features.h"
#include "engine/ops/cpu/cpu_threads.h"
#include "engine/ops/dtype.h"
#include "engine/parallel/expert_placement.h"
#include "engine/parallel/parallel_model.h"
#include "engine/runner/cpu_memory_plan.h"
#include "engine/runner/cuda_runner.h"
#include "engine/runner/device.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/accept_guard.h"
#include "server/generate_service.h"
#include "server/grpc_server.h"
#include "server/http/http_server.h"
#include "server/http/metrics_port.h"
#include "server/http/openai_service.h"
#include "server/logging.h"
#include "server/prometheus_metrics.h"
#include "server/server_options.h"
#include "server/serving_state.h"
#include "server/shutdown.h"
#include "server/status_mapping.h"
#include "server/tls.h"
#include "server/warmup.h"

namespace moeserve::server {
namespace {

int Fail(const std::string& message) {
  LogError(message);
  return 1;
}

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// Runs a loader, turning std::bad_alloc into ResourceExhausted naming what was being loaded and
// the memory plan's estimate: the plan is an estimate, and memory another process takes
// meanwhile must not abort us without a word.
template <typename Loader>
auto LoadOrOutOfMemory(const std::string& what, const std::string& plan, const Loader& loader)
    -> decltype(loader()) {
  try {
    return loader();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of host memory (std::bad_alloc) while loading ", what,
                     plan.empty() ? std::string() : absl::StrCat(" (", plan, ")"),
                     "; free memory, or lower --kv-cache-memory-bytes / --kv-cache-tokens"));
  }
}

// {"grpc_port": N, "metrics_port": M}, written to a temporary file and renamed into place, so
// a reader polling the path never sees half a file.
absl::Status WritePortFile(const std::string& path, int grpc_port, int metrics_port,
                           int http_port) {
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(temp, std::ios::trunc);
    out << nlohmann::json{{"grpc_port", grpc_port},
                          {"metrics_port", metrics_port},
                          {"http_port", http_port}}
               .dump()
        << "\n";
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat("--port-file: cannot write ", temp));
  }
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("--port-file: cannot rename ", temp, " to ", path, ": ", error.message()));
  }
  return absl::OkStatus();
}

moeserve::v1::GetModelInfoResponse ModelInfo(const std::string& served_model_name,
                                             const engine::ModelConfig& config,
                                             const engine::EngineOptions& engine_options,
                                             const std::vector<int32_t>& eos_token_ids,
                                             const engine::GenerationDefaults& defaults,
                                             const std::string& quantization,
                                             const std::string& device) {
  moeserve::v1::GetModelInfoResponse info;
  info.set_served_model_name(served_model_name);
  info.set_architecture(std::string(engine::ArchitectureName(config.architecture)));
  info.set_model_type(config.model_type);
  info.set_max_context_length(static_cast<uint32_t>(engine_options.max_model_len));
  info.set_vocab_size(static_cast<uint32_t>(config.vocab_size));
  for (int32_t id : eos_token_ids) info.add_eos_token_ids(static_cast<uint32_t>(id));
  if (config.bos_token_id) info.set_bos_token_id(static_cast<uint32_t>(*config.bos_token_id));
  info.set_dtype("float32");  // the CPU backend computes in fp32 whatever the weights' dtype
  info.set_quantization(quantization);
  info.set_num_layers(static_cast<uint32_t>(config.num_hidden_layers));
  info.set_num_routed_experts(static_cast<uint32_t>(config.n_routed_experts));
  info.set_num_experts_per_token(static_cast<uint32_t>(config.num_experts_per_tok));
  info.set_num_mtp_modules(static_cast<uint32_t>(config.num_nextn_predict_layers));
  info.set_speculative_tokens(static_cast<uint32_t>(engine_options.speculative_tokens));
  info.set_speculative_disable_by_batch_size(
      static_cast<uint32_t>(engine_options.speculative_disable_by_batch_size));
  info.set_kv_cache_capacity_tokens(
      static_cast<uint64_t>(engine_options.num_kv_blocks * engine::kKvBlockSize));
  info.set_device(device);
  moeserve::v1::GenerationDefaults* reported = info.mutable_generation_defaults();
  if (defaults.temperature) reported->set_temperature(*defaults.temperature);
  if (defaults.top_p) reported->set_top_p(*defaults.top_p);
  if (defaults.top_k) reported->set_top_k(*defaults.top_k);
  if (defaults.min_p) reported->set_min_p(*defaults.min_p);
  if (defaults.repetition_penalty) reported->set_repetition_penalty(*defaults.repetition_penalty);
  if (defaults.max_new_tokens) {
    reported->set_max_tokens(
        static_cast<uint32_t>(std::min<int64_t>(*defaults.max_new_tokens, UINT32_MAX)));
  }
  return info;
}

std::vector<int32_t> EosTokenIds(const engine::ModelConfig& config,
                                 const engine::Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  for (int64_t id : config.eos_token_ids) ids.push_back(static_cast<int32_t>(id));
  if (ids.empty() && config.eos_token_id) ids.push_back(static_cast<int32_t>(*config.eos_token_id));
  if (ids.empty() && tokenizer.eos_token_id()) ids.push_back(*tokenizer.eos_token_id());
  return ids;
}

// The CUDA loader's options from the flags (every node computes the same ones).
engine::CudaRunnerOptions CudaLoadOptions(const ServerOptions& options, const CudaKvRequest& kv,
                                          std::optional<engine::ExpertPlacement> placement) {
  return {.gpu_memory_utilization = options.gpu_memory_utilization,
          .load = {.quantize_fp8 = options.quantization == "fp8",
                   .load_mtp = options.speculative_tokens > 0},
          .max_num_batched_tokens = options.max_num_batched_tokens,
          .max_num_seqs = options.max_num_seqs,
          .max_model_len = kv.max_model_len,
          .max_num_kv_blocks = kv.max_num_kv_blocks,
          .enforce_eager = options.enforce_eager,
          .parallel = {.tensor_parallel_size = options.tensor_parallel_size,
                       .expert_parallel_size = options.expert_parallel_size},
          .placement = std::move(placement),
          .nnodes = options.nnodes,
          .node_rank = options.node_rank,
          .rendezvous = options.rendezvous};
}

// --node-rank > 0: no gRPC, no engine; this node's GPUs run the steps node 0 announces, until
// node 0 shuts down (exit 0) or a rank fails.
int FollowNodeZero(const ServerOptions& options) {
  absl::StatusOr<engine::ModelConfig> config =
      engine::LoadModelConfig(options.model_dir + "/config.json");
  if (!config.ok()) return Fail(absl::StrCat("cannot load the model: ", config.status().message()));
  std::optional<engine::ExpertPlacement> placement;
  if (!options.expert_placement.empty()) {
    absl::StatusOr<engine::ExpertPlacement> loaded =
        engine::LoadPlacementFile(options.expert_placement, engine::MoeLayerMask(*config));
    if (!loaded.ok()) return Fail(absl::StrCat("--expert-placement: ", loaded.status().message()));
    placement = *std::move(loaded);
  }
  absl::StatusOr<CudaKvRequest> kv = MakeCudaKvRequest(options, *config);
  if (!kv.ok()) return Fail(std::string(kv.status().message()));
  const engine::CudaRunnerOptions cuda = CudaLoadOptions(options, *kv, std::move(placement));
  LogInfo(absl::StrCat("node ", options.node_rank, " of ", options.nnodes, ": loading ",
                       options.model_dir, ", rendezvous ", options.rendezvous));
  absl::Status status = engine::RunCudaFollowerNode(options.model_dir, cuda,
                                                    [](const std::string& line) { LogInfo(line); });
  if (!status.ok()) return Fail(absl::StrCat("node ", options.node_rank, ": ", status.message()));
  LogInfo("node 0 shut down the group; exiting");
  return 0;
}

// The checkpoint's chat template, --chat-template's, or none (the checkpoint has none).
absl::StatusOr<std::optional<engine::ChatTemplate>> LoadChatTemplate(const ServerOptions& options) {
  if (!options.chat_template.empty()) {
    // Special tokens still come from the checkpoint, so {{ bos_token }} works in the file.
    std::optional<std::string> config;
    const std::string config_path = options.model_dir + "/tokenizer_config.json";
    if (std::filesystem::exists(config_path)) {
      absl::StatusOr<std::string> text =
          engine::ReadRegularFile(config_path, engine::kMaxChatTemplateFileBytes * 16);
      if (!text.ok()) return text.status();
      config = *std::move(text);
    }
    absl::StatusOr<engine::ChatTemplate> loaded =
        engine::ChatTemplate::LoadChatTemplateFile(options.chat_template, config);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--chat-template: ", loaded.status().message()));
    }
    return std::optional<engine::ChatTemplate>(*std::move(loaded));
  }
  absl::StatusOr<engine::ChatTemplate> loaded =
      engine::ChatTemplate::LoadFromModelDir(options.model_dir);
  if (absl::IsNotFound(loaded.status())) return std::optional<engine::ChatTemplate>();
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load the chat template: ", loaded.status().message()));
  }
  return std::optional<engine::ChatTemplate>(*std::move(loaded));
}

int Serve(const ServerOptions& options) {
  absl::StatusOr<engine::DeviceSelection> device = engine::SelectDevice(options.device);
  if (!device.ok()) return Fail(std::string(device.status().message()));
  LogInfo(absl::StrCat("device: ", device->description));
  if (options.node_rank > 0) return FollowNodeZero(options);
  const std::string served_model_name = ServedModelName(options);

  ShutdownSignal signals;
  // Set once the metrics exist; RPCs that finish before that (during the load) go unrecorded.
  std::atomic<PrometheusMetrics*> metrics_for_calls{nullptr};
  GenerateService service(
      [&metrics_for_calls](const std::string& method, grpc::StatusCode code) {
        if (PrometheusMetrics* m = metrics_for_calls.load()) {
          m->OnGrpcCall(method, GrpcCodeName(code));
        }
      },
      {.api_key = options.api_key,
       .max_concurrent_streams = options.max_concurrent_streams,
       .stream_write_timeout = Millis(options.stream_write_timeout_seconds)});
  absl::StatusOr<TlsPem> tls = ReadTlsFiles({.cert_chain = options.tls_cert,
                                             .private_key = options.tls_key,
                                             .client_ca = options.tls_client_ca});
  if (!tls.ok()) return Fail(std::string(tls.status().message()));
  const std::shared_ptr<grpc::ServerCredentials> credentials = MakeServerCredentials(*tls);
  absl::StatusOr<std::unique_ptr<GrpcServer>> grpc_server =
      GrpcServer::Start({.host = options.host,
                         .port = options.port,
                         .max_receive_message_bytes = options.max_message_bytes,
                         .max_threads = options.grpc_max_threads,
                         .max_streams_per_connection = options.max_streams_per_connection,
                         .connection_idle_timeout = Millis(options.connection_idle_seconds),
                         .handshake_timeout = Millis(options.handshake_timeout_seconds),
                         .credentials = credentials},
                        &service);
  if (!grpc_server.ok()) return Fail(std::string(grpc_server.status().message()));
  // Both ports are taken before the model loads (minutes, for a real checkpoint): a busy
  // metrics port must not be found only afterwards. Scrapes during the load get an empty page.
  std::atomic<PrometheusMetrics*> metrics_for_scrape{nullptr};
  const auto metrics_text = [&metrics_for_scrape] {
    PrometheusMetrics* metrics = metrics_for_scrape.load();
    return metrics != nullptr ? metrics->Serialize() : std::string();
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> metrics_server =
      HttpServer::Start(options.host, options.metrics_port, MetricsPortOptions(),
                        [&metrics_text](std::shared_ptr<HttpExchange> exchange) {
                          ServeMetricsPort(*exchange, metrics_text);
                        });
  if (!metrics_server.ok()) {
    return Fail(absl::StrCat("--metrics-port: ", metrics_server.status().message()));
  }
  OpenAiService openai({.served_model_name = served_model_name,
                        .api_key = options.api_key,
                        .parse_reasoning = options.reasoning_parser == "deepseek_r1",
                        .metrics_text = metrics_text});
  std::unique_ptr<HttpServer> http_server;
  if (options.http_port != 0) {
    absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(
        options.host, std::max(0, options.http_port),
        {.name = "HTTP",
         .threads = options.http_threads,
         .max_body_bytes = static_cast<size_t>(options.max_message_bytes),
         .inactivity_timeout = std::chrono::seconds(
             static_cast<int64_t>(std::max(1.0, options.stream_write_timeout_seconds))),
         .tls = {.cert_chain_pem = tls->cert_chain,
                 .private_key_pem = tls->private_key,
                 .client_ca_pem = tls->client_ca}},
        [&openai](std::shared_ptr<HttpExchange> exchange) { openai.Handle(std::move(exchange)); },
        [&metrics_for_calls](const std::string& endpoint, int status) {
          if (PrometheusMetrics* m = metrics_for_calls.load()) m->OnHttpRequest(endpoint, status);
        });
    if (!started.ok()) return Fail(absl::StrCat("--http-port: ", started.status().message()));
    http_server = *std::move(started);
  }
  const int http_port = http_server != nullptr ? http_server->port() : 0;
  LogInfo(absl::StrCat("gRPC listening on ", options.host, ":", (*grpc_server)->port(),
                       options.tls_cert.empty()        ? " (plaintext"
                       : options.tls_client_ca.empty() ? " (TLS"
                                                       : " (mutual TLS",
                       options.api_key.empty() ? ", no API key" : ", API key required",
                       "; NOT_SERVING until the model is loaded and warmed up)"));
  if (http_server != nullptr) {
    LogInfo(absl::StrCat("OpenAI-compatible HTTP API listening on ", options.host, ":", http_port,
                         options.tls_cert.empty() ? " (plaintext)" : " (TLS)"));
  }

  LogInfo(absl::StrCat("loading ", options.model_dir));
  {
    // Said plainly, rather than as the first file inside it that is missing.
    std::error_code error;
    const auto status = std::filesystem::status(options.model_dir, error);
    if (!std::filesystem::exists(status)) {
      return Fail(absl::StrCat("--model ", options.model_dir, ": no such directory"));
    }
    if (!std::filesystem::is_directory(status)) {
      return Fail(absl::StrCat("--model ", options.model_dir,
                               ": not a directory (give the checkpoint's directory)"));
    }
  }
  absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer =
      engine::Tokenizer::Load(options.model_dir);
  if (!tokenizer.ok())
    return Fail(absl::StrCat("cannot load the tokenizer: ", tokenizer.status().message()));
  absl::StatusOr<std::optional<engine::ChatTemplate>> chat_template = LoadChatTemplate(options);
  if (!chat_template.ok()) return Fail(std::string(chat_template.status().message()));
  LogInfo(chat_template->has_value()
              ? absl::StrCat("chat template: ", options.chat_template.empty()
                                                    ? "tokenizer_config.json"
                                                    : options.chat_template)
              : std::string("no chat template: /v1/chat/completions answers 400 (give one with "
                            "--chat-template)"));
  // The parallel layout is checked against config.json before any weight is read.
  const engine::ParallelConfig parallel{.tensor_parallel_size = options.tensor_parallel_size,
                                        .expert_parallel_size = options.expert_parallel_size};
  std::optional<engine::ExpertPlacement> placement;
  absl::StatusOr<engine::ModelConfig> loaded_config =
      engine::LoadModelConfig(options.model_dir + "/config.json");
  if (!loaded_config.ok()) {
    return Fail(absl::StrCat("cannot load the model: ", loaded_config.status().message()));
  }
  const engine::ModelConfig& config = *loaded_config;
  engine::GenerationDefaults generation_defaults;
  if (options.generation_config == "auto") {
    absl::StatusOr<engine::GenerationDefaults> loaded =
        engine::LoadGenerationDefaults(options.model_dir);
    if (!loaded.ok())
      return Fail(absl::StrCat("cannot load the model: ", loaded.status().message()));
    generation_defaults = *std::move(loaded);
  }
  LogInfo(absl::StrCat("generation defaults (--generation-config ", options.generation_config,
                       "): ", generation_defaults.Summary()));
  // The end-of-sequence ids, computed once: config.json's (checked when it was parsed) or the
  // tokenizer's, plus generation_config.json's (e.g. a chat model's end-of-turn). Each must lie
  // inside the vocabulary, checked before any narrowing.
  std::vector<int32_t> eos_token_ids = EosTokenIds(config, **tokenizer);
  std::vector<int64_t> all_eos(eos_token_ids.begin(), eos_token_ids.end());
  all_eos.insert(all_eos.end(), generation_defaults.eos_token_ids.begin(),
                 generation_defaults.eos_token_ids.end());
  for (int64_t id : all_eos) {
    if (id < 0 || id >= config.vocab_size) {
      return Fail(absl::StrCat("cannot load the model: EOS token id ", id,
                               " (tokenizer or generation_config.json) is outside the model's "
                               "vocabulary (vocab_size ",
                               config.vocab_size, ")"));
    }
  }
  for (int64_t id : generation_defaults.eos_token_ids) {
    if (std::find(eos_token_ids.begin(), eos_token_ids.end(), id) == eos_token_ids.end()) {
      eos_token_ids.push_back(static_cast<int32_t>(id));
    }
  }
  {
    if (absl::Status s = engine::ValidateParallelConfig(parallel, config); !s.ok()) {
      return Fail(std::string(s.message()));
    }
    if (!options.expert_placement.empty()) {
      absl::StatusOr<engine::ExpertPlacement> loaded =
          engine::LoadPlacementFile(options.expert_placement, engine::MoeLayerMask(config));
      if (!loaded.ok()) {
        return Fail(absl::StrCat("--expert-placement: ", loaded.status().message()));
      }
      placement = *std::move(loaded);
    }
  }
  // The model, on the CPU (ParallelModel: one or several rank threads) or on a GPU.
  std::unique_ptr<engine::ParallelModel> cpu_model;
  engine::CudaRunner cuda;
  absl::StatusOr<engine::EngineOptions> engine_options;
  std::string quantization;  // what the linears run in
  if (device->kind == engine::DeviceKind::kCuda) {
    absl::StatusOr<CudaKvRequest> kv = MakeCudaKvRequest(options, config);
    if (!kv.ok()) return Fail(std::string(kv.status().message()));
    absl::StatusOr<engine::CudaRunner> loaded =
        engine::LoadCudaRunner(options.model_dir, CudaLoadOptions(options, *kv, placement));
    if (!loaded.ok()) {
      return Fail(absl::StrCat("cannot load the model on the GPU: ", loaded.status().message()));
    }
    cuda = *std::move(loaded);
    for (const std::string& line : cuda.log_lines) LogInfo(line);
    quantization = cuda.quantization;
    engine_options = MakeCudaEngineOptions(options, config, kv->max_model_len, cuda.num_kv_blocks);
  } else {
    const engine::LoadOptions load = CpuLoadOptions(options);
    const int threads = options.threads > 0 ? options.threads : engine::CpusAllowed();
    LogInfo(absl::StrCat("CPU kernels: ", options.cpu_kernels, " on ", threads, " threads (",
                         engine::CpusAllowed(), " CPUs allowed); CPU ",
                         engine::CpuFeaturesString()));
    engine_options = MakeEngineOptions(options, config);
    if (!engine_options.ok()) return Fail(std::string(engine_options.status().message()));
    // Refuse a model that cannot fit before reading a byte of it (DESIGN.md §4).
    absl::StatusOr<engine::CpuMemoryPlan> plan = engine::PlanCpuModelMemory(
        options.model_dir, config, load,
        engine::CpuServingShape{
            .num_kv_blocks = engine_options->num_kv_blocks,
            .kv_bytes_per_block = engine::KvCacheSpecFor(config, engine::CpuKvCacheDtype(load),
                                                         MtpKvLayers(options, config))
                                      .BytesPerBlock(),
            .max_num_batched_tokens = engine_options->max_num_batched_tokens,
            .max_num_seqs = engine_options->max_num_seqs,
            .max_model_len = engine_options->max_model_len,
            .world_size = parallel.world_size()});
    if (!plan.ok()) return Fail(absl::StrCat("cannot load the model: ", plan.status().message()));
    LogInfo(plan->summary);
    absl::StatusOr<std::unique_ptr<engine::ParallelModel>> loaded =
        LoadOrOutOfMemory(options.model_dir, plan->summary, [&] {
          return engine::ParallelModel::Load(options.model_dir, load, parallel, placement,
                                             std::max(1, threads / parallel.world_size()));
        });
    if (!loaded.ok()) {
      return Fail(absl::StrCat("cannot load the model: ", loaded.status().message()));
    }
    cpu_model = *std::move(loaded);
    if (parallel.world_size() > 1) {
      LogInfo(absl::StrCat(
          "model split over ", parallel.world_size(), " rank threads: tensor parallel ",
          parallel.tensor_parallel_size, ", expert parallel ", parallel.expert_parallel_size,
          placement ? absl::StrCat(", placement ", options.expert_placement) : std::string()));
    }
    quantization = config.fp8 ? "fp8" : options.quantization == "fp8" ? "fp8 (online)" : "none";
  }
  if (!engine_options.ok()) return Fail(std::string(engine_options.status().message()));
  PrometheusMetrics::Options metrics_options{
      .model_name = served_model_name,
      .num_layers = config.num_hidden_layers,
      .num_routed_experts = config.n_routed_experts,
      .block_size = engine::kKvBlockSize,
      .num_kv_blocks = engine_options->num_kv_blocks,
      .per_expert_counters = options.per_expert_metrics,
      .max_model_len = engine_options->max_model_len,
      .speculative_tokens = engine_options->speculative_tokens};
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    metrics_options.moe_layers.push_back(config.IsMoeLayer(layer));
  }
  PrometheusMetrics metrics(metrics_options);
  metrics_for_scrape.store(&metrics);
  // Declared after `metrics`, so it runs first: the HTTP threads (scrapes, and the per-request
  // counter) are joined before the metrics they touch go away.
  const absl::Cleanup stop_http_servers = [&metrics_server, &http_server] {
    http_server.reset();
    metrics_server->reset();
  };

  GatedMetricsRecorder engine_metrics(&metrics);
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      LoadOrOutOfMemory(absl::StrCat("the engine and KV cache of ", options.model_dir), "", [&] {
        return cpu_model != nullptr ? engine::Engine::Create(*cpu_model, tokenizer->get(),
                                                             *engine_options, &engine_metrics)
                                    : engine::Engine::Create(*cuda.model, tokenizer->get(),
                                                             *engine_options, &engine_metrics);
      });
  if (!engine.ok())
    return Fail(absl::StrCat("cannot start the engine: ", engine.status().message()));
  if (absl::Status s = WarmUp(**engine, **tokenizer, engine_options->max_model_len); !s.ok()) {
    return Fail(absl::StrCat("warmup failed: ", s.message()));
  }
  // The warmup's steps and tokens are not the clients': the counters start from here.
  metrics.StartCountingFrom((*engine)->Stats());
  metrics.SetStatsSource([&engine] { return (*engine)->Stats(); });
  engine_metrics.Enable();
  metrics_for_calls.store(&metrics);

  ServingBackend backend{
      .engine = engine->get(),
      .tokenizer = tokenizer->get(),
      .limits = {.vocab_size = config.vocab_size,
                 .max_model_len = engine_options->max_model_len,
                 .eos_token_ids = eos_token_ids,
                 .generation_defaults = generation_defaults,
                 .chat_template = chat_template->has_value() ? &**chat_template : nullptr},
      .model_info = ModelInfo(served_model_name, config, *engine_options, eos_token_ids,
                              generation_defaults, quantization, device->name)};
  service.SetBackend(&backend);
  openai.SetBackend(&backend);
  (*grpc_server)->SetServing(true);
  signals.MarkServing();

  const int64_t capacity_tokens = engine_options->num_kv_blocks * engine::kKvBlockSize;
  // The CPU backend's latent cache is BF16 or fp32 (--kv-cache-dtype), the CUDA backend's BF16.
  const engine::DType dtype = cpu_model != nullptr
                                  ? engine::CpuKvCacheDtype(CpuLoadOptions(options))
                                  : engine::DType::kBF16;
  const int64_t kv_bytes =
      engine_options->num_kv_blocks *
      engine::KvCacheSpecFor(config, dtype, MtpKvLayers(options, config)).BytesPerBlock();
  LogInfo(absl::StrFormat(
      "SERVING model %s (%s, %s) from %s: dtype %s, quantization %s, device %s, KV cache "
      "%d tokens (%d blocks, %.1f MiB), max_model_len %d, prefix caching %s; gRPC %s:%d, "
      "metrics http://%s:%d/metrics%s",
      served_model_name, engine::ArchitectureName(config.architecture), config.model_type,
      options.model_dir, cpu_model != nullptr ? "float32" : "bfloat16", quantization, device->name,
      capacity_tokens, engine_options->num_kv_blocks, kv_bytes / 1048576.0,
      engine_options->max_model_len, options.enable_prefix_caching ? "on" : "off", options.host,
      (*grpc_server)->port(), options.host, (*metrics_server)->port(),
      http_server != nullptr
          ? absl::StrCat("; OpenAI API ", options.tls_cert.empty() ? "http" : "https", "://",
                         options.host, ":", http_port, "/v1")
          : std::string()));
  if (!options.port_file.empty()) {
    if (absl::Status s = WritePortFile(options.port_file, (*grpc_server)->port(),
                                       (*metrics_server)->port(), http_port);
        !s.ok()) {
      LogError(std::string(s.message()));
    }
  }

  const int signal = signals.Wait();
  LogInfo(absl::StrCat("received signal ", signal, ": shutting down"));
  DrainAndStop(**grpc_server, service, &openai, **engine,
               std::chrono::duration<double>(options.shutdown_grace_seconds), signals);
  if (http_server != nullptr && !http_server->WaitForOpenExchanges(
                                    std::chrono::steady_clock::now() + std::chrono::seconds(2))) {
    LogWarning("some HTTP clients did not read their last bytes; closing anyway");
  }
  metrics.SetStatsSource({});
  return 0;
}

}  // namespace
}  // namespace moeserve::server

int main(int argc, char** argv) {
  using namespace moeserve::server;
  // First, before any thread exists: every thread inherits the mask (shutdown.h).
  if (absl::Status s = BlockShutdownSignals(); !s.ok()) {
    std::fprintf(stderr, "moeserve: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  CLI::App app{"moeserve: gRPC inference server for DeepSeek-architecture MoE models"};
  ServerOptions options;
  AddServerFlags(app, options);
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }
  if (absl::Status s = CheckServerOptions(options); !s.ok()) {
    std::fprintf(stderr, "moeserve: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  SetLogLevel(*ParseLogLevel(options.log_level));
  RouteProtobufLogsToDebug();
  RouteGrpcLogsToDebug();
  LogInfo(RaiseOpenFileLimit());
  LogInfo(absl::StrCat("a connection that would take descriptor ", InstallAcceptGuard(),
                       " or above is closed at once (docs/hardening.md)"));
  return Serve(options);
}
