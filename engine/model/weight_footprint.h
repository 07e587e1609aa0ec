// How many bytes of host memory the CPU backend's weights will take, before any is loaded.
//
// The CPU memory plan (runner/cpu_memory_plan.h) needs the figure up front, so that a model that
// does not fit is refused with the numbers instead of failing half-way through a load with
// std::bad_alloc. The estimate follows the rules LoadModelWeights applies (weights.h) from the
// checkpoint's headers alone: linears in the format they will be held in, everything else fp32,
// plus the per-head split of kv_b_proj that absorbed MLA uses. WeightBytesHeld measures a
// loaded model the same way, which is how the estimate is tested.
#pragma once

#include <cstdint>

#include "engine/io/checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_loader.h"
#include "engine/model/weights.h"

namespace moeserve::engine {

// Bytes LoadModelWeights(checkpoint, config, options) will hold for one unsharded copy of the
// main stack (the MTP layer is not loaded and not counted).
int64_t EstimateWeightBytes(const Checkpoint& checkpoint, const ModelConfig& config,
                            const LoadOptions& options);

// Bytes a loaded model holds: every linear as held (LinearWeight::size_bytes) and every fp32
// vector.
int64_t WeightBytesHeld(const ModelWeights& weights);

}  // namespace moeserve::engine
