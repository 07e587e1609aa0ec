#include "engine/model/mla_layer.h"

#include <algorithm>
#include <vector>

#include "engine/model/linear.h"
#include "engine/model/mla_absorbed_weights.h"
#include "engine/model/mla_form_choice.h"
#include "engine/ops/attention/latent_cache.h"
#include "engine/ops/attention/mla_decode.h"
#include "engine/ops/attention/mla_prefill.h"
#include "engine/ops/linear/weight_gemm.h"
#include "engine/ops/norm/rms_norm.h"

namespace moeserve::engine {
namespace {

// q_a_layernorm and kv_a_layernorm are built without an eps argument in every DeepSeek
// implementation, so they use the RMSNorm default 1e-6 (reference §3), not rms_norm_eps.
constexpr float kLatentNormEps = 1e-6f;

// heads: the heads this rank holds (all of them without tensor parallelism), read off
// kv_b_proj, which has nope + v rows per head.
struct Dims {
  int64_t heads, nope, rope, v, rank, qk, kv;
  Dims(const ModelConfig& c, const MlaWeights& w)
      : heads(w.kv_b_proj.out_features / (c.qk_nope_head_dim + c.v_head_dim)),
        nope(c.qk_nope_head_dim),
        rope(c.qk_rope_head_dim),
        v(c.v_head_dim),
        rank(c.kv_lora_rank),
        qk(c.qk_head_dim()),
        kv(c.kv_cache_dim()) {}
};

// Naive form for sequence s: K/V of the whole context from the cached latents.
void AttendNaive(const Dims& d, const MlaWeights& w, const ForwardBatch& batch, int64_t s,
                 const float* q, LatentPagesView pages, float scale, bool quantize, float* attn) {
  const int64_t ctx = batch.seq_lens[s];
  const int64_t first = batch.query_start_loc[s];
  std::vector<float> latents(static_cast<size_t>(ctx * d.kv));
  GatherLatentCacheCpu(pages, batch.block_table(s), ctx, kKvBlockSize, d.kv, latents.data());
  std::vector<float> k_nope_v(static_cast<size_t>(ctx * d.heads * (d.nope + d.v)));
  ApplyLinear(w.kv_b_proj, latents.data(), ctx, d.kv, quantize, k_nope_v.data());
  MhaPrefillArgs args{.q = q + first * d.heads * d.qk,
                      .k_nope_v = k_nope_v.data(),
                      .k_pe = latents.data() + d.rank,
                      .k_pe_stride = d.kv,
                      .num_queries = batch.num_new_tokens(s),
                      .ctx = ctx,
                      .num_heads = d.heads,
                      .nope_dim = d.nope,
                      .rope_dim = d.rope,
                      .v_dim = d.v,
                      .softmax_scale = scale,
                      .out = attn + first * d.heads * d.v,
                      .isa = w.kv_b_proj.isa};
  MhaPrefillCpu(args);
}

// Absorbed form for the sequences in `seqs`: q_abs = q_nope·W_UK[h], attention over the
// latent cache, o_h = o_lat·W_UV[h]ᵀ.
void AttendAbsorbed(const Dims& d, const MlaWeights& w, const ForwardBatch& batch,
                    const std::vector<int64_t>& seqs, const float* q, LatentPagesView pages,
                    float scale, float* attn) {
  // Compact the selected sequences' tokens and block tables into one sub-batch.
  std::vector<int64_t> tokens;
  std::vector<int32_t> query_start_loc = {0}, seq_lens, block_tables;
  for (int64_t s : seqs) {
    for (int32_t t = batch.query_start_loc[s]; t < batch.query_start_loc[s + 1]; ++t) {
      tokens.push_back(t);
    }
    query_start_loc.push_back(static_cast<int32_t>(tokens.size()));
    seq_lens.push_back(batch.seq_lens[s]);
    block_tables.insert(block_tables.end(), batch.block_table(s),
                        batch.block_table(s) + batch.max_blocks_per_seq);
  }
  const int64_t n = static_cast<int64_t>(tokens.size());

  // q_mqa: [n, heads, 576] = [q_nope·W_UK[h] | q_pe].
  std::vector<float> q_mqa(static_cast<size_t>(n * d.heads * d.kv));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t h = 0; h < d.heads; ++h) {
      const float* q_pe = q + (tokens[i] * d.heads + h) * d.qk + d.nope;
      std::copy(q_pe, q_pe + d.rope, q_mqa.begin() + (i * d.heads + h) * d.kv + d.rank);
    }
  }
  // One head per thread: each head's GEMM is too small to split (its K is 128), and its
  // arithmetic is the same whichever thread runs it.
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < d.heads; ++h) {
    std::vector<float> q_nope(static_cast<size_t>(n * d.nope));
    for (int64_t i = 0; i < n; ++i) {
      const float* src = q + (tokens[i] * d.heads + h) * d.qk;
      std::copy(src, src + d.nope, q_nope.begin() + i * d.nope);
    }
    WeightGemmCpu(q_nope.data(), d.nope, HeadRows(w.w_uk_t, h, d.rank), q_mqa.data() + h * d.kv,
                  d.heads * d.kv, n, /*accumulate=*/false, w.w_uk_t.isa);
  }

  std::vector<float> o_lat(static_cast<size_t>(n * d.heads * d.rank));
  MlaDecodeArgs args{.q = q_mqa.data(),
                     .pages = pages,
                     .block_tables = block_tables.data(),
                     .query_start_loc = query_start_loc.data(),
                     .seq_lens = seq_lens.data(),
                     .max_blocks_per_seq = batch.max_blocks_per_seq,
                     .num_seqs = static_cast<int64_t>(seqs.size()),
                     .num_heads = d.heads,
                     .kv_dim = d.kv,
                     .v_dim = d.rank,
                     .block_size = kKvBlockSize,
                     .softmax_scale = scale,
                     .out = o_lat.data(),
                     .isa = w.kv_b_proj.isa};
  MlaDecodeCpu(args);

  std::vector<float> o_heads(static_cast<size_t>(n * d.heads * d.v));
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < d.heads; ++h) {
    WeightGemmCpu(o_lat.data() + h * d.rank, d.heads * d.rank, HeadRows(w.w_uv, h, d.v),
                  o_heads.data() + h * d.v, d.heads * d.v, n, /*accumulate=*/false, w.w_uv.isa);
  }
  for (int64_t i = 0; i < n; ++i) {
    std::copy(o_heads.begin() + i * d.heads * d.v, o_heads.begin() + (i + 1) * d.heads * d.v,
              attn + tokens[i] * d.heads * d.v);
  }
}

}  // namespace

void WriteMlaLatents(const ModelConfig& c, const MlaWeights& w, const RopeTable& rope,
                     const int32_t* positions, const int64_t* slot_mapping, int64_t num_tokens,
                     bool quantize, const float* x, LatentPages pages) {
  const Dims d(c, w);
  // latent: [num_tokens, 576] = [RMSNorm(c_kv) | RoPE(k_pe)].
  std::vector<float> latent(static_cast<size_t>(num_tokens * d.kv));
  ApplyLinear(w.kv_a_proj, x, num_tokens, c.hidden_size, quantize, latent.data());
  for (int64_t t = 0; t < num_tokens; ++t) {
    absl::Span<float> c_kv(latent.data() + t * d.kv, static_cast<size_t>(d.rank));
    RmsNormCpu(c_kv, w.kv_a_norm, kLatentNormEps, 1, c_kv);
  }
  ApplyRopeInterleavedCpu(rope, positions, num_tokens, 1, d.kv, 0, latent.data() + d.rank);
  WriteLatentCacheCpu(latent.data(), slot_mapping, num_tokens, d.kv, pages);
}

void MlaForward(const ModelConfig& c, const MlaWeights& w, const RopeTable& rope,
                const ForwardBatch& batch, const ForwardOptions& options, const float* x,
                LatentPages pages, float* out) {
  const Dims d(c, w);
  const int64_t num_tokens = batch.num_tokens();
  const int64_t hidden = c.hidden_size;
  const bool quantize = options.quantize_activations;

  // q: [num_tokens, heads, nope + rope].
  std::vector<float> q(static_cast<size_t>(num_tokens * d.heads * d.qk));
  if (w.q_proj.has_value()) {
    ApplyLinear(*w.q_proj, x, num_tokens, hidden, quantize, q.data());
  } else {
    const int64_t q_rank = w.q_a_proj->out_features;
    std::vector<float> q_latent(static_cast<size_t>(num_tokens * q_rank));
    ApplyLinear(*w.q_a_proj, x, num_tokens, hidden, quantize, q_latent.data());
    RmsNormCpu(q_latent, w.q_a_norm, kLatentNormEps, num_tokens, absl::MakeSpan(q_latent));
    ApplyLinear(*w.q_b_proj, q_latent.data(), num_tokens, q_rank, quantize, q.data());
  }

  ApplyRopeInterleavedCpu(rope, batch.positions.data(), num_tokens, d.heads, d.heads * d.qk, d.qk,
                          q.data() + d.nope);
  WriteMlaLatents(c, w, rope, batch.positions.data(), batch.slot_mapping.data(), num_tokens,
                  quantize, x, pages);

  const float scale = static_cast<float>(c.SoftmaxScale());
  std::vector<float> attn(static_cast<size_t>(num_tokens * d.heads * d.v));
  std::vector<int64_t> absorbed_seqs;
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    if (CpuUsesAbsorbedMla(options.mla_form, c, d.heads, batch.num_new_tokens(s),
                           batch.seq_lens[s])) {
      absorbed_seqs.push_back(s);
    } else {
      AttendNaive(d, w, batch, s, q.data(), pages, scale, quantize, attn.data());
    }
  }
  if (!absorbed_seqs.empty()) {
    AttendAbsorbed(d, w, batch, absorbed_seqs, q.data(), pages, scale, attn.data());
  }
  ApplyLinear(w.o_proj, attn.data(), num_tokens, d.heads * d.v, quantize, out);
}

}  // namespace moeserve::engine
