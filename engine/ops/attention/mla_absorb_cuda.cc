#include "engine/ops/attention/mla_absorb_cuda.h"

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "engine/ops/cuda/check.h"

namespace moeserve::engine {
namespace {

absl::Status CheckDims(const MlaAbsorbDims& d, int64_t num_tokens, const char* op) {
  if (d.num_heads <= 0 || d.nope_dim <= 0 || d.rope_dim < 0 || d.kv_lora_rank <= 0 ||
      d.v_dim <= 0 || num_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": bad dims heads=", d.num_heads, " nope=", d.nope_dim, " rope=", d.rope_dim,
        " rank=", d.kv_lora_rank, " v=", d.v_dim, " tokens=", num_tokens));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MlaAbsorbQuery(CublasLtGemm& gemm, const MlaAbsorbDims& d, const uint16_t* q,
                            const uint16_t* w_uk_t, int64_t num_tokens, uint16_t* q_mqa) {
  if (absl::Status s = CheckDims(d, num_tokens, "MlaAbsorbQuery"); !s.ok()) return s;
  if (num_tokens == 0) return absl::OkStatus();
  const int64_t qk = d.nope_dim + d.rope_dim;
  const int64_t kv = d.kv_lora_rank + d.rope_dim;
  // Head h: X = q[:, h, :nope] (rows heads·qk apart), W = w_uk_t[h] [rank, nope],
  // Y = q_mqa[:, h, :rank] (rows heads·kv apart).
  const StridedBatchedShape shape{.m = num_tokens,
                                  .n = d.kv_lora_rank,
                                  .k = d.nope_dim,
                                  .batch = d.num_heads,
                                  .x_ld = d.num_heads * qk,
                                  .x_batch_stride = qk,
                                  .w_ld = d.nope_dim,
                                  .w_batch_stride = d.kv_lora_rank * d.nope_dim,
                                  .y_ld = d.num_heads * kv,
                                  .y_batch_stride = kv};
  if (absl::Status s = gemm.Bf16StridedBatched(q, w_uk_t, q_mqa, shape); !s.ok()) return s;
  if (d.rope_dim == 0) return absl::OkStatus();
  // q_pe rows (one per token and head) into the last rope_dim columns: a pitched copy.
  constexpr size_t kBf16 = sizeof(uint16_t);
  MOESERVE_CUDA_RETURN_IF_ERROR(
      cudaMemcpy2DAsync(q_mqa + d.kv_lora_rank, static_cast<size_t>(kv) * kBf16, q + d.nope_dim,
                        static_cast<size_t>(qk) * kBf16, static_cast<size_t>(d.rope_dim) * kBf16,
                        static_cast<size_t>(num_tokens * d.num_heads), cudaMemcpyDeviceToDevice,
                        static_cast<cudaStream_t>(gemm.context().stream())));
  return absl::OkStatus();
}

absl::Status MlaAbsorbOutput(CublasLtGemm& gemm, const MlaAbsorbDims& d, const uint16_t* o_lat,
                             const uint16_t* w_uv, int64_t num_tokens, uint16_t* out) {
  if (absl::Status s = CheckDims(d, num_tokens, "MlaAbsorbOutput"); !s.ok()) return s;
  // Head h: X = o_lat[:, h, :] (rows heads·rank apart), W = w_uv[h] [v, rank],
  // Y = out[:, h, :] (rows heads·v apart).
  const StridedBatchedShape shape{.m = num_tokens,
                                  .n = d.v_dim,
                                  .k = d.kv_lora_rank,
                                  .batch = d.num_heads,
                                  .x_ld = d.num_heads * d.kv_lora_rank,
                                  .x_batch_stride = d.kv_lora_rank,
                                  .w_ld = d.kv_lora_rank,
                                  .w_batch_stride = d.v_dim * d.kv_lora_rank,
                                  .y_ld = d.num_heads * d.v_dim,
                                  .y_batch_stride = d.v_dim};
  return gemm.Bf16StridedBatched(o_lat, w_uv, out, shape);
}

}  // namespace moeserve::engine
