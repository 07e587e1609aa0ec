#include "engine/ops/linear/gemm_cublaslt.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/ops/cuda/check.h"
#include "engine/ops/linear/fp8_quant_cuda.h"
#include "engine/ops/linear/transpose_cuda.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kBlock = 128;  // kFp8BlockSize

enum PlanKind : int {
  kBf16OutBf16 = 0,
  kBf16OutF32 = 1,
  kFp8WeightIsA = 2,  // Fp8GemmPath::kCublasLtBlockScaled
  kFp8WeightIsB = 3,  // Fp8GemmPath::kCublasLtBlockScaledTransposed
};

// cuBLASLt never asks for more than 256-B alignment (its default MIN_ALIGNMENT preference).
constexpr uint32_t kMaxAlignmentBytes = 256;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The largest power of two (at most 256) that divides the address; 256 for null (an operand
// that is not read).
uint32_t AlignmentBytes(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  if (address == 0) return kMaxAlignmentBytes;
  const uintptr_t lowest_bit = address & (~address + 1);
  return static_cast<uint32_t>(std::min<uintptr_t>(lowest_bit, kMaxAlignmentBytes));
}

// "Pointers must support 16-byte alignment" for FP8 and "starting addresses of scaling factors
// must be 16B aligned" (reference §5.2).
bool Aligned16(const void* p) { return AlignmentBytes(p) >= 16; }

cublasLtHandle_t Handle(void* handle) { return static_cast<cublasLtHandle_t>(handle); }

}  // namespace

const char* Fp8GemmPathName(Fp8GemmPath path) {
  switch (path) {
    case Fp8GemmPath::kCublasLtBlockScaled:
      return "cublaslt-block-scaled";
    case Fp8GemmPath::kCublasLtBlockScaledTransposed:
      return "cublaslt-block-scaled-transposed";
    case Fp8GemmPath::kDequantizedBf16:
      return "bf16-fallback";
  }
  return "unknown";
}

int64_t Fp8ScaleStride(int64_t k) { return CeilDiv(CeilDiv(k, kBlock), 4) * 4; }

int64_t Fp8PaddedTokens(int64_t num_tokens) { return CeilDiv(num_tokens, 4) * 4; }

std::vector<float> PadFp8WeightScales(absl::Span<const float> scale_inv, int64_t n, int64_t k) {
  const int64_t row_blocks = CeilDiv(n, kBlock), col_blocks = CeilDiv(k, kBlock);
  const int64_t stride = Fp8ScaleStride(k);
  std::vector<float> padded(static_cast<size_t>(row_blocks * stride), 0.0f);
  for (int64_t i = 0; i < row_blocks; ++i) {
    for (int64_t j = 0; j < col_blocks; ++j) padded[i * stride + j] = scale_inv[i * col_blocks + j];
  }
  return padded;
}

// Descriptors and the chosen algorithm for one PlanKey. Every plan is cuBLASLt's column-major
// D[m, n] = op(A)[m, k] · op(B)[k, n] with A stored K×m (ld K, TRANSA = T), B stored K×n
// (ld K, TRANSB = N) and D m×n (ld m) (reference §5.3). For Y[T, N] = X·Wᵀ that is A = W,
// B = X, m = N, n = T, D = Y (row-major [T, N]); the transposed FP8 path swaps the operands
// (A = X, B = W, m = T, n = N), so D is row-major [N, T] = Yᵀ.
struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;

  // The descriptor (fp32 compute and scale, TRANSA = T, TRANSB = N) and the three layouts:
  // A stored K×m, B stored K×n, D m×n, with the given leading dimensions.
  absl::Status CreateTn(cudaDataType_t ab_type, cudaDataType_t d_type, int64_t m, int64_t n,
                        int64_t k, int64_t lda, int64_t ldb, int64_t ldd) {
    MOESERVE_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const int32_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&a, ab_type, k, m, lda));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&b, ab_type, k, n, ldb));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&d, d_type, m, n, ldd));
    return absl::OkStatus();
  }

  ~Plan() {
    if (d != nullptr) (void)cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) (void)cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) (void)cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) (void)cublasLtMatmulDescDestroy(desc);
  }
};

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(CudaContext& context,
                                                                   const Options& options) {
  cublasLtHandle_t handle = nullptr;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
  absl::StatusOr<DeviceBuffer> workspace = DeviceBuffer::Allocate(options.workspace_bytes);
  if (!workspace.ok()) {
    (void)cublasLtDestroy(handle);
    return workspace.status();
  }
  return std::unique_ptr<CublasLtGemm>(
      new CublasLtGemm(context, options, handle, *std::move(workspace)));
}

CublasLtGemm::CublasLtGemm(CudaContext& context, const Options& options, void* handle,
                           DeviceBuffer workspace)
    : context_(context), options_(options), handle_(handle), workspace_(std::move(workspace)) {}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();  // descriptors before the handle
  batched_plans_.clear();
  if (handle_ != nullptr) (void)cublasLtDestroy(Handle(handle_));
}

// Asks cuBLASLt's heuristic for the best algorithm of `plan` within the workspace, for
// operands aligned as `key` says. NOT_SUPPORTED (or zero results) means this combination has no
// kernel: the plan remembers that.
absl::Status CublasLtGemm::ChooseAlgorithm(Plan& plan, const PlanKey& key) {
  cublasLtMatmulPreference_t preference = nullptr;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&preference));
  const uint64_t workspace_bytes = workspace_.size_bytes();
  // C is D (beta = 0, the same buffer).
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> attributes[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_d},
  };
  cublasStatus_t status =
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof workspace_bytes);
  for (const auto& [attribute, bytes] : attributes) {
    if (status != CUBLAS_STATUS_SUCCESS) break;
    status = cublasLtMatmulPreferenceSetAttribute(preference, attribute, &bytes, sizeof bytes);
  }
  cublasLtMatmulHeuristicResult_t result{};
  int num_results = 0;
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulAlgoGetHeuristic(Handle(handle_), plan.desc, plan.a, plan.b, plan.d,
                                            plan.d, preference, 1, &result, &num_results);
  }
  (void)cublasLtMatmulPreferenceDestroy(preference);
  if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED) {
    return CublasStatus(status, "cublasLtMatmulAlgoGetHeuristic");
  }
  plan.has_algo = status == CUBLAS_STATUS_SUCCESS && num_results > 0;
  if (plan.has_algo) plan.algo = result.algo;
  return absl::OkStatus();
}

absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(const PlanKey& key,
                                                          const ScalePointers& scales) {
  if (auto it = plans_.find(key); it != plans_.end()) {
    return it->second->has_algo ? it->second.get() : nullptr;
  }
  auto plan = std::make_unique<Plan>();
  const bool fp8 = key.kind == kFp8WeightIsA || key.kind == kFp8WeightIsB;
  const cudaDataType_t ab_type = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  const cudaDataType_t d_type = key.kind == kBf16OutF32 ? CUDA_R_32F : CUDA_R_16BF;
  MOESERVE_RETURN_IF_ERROR(
      plan->CreateTn(ab_type, d_type, key.m, key.n, key.k, key.k, key.k, key.m));
  if (fp8) {
    // The weight carries 128×128 block scales, the activations 1×128 (reference §5.2).
    const int32_t weight_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    const int32_t activation_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    const bool weight_is_a = key.kind == kFp8WeightIsA;
    const int32_t a_mode = weight_is_a ? weight_mode : activation_mode;
    const int32_t b_mode = weight_is_a ? activation_mode : weight_mode;
    const int8_t fast_accum = 0;  // keep the per-block promotion (reference §4)
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a_mode, sizeof a_mode));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b_mode, sizeof b_mode));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum, sizeof fast_accum));
    // The heuristic sees the real scale pointers, as NVIDIA's sample does: with them unset it
    // may answer NOT_SUPPORTED (silently the slow fallback) or INVALID_VALUE (issue 19).
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &scales.a, sizeof scales.a));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &scales.b, sizeof scales.b));
  }
  MOESERVE_RETURN_IF_ERROR(ChooseAlgorithm(*plan, key));
  Plan* raw = plan->has_algo ? plan.get() : nullptr;
  plans_.emplace(key, std::move(plan));
  return raw;
}

absl::Status CublasLtGemm::RunPlan(const Plan& plan, const void* a, const void* b, void* d) {
  const float alpha = 1.0f, beta = 0.0f;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(Handle(handle_), plan.desc, &alpha, a, plan.a, b,
                                                 plan.b, &beta, d, plan.d, d, plan.d, &plan.algo,
                                                 workspace_.data(), workspace_.size_bytes(),
                                                 static_cast<cudaStream_t>(context_.stream())));
  return absl::OkStatus();
}

absl::Status CublasLtGemm::Bf16(const uint16_t* x, const uint16_t* w, void* y,
                                GemmOutputType y_type, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return absl::OkStatus();
  const PlanKey key{.kind = y_type == GemmOutputType::kF32 ? kBf16OutF32 : kBf16OutBf16,
                    .m = n,
                    .n = m,
                    .k = k,
                    .align_a = AlignmentBytes(w),
                    .align_b = AlignmentBytes(x),
                    .align_d = AlignmentBytes(y)};
  absl::StatusOr<Plan*> plan = GetPlan(key, ScalePointers{});
  if (!plan.ok()) return plan.status();
  if (*plan == nullptr) {
    return absl::UnimplementedError(absl::StrCat("cuBLASLt has no BF16 algorithm for Y[", m, ", ",
                                                 n, "] = X[", m, ", ", k, "]·W[", n, ", ", k,
                                                 "]ᵀ"));
  }
  return RunPlan(**plan, w, x, y);
}

// The same column-major mapping as GetPlan (A = W_b as K×N, B = X_b as K×M, D = Y_b as N×M)
// with the leading dimensions and batch strides of `s` on each layout.
absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetBatchedPlan(const StridedBatchedShape& s,
                                                                 const void* x, const void* w,
                                                                 const void* y) {
  const PlanKey alignment{
      .align_a = AlignmentBytes(w), .align_b = AlignmentBytes(x), .align_d = AlignmentBytes(y)};
  const std::array<int64_t, 13> key = {s.m,
                                       s.n,
                                       s.k,
                                       s.batch,
                                       s.x_ld,
                                       s.x_batch_stride,
                                       s.w_ld,
                                       s.w_batch_stride,
                                       s.y_ld,
                                       s.y_batch_stride,
                                       alignment.align_a,
                                       alignment.align_b,
                                       alignment.align_d};
  if (auto it = batched_plans_.find(key); it != batched_plans_.end()) {
    return it->second->has_algo ? it->second.get() : nullptr;
  }
  auto plan = std::make_unique<Plan>();
  MOESERVE_RETURN_IF_ERROR(
      plan->CreateTn(CUDA_R_16BF, CUDA_R_16BF, s.n, s.m, s.k, s.w_ld, s.x_ld, s.y_ld));
  const int32_t batch = static_cast<int32_t>(s.batch);
  const std::pair<cublasLtMatrixLayout_t, int64_t> layouts[] = {
      {plan->a, s.w_batch_stride}, {plan->b, s.x_batch_stride}, {plan->d, s.y_batch_stride}};
  for (const auto& [layout, stride] : layouts) {
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  MOESERVE_RETURN_IF_ERROR(ChooseAlgorithm(*plan, alignment));
  Plan* raw = plan->has_algo ? plan.get() : nullptr;
  batched_plans_.emplace(key, std::move(plan));
  return raw;
}

absl::Status CublasLtGemm::Bf16StridedBatched(const uint16_t* x, const uint16_t* w, uint16_t* y,
                                              const StridedBatchedShape& s) {
  if (s.m < 0 || s.n < 0 || s.k < 0 || s.batch < 0 || s.batch > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat("Bf16StridedBatched: bad shape m=", s.m,
                                                   " n=", s.n, " k=", s.k, " batch=", s.batch));
  }
  if (s.m == 0 || s.n == 0 || s.batch == 0) return absl::OkStatus();
  if (s.x_ld < s.k || s.w_ld < s.k || s.y_ld < s.n) {
    return absl::InvalidArgumentError(
        absl::StrCat("Bf16StridedBatched: leading dimensions x_ld=", s.x_ld, " w_ld=", s.w_ld,
                     " y_ld=", s.y_ld, " shorter than the rows (k=", s.k, ", n=", s.n, ")"));
  }
  absl::StatusOr<Plan*> plan = GetBatchedPlan(s, x, w, y);
  if (!plan.ok()) return plan.status();
  if (*plan == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("cuBLASLt has no strided-batched BF16 algorithm for ", s.batch, " × Y[", s.m,
                     ", ", s.n, "] = X[", s.m, ", ", s.k, "]·W[", s.n, ", ", s.k, "]ᵀ"));
  }
  return RunPlan(**plan, w, x, y);
}

// Tries the paths in Fp8GemmPath's order, from options_.first_fp8_path on.
absl::StatusOr<CublasLtGemm::Fp8Choice> CublasLtGemm::ChooseFp8(const Fp8GemmOperands& o) {
  const Fp8WeightView& w = o.w;
  const bool eligible =
      options_.first_fp8_path != Fp8GemmPath::kDequantizedBf16 &&
      context_.device().supports_block_scaled_fp8() && w.n % 4 == 0 && o.padded_tokens % 4 == 0 &&
      w.k % 16 == 0 && w.scale_stride == Fp8ScaleStride(w.k) && Aligned16(o.xq) &&
      Aligned16(o.x_scales) && Aligned16(w.data) && Aligned16(w.scales) && Aligned16(o.y);
  if (!eligible) return Fp8Choice{};
  if (options_.first_fp8_path == Fp8GemmPath::kCublasLtBlockScaled) {
    const PlanKey key{.kind = kFp8WeightIsA,
                      .m = w.n,
                      .n = o.padded_tokens,
                      .k = w.k,
                      .align_a = AlignmentBytes(w.data),
                      .align_b = AlignmentBytes(o.xq),
                      .align_d = AlignmentBytes(o.y),
                      .align_a_scale = AlignmentBytes(w.scales),
                      .align_b_scale = AlignmentBytes(o.x_scales)};
    absl::StatusOr<Plan*> plan = GetPlan(key, ScalePointers{w.scales, o.x_scales});
    if (!plan.ok()) return plan.status();
    if (*plan != nullptr) return Fp8Choice{Fp8GemmPath::kCublasLtBlockScaled, *plan};
  }
  // Yᵀ goes to the scratch buffer, which is 256-B aligned.
  const PlanKey key{.kind = kFp8WeightIsB,
                    .m = o.padded_tokens,
                    .n = w.n,
                    .k = w.k,
                    .align_a = AlignmentBytes(o.xq),
                    .align_b = AlignmentBytes(w.data),
                    .align_d = kMaxAlignmentBytes,
                    .align_a_scale = AlignmentBytes(o.x_scales),
                    .align_b_scale = AlignmentBytes(w.scales)};
  absl::StatusOr<Plan*> plan = GetPlan(key, ScalePointers{o.x_scales, w.scales});
  if (!plan.ok()) return plan.status();
  if (*plan != nullptr) return Fp8Choice{Fp8GemmPath::kCublasLtBlockScaledTransposed, *plan};
  return Fp8Choice{};
}

absl::StatusOr<Fp8GemmPath> CublasLtGemm::Fp8PathFor(const Fp8GemmOperands& operands) {
  absl::StatusOr<Fp8Choice> choice = ChooseFp8(operands);
  if (!choice.ok()) return choice.status();
  return choice->path;
}

absl::Status CublasLtGemm::Fp8BlockScaled(const uint8_t* xq, const float* x_scales,
                                          const Fp8WeightView& w, uint16_t* y,
                                          int64_t padded_tokens) {
  if (padded_tokens == 0 || w.n == 0) return absl::OkStatus();
  const Fp8GemmOperands o{xq, x_scales, w, y, padded_tokens};
  absl::StatusOr<Fp8Choice> choice = ChooseFp8(o);
  if (!choice.ok()) return choice.status();
  if (choice->path == Fp8GemmPath::kDequantizedBf16) return Fp8Fallback(o);
  // Scale pointers change per call (per weight, per step); setting them is host-only work.
  Plan& plan = *choice->plan;
  const bool weight_is_a = choice->path == Fp8GemmPath::kCublasLtBlockScaled;
  const float* a_scale = weight_is_a ? w.scales : x_scales;
  const float* b_scale = weight_is_a ? x_scales : w.scales;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof a_scale));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof b_scale));
  if (weight_is_a) return RunPlan(plan, w.data, xq, y);

  MOESERVE_RETURN_IF_ERROR(
      EnsureScratch(static_cast<size_t>(w.n * padded_tokens) * sizeof(uint16_t)));
  uint16_t* y_transposed = scratch_.as<uint16_t>();  // [n, padded_tokens]
  MOESERVE_RETURN_IF_ERROR(RunPlan(plan, xq, w.data, y_transposed));
  return CudaLaunchStatus(
      LaunchTransposeBf16(y_transposed, w.n, padded_tokens, y, context_.stream()),
      "LaunchTransposeBf16");
}

absl::Status CublasLtGemm::EnsureScratch(size_t bytes) {
  if (scratch_.size_bytes() >= bytes) return absl::OkStatus();
  // The old scratch may still be read by queued work; wait before freeing it.
  MOESERVE_CUDA_RETURN_IF_ERROR(
      cudaStreamSynchronize(static_cast<cudaStream_t>(context_.stream())));
  scratch_ = DeviceBuffer();
  absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(bytes);
  if (!buffer.ok()) return buffer.status();
  scratch_ = *std::move(buffer);
  ++scratch_generation_;
  return absl::OkStatus();
}

absl::Status CublasLtGemm::Fp8Fallback(const Fp8GemmOperands& o) {
  const Fp8WeightView& w = o.w;
  const size_t w_elems = static_cast<size_t>(w.n * w.k);
  const size_t x_elems = static_cast<size_t>(o.padded_tokens * w.k);
  // Both dequantized operands, the second 256-B aligned.
  const size_t w_bytes = (w_elems * sizeof(uint16_t) + 255) / 256 * 256;
  MOESERVE_RETURN_IF_ERROR(EnsureScratch(w_bytes + x_elems * sizeof(uint16_t)));
  uint16_t* w_bf16 = scratch_.as<uint16_t>();
  uint16_t* x_bf16 = reinterpret_cast<uint16_t*>(scratch_.as<char>() + w_bytes);
  void* stream = context_.stream();
  MOESERVE_RETURN_IF_ERROR(
      CudaLaunchStatus(LaunchDequantizeFp8BlockWeightBf16(w.data, w.scales, w.scale_stride, w.n,
                                                          w.k, w_bf16, stream),
                       "LaunchDequantizeFp8BlockWeightBf16"));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchDequantizeActivationsFp8Bf16(o.xq, o.x_scales, o.padded_tokens, w.k, x_bf16, stream),
      "LaunchDequantizeActivationsFp8Bf16"));
  return Bf16(x_bf16, w_bf16, o.y, GemmOutputType::kBf16, o.padded_tokens, w.n, w.k);
}

}  // namespace moeserve::engine
