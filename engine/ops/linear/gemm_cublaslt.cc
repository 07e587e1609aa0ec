#include "engine/ops/linear/gemm_cublaslt.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/ops/cuda/check.h"
#include "engine/ops/linear/fp8_quant_cuda.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kBlock = 128;  // kFp8BlockSize

enum PlanKind : int { kBf16OutBf16 = 0, kBf16OutF32 = 1, kFp8BlockScaledOutBf16 = 2 };

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

cublasLtHandle_t Handle(void* handle) { return static_cast<cublasLtHandle_t>(handle); }

}  // namespace

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

// Descriptors and the chosen algorithm for one (kind, shape). In cuBLASLt's column-major terms
// (reference §5.3): A = W as K×N (ld K, TRANSA = T), B = X as K×T (ld K, TRANSB = N),
// C = D as N×T (ld N), which is row-major [T, N].
struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;

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

// Asks cuBLASLt's heuristic for the best algorithm of `plan` within the workspace. NOT_SUPPORTED
// (or zero results) means this combination has no kernel: the plan remembers that.
absl::Status CublasLtGemm::ChooseAlgorithm(Plan& plan) {
  cublasLtMatmulPreference_t preference = nullptr;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&preference));
  const uint64_t workspace_bytes = workspace_.size_bytes();
  cublasStatus_t status =
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof workspace_bytes);
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

absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(int kind, int64_t n, int64_t t,
                                                          int64_t k) {
  const PlanKey key{kind, n, t, k};
  if (auto it = plans_.find(key); it != plans_.end()) {
    return it->second->has_algo ? it->second.get() : nullptr;
  }
  auto plan = std::make_unique<Plan>();
  const bool fp8 = kind == kFp8BlockScaledOutBf16;
  const cudaDataType_t ab_type = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  const cudaDataType_t d_type = kind == kBf16OutF32 ? CUDA_R_32F : CUDA_R_16BF;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b));
  if (fp8) {
    const int32_t a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    const int32_t b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    const int8_t fast_accum = 0;  // keep the per-block promotion (reference §4)
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a_mode, sizeof a_mode));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b_mode, sizeof b_mode));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum, sizeof fast_accum));
  }
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, ab_type, k, n, k));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, ab_type, k, t, k));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->d, d_type, n, t, n));

  MOESERVE_RETURN_IF_ERROR(ChooseAlgorithm(*plan));
  Plan* raw = plan->has_algo ? plan.get() : nullptr;
  plans_.emplace(key, std::move(plan));
  return raw;
}

absl::Status CublasLtGemm::Bf16(const uint16_t* x, const uint16_t* w, void* y,
                                GemmOutputType y_type, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return absl::OkStatus();
  const int kind = y_type == GemmOutputType::kF32 ? kBf16OutF32 : kBf16OutBf16;
  absl::StatusOr<Plan*> plan = GetPlan(kind, n, m, k);
  if (!plan.ok()) return plan.status();
  if (*plan == nullptr) {
    return absl::UnimplementedError(absl::StrCat("cuBLASLt has no BF16 algorithm for Y[", m, ", ",
                                                 n, "] = X[", m, ", ", k, "]·W[", n, ", ", k,
                                                 "]ᵀ"));
  }
  const float alpha = 1.0f, beta = 0.0f;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmul(Handle(handle_), (*plan)->desc, &alpha, w, (*plan)->a, x, (*plan)->b, &beta, y,
                     (*plan)->d, y, (*plan)->d, &(*plan)->algo, workspace_.data(),
                     workspace_.size_bytes(), static_cast<cudaStream_t>(context_.stream())));
  return absl::OkStatus();
}

// The same column-major mapping as GetPlan (A = W_b as K×N, B = X_b as K×M, D = Y_b as N×M)
// with the leading dimensions and batch strides of `s` on each layout.
absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetBatchedPlan(const StridedBatchedShape& s) {
  const std::array<int64_t, 10> key = {s.m,    s.n,
                                       s.k,    s.batch,
                                       s.x_ld, s.x_batch_stride,
                                       s.w_ld, s.w_batch_stride,
                                       s.y_ld, s.y_batch_stride};
  if (auto it = batched_plans_.find(key); it != batched_plans_.end()) {
    return it->second->has_algo ? it->second.get() : nullptr;
  }
  auto plan = std::make_unique<Plan>();
  MOESERVE_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, s.k, s.n, s.w_ld));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, s.k, s.m, s.x_ld));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->d, CUDA_R_16BF, s.n, s.m, s.y_ld));
  const int32_t batch = static_cast<int32_t>(s.batch);
  const std::pair<cublasLtMatrixLayout_t, int64_t> layouts[] = {
      {plan->a, s.w_batch_stride}, {plan->b, s.x_batch_stride}, {plan->d, s.y_batch_stride}};
  for (const auto& [layout, stride] : layouts) {
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch));
    MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  MOESERVE_RETURN_IF_ERROR(ChooseAlgorithm(*plan));
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
  absl::StatusOr<Plan*> plan = GetBatchedPlan(s);
  if (!plan.ok()) return plan.status();
  if (*plan == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("cuBLASLt has no strided-batched BF16 algorithm for ", s.batch, " × Y[", s.m,
                     ", ", s.n, "] = X[", s.m, ", ", s.k, "]·W[", s.n, ", ", s.k, "]ᵀ"));
  }
  const float alpha = 1.0f, beta = 0.0f;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmul(Handle(handle_), (*plan)->desc, &alpha, w, (*plan)->a, x, (*plan)->b, &beta, y,
                     (*plan)->d, y, (*plan)->d, &(*plan)->algo, workspace_.data(),
                     workspace_.size_bytes(), static_cast<cudaStream_t>(context_.stream())));
  return absl::OkStatus();
}

absl::StatusOr<Fp8GemmPath> CublasLtGemm::Fp8PathFor(const Fp8WeightView& w,
                                                     int64_t padded_tokens) {
  if (options_.force_fp8_fallback || !context_.device().supports_block_scaled_fp8() ||
      w.n % 4 != 0 || padded_tokens % 4 != 0 || w.k % 16 != 0 ||
      w.scale_stride != Fp8ScaleStride(w.k)) {
    return Fp8GemmPath::kDequantizedBf16;
  }
  absl::StatusOr<Plan*> plan = GetPlan(kFp8BlockScaledOutBf16, w.n, padded_tokens, w.k);
  if (!plan.ok()) return plan.status();
  return *plan != nullptr ? Fp8GemmPath::kCublasLtBlockScaled : Fp8GemmPath::kDequantizedBf16;
}

absl::Status CublasLtGemm::Fp8BlockScaled(const uint8_t* xq, const float* x_scales,
                                          const Fp8WeightView& w, uint16_t* y,
                                          int64_t padded_tokens) {
  if (padded_tokens == 0 || w.n == 0) return absl::OkStatus();
  absl::StatusOr<Fp8GemmPath> path = Fp8PathFor(w, padded_tokens);
  if (!path.ok()) return path.status();
  const bool aligned = Aligned16(xq) && Aligned16(x_scales) && Aligned16(w.data) &&
                       Aligned16(w.scales) && Aligned16(y);
  if (*path == Fp8GemmPath::kDequantizedBf16 || !aligned) {
    return Fp8Fallback(xq, x_scales, w, y, padded_tokens);
  }
  absl::StatusOr<Plan*> plan = GetPlan(kFp8BlockScaledOutBf16, w.n, padded_tokens, w.k);
  if (!plan.ok()) return plan.status();
  Plan& p = **plan;
  // Scale pointers change per call (per weight, per step); setting them is host-only work.
  const void* a_scale = w.scales;
  const void* b_scale = x_scales;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof a_scale));
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof b_scale));
  const float alpha = 1.0f, beta = 0.0f;
  MOESERVE_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(
      Handle(handle_), p.desc, &alpha, w.data, p.a, xq, p.b, &beta, y, p.d, y, p.d, &p.algo,
      workspace_.data(), workspace_.size_bytes(), static_cast<cudaStream_t>(context_.stream())));
  return absl::OkStatus();
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
  return absl::OkStatus();
}

absl::Status CublasLtGemm::Fp8Fallback(const uint8_t* xq, const float* x_scales,
                                       const Fp8WeightView& w, uint16_t* y, int64_t padded_tokens) {
  const size_t w_elems = static_cast<size_t>(w.n * w.k);
  const size_t x_elems = static_cast<size_t>(padded_tokens * w.k);
  // Both dequantized operands, the second 256-B aligned.
  const size_t w_bytes = (w_elems * sizeof(uint16_t) + 255) / 256 * 256;
  if (absl::Status s = EnsureScratch(w_bytes + x_elems * sizeof(uint16_t)); !s.ok()) return s;
  uint16_t* w_bf16 = scratch_.as<uint16_t>();
  uint16_t* x_bf16 = reinterpret_cast<uint16_t*>(scratch_.as<char>() + w_bytes);
  void* stream = context_.stream();
  MOESERVE_RETURN_IF_ERROR(
      CudaLaunchStatus(LaunchDequantizeFp8BlockWeightBf16(w.data, w.scales, w.scale_stride, w.n,
                                                          w.k, w_bf16, stream),
                       "LaunchDequantizeFp8BlockWeightBf16"));
  MOESERVE_RETURN_IF_ERROR(CudaLaunchStatus(
      LaunchDequantizeActivationsFp8Bf16(xq, x_scales, padded_tokens, w.k, x_bf16, stream),
      "LaunchDequantizeActivationsFp8Bf16"));
  return Bf16(x_bf16, w_bf16, y, GemmOutputType::kBf16, padded_tokens, w.n, w.k);
}

}  // namespace moeserve::engine
