#include "engine/scheduler/scheduler.h"

#include <algorithm>
#include <cmath>

namespace moeserve::engine {
namespace {

bool ServedBefore(const Sequence* a, const Sequence* b) { return a->ServedBefore(*b); }

}  // namespace

Scheduler::Scheduler(const EngineOptions& options)
    : options_(options),
      kv_cache_(options.num_kv_blocks, options.enable_prefix_caching),
      watermark_blocks_(static_cast<int64_t>(
          std::ceil(options.admission_watermark * static_cast<double>(options.num_kv_blocks)))) {}

void Scheduler::Add(std::unique_ptr<Sequence> sequence) {
  Sequence* raw = sequence.get();
  sequences_[raw->request.request_id] = std::move(sequence);
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), raw, ServedBefore), raw);
}

Sequence* Scheduler::Find(const std::string& request_id) const {
  auto it = sequences_.find(request_id);
  return it == sequences_.end() ? nullptr : it->second.get();
}

Sequence* Scheduler::AnyLiveSequence() const {
  return sequences_.empty() ? nullptr : sequences_.begin()->second.get();
}

Sequence* Scheduler::PreemptionVictim() const {
  Sequence* victim = nullptr;
  for (Sequence* s : running_) {
    if (victim == nullptr || victim->ServedBefore(*s)) victim = s;
  }
  return victim;
}

void Scheduler::Preempt(Sequence* victim) {
  kv_cache_.Free(victim->block_table);
  victim->num_computed_tokens = 0;
  victim->status = SequenceStatus::kWaiting;
  std::erase(running_, victim);
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), victim, ServedBefore), victim);
  ++total_preemptions_;
}

ScheduledBatch Scheduler::Schedule() {
  ScheduledBatch batch;
  int64_t budget = options_.max_num_batched_tokens;
  const auto add = [&](Sequence* s, int64_t n) {
    const bool samples = s->num_computed_tokens + n == s->num_tokens();
    batch.sequences.push_back({s, n, samples});
    (n == 1 && s->num_computed_tokens >= s->num_prompt_tokens ? batch.num_decode_tokens
                                                              : batch.num_prefill_tokens) += n;
    budget -= n;
  };

  // 1. Running sequences, most important first.
  std::sort(running_.begin(), running_.end(), ServedBefore);
  std::vector<Sequence*> scheduled;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* s = running_[i];
    const int64_t n = std::min(s->num_uncomputed(), budget);
    if (n <= 0) continue;
    bool preempted_self = false;
    while (!kv_cache_.Allocate(s->block_table, s->num_computed_tokens + n)) {
      Sequence* victim = PreemptionVictim();
      if (std::find(scheduled.begin(), scheduled.end(), victim) != scheduled.end() || victim == s) {
        // Nothing less important left to take from: this sequence waits instead.
        Preempt(s);
        ++batch.num_preempted;
        preempted_self = true;
        break;
      }
      Preempt(victim);
      ++batch.num_preempted;
    }
    if (preempted_self) {
      --i;  // running_ shrank at this position
      continue;
    }
    add(s, n);
    scheduled.push_back(s);
  }

  // 2. Waiting sequences in order, unless this step had to preempt.
  while (batch.num_preempted == 0 && budget > 0 && !waiting_.empty() &&
         static_cast<int64_t>(running_.size()) < options_.max_num_seqs) {
    Sequence* s = waiting_.front();
    const bool first_admission = !s->timestamps.scheduled.has_value();
    int64_t cached = 0;
    if (s->block_table.empty()) cached = kv_cache_.MatchPrefix(s->tokens, s->block_table);
    const int64_t computed = cached;
    const int64_t n = std::min(s->num_tokens() - computed, budget);
    const int64_t needed = kv_cache_.BlocksNeeded(s->block_table, computed + n);
    // The watermark keeps room for running decodes; with nothing running it would only
    // keep a large prompt out forever.
    const int64_t reserve = running_.empty() ? 0 : watermark_blocks_;
    if (kv_cache_.NumAvailableBlocks() - needed < reserve ||
        !kv_cache_.Allocate(s->block_table, computed + n)) {
      kv_cache_.Free(s->block_table);  // give back the prefix hit; retry next step
      break;
    }
    s->num_computed_tokens = computed;
    if (first_admission) {
      s->num_cached_tokens = cached;
      s->timestamps.scheduled = Clock::now();
    }
    s->status = SequenceStatus::kRunning;
    waiting_.erase(waiting_.begin());
    running_.push_back(s);
    add(s, n);
  }
  return batch;
}

void Scheduler::CommitComputed(const ScheduledBatch& batch) {
  for (const ScheduledSequence& entry : batch.sequences) {
    Sequence& s = *entry.sequence;
    s.num_computed_tokens += entry.num_new_tokens;
    kv_cache_.CommitComputedBlocks(s.block_table, s.tokens, s.num_computed_tokens);
  }
}

void Scheduler::AppendToken(Sequence& sequence, int32_t token_id) {
  sequence.tokens.push_back(token_id);
}

std::unique_ptr<Sequence> Scheduler::Finish(Sequence* sequence) {
  kv_cache_.Free(sequence->block_table);
  std::erase(running_, sequence);
  std::erase(waiting_, sequence);
  sequence->status = SequenceStatus::kFinished;
  auto it = sequences_.find(sequence->request.request_id);
  std::unique_ptr<Sequence> owned = std::move(it->second);
  sequences_.erase(it);
  return owned;
}

std::vector<const BlockTable*> Scheduler::LiveBlockTables() const {
  std::vector<const BlockTable*> tables;
  for (const auto& [id, s] : sequences_) tables.push_back(&s->block_table);
  return tables;
}

}  // namespace moeserve::engine
