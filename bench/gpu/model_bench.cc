// The whole model on one GPU (DeepseekModelCuda) at the V2-Lite shape with random FP8 weights
// made on the device layer by layer (no checkpoint, no host copy of the model): decode steps
// at batch 1 … 256 with contexts of 1k and 4k, and prefill, each against the memory floor —
// the bytes a step must read (the weights it touches: every non-expert weight, the experts
// its routing actually hit, read from the model's expert counters; plus the KV cache it
// attends over) divided by the measured device-to-device copy bandwidth. A decode step here
// is the engine's: forward, lm_head and a greedy argmax on the device (the host sampler's
// logits copy is not counted; docs/performance.md). Decode batches of up to 32 replay CUDA graphs
// as the server does (--enforce-eager: never).
//   moeserve-bench-gpu-model [--preset v2-lite] [--out bench/results/gpu_model_v2_lite.json]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/gpu/gpu_bench_util.h"
#include "bench/gpu/random_weights.h"
#include "engine/cli/command_line.h"
#include "engine/model/cuda_model_weights.h"
#include "engine/model/deepseek_model_cuda.h"
#include "engine/model/moe_layer.h"
#include "engine/ops/rope/rope.h"
#include "engine/runner/memory_planner.h"
#include "engine/sampling/argmax_cuda.h"
#include "tools/make_model/model_presets.h"

namespace moeserve::bench {
namespace {

using engine::CudaLinear;
using engine::ModelConfig;

CudaLinear RandomLinear(int64_t out, int64_t in, std::mt19937& rng) {
  absl::StatusOr<CudaLinear> linear =
      engine::UploadFp8Linear(RandomFp8Weight(out, in, rng), out, in);
  MustOk(linear.status());
  return *std::move(linear);
}

engine::DeviceBuffer Bf16(const std::vector<float>& values) {
  absl::StatusOr<engine::DeviceBuffer> buffer = engine::UploadBf16(values);
  MustOk(buffer.status());
  return *std::move(buffer);
}

engine::DeviceBuffer Ones(int64_t n) {
  return Bf16(std::vector<float>(static_cast<size_t>(n), 1.0f));
}

// Every linear FP8 (as a DeepSeek FP8 checkpoint), embeddings and lm_head BF16.
engine::CudaModelWeights RandomCudaWeights(engine::CudaContext& context, engine::CublasLtGemm& gemm,
                                           const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t d = c.hidden_size, heads = c.num_attention_heads, rank = c.kv_lora_rank;
  const int64_t nope = c.qk_nope_head_dim, v = c.v_head_dim;
  engine::CudaModelWeights w;
  w.embed_tokens = Bf16(RandomNormalTiled(static_cast<size_t>(c.vocab_size * d), 1.0, rng));
  w.final_norm = Ones(d);
  w.lm_head.out_features = c.vocab_size;
  w.lm_head.in_features = d;
  w.lm_head.weight =
      Bf16(RandomNormalTiled(static_cast<size_t>(c.vocab_size * d), 1.0 / std::sqrt(d), rng));
  const engine::RopeTable rope =
      engine::MakeRopeTable(c.qk_rope_head_dim, c.rope_theta, c.rope_scaling);
  auto inv_freq = engine::DeviceBuffer::FromHost(rope.inv_freq.data(), rope.inv_freq.size() * 4);
  MustOk(inv_freq.status());
  w.rope_inv_freq = *std::move(inv_freq);
  w.rope_attention_scaling = rope.attention_scaling;
  w.bytes = w.embed_tokens.size_bytes() + w.lm_head.bytes();

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    engine::CudaLayerWeights layer;
    layer.input_norm = Ones(d);
    layer.post_attention_norm = Ones(d);
    engine::CudaMlaWeights& a = layer.attention;
    a.num_heads = heads;
    if (c.q_lora_rank.has_value()) {
      a.q_a_proj = RandomLinear(*c.q_lora_rank, d, rng);
      a.q_a_norm = Ones(*c.q_lora_rank);
      a.q_b_proj = RandomLinear(heads * c.qk_head_dim(), *c.q_lora_rank, rng);
    } else {
      a.q_proj = RandomLinear(heads * c.qk_head_dim(), d, rng);
    }
    a.kv_a_proj = RandomLinear(c.kv_cache_dim(), d, rng);
    a.kv_a_norm = Ones(rank);
    a.kv_b_proj = RandomLinear(heads * (nope + v), rank, rng);
    a.o_proj = RandomLinear(d, heads * v, rng);
    a.w_uk_t = Bf16(
        RandomNormalTiled(static_cast<size_t>(heads * rank * nope), 1.0 / std::sqrt(nope), rng));
    a.w_uv =
        Bf16(RandomNormalTiled(static_cast<size_t>(heads * v * rank), 1.0 / std::sqrt(rank), rng));
    if (c.IsMoeLayer(l)) {
      engine::MoeLayerHostWeights host;
      host.hidden = d;
      host.expert_width = c.moe_intermediate_size;
      host.shared_width = c.shared_expert_intermediate_size();
      engine::MoeWeights routing_only;  // no bias values: zeros, copied by Create
      if (c.topk_method == engine::TopkMethod::kNoauxTc) {
        routing_only.correction_bias.assign(static_cast<size_t>(c.n_routed_experts), 0.0f);
      }
      host.routing = engine::MakeRoutingParams(c, routing_only);
      host.router = engine::FloatsToBf16(
          RandomNormalTiled(static_cast<size_t>(c.n_routed_experts * d), 1.0 / std::sqrt(d), rng));
      for (int64_t e = 0; e < c.n_routed_experts; ++e) {
        host.experts.push_back(RandomFp8Mlp(c.moe_intermediate_size, d, rng));
      }
      if (host.shared_width > 0) host.shared = RandomFp8Mlp(host.shared_width, d, rng);
      auto moe = engine::MoeLayerCuda::Create(context, gemm, host);
      MustOk(moe.status());
      layer.moe = *std::move(moe);
      w.bytes += layer.moe->weight_bytes();
    } else {
      layer.dense_mlp = engine::CudaMlp{RandomLinear(2 * c.intermediate_size, d, rng),
                                        RandomLinear(d, c.intermediate_size, rng)};
      w.bytes += layer.dense_mlp->gate_up.bytes() + layer.dense_mlp->down.bytes();
    }
    for (const CudaLinear* linear : {&a.kv_a_proj, &a.kv_b_proj, &a.o_proj}) {
      w.bytes += linear->bytes();
    }
    for (const auto* q : {&a.q_proj, &a.q_a_proj, &a.q_b_proj}) {
      if (q->has_value()) w.bytes += (*q)->bytes();
    }
    w.bytes += a.w_uk_t.size_bytes() + a.w_uv.size_bytes();
    w.layers.push_back(std::move(layer));
  }
  return w;
}

// `num_seqs` sequences of `context_len` tokens, each with `new_tokens` new ones at the end,
// on disjoint blocks of `blocks_per_seq`.
engine::ForwardBatch MakeBatch(int64_t num_seqs, int64_t context_len, int64_t new_tokens,
                               int64_t blocks_per_seq, int64_t vocab, std::mt19937& rng) {
  engine::ForwardBatchBuilder builder;
  std::uniform_int_distribution<int32_t> token(2, static_cast<int32_t>(vocab - 1));
  for (int64_t s = 0; s < num_seqs; ++s) {
    std::vector<int32_t> table(static_cast<size_t>(blocks_per_seq));
    for (int64_t b = 0; b < blocks_per_seq; ++b)
      table[b] = static_cast<int32_t>(s * blocks_per_seq + b);
    std::vector<int32_t> ids(static_cast<size_t>(new_tokens));
    for (int32_t& id : ids) id = token(rng);
    builder.AddSequence(table, context_len - new_tokens, ids);
  }
  return std::move(builder).Build();
}

int Main(int argc, char** argv) {
  CLI::App app("DeepSeek forward on one GPU: decode and prefill against the memory floor");
  std::string preset = "v2-lite";
  std::string out = std::string(MOESERVE_SOURCE_DIR) + "/bench/results/gpu_model_v2_lite.json";
  int iterations = 10;
  int64_t max_batch = 256;
  bool enforce_eager = false;
  app.add_option("--preset", preset, "model shape (moeserve-make-model presets)");
  app.add_option("--out", out, "JSON report path");
  app.add_option("--iterations", iterations, "timed steps per measurement");
  app.add_option("--max-batch", max_batch, "largest decode batch");
  app.add_flag("--enforce-eager", enforce_eager, "no CUDA graphs for decode (as the server flag)");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  absl::StatusOr<ModelConfig> config = tools::PresetConfig(preset);
  MustOk(config.status());
  const std::vector<int64_t> batches = {1, 8, 32, 64, 128, 256};
  const std::vector<int64_t> contexts = {1024, 4096};
  constexpr int64_t kPrefillChunk = 4096;
  const int64_t max_context = contexts.back() + 64;
  const int64_t blocks_per_seq = (max_context + 63) / 64;

  std::unique_ptr<engine::CudaContext> context = MustCreateContext();
  auto gemm = engine::CublasLtGemm::Create(*context);
  MustOk(gemm.status());
  std::printf("device: %s\nbuilding random %s weights on the device ...\n",
              context->device().ToString().c_str(), preset.c_str());
  std::fflush(stdout);
  engine::CudaModelWeights weights = RandomCudaWeights(*context, **gemm, *config, 20251123);
  const engine::CudaStepLimits limits{.max_num_batched_tokens = std::max(kPrefillChunk, max_batch),
                                      .max_num_seqs = max_batch,
                                      .max_model_len = max_context};
  MustOk(context->ReserveArena(engine::DeepseekModelCuda::ActivationBytes(
      *config, weights, limits, context->device().num_sms)));
  const cudaStream_t stream = static_cast<cudaStream_t>(context->stream());
  const double bandwidth = MeasureCopyBandwidth(stream);

  size_t free_bytes = 0, total_bytes = 0;
  CheckCuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  const int64_t needed_blocks = max_batch * blocks_per_seq;
  const int64_t block_bytes = engine::DeepseekModelCuda::KvBytesPerBlock(*config);
  absl::StatusOr<engine::KvMemoryPlan> plan =
      engine::PlanKvCache({.total_device_bytes = static_cast<int64_t>(total_bytes),
                           .used_device_bytes = static_cast<int64_t>(total_bytes - free_bytes),
                           .gpu_memory_utilization = 0.95,
                           .kv_bytes_per_block = block_bytes,
                           .max_model_len = max_context});
  MustOk(plan.status());
  const int64_t num_blocks = std::min(plan->num_blocks, needed_blocks);
  const int64_t weight_bytes = static_cast<int64_t>(weights.bytes);
  const int64_t embed_bytes = static_cast<int64_t>(weights.embed_tokens.size_bytes());
  // One routed expert's e4m3 gate_up and down (their scales are ~0.01 % more).
  const int64_t expert_bytes_each = 3 * config->moe_intermediate_size * config->hidden_size;
  auto model_or = engine::DeepseekModelCuda::Create(std::move(context), *std::move(gemm), *config,
                                                    std::move(weights), num_blocks);
  MustOk(model_or.status());
  engine::DeepseekModelCuda& model = **model_or;
  engine::CudaGraphOptions graphs{.max_model_len = max_context};
  if (enforce_eager) graphs.batch_sizes.clear();
  MustOk(model.SetCudaGraphs(graphs));
  std::printf("weights %s, KV pool %lld blocks, copy bandwidth %.0f GB/s\n",
              engine::FormatGiB(weight_bytes).c_str(), static_cast<long long>(num_blocks),
              bandwidth / 1e9);

  auto ids = engine::DeviceBuffer::Allocate(static_cast<size_t>(kPrefillChunk) * 4);
  MustOk(ids.status());
  const engine::ForwardOptions options{.logits_for = engine::LogitsFor::kLastTokenOfEachSequence};
  auto step = [&](const engine::ForwardBatch& batch) {
    auto logits = model.ForwardOnDevice(batch, options);
    MustOk(logits.status());
    CheckCuda(static_cast<cudaError_t>(engine::LaunchArgmaxF32(
                  logits->data, logits->rows, config->vocab_size, ids->as<int32_t>(), stream)),
              "LaunchArgmaxF32");
  };
  // Distinct experts one step's routing touches, from the model's counters.
  auto experts_touched = [&](const engine::ForwardBatch& batch) {
    const std::vector<int64_t> before = model.expert_token_counts();
    step(batch);
    const std::vector<int64_t> after = model.expert_token_counts();
    int64_t touched = 0;
    for (size_t i = 0; i < after.size(); ++i) touched += after[i] > before[i];
    return touched;
  };
  const int64_t num_moe_layers = [&] {
    int64_t n = 0;
    for (int64_t l = 0; l < config->num_hidden_layers; ++l) n += config->IsMoeLayer(l);
    return n;
  }();
  const int64_t all_experts_bytes = num_moe_layers * config->n_routed_experts * expert_bytes_each;
  // Everything but the routed experts and the embedding table (only B rows of it are read).
  const int64_t fixed_bytes = weight_bytes - all_experts_bytes - embed_bytes;

  nlohmann::json report = GpuMeasurementContext(model.context().device());
  report["benchmark"] = "gpu_model_" + preset;
  report["iterations"] = iterations;
  report["copy_bandwidth_gbps"] = bandwidth / 1e9;
  report["weight_bytes"] = weight_bytes;
  report["cuda_graph_batch_sizes"] = graphs.batch_sizes;
  std::mt19937 rng(7);
  std::printf("\n%-8s %6s %8s %10s %10s %10s %8s %12s\n", "phase", "batch", "context", "experts",
              "floor ms", "step ms", "ratio", "tokens/s");
  auto row = [&](const char* phase, int64_t batch, int64_t ctx, int64_t new_tokens) {
    const engine::ForwardBatch fb =
        MakeBatch(batch, ctx, new_tokens, blocks_per_seq, config->vocab_size, rng);
    const int64_t touched = experts_touched(fb);
    const int64_t kv_bytes = batch * ctx * block_bytes / 64;
    const double bytes = static_cast<double>(fixed_bytes + touched * expert_bytes_each + kv_bytes +
                                             batch * new_tokens * config->hidden_size * 2);
    const double floor_ms = bytes / bandwidth * 1e3;
    const double ms = TimeMs(stream, 2, iterations, [&] { step(fb); });
    const double tokens_per_s = static_cast<double>(batch * new_tokens) / (ms * 1e-3);
    std::printf("%-8s %6lld %8lld %10lld %10.3f %10.3f %8.2f %12.0f\n", phase,
                static_cast<long long>(batch), static_cast<long long>(ctx),
                static_cast<long long>(touched), floor_ms, ms, ms / floor_ms, tokens_per_s);
    std::fflush(stdout);
    report["results"].push_back({{"phase", phase},
                                 {"batch", batch},
                                 {"context", ctx},
                                 {"new_tokens_per_seq", new_tokens},
                                 {"experts_touched", touched},
                                 {"floor_bytes", bytes},
                                 {"floor_ms", floor_ms},
                                 {"step_ms", ms},
                                 {"ratio_to_floor", ms / floor_ms},
                                 {"tokens_per_s", tokens_per_s}});
  };
  for (int64_t ctx : contexts) {
    for (int64_t batch : batches) {
      if (batch <= max_batch && batch * blocks_per_seq <= num_blocks) row("decode", batch, ctx, 1);
    }
  }
  // Prefill: one 4k prompt in one step, and 16 prompts of 256 tokens batched.
  row("prefill", 1, kPrefillChunk, kPrefillChunk);
  row("prefill", 16, 256, 256);
  report["arena_peak_bytes"] = model.arena_peak_bytes();
  return WriteReport(out, report) ? 0 : 1;
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) { return moeserve::bench::Main(argc, argv); }
