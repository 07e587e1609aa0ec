// Limits and switches of the engine, fixed at creation.
#pragma once

#include <cstdint>

#include "engine/batch/forward_options.h"

namespace moeserve::engine {

// The most draft tokens one step verifies (vLLM and SGLang serve DeepSeek's MTP with 1-3).
inline constexpr int64_t kMaxSpeculativeTokens = 8;

struct EngineOptions {
  int64_t num_kv_blocks = 256;           // of 64 tokens each (from the memory planner or a flag)
  int64_t max_num_seqs = 64;             // running sequences per step
  int64_t max_num_batched_tokens = 512;  // token budget of one step (chunked prefill)
  // Prompts prefilled in one step at most (vLLM's max_num_partial_prefills), and the chunk cap
  // of each while several compete (long_prefill_token_threshold; 0 = a quarter of the budget):
  // a short prompt behind a long one starts within a step (engine/scheduler/scheduler.h).
  int64_t max_num_partial_prefills = 4;
  int64_t long_prefill_token_threshold = 0;
  int64_t max_model_len = 4096;         // prompt + generated tokens of one sequence
  int64_t max_waiting_requests = 1024;  // beyond this Submit answers ResourceExhausted
  // Blocks kept free when admitting new prompts, so running decodes rarely preempt (vLLM's
  // watermark, 1% by default).
  double admission_watermark = 0.01;
  bool enable_prefix_caching = true;
  // The CPU backend attends in the absorbed form for every token, prefill included: then a
  // token's computation never depends on whether it was prefilled, decoded or recomputed
  // after preemption, and greedy output is identical in every batch (DESIGN.md §4).
  MlaForm mla_form = MlaForm::kAbsorbed;
  // Speculative decoding with the model's MTP module (0: off): each decode verifies up to this
  // many draft tokens, the module drafting autoregressively beyond the first
  // (docs/speculative-decoding.md).
  int64_t speculative_tokens = 0;
  // Speculation pauses while more sequences than this decode (sample in a step and go on;
  // 0: never): drafts cost a verification per token, which pays at small batches, where a step
  // is bound by reading the weights or by launch latency, and not at large ones. The MTP module
  // still writes its latents, so drafting resumes as soon as the batch is small again (vLLM's
  // speculative_disable_by_batch_size, decided here for every step).
  int64_t speculative_disable_by_batch_size = 0;
  // Ranks the model is split over (engine/parallel/parallel_config.h). They must match the
  // ParallelModel the engine is created with; a plain DeepseekModel is one rank.
  int tensor_parallel_size = 1;
  int expert_parallel_size = 1;
  // Threads the CPU kernels of one rank use when the engine's loop thread runs the forward
  // (engine/ops/cpu/cpu_threads.h); 0: every CPU the process may use. Rank threads of a
  // ParallelModel have their own count, given at its Load.
  int cpu_threads = 0;
};

}  // namespace moeserve::engine
