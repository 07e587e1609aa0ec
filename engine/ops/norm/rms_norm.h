// RMSNorm: y = w ⊙ x / sqrt(mean(x²) + eps), statistics in fp32 (reference §3).
//
// Used by the DeepSeek model for the input/post-attention/final norms and for the q_a and
// kv_a latent norms. The CPU version is the reference; the CUDA version (bf16 activations,
// fp32 statistics, as the GPU runner keeps its residual stream) is tested against it.
#pragma once

#include <cstdint>

#include "absl/types/span.h"

namespace moeserve::engine {

// x, y: [num_rows, dim] row-major (may alias); weight: [dim].
void RmsNormCpu(absl::Span<const float> x, absl::Span<const float> weight, float eps,
                int64_t num_rows, absl::Span<float> y);

}  // namespace moeserve::engine
