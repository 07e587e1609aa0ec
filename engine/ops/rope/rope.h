// Rotary position embedding on interleaved pairs, with YaRN frequency tables.
//
// DeepSeek checkpoints lay out q_pe / k_pe rows for pairs (x[2i], x[2i+1]) (reference §3.2,
// GPT-J style); applying neox rotate_half to them is the classic bug. MLA calls this for q_pe
// of every head and for the single shared k_pe before it is written to the latent cache.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace moeserve::engine {

struct YarnParams {
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;

  bool operator==(const YarnParams&) const = default;
};

struct RopeTable {
  std::vector<float> inv_freq;  // [rotary_dim / 2]
  // Multiplier on cos/sin: m(factor, mscale) / m(factor, mscale_all_dim) (1.0 for every
  // published DeepSeek config, whose two mscales are equal).
  float attention_scaling = 1.0f;
  int64_t rotary_dim() const { return static_cast<int64_t>(inv_freq.size()) * 2; }
};

// YaRN magnitude factor m(s, mscale) = 0.1·mscale·ln(s) + 1 for s > 1, else 1.
double YarnMscale(double factor, double mscale);

// inv_freq_i = base^(-2i/dim), blended with inv_freq_i/factor by YaRN's linear ramp between
// the correction dims of beta_fast and beta_slow (reference §3.2; same fp32 steps as HF).
RopeTable MakeRopeTable(int64_t rotary_dim, double base, const std::optional<YarnParams>& yarn);

// Rotates, in place, `num_heads` vectors of rotary_dim floats per token:
// x + t * token_stride + h * head_stride, by angle positions[t] · inv_freq.
void ApplyRopeInterleavedCpu(const RopeTable& table, const int32_t* positions, int64_t num_tokens,
                             int64_t num_heads, int64_t token_stride, int64_t head_stride,
                             float* x);

}  // namespace moeserve::engine
