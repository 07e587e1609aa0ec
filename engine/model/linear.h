// One nn.Linear on the CPU backend: y = x · Wᵀ, with W in its held format (weights.h) and the
// input rounded through FP8 first when the weight was FP8 and activation quantization is on
// (reference §4). The layers (MLA, MLP, MoE, lm_head) call ApplyLinear.
#pragma once

#include <cstdint>

#include "engine/model/weights.h"

namespace moeserve::engine {

// x: [rows, in_features] with row stride ldx; y: [rows, out_features] (row stride ldy, default
// out_features). accumulate: y += x · Wᵀ.
void ApplyLinear(const LinearWeight& linear, const float* x, int64_t rows, int64_t ldx,
                 bool quantize_activations, float* y, int64_t ldy = -1, bool accumulate = false);

// [a; b]: a's rows, then b's, in a's format when CanStackRows (same format and, for FP8, a's
// rows end on a 128-row block boundary so the scale rows stack too); otherwise both
// dequantized to fp32.
bool CanStackRows(const LinearWeight& a, const LinearWeight& b);
LinearWeight StackRows(LinearWeight a, LinearWeight b);

// The MLP's gate_proj and up_proj as one [2 * width, hidden] matrix, whether or not it holds
// them apart (MlpWeights): for consumers that need the stack (the CUDA upload).
LinearWeight StackedGateUp(const MlpWeights& mlp);

}  // namespace moeserve::engine
