// Iteration-level scheduling: which sequences run in the next step, and with how many tokens.
//
// Rules (vLLM's V1 scheduler, chunked prefill always on):
//  1. Decodes of running sequences first, in priority then arrival order, one token each
//     (plus the sequence's draft tokens under speculative decoding, as far as the budget and
//     max_tokens allow), within the step's token budget. When a running sequence needs a KV block
//     and none is available, the lowest-priority, latest-arrived running sequence is preempted
//     (recompute: its blocks are freed, it returns to the waiting queue keeping its generated
//     tokens).
//  2. Then prefill chunks, at most max_num_partial_prefills per step: running sequences whose
//     prompt is still being prefilled, then waiting sequences in priority then arrival order,
//     strictly (no skipping ahead). A waiting sequence reuses its longest cached prefix and is
//     admitted only if the blocks leave the admission watermark free; no admissions in a step
//     that preempted. While more than one prompt competes for the step, each chunk is capped at
//     long_prefill_token_threshold, so a short prompt that arrives behind a long one is
//     prefilled in the next step instead of after it (vLLM's partial prefills).
// The scheduler owns every Sequence and the KvCacheManager; engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "engine/engine_options.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/scheduler/scheduled_batch.h"
#include "engine/scheduler/sequence.h"

namespace moeserve::engine {

class Scheduler {
 public:
  explicit Scheduler(const EngineOptions& options);

  // Takes a new sequence into the waiting queue (the request id must be new).
  void Add(std::unique_ptr<Sequence> sequence);
  // The live sequence with this request id, or nullptr.
  Sequence* Find(const std::string& request_id) const;
  // Some live sequence (for shutdown), or nullptr.
  Sequence* AnyLiveSequence() const;

  ScheduledBatch Schedule();
  // After the runner executed `batch`: the scheduled tokens are now computed, except the draft
  // tokens beyond the accepted_drafts[i] of entry i (empty: no speculation), whose KV slots are
  // rolled back and their blocks freed; full blocks become reusable prefixes.
  void CommitComputed(const ScheduledBatch& batch, absl::Span<const int64_t> accepted_drafts = {});
  // Appends a sampled token to a sequence (its KV is computed next step).
  void AppendToken(Sequence& sequence, int32_t token_id);
  // Ends a sequence (finished, cancelled or failed): frees its blocks at once and hands it
  // back for its last event.
  std::unique_ptr<Sequence> Finish(Sequence* sequence);

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  // In service order (priority, then arrival).
  const std::vector<Sequence*>& waiting() const { return waiting_; }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t total_preemptions() const { return total_preemptions_; }
  const KvCacheManager& kv_cache() const { return kv_cache_; }
  // Every live sequence's block table, for invariant checks in tests.
  std::vector<const BlockTable*> LiveBlockTables() const;

 private:
  void Preempt(Sequence* victim);
  // KV slots a chunk ending at token `end` of `s` needs: `end`, or for a sampling chunk under
  // speculative decoding also the MTP module's look-ahead.
  int64_t SlotsNeeded(const Sequence& s, int64_t end) const;
  // The chunk cap of a prefill while prompts compete (EngineOptions).
  int64_t LongPrefillThreshold() const;
  // The running sequence to preempt: the lowest priority, latest arrival.
  Sequence* PreemptionVictim() const;

  const EngineOptions options_;
  KvCacheManager kv_cache_;
  int64_t watermark_blocks_;
  absl::flat_hash_map<std::string, std::unique_ptr<Sequence>> sequences_;
  std::vector<Sequence*> waiting_;  // kept sorted by ServedBefore
  std::vector<Sequence*> running_;
  int64_t total_preemptions_ = 0;
};

}  // namespace moeserve::engine
