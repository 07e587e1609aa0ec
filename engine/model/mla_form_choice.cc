#include "engine/model/mla_form_choice.h"

#include "engine/batch/attention_order.h"

namespace moeserve::engine {
namespace {

// Absorbed-form multiply-adds take this many times as long as naive-form ones on the CPU
// (its attention GEMMs are skinnier than the expansion GEMM); measured with
// moeserve-bench-mla-forms.
constexpr double kAbsorbedMacCost = 1.0;

}  // namespace

int64_t NaiveMlaMacs(const ModelConfig& c, int64_t heads, int64_t new_tokens, int64_t context) {
  const int64_t expand = context * c.kv_lora_rank * heads * (c.qk_nope_head_dim + c.v_head_dim);
  const int64_t attend = new_tokens * context * heads * (c.qk_head_dim() + c.v_head_dim);
  return expand + attend;
}

int64_t AbsorbedMlaMacs(const ModelConfig& c, int64_t heads, int64_t new_tokens, int64_t context) {
  const int64_t absorb_q = new_tokens * heads * c.qk_nope_head_dim * c.kv_lora_rank;
  const int64_t attend = new_tokens * context * heads * (c.kv_cache_dim() + c.kv_lora_rank);
  const int64_t project_out = new_tokens * heads * c.kv_lora_rank * c.v_head_dim;
  return absorb_q + attend + project_out;
}

bool CpuPrefersAbsorbedMla(const ModelConfig& config, int64_t heads, int64_t new_tokens,
                           int64_t context) {
  if (new_tokens == 1) return true;
  return kAbsorbedMacCost *
             static_cast<double>(AbsorbedMlaMacs(config, heads, new_tokens, context)) <
         static_cast<double>(NaiveMlaMacs(config, heads, new_tokens, context));
}

bool CpuUsesAbsorbedMla(MlaForm form, const ModelConfig& config, int64_t heads, int64_t new_tokens,
                        int64_t context) {
  if (form != MlaForm::kAuto) return UsesAbsorbedMla(form, new_tokens);  // forced
  return CpuPrefersAbsorbedMla(config, heads, new_tokens, context);
}

}  // namespace moeserve::engine
