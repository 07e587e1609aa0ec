// Dense GEMMs on the GPU through cuBLASLt, in the nn.Linear convention of gemm.h:
// Y[T, N] = X[T, K] · W[N, K]ᵀ, all row-major, fp32 accumulation.
//
//  * Bf16: BF16 X and W, BF16 or fp32 Y.
//  * Fp8BlockScaled: DeepSeek's FP8 linears (reference §4, §5.3). W is E4M3 with one fp32
//    scale per 128×128 block (the checkpoint's weight_scale_inv, rows padded to a stride of
//    Fp8ScaleStride(K)); X is E4M3 with one fp32 scale per token per 128 channels in the
//    transposed [L, Tp] layout LaunchQuantizeActivationsFp8* writes. Three paths, tried in
//    this order (Fp8GemmPath):
//      1. A = W in BLK128x128_32F, B = X in VEC128_32F, TRANSA = T, TRANSB = N, fast
//         accumulation off: the §5.3 recipe, Y written in place;
//      2. the operands swapped as in NVIDIA's LtBlk128x128Fp8Matmul sample (A = X in VEC128,
//         B = W in BLK128x128): cuBLASLt writes Yᵀ into scratch and a transpose kernel makes Y.
//         The scale buffers are the same memory in both assignments;
//      3. where cuBLASLt has neither (GPUs other than sm_90, N or Tp not multiples of 4, K not
//         a multiple of 16, a pointer not 16-B aligned, a heuristic with no answer) both
//         operands are dequantized to BF16 and the BF16 GEMM runs instead.
//
// Heuristics are queried once per plan key and cached with their descriptors. The key holds
// the shape and the alignment of every operand pointer (which also goes to the heuristic as
// CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*), so an algorithm is never reused on a pointer it was
// not chosen for; FP8 plans are queried with the call's real scale pointers set, as the
// sample does, and the pointers are re-set on every call. The workspace is allocated once at
// Create. Owns the cuBLASLt handle; one per CudaContext.
// Engine thread only (the plan cache and the scratch are unsynchronised).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/cuda/device_buffer.h"

namespace moeserve::engine {

enum class GemmOutputType { kBf16, kF32 };

// Row stride of a device FP8 weight's block scales: ceil(K/128) rounded up to 4 (cuBLASLt's
// BLK128x128 rule, reference §5.2). V3's K all give multiples of 4 already.
int64_t Fp8ScaleStride(int64_t k);
// T rounded up to a multiple of 4: the rows the activation quantizer and the FP8 GEMM use.
int64_t Fp8PaddedTokens(int64_t num_tokens);
// weight_scale_inv [ceil(N/128), ceil(K/128)] → [ceil(N/128), Fp8ScaleStride(K)], zero-padded.
std::vector<float> PadFp8WeightScales(absl::Span<const float> scale_inv, int64_t n, int64_t k);

// A block-quantized weight resident on the device (views; the owner keeps the buffers).
struct Fp8WeightView {
  const uint8_t* data = nullptr;  // [n, k] e4m3
  const float* scales = nullptr;  // [ceil(n/128), scale_stride] fp32
  int64_t n = 0;
  int64_t k = 0;
  int64_t scale_stride = 0;  // Fp8ScaleStride(k)
};

// In the order Fp8BlockScaled tries them; see the file comment.
enum class Fp8GemmPath {
  kCublasLtBlockScaled,            // A = W (BLK128x128), B = X (VEC128): Y in place
  kCublasLtBlockScaledTransposed,  // A = X (VEC128), B = W (BLK128x128): Yᵀ, then a transpose
  kDequantizedBf16,                // both dequantized, BF16 GEMM
};
const char* Fp8GemmPathName(Fp8GemmPath path);

// The device operands of one FP8 block-scaled GEMM (see CublasLtGemm::Fp8BlockScaled).
struct Fp8GemmOperands {
  const uint8_t* xq = nullptr;      // [padded_tokens, k] e4m3
  const float* x_scales = nullptr;  // [ceil(k/128), padded_tokens] fp32
  Fp8WeightView w;
  uint16_t* y = nullptr;  // [padded_tokens, n] bf16
  int64_t padded_tokens = 0;
};

// `batch` independent GEMMs Y_b[m, n] = X_b[m, k] · W_b[n, k]ᵀ over strided views (strides in
// elements): X_b = x + b·x_batch_stride with rows x_ld apart, likewise W_b and Y_b. MLA's weight
// absorption uses it with one batch entry per head (mla_absorb_cuda.h).
struct StridedBatchedShape {
  int64_t m = 0, n = 0, k = 0, batch = 0;
  int64_t x_ld = 0, x_batch_stride = 0;
  int64_t w_ld = 0, w_batch_stride = 0;
  int64_t y_ld = 0, y_batch_stride = 0;
};

class CublasLtGemm {
 public:
  struct Options {
    size_t workspace_bytes = size_t{32} << 20;  // reference §5.2: ~32 MiB is enough
    // Tests and benchmarks: the first FP8 path to try. A later path still serves shapes the
    // chosen one cannot; kDequantizedBf16 forces the fallback.
    Fp8GemmPath first_fp8_path = Fp8GemmPath::kCublasLtBlockScaled;
  };

  // Creates the cuBLASLt handle and workspace. `context` must outlive the object.
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(CudaContext& context,
                                                              const Options& options);
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(CudaContext& context) {
    return Create(context, Options{});
  }
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // x: device [m, k] bf16; w: device [n, k] bf16; y: device [m, n] bf16 or fp32.
  absl::Status Bf16(const uint16_t* x, const uint16_t* w, void* y, GemmOutputType y_type, int64_t m,
                    int64_t n, int64_t k);

  // BF16 x, w and y; see StridedBatchedShape. Leading dimensions must cover their rows.
  absl::Status Bf16StridedBatched(const uint16_t* x, const uint16_t* w, uint16_t* y,
                                  const StridedBatchedShape& shape);

  // xq: device [padded_tokens, k] e4m3; x_scales: device [ceil(k/128), padded_tokens] fp32
  // (LaunchQuantizeActivationsFp8*); y: device [padded_tokens, n] bf16.
  absl::Status Fp8BlockScaled(const uint8_t* xq, const float* x_scales, const Fp8WeightView& w,
                              uint16_t* y, int64_t padded_tokens);

  // The path Fp8BlockScaled takes for these operands (queries and caches the heuristic).
  absl::StatusOr<Fp8GemmPath> Fp8PathFor(const Fp8GemmOperands& operands);

  const CudaContext& context() const { return context_; }

  // Changes whenever the FP8 paths' device scratch is reallocated (it grows with the largest
  // call so far). A CUDA graph captured before then holds the old buffer's address: its owner
  // must capture again (DeepseekModelCuda::RunCaptured does).
  uint64_t scratch_generation() const { return scratch_generation_; }

 private:
  struct Plan;
  // cuBLASLt's column-major problem D[m, n] = op(A)[m, k] · op(B)[k, n], TRANSA = T,
  // TRANSB = N, with the alignment in bytes (a power of two, at most 256) of each pointer.
  struct PlanKey {
    int kind = 0;
    int64_t m = 0, n = 0, k = 0;
    uint32_t align_a = 0, align_b = 0, align_d = 0, align_a_scale = 0, align_b_scale = 0;

    bool operator==(const PlanKey&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const PlanKey& key) {
      return H::combine(std::move(h), key.kind, key.m, key.n, key.k, key.align_a, key.align_b,
                        key.align_d, key.align_a_scale, key.align_b_scale);
    }
  };
  // The scale pointers an FP8 plan is queried (and later run) with.
  struct ScalePointers {
    const float* a = nullptr;
    const float* b = nullptr;
  };
  struct Fp8Choice {
    Fp8GemmPath path = Fp8GemmPath::kDequantizedBf16;
    Plan* plan = nullptr;  // null for the fallback
  };

  CublasLtGemm(CudaContext& context, const Options& options, void* handle, DeviceBuffer workspace);
  // The cached plan for `key`; nullptr inside an OK result when cuBLASLt has no algorithm.
  absl::StatusOr<Plan*> GetPlan(const PlanKey& key, const ScalePointers& scales);
  absl::StatusOr<Plan*> GetBatchedPlan(const StridedBatchedShape& shape, const void* x,
                                       const void* w, const void* y);
  // Fills plan.has_algo and plan.algo from cuBLASLt's heuristic for operands aligned as `key`.
  absl::Status ChooseAlgorithm(Plan& plan, const PlanKey& key);
  absl::StatusOr<Fp8Choice> ChooseFp8(const Fp8GemmOperands& operands);
  absl::Status RunPlan(const Plan& plan, const void* a, const void* b, void* d);
  absl::Status Fp8Fallback(const Fp8GemmOperands& operands);
  absl::Status EnsureScratch(size_t bytes);

  // Constant after construction.
  CudaContext& context_;
  const Options options_;
  void* handle_;  // cublasLtHandle_t
  DeviceBuffer workspace_;
  // Engine thread only.
  absl::flat_hash_map<PlanKey, std::unique_ptr<Plan>> plans_;
  absl::flat_hash_map<std::array<int64_t, 13>, std::unique_ptr<Plan>> batched_plans_;
  // Yᵀ of the transposed FP8 path, or the dequantized operands of the fallback; grows, never
  // shrinks.
  DeviceBuffer scratch_;
  uint64_t scratch_generation_ = 0;  // bumped each time scratch_ moves
};

}  // namespace moeserve::engine
