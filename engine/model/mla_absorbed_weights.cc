#include "engine/model/mla_absorbed_weights.h"

#include <algorithm>
#include <vector>

#include "engine/ops/linear/fp8_quant.h"

namespace moeserve::engine {
namespace {

// Element copy for any element type: head h of kv_b holds nope rows then v rows of `rank`.
template <typename T>
void SplitElements(const T* kv_b, int64_t heads, int64_t nope, int64_t v, int64_t rank,
                   std::vector<T>& uk_t, std::vector<T>& uv) {
  uk_t.resize(static_cast<size_t>(heads * rank * nope));
  uv.resize(static_cast<size_t>(heads * v * rank));
  for (int64_t h = 0; h < heads; ++h) {
    const T* head = kv_b + h * (nope + v) * rank;
    for (int64_t d = 0; d < nope; ++d) {
      for (int64_t r = 0; r < rank; ++r) uk_t[(h * rank + r) * nope + d] = head[d * rank + r];
    }
    std::copy(head + nope * rank, head + (nope + v) * rank, uv.begin() + h * v * rank);
  }
}

// The 128×128 scale blocks follow their elements: W_UK[h]ᵀ's block (r, d) is kv_b's block
// (d, r) of head h's nope rows; W_UV[h]'s blocks are kv_b's blocks of head h's v rows.
void SplitScales(const std::vector<float>& kv_b, int64_t heads, int64_t nope, int64_t v,
                 int64_t rank, std::vector<float>& uk_t, std::vector<float>& uv) {
  const int64_t b = kFp8BlockSize;
  const int64_t rank_blocks = rank / b, nope_blocks = nope / b, v_blocks = v / b;
  const int64_t head_blocks = nope_blocks + v_blocks;  // kv_b block rows per head
  uk_t.resize(static_cast<size_t>(heads * rank_blocks * nope_blocks));
  uv.resize(static_cast<size_t>(heads * v_blocks * rank_blocks));
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t rb = 0; rb < rank_blocks; ++rb) {
      for (int64_t db = 0; db < nope_blocks; ++db) {
        uk_t[(h * rank_blocks + rb) * nope_blocks + db] =
            kv_b[(h * head_blocks + db) * rank_blocks + rb];
      }
    }
    for (int64_t jb = 0; jb < v_blocks; ++jb) {
      for (int64_t rb = 0; rb < rank_blocks; ++rb) {
        uv[(h * v_blocks + jb) * rank_blocks + rb] =
            kv_b[(h * head_blocks + nope_blocks + jb) * rank_blocks + rb];
      }
    }
  }
}

}  // namespace

bool AbsorbedKeepsFormat(WeightFormat format, int64_t nope_dim, int64_t v_dim,
                         int64_t kv_lora_rank) {
  if (format != WeightFormat::kFp8Block128) return true;
  return nope_dim % kFp8BlockSize == 0 && v_dim % kFp8BlockSize == 0 &&
         kv_lora_rank % kFp8BlockSize == 0;
}

void SplitAbsorbedWeights(int64_t heads, int64_t nope_dim, int64_t v_dim, int64_t kv_lora_rank,
                          MlaWeights& mla) {
  const LinearWeight& kv_b = mla.kv_b_proj;
  LinearWeight& uk_t = mla.w_uk_t;
  LinearWeight& uv = mla.w_uv;
  uk_t = LinearWeight();
  uk_t.out_features = heads * kv_lora_rank;
  uk_t.in_features = nope_dim;
  uv = LinearWeight();
  uv.out_features = heads * v_dim;
  uv.in_features = kv_lora_rank;
  uk_t.isa = uv.isa = kv_b.isa;
  if (!AbsorbedKeepsFormat(kv_b.format, nope_dim, v_dim, kv_lora_rank)) {
    const std::vector<float> dense = DequantizeLinear(kv_b);
    SplitElements(dense.data(), heads, nope_dim, v_dim, kv_lora_rank, uk_t.weight, uv.weight);
    return;
  }
  uk_t.format = uv.format = kv_b.format;
  switch (kv_b.format) {
    case WeightFormat::kF32:
      SplitElements(kv_b.weight.data(), heads, nope_dim, v_dim, kv_lora_rank, uk_t.weight,
                    uv.weight);
      return;
    case WeightFormat::kBf16:
      SplitElements(kv_b.weight_bf16.data(), heads, nope_dim, v_dim, kv_lora_rank, uk_t.weight_bf16,
                    uv.weight_bf16);
      return;
    case WeightFormat::kFp8Block128:
      SplitElements(kv_b.weight_fp8.data(), heads, nope_dim, v_dim, kv_lora_rank, uk_t.weight_fp8,
                    uv.weight_fp8);
      SplitScales(kv_b.scale_inv, heads, nope_dim, v_dim, kv_lora_rank, uk_t.scale_inv,
                  uv.scale_inv);
      return;
  }
}

WeightMatrixView HeadRows(const LinearWeight& w, int64_t head, int64_t rows_per_head) {
  WeightMatrixView view = w.view();
  const int64_t row0 = head * rows_per_head;
  const int64_t offset = row0 * w.in_features * WeightFormatBytes(w.format);
  view.data = static_cast<const char*>(view.data) + offset;
  if (w.format == WeightFormat::kFp8Block128) {
    const int64_t col_blocks = (w.in_features + kFp8BlockSize - 1) / kFp8BlockSize;
    view.scale_inv += (row0 / kFp8BlockSize) * col_blocks;
  }
  view.rows = rows_per_head;
  return view;
}

}  // namespace moeserve::engine
