// Named DeepSeek configurations for moeserve-make-model.
//
// Tiny presets keep the real MLA head geometry (kv_lora_rank 512, qk_nope 128, qk_rope 64,
// v 128: a 576-wide latent cache) so GPU kernels specialised for DeepSeek shapes can run on
// them, while hidden size, layers, experts and vocabulary are small enough for CPU tests.
// Full-size presets reproduce V2-Lite and a slice of V3 for GPU benchmarks (reference §1).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"

namespace moeserve::tools {

// tiny-v2-lite: greedy softmax routing, q_proj (no q_lora), YaRN with mscale 0.707.
// tiny-v2:      group-limited greedy, q_lora, no rope scaling.
// tiny-v3:      noaux_tc + correction bias, q_lora, YaRN, dense first layer, one MTP layer.
// v2-lite:      DeepSeek-V2-Lite exactly.       v3-slice: DeepSeek-V3 shapes, 3 layers.
absl::StatusOr<engine::ModelConfig> PresetConfig(const std::string& name);
std::vector<std::string> PresetNames();

}  // namespace moeserve::tools
