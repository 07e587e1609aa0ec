#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/ops/attention/latent_cache_cuda.h"
#include "engine/ops/attention/mla_decode_split.h"
#include "engine/ops/cuda/reduce.cuh"

namespace moeserve::engine {
namespace {

constexpr int kLatentDim = kMlaVDim;            // c_kv: 512
constexpr int kRopeDim = kMlaKvDim - kMlaVDim;  // k_pe: 64
constexpr int kWriteThreads = kLatentDim / 4;   // 4 latent values per thread
constexpr int kChunk = 8;                       // bf16 per 16-byte copy
constexpr int kChunksPerRow = kMlaKvDim / kChunk;
static_assert(kWriteThreads % cuda::kWarpSize == 0, "block reductions need whole warps");
static_assert(kRopeDim / 2 <= kWriteThreads, "one thread per rotary pair");

// grid: [num_tokens]; block: kWriteThreads. Statistics, rotation and the norm product in fp32,
// stored as bf16 — the same steps as RmsNormBf16Kernel and RopeInterleavedKernel.
__global__ void __launch_bounds__(kWriteThreads)
    WriteLatentCacheFusedKernel(const __nv_bfloat16* __restrict__ kv_a, int64_t kv_a_stride,
                                const __nv_bfloat16* __restrict__ norm_weight, float eps,
                                const float* __restrict__ inv_freq, float attention_scaling,
                                const int32_t* __restrict__ positions,
                                const int64_t* __restrict__ slot_mapping, int64_t num_slots,
                                __nv_bfloat16* __restrict__ pages) {
  const int64_t token = blockIdx.x;
  const int64_t slot = slot_mapping[token];
  // Uniform per block, so returning before the block reduction is safe.
  if (slot < 0 || slot >= num_slots) return;
  const __nv_bfloat16* in = kv_a + token * kv_a_stride;
  __nv_bfloat16* out = pages + slot * kMlaKvDim;

  float values[4];
  float sum_squares = 0.0f;
  for (int i = 0; i < 4; ++i) {
    values[i] = __bfloat162float(in[threadIdx.x + i * kWriteThreads]);
    sum_squares += values[i] * values[i];
  }
  const float inv_rms =
      rsqrtf(cuda::BlockReduceSum(sum_squares) / static_cast<float>(kLatentDim) + eps);
  for (int i = 0; i < 4; ++i) {
    const int d = threadIdx.x + i * kWriteThreads;
    out[d] = __float2bfloat16(__bfloat162float(norm_weight[d]) * (values[i] * inv_rms));
  }

  if (threadIdx.x < kRopeDim / 2) {
    const int pair = threadIdx.x;
    const float angle = static_cast<float>(positions[token]) * inv_freq[pair];
    const float cos_a = cosf(angle) * attention_scaling;
    const float sin_a = sinf(angle) * attention_scaling;
    const float a = __bfloat162float(in[kLatentDim + 2 * pair]);
    const float b = __bfloat162float(in[kLatentDim + 2 * pair + 1]);
    out[kLatentDim + 2 * pair] = __float2bfloat16(a * cos_a - b * sin_a);
    out[kLatentDim + 2 * pair + 1] = __float2bfloat16(a * sin_a + b * cos_a);
  }
}

// One 16-byte chunk per thread; grid covers num_tokens × 72 chunks.
__global__ void GatherLatentCacheKernel(const uint4* __restrict__ pages, int64_t num_pages,
                                        const int32_t* __restrict__ block_table, int64_t num_tokens,
                                        uint4* __restrict__ out) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= num_tokens * kChunksPerRow) return;
  const int64_t token = i / kChunksPerRow;
  const int64_t chunk = i % kChunksPerRow;
  const int64_t page = block_table[token / kMlaPageSize];
  uint4 value = make_uint4(0, 0, 0, 0);
  if (page >= 0 && page < num_pages) {
    value = pages[(page * kMlaPageSize + token % kMlaPageSize) * kChunksPerRow + chunk];
  }
  out[i] = value;
}

}  // namespace

int LaunchWriteLatentCacheFusedBf16(const uint16_t* kv_a, int64_t kv_a_stride,
                                    const uint16_t* norm_weight, float eps, const float* inv_freq,
                                    float attention_scaling, const int32_t* positions,
                                    const int64_t* slot_mapping, int64_t num_tokens,
                                    int64_t num_slots, uint16_t* pages, void* stream) {
  if (num_tokens < 0 || kv_a_stride < kMlaKvDim || num_slots < 0 || num_tokens > 0x7fffffff) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (num_tokens == 0) return cudaSuccess;
  WriteLatentCacheFusedKernel<<<static_cast<unsigned>(num_tokens), kWriteThreads, 0,
                                static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const __nv_bfloat16*>(kv_a), kv_a_stride,
      reinterpret_cast<const __nv_bfloat16*>(norm_weight), eps, inv_freq, attention_scaling,
      positions, slot_mapping, num_slots, reinterpret_cast<__nv_bfloat16*>(pages));
  return static_cast<int>(cudaGetLastError());
}

int LaunchGatherLatentCacheBf16(const uint16_t* pages, int64_t num_pages,
                                const int32_t* block_table, int64_t num_tokens, uint16_t* out,
                                void* stream) {
  if (num_tokens < 0 || num_pages < 0) return static_cast<int>(cudaErrorInvalidValue);
  if (num_tokens == 0) return cudaSuccess;
  if (reinterpret_cast<uintptr_t>(pages) % 16 != 0 || reinterpret_cast<uintptr_t>(out) % 16 != 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  constexpr int kThreads = 256;
  const int64_t chunks = num_tokens * kChunksPerRow;
  GatherLatentCacheKernel<<<static_cast<unsigned>((chunks + kThreads - 1) / kThreads), kThreads, 0,
                            static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const uint4*>(pages), num_pages, block_table, num_tokens,
      reinterpret_cast<uint4*>(out));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
