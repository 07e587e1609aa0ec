// One request's generation state inside the engine.
//
// Owned by the Scheduler from Add until the request finishes; touched only on the engine
// thread. Tokens are the prompt followed by everything generated so far; the first
// num_computed_tokens of them have their latents in the KV cache blocks of block_table.
// Preemption frees the blocks and resets num_computed_tokens to 0 but keeps the tokens, so
// the sequence recomputes them (with prefix-cache hits) and carries on where it was.
// Draft tokens are not tokens: they are proposals a step verifies (docs/speculative-decoding.md),
// and only the accepted ones join `tokens`.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "engine/kv_cache/block_table.h"
#include "engine/request.h"
#include "engine/sampling/sequence_rng.h"
#include "engine/stop_checker.h"
#include "engine/tokenizer/incremental_detokenizer.h"

namespace moeserve::engine {

enum class SequenceStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  Sequence(GenerateRequest request, TokenSink* sink, int64_t arrival_number, uint64_t seed,
           const Tokenizer* tokenizer);

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_generated() const { return num_tokens() - num_prompt_tokens; }
  int64_t num_uncomputed() const { return num_tokens() - num_computed_tokens; }
  // Tokens the sequence may still generate (max_new_tokens less those generated).
  int64_t num_tokens_left() const { return request.stop.max_new_tokens - num_generated(); }
  // Lower sorts first: served earlier, preempted later.
  bool ServedBefore(const Sequence& other) const {
    return request.priority != other.request.priority ? request.priority < other.request.priority
                                                      : arrival_number < other.arrival_number;
  }

  GenerateRequest request;       // params; prompt ids moved into `tokens`
  TokenSink* sink;               // not owned; outlives the sequence (the handle's owner keeps it)
  const int64_t arrival_number;  // FCFS order among equal priorities
  std::vector<int32_t> tokens;
  const int64_t num_prompt_tokens;
  int64_t num_computed_tokens = 0;
  int64_t num_cached_tokens = 0;  // prefix-cache hit of the first admission (for usage)
  SequenceStatus status = SequenceStatus::kWaiting;
  BlockTable block_table;
  SequenceRng rng;
  // Speculative decoding: the MTP module's guesses for the tokens after `tokens`, proposed by
  // the last step and verified by the next (cleared on preemption).
  std::vector<int32_t> draft_tokens;
  StopChecker stop_checker;
  std::optional<IncrementalDetokenizer> detokenizer;  // absent without a tokenizer
  RequestTimestamps timestamps;
  std::optional<Clock::time_point> last_token_time;  // for inter-token latency
};

}  // namespace moeserve::engine
