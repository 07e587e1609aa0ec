// Greedy sampling on the GPU: the argmax of each row of logits, with the CPU sampler's rule
// (sampler.h step 3): ties go to the lower id and NaN never wins; a row that is all NaN gives 0.
// Lets a greedy decode step return token ids without copying [batch, vocab] logits to the host.
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// logits: device [num_rows, vocab] (fp32, or bf16 bits); token_ids: device [num_rows] int32.
int LaunchArgmaxF32(const float* logits, int64_t num_rows, int64_t vocab, int32_t* token_ids,
                    void* stream);
int LaunchArgmaxBf16(const uint16_t* logits, int64_t num_rows, int64_t vocab, int32_t* token_ids,
                     void* stream);

}  // namespace moeserve::engine
