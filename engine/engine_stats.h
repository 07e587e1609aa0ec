// A snapshot of the engine's state for metrics and GetServerInfo, copied out under a lock
// after every step.
#pragma once

#include <cstdint>
#include <vector>

namespace moeserve::engine {

struct StepStats {
  int64_t batch_size = 0;  // sequences in the step
  int64_t num_prefill_tokens = 0;
  int64_t num_decode_tokens = 0;
  int64_t num_preempted = 0;
  double step_ms = 0.0;
};

// Speculative decoding so far (vLLM's spec_decode counters): a "draft" is one sequence's
// proposal verified in one step, of num_draft_tokens tokens in all.
struct SpeculativeStats {
  int64_t num_drafts = 0;
  int64_t num_draft_tokens = 0;
  int64_t num_accepted_tokens = 0;
  // [position]: drafts whose token at that position (0 = first) was accepted.
  std::vector<int64_t> accepted_per_position;
};

struct EngineStats {
  int64_t num_running = 0;
  int64_t num_waiting = 0;  // in the scheduler's queue plus submitted but not yet drained
  int64_t num_kv_blocks = 0;
  int64_t num_kv_blocks_used = 0;
  int64_t num_kv_blocks_cached_unused = 0;  // evictable prefix-cache blocks
  double kv_usage = 0.0;                    // used / total
  int64_t kv_bytes_per_token = 0;
  int64_t total_steps = 0;
  int64_t total_preemptions = 0;
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t total_generated_tokens = 0;
  StepStats last_step;
  // Tokens routed to each expert so far: [num_layers, n_routed_experts] (dense layers 0).
  // Refreshed every 32 steps and when the engine runs out of work.
  std::vector<int64_t> expert_token_counts;
  SpeculativeStats speculation;
};

}  // namespace moeserve::engine
