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
  victim->draft_tokens.clear();
  victim->num_computed_tokens = 0;
  victim->status = SequenceStatus::kWaiting;
  std::erase(running_, victim);
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), victim, ServedBefore), victim);
  ++total_preemptions_;
}

ScheduledBatch Scheduler::Schedule() {
  ScheduledBatch batch;
  int64_t budget = options_.max_num_batched_tokens;
  std::vector<Sequence*> scheduled;
  const auto add = [&](Sequence* s, int64_t n, int64_t drafts) {
    const bool samples = s->num_computed_tokens + n - drafts == s->num_tokens();
    batch.sequences.push_back({s, n, samples, drafts});
    (n - drafts == 1 && s->num_computed_tokens >= s->num_prompt_tokens
         ? batch.num_decode_tokens
         : batch.num_prefill_tokens) += n;
    budget -= n;
    scheduled.push_back(s);
  };
  // Finds KV blocks for n more tokens of running sequence s (and its speculative look-ahead),
  // preempting less important running sequences; false when s itself had to give way.
  const auto make_room = [&](Sequence* s, int64_t n) {
    while (!kv_cache_.Allocate(s->block_table, SlotsNeeded(*s, s->num_computed_tokens + n))) {
      Sequence* victim = PreemptionVictim();
      if (std::find(scheduled.begin(), scheduled.end(), victim) != scheduled.end() || victim == s) {
        // Nothing less important left to take from: this sequence waits instead.
        Preempt(s);
        ++batch.num_preempted;
        return false;
      }
      Preempt(victim);
      ++batch.num_preempted;
    }
    return true;
  };

  // 1. Decodes of running sequences, most important first: one token each.
  std::sort(running_.begin(), running_.end(), ServedBefore);
  const std::vector<Sequence*> by_service = running_;
  for (Sequence* s : by_service) {
    if (budget <= 0) break;
    if (s->status != SequenceStatus::kRunning || s->num_uncomputed() != 1) continue;
    // Speculative decoding: verify the drafts too, as far as the budget and max_tokens allow.
    const int64_t drafts =
        std::clamp<int64_t>(std::min({static_cast<int64_t>(s->draft_tokens.size()), budget - 1,
                                      s->num_tokens_left() - 1}),
                            0, options_.speculative_tokens);
    if (make_room(s, 1 + drafts)) add(s, 1 + drafts, drafts);
  }

  // 2. Prefill chunks: running sequences' partial prefills, then new admissions. A long prompt
  //    takes at most long_prefill_token_threshold tokens while another prompt is waiting for
  //    the step, so short prompts behind it start at once (vLLM's partial prefills).
  const int64_t partial_prefills = std::count_if(
      by_service.begin(), by_service.end(),
      [](Sequence* s) { return s->status == SequenceStatus::kRunning && s->num_uncomputed() > 1; });
  const bool can_admit = static_cast<int64_t>(running_.size()) < options_.max_num_seqs;
  const bool prompts_compete =
      partial_prefills + (can_admit ? static_cast<int64_t>(waiting_.size()) : 0) > 1;
  const int64_t chunk_cap = prompts_compete ? LongPrefillThreshold() : budget;
  int64_t num_prefills = 0;
  for (Sequence* s : by_service) {
    if (budget <= 0 || num_prefills >= options_.max_num_partial_prefills) break;
    if (s->status != SequenceStatus::kRunning || s->num_uncomputed() <= 1) continue;
    const int64_t n = std::min({s->num_uncomputed(), budget, chunk_cap});
    if (!make_room(s, n)) continue;
    add(s, n, 0);
    ++num_prefills;
  }

  // 3. Waiting sequences in order, unless this step had to preempt.
  while (batch.num_preempted == 0 && budget > 0 && !waiting_.empty() &&
         num_prefills < options_.max_num_partial_prefills &&
         static_cast<int64_t>(running_.size()) < options_.max_num_seqs) {
    Sequence* s = waiting_.front();
    const bool first_admission = !s->timestamps.scheduled.has_value();
    int64_t cached = 0;
    if (s->block_table.empty()) {
      cached = kv_cache_.MatchPrefix(s->tokens, s->block_table,
                                     options_.speculative_tokens > 0
                                         ? KvCacheManager::PrefixReuse::kAllButLastBlock
                                         : KvCacheManager::PrefixReuse::kAllBlocks);
    }
    const int64_t computed = cached;
    const int64_t n = std::min({s->num_tokens() - computed, budget, chunk_cap});
    const int64_t slots = SlotsNeeded(*s, computed + n);
    const int64_t needed = kv_cache_.BlocksNeeded(s->block_table, slots);
    // The watermark keeps room for running decodes; with nothing running it would only
    // keep a large prompt out forever.
    const int64_t reserve = running_.empty() ? 0 : watermark_blocks_;
    if (kv_cache_.NumAvailableBlocks() - needed < reserve ||
        !kv_cache_.Allocate(s->block_table, slots)) {
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
    add(s, n, 0);
    ++num_prefills;
  }
  return batch;
}

int64_t Scheduler::LongPrefillThreshold() const {
  const int64_t threshold = options_.long_prefill_token_threshold > 0
                                ? options_.long_prefill_token_threshold
                                : options_.max_num_batched_tokens / 4;
  return std::max<int64_t>(threshold, 1);
}

int64_t Scheduler::SlotsNeeded(const Sequence& s, int64_t end) const {
  if (options_.speculative_tokens <= 1 || end < s.num_tokens()) return end;
  // A sampling chunk: the MTP module drafts up to k - 1 positions past it, never past the
  // sequence's last possible token.
  const int64_t limit = s.num_tokens() + s.num_tokens_left();
  return std::max(end, std::min(end + options_.speculative_tokens - 1, limit));
}

void Scheduler::CommitComputed(const ScheduledBatch& batch,
                               absl::Span<const int64_t> accepted_drafts) {
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    const ScheduledSequence& entry = batch.sequences[i];
    Sequence& s = *entry.sequence;
    const int64_t accepted = i < accepted_drafts.size() ? accepted_drafts[i] : 0;
    s.num_computed_tokens += entry.num_new_tokens - entry.num_draft_tokens + accepted;
    // Blocks whose last tokens are accepted drafts register next step, once those tokens have
    // joined `tokens` (CommitComputedBlocks stops at the tokens it is given).
    kv_cache_.CommitComputedBlocks(s.block_table, s.tokens, s.num_computed_tokens);
    // Roll back: rejected drafts' and look-ahead slots' blocks go back to the pool (the next
    // token's slot stays).
    if (options_.speculative_tokens > 0) kv_cache_.Shrink(s.block_table, s.num_computed_tokens + 1);
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
