// Embedding gather on the GPU: out[t, :] = table[token_ids[t], :] (bf16 rows copied exactly).
//
// The first op of the CUDA forward. Token ids are validated at the edge (DeepseekModel checks
// them against the vocabulary before any work); an id outside [0, vocab) still cannot read out
// of bounds here: its row is written as zeros.
// Plain C++ header (no CUDA headers); `stream` is a cudaStream_t, the result a cudaError_t.
#pragma once

#include <cstdint>

namespace moeserve::engine {

// table: device [vocab, hidden] bf16; token_ids: device [num_tokens] int32;
// out: device [num_tokens, hidden] bf16.
int LaunchEmbeddingGatherBf16(const uint16_t* table, int64_t vocab, int64_t hidden,
                              const int32_t* token_ids, int64_t num_tokens, uint16_t* out,
                              void* stream);

// The MTP module's embedding of t_{i+1}: as LaunchEmbeddingGatherBf16, but the rows of tokens at
// position 0 are zeros (the module sees no embedding there; DeepseekModel::ForwardMtp). The
// position is read on the device, so one captured CUDA graph serves every batch of its shape.
// positions: device [num_tokens] int32.
int LaunchMtpEmbeddingGatherBf16(const uint16_t* table, int64_t vocab, int64_t hidden,
                                 const int32_t* token_ids, const int32_t* positions,
                                 int64_t num_tokens, uint16_t* out, void* stream);

}  // namespace moeserve::engine
