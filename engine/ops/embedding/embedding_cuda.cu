#include <cuda_runtime.h>

#include "engine/ops/embedding/embedding_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kThreadsPerBlock = 256;

// grid: [num_tokens]; 16-byte vectors when the row allows it, else 2-byte elements. With
// `positions`, a token at position 0 gets a zero row.
template <typename Vec>
__global__ void EmbeddingGatherKernel(const Vec* __restrict__ table, int64_t vocab,
                                      int64_t row_vecs, const int32_t* __restrict__ token_ids,
                                      const int32_t* __restrict__ positions,
                                      Vec* __restrict__ out) {
  const int64_t t = blockIdx.x;
  const int32_t id = token_ids[t];
  Vec* dst = out + t * row_vecs;
  if (id < 0 || id >= vocab || (positions != nullptr && positions[t] == 0)) {
    for (int64_t i = threadIdx.x; i < row_vecs; i += blockDim.x) dst[i] = Vec{};
    return;
  }
  const Vec* src = table + static_cast<int64_t>(id) * row_vecs;
  for (int64_t i = threadIdx.x; i < row_vecs; i += blockDim.x) dst[i] = src[i];
}

int LaunchGather(const uint16_t* table, int64_t vocab, int64_t hidden, const int32_t* token_ids,
                 const int32_t* positions, int64_t num_tokens, uint16_t* out, void* stream) {
  if (num_tokens == 0) return cudaSuccess;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool aligned = hidden % 8 == 0 && reinterpret_cast<uintptr_t>(table) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (aligned) {
    EmbeddingGatherKernel<uint4><<<static_cast<unsigned>(num_tokens), kThreadsPerBlock, 0, s>>>(
        reinterpret_cast<const uint4*>(table), vocab, hidden / 8, token_ids, positions,
        reinterpret_cast<uint4*>(out));
  } else {
    EmbeddingGatherKernel<uint16_t><<<static_cast<unsigned>(num_tokens), kThreadsPerBlock, 0, s>>>(
        table, vocab, hidden, token_ids, positions, out);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int LaunchEmbeddingGatherBf16(const uint16_t* table, int64_t vocab, int64_t hidden,
                              const int32_t* token_ids, int64_t num_tokens, uint16_t* out,
                              void* stream) {
  return LaunchGather(table, vocab, hidden, token_ids, /*positions=*/nullptr, num_tokens, out,
                      stream);
}

int LaunchMtpEmbeddingGatherBf16(const uint16_t* table, int64_t vocab, int64_t hidden,
                                 const int32_t* token_ids, const int32_t* positions,
                                 int64_t num_tokens, uint16_t* out, void* stream) {
  return LaunchGather(table, vocab, hidden, token_ids, positions, num_tokens, out, stream);
}

}  // namespace moeserve::engine
