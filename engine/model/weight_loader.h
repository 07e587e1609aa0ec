// Checkpoint → ModelWeights for the CPU backend.
//
// Checks every tensor the config implies against the checkpoint: present, a floating dtype,
// exactly the expected shape; FP8 tensors need a finite F32 weight_scale_inv of shape
// [ceil(out/128), ceil(in/128)]. Errors name the tensor, the file and both shapes. Tensors of
// the MTP layer (index num_hidden_layers, reference §2.2) are not part of the main stack and
// are left alone. Called by DeepseekModel::Load.
#pragma once

#include "absl/status/statusor.h"
#include "engine/io/checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/model/weights.h"

namespace moeserve::engine {

absl::StatusOr<ModelWeights> LoadModelWeights(const Checkpoint& checkpoint,
                                              const ModelConfig& config);

}  // namespace moeserve::engine
