// Writes a random-weight DeepSeek checkpoint in real Hugging Face layout: config.json,
// safetensors (sharded with model.safetensors.index.json when shards > 1), BF16 weights or
// FP8 E4M3 linears with 128x128 weight_scale_inv blocks (reference §2, §4).
//
// Deterministic per seed: every tensor is filled from a counter-based generator keyed by
// (seed, tensor name), so the bytes do not depend on threads or shard layout. Tensors are
// generated one shard at a time, so full-size presets need only a shard's worth of memory.
// Used by moeserve-make-model, by tests that need a checkpoint, and by the golden oracle flow.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/model_config.h"

namespace moeserve::tools {

struct MakeCheckpointOptions {
  std::string out_dir;
  bool fp8 = false;    // quantize the linears of attention, MLPs and experts
  int64_t shards = 0;  // 0: about 4 GiB per shard
  uint64_t seed = 0;
};

// The role of a tensor decides its dtype and its random distribution.
enum class TensorRole {
  kLinear,       // nn.Linear weight; FP8 with --fp8
  kDenseLinear,  // a linear DeepSeek never quantizes (lm_head, MTP eh_proj): BF16
  kEmbedding,    // BF16, N(0, 1)
  kNorm,         // BF16, 1 + N(0, 0.1²)
  kRouter,       // mlp.gate.weight: BF16
  kRouterBias,   // e_score_correction_bias: F32
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  TensorRole role;
};

// Every tensor of the checkpoint (main stack, then MTP layers), in HF names and shapes.
std::vector<TensorSpec> CheckpointTensorSpecs(const engine::ModelConfig& config);

absl::Status MakeRandomCheckpoint(const engine::ModelConfig& config,
                                  const MakeCheckpointOptions& options);

}  // namespace moeserve::tools
