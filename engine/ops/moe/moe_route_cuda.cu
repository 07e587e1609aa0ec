#include <cuda_runtime.h>

#include "engine/ops/cuda/reduce.cuh"
#include "engine/ops/moe/moe_route_cuda.h"

namespace moeserve::engine {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int kMaxGroups = 256;

struct RouteArgs {
  RoutingRule rule;
  int num_experts;
  int top_k;
  int num_groups;
  int topk_groups;
  bool renormalize;
  float scaling;
  const float* correction_bias;
};

// A NaN logit or bias reads as −inf (as in RouteCpu), so it never wins over a finite value;
// reduce.cuh's Better() would otherwise keep a NaN that arrived first.
__device__ __forceinline__ float NanAsMasked(float value) {
  return isnan(value) ? -INFINITY : value;
}

// The best candidate among a thread's strided elements of `values` that `taken` does not mark.
// `values` are NaN-free (NanAsMasked on load).
__device__ cuda::ArgMaxPair ThreadBest(const float* values, const unsigned char* taken, int n) {
  cuda::ArgMaxPair best{-INFINITY, 0x7fffffff};
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    if (taken[i]) continue;
    const cuda::ArgMaxPair p{values[i], i};
    if (best.index == 0x7fffffff || cuda::Better(p, best)) best = p;
  }
  return best;
}

// grid: [num_tokens]; dynamic shared memory: scores, selection [E] fp32 and taken [E] bytes.
__global__ void RouteKernel(RouteArgs a, const float* __restrict__ logits,
                            int32_t* __restrict__ expert_ids, float* __restrict__ weights) {
  extern __shared__ float shared[];
  float* scores = shared;                     // [E] unbiased scores (the weights)
  float* selection = shared + a.num_experts;  // [E] biased, group-masked (the choice)
  unsigned char* taken = reinterpret_cast<unsigned char*>(shared + 2 * a.num_experts);
  __shared__ float group_scores[kMaxGroups];
  __shared__ unsigned char group_kept[kMaxGroups];
  __shared__ float weight_sum;

  const int64_t t = blockIdx.x;
  const float* row = logits + t * a.num_experts;
  const int e_count = a.num_experts;

  if (a.rule == RoutingRule::kSigmoidNoauxTc) {
    for (int e = threadIdx.x; e < e_count; e += blockDim.x) {
      scores[e] = 1.0f / (1.0f + expf(-NanAsMasked(row[e])));
    }
  } else {
    float local_max = -INFINITY;
    for (int e = threadIdx.x; e < e_count; e += blockDim.x) {
      local_max = fmaxf(local_max, NanAsMasked(row[e]));
    }
    const float max_logit = cuda::BlockReduceMax(local_max);
    float local_sum = 0.0f;
    for (int e = threadIdx.x; e < e_count; e += blockDim.x) {
      // All −inf: every score 0, as RouteCpu (no expert gets weight).
      scores[e] = max_logit == -INFINITY ? 0.0f : expf(NanAsMasked(row[e]) - max_logit);
      local_sum += scores[e];
    }
    const float sum = cuda::BlockReduceSum(local_sum);
    for (int e = threadIdx.x; e < e_count; e += blockDim.x) {
      if (sum > 0.0f) scores[e] /= sum;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < e_count; e += blockDim.x) {
    selection[e] =
        NanAsMasked(a.correction_bias != nullptr ? scores[e] + a.correction_bias[e] : scores[e]);
    taken[e] = 0;
  }
  __syncthreads();

  if (a.rule != RoutingRule::kSoftmaxGreedy && a.num_groups > 1) {
    const int group_size = e_count / a.num_groups;
    for (int g = threadIdx.x; g < a.num_groups; g += blockDim.x) {
      const float* member = selection + g * group_size;
      if (a.rule == RoutingRule::kSigmoidNoauxTc) {
        float first = -INFINITY, second = -INFINITY;  // the two largest
        for (int i = 0; i < group_size; ++i) {
          const float v = member[i];
          if (v > first) {
            second = first;
            first = v;
          } else if (v > second) {
            second = v;
          }
        }
        group_scores[g] = first + second;
      } else {
        float best = member[0];
        for (int i = 1; i < group_size; ++i) best = fmaxf(best, member[i]);
        group_scores[g] = best;
      }
      group_kept[g] = 0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // at most 256 groups × topk_groups: trivial serial work
      for (int r = 0; r < a.topk_groups; ++r) {
        int best = -1;
        for (int g = 0; g < a.num_groups; ++g) {
          if (group_kept[g]) continue;
          if (best < 0 || group_scores[g] > group_scores[best]) best = g;
        }
        if (best >= 0) group_kept[best] = 1;
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < e_count; e += blockDim.x) {
      if (!group_kept[e / group_size]) selection[e] = -INFINITY;
    }
    __syncthreads();
  }

  if (threadIdx.x == 0) weight_sum = 0.0f;
  for (int r = 0; r < a.top_k; ++r) {
    const cuda::ArgMaxPair best = cuda::BlockReduceArgMax(ThreadBest(selection, taken, e_count));
    if (threadIdx.x == 0) {
      taken[best.index] = 1;
      expert_ids[t * a.top_k + r] = best.index;
      weights[t * a.top_k + r] = scores[best.index];
      weight_sum += scores[best.index];
    }
    __syncthreads();
  }
  if (threadIdx.x < a.top_k) {
    float w = weights[t * a.top_k + threadIdx.x];
    if (a.renormalize) w /= weight_sum + 1e-20f;
    weights[t * a.top_k + threadIdx.x] = w * a.scaling;
  }
}

}  // namespace

int LaunchRouteCuda(const RoutingParams& p, const float* logits, int64_t num_tokens,
                    int32_t* expert_ids, float* weights, void* stream) {
  const bool grouped = p.rule != RoutingRule::kSoftmaxGreedy && p.num_groups > 1;
  if (p.num_experts <= 0 || p.top_k <= 0 || p.top_k > p.num_experts || p.top_k > kThreadsPerBlock ||
      (grouped && (p.num_groups > kMaxGroups || p.num_experts % p.num_groups != 0 ||
                   p.topk_groups > p.num_groups ||
                   (p.rule == RoutingRule::kSigmoidNoauxTc && p.num_experts / p.num_groups < 2)))) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (num_tokens == 0) return cudaSuccess;
  const RouteArgs args{p.rule,
                       static_cast<int>(p.num_experts),
                       static_cast<int>(p.top_k),
                       static_cast<int>(p.num_groups),
                       static_cast<int>(p.topk_groups),
                       p.renormalize,
                       p.scaling,
                       p.correction_bias};
  const size_t shared_bytes = p.num_experts * (2 * sizeof(float) + 1);
  RouteKernel<<<static_cast<unsigned>(num_tokens), kThreadsPerBlock, shared_bytes,
                static_cast<cudaStream_t>(stream)>>>(args, logits, expert_ids, weights);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace moeserve::engine
