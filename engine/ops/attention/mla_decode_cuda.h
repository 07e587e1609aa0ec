// CUDA MLA decode attention over the paged latent cache, BF16, with FlashMLA's contract
// (reference §6): page size 64; q = [q_abs(512) | q_pe(64)] per head; cache [num_pages, 64, 576];
// int32 block tables, query offsets and lengths; an explicit softmax scale; o_lat[..., 512] and
// the natural-log LSE; several queries per sequence with the causal rule of mla_decode.h
// (query i of n sees keys [0, seq_len − n + i]); a query with no keys gets o = 0, lse = +inf.
//
// Design (docs/performance.md "MLA attention kernels"): a CTA takes up to 64 query rows of one
// sequence (all its heads, so each 64-key tile read from the cache is reused from shared memory
// by every head) and one split of its keys; Q·Kᵀ and P·V run on BF16 tensor cores (mma.sync)
// with an online softmax in fp32. Long contexts with few sequences are split across SMs
// (PlanMlaDecode, mla_decode_split.h) and merged by a log-sum-exp combine kernel.
// The model's CUDA MLA layer calls this for decode steps. Plain C++ header (no CUDA headers).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/ops/attention/mla_decode_split.h"

namespace moeserve::engine {

struct MlaDecodeCudaArgs {
  const uint16_t* q = nullptr;               // device [num_tokens, num_heads, 576] bf16
  const uint16_t* pages = nullptr;           // device [num_pages, 64, 576] bf16
  const int32_t* block_tables = nullptr;     // device [num_seqs, max_blocks_per_seq]
  const int32_t* query_start_loc = nullptr;  // device [num_seqs + 1]; last = num_tokens
  const int32_t* seq_lens = nullptr;         // device [num_seqs] keys seen by the last query
  int64_t num_pages = 0;  // pages outside [0, num_pages) read as zeros instead of faulting
  int64_t max_blocks_per_seq = 0;
  int64_t num_seqs = 0;
  int64_t num_heads = 0;
  int64_t num_tokens = 0;      // host copy of query_start_loc[num_seqs]
  float softmax_scale = 0.0f;  // τ = qk_head_dim^-1/2 · m², never 576^-1/2
  uint16_t* out = nullptr;     // device [num_tokens, num_heads, 512] bf16
  float* lse = nullptr;        // device [num_tokens, num_heads] fp32, natural log; optional
};

// Launches on `stream` (a cudaStream_t) with the decomposition `plan` (PlanMlaDecode with the
// same num_seqs, num_heads, num_tokens, and a max_queries_per_seq that bounds every sequence's
// query count: rows past num_m_blocks · block_m are not computed). `workspace` must hold
// plan.workspace_bytes (16-byte aligned) when plan.num_splits > 1. Returns the cudaError_t of the
// launches as an int; cudaErrorInvalidValue for inconsistent arguments.
int LaunchMlaDecodeBf16(const MlaDecodeCudaArgs& args, const MlaDecodePlan& plan, void* workspace,
                        void* stream);

}  // namespace moeserve::engine
