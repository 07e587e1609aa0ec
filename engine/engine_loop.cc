#include "engine/engine_loop.h"

#include "engine/output_processor.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kExpertCountRefreshSteps = 32;

}  // namespace

EngineLoop::EngineLoop(const DeepseekModel& model, const Tokenizer* tokenizer,
                       const EngineOptions& options, MetricsRecorder* metrics)
    : tokenizer_(tokenizer), metrics_(metrics), scheduler_(options), runner_(model, options) {}

EngineLoop::EngineLoop(ParallelModel& model, const Tokenizer* tokenizer,
                       const EngineOptions& options, MetricsRecorder* metrics)
    : tokenizer_(tokenizer), metrics_(metrics), scheduler_(options), runner_(model, options) {}

EngineLoop::EngineLoop(StepModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
                       MetricsRecorder* metrics)
    : tokenizer_(tokenizer), metrics_(metrics), scheduler_(options), runner_(model, options) {}

void EngineLoop::AddRequest(GenerateRequest request, TokenSink* sink) {
  // Without a per-request seed each request still gets its own stream, fixed at arrival.
  const uint64_t seed = request.sampling.seed.value_or(seed_source_());
  scheduler_.Add(std::make_unique<Sequence>(std::move(request), sink, next_arrival_number_++, seed,
                                            tokenizer_));
}

void EngineLoop::EndSequence(Sequence* sequence, TokenEvent final_event) {
  std::unique_ptr<Sequence> owned = scheduler_.Finish(sequence);
  if (metrics_ != nullptr) {
    metrics_->OnRequestFinished(*final_event.finish, final_event.usage, final_event.timestamps,
                                owned->request.stop.max_new_tokens);
  }
  if (request_ended_) request_ended_(owned->request.request_id);
  Emit(owned->sink, std::move(final_event));
}

void EngineLoop::Emit(TokenSink* sink, TokenEvent event) {
  pending_events_.emplace_back(sink, std::move(event));
}

void EngineLoop::DeliverEvents() {
  for (auto& [sink, event] : pending_events_) sink->OnEvent(std::move(event));
  pending_events_.clear();
}

bool EngineLoop::AbortRequest(const std::string& request_id) {
  Sequence* s = scheduler_.Find(request_id);
  if (s == nullptr) return false;
  EndSequence(s, MakeFinalEvent(*s, FinishReason::kAbort));
  return true;
}

void EngineLoop::AbortAll() {
  while (Sequence* s = scheduler_.AnyLiveSequence()) {
    EndSequence(s, MakeFinalEvent(*s, FinishReason::kAbort));
  }
}

void EngineLoop::RunOnce() {
  if (!scheduler_.HasWork()) return;
  const Clock::time_point begin = Clock::now();

  ScheduledBatch batch = scheduler_.Schedule();
  last_step_ = StepStats{.batch_size = static_cast<int64_t>(batch.sequences.size()),
                         .num_prefill_tokens = batch.num_prefill_tokens,
                         .num_decode_tokens = batch.num_decode_tokens,
                         .num_preempted = batch.num_preempted};
  if (batch.empty()) return;
  for (const ScheduledSequence& entry : batch.sequences) {
    if (!entry.sequence->timestamps.scheduled) entry.sequence->timestamps.scheduled = begin;
  }

  absl::StatusOr<StepOutput> output = runner_.Execute(batch);
  if (!output.ok()) {
    // A failed step fails the requests in it, not the engine.
    for (const ScheduledSequence& entry : batch.sequences) {
      EndSequence(entry.sequence, MakeFinalEvent(*entry.sequence, FinishReason::kError,
                                                 std::string(output.status().message())));
    }
    return;
  }
  scheduler_.CommitComputed(batch, output->accepted_drafts);
  CountSpeculation(batch, output->accepted_drafts);

  for (SequenceOutput& out : output->sequences) {
    Sequence* s = out.sequence;
    bool finished = false;
    // One event per token, so that a stop inside accepted drafts ends the request right there.
    for (const SampledToken& token : out.tokens) {
      scheduler_.AppendToken(*s, token.token_id);
      ++total_generated_tokens_;
      RecordTokenLatency(*s);
      TokenEvent event = ProcessSampledToken(*s, token);
      if (event.finish) {
        EndSequence(s, std::move(event));
        finished = true;
        break;
      }
      Emit(s->sink, std::move(event));
    }
    if (!finished) s->draft_tokens = std::move(out.next_drafts);
  }
  ++total_steps_;
  last_step_.step_ms = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
  if (metrics_ != nullptr) {
    EngineStats stats;
    FillStats(stats);
    metrics_->OnStep(stats);
  }
}

void EngineLoop::CountSpeculation(const ScheduledBatch& batch,
                                  absl::Span<const int64_t> accepted_drafts) {
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    const int64_t drafts = batch.sequences[i].num_draft_tokens;
    if (drafts == 0) continue;
    const int64_t accepted = accepted_drafts[i];
    ++speculation_.num_drafts;
    speculation_.num_draft_tokens += drafts;
    speculation_.num_accepted_tokens += accepted;
    if (speculation_.accepted_per_position.size() < static_cast<size_t>(drafts)) {
      speculation_.accepted_per_position.resize(static_cast<size_t>(drafts), 0);
    }
    for (int64_t p = 0; p < accepted; ++p) ++speculation_.accepted_per_position[p];
  }
}

void EngineLoop::RecordTokenLatency(Sequence& s) {
  const Clock::time_point now = Clock::now();
  if (metrics_ != nullptr) {
    if (s.last_token_time) {
      metrics_->OnInterTokenLatency(
          std::chrono::duration<double>(now - *s.last_token_time).count());
    } else {
      metrics_->OnFirstToken(std::chrono::duration<double>(now - s.timestamps.queued).count());
    }
  }
  s.last_token_time = now;
}

void EngineLoop::FillStats(EngineStats& stats) const {
  const KvCacheStats kv = scheduler_.kv_cache().Stats();
  stats.num_running = scheduler_.num_running();
  stats.num_waiting = scheduler_.num_waiting();
  stats.num_kv_blocks = kv.num_blocks;
  stats.num_kv_blocks_used = kv.num_blocks_used;
  stats.num_kv_blocks_cached_unused = kv.num_blocks_cached_unused;
  stats.kv_usage = kv.usage();
  stats.kv_bytes_per_token = runner_.kv_bytes_per_token();
  stats.total_steps = total_steps_;
  stats.total_preemptions = scheduler_.total_preemptions();
  stats.prefix_query_tokens = kv.prefix_query_tokens;
  stats.prefix_hit_tokens = kv.prefix_hit_tokens;
  stats.total_generated_tokens = total_generated_tokens_;
  stats.last_step = last_step_;
  // On the CUDA backend the counts live on the device, and reading them is a copy and a stream
  // synchronisation: refreshed every kExpertCountRefreshSteps steps and whenever the loop runs
  // out of work (so a drained engine reports every token), not after each step.
  if (stats.expert_token_counts.empty() || !HasWork() ||
      total_steps_ % kExpertCountRefreshSteps == 0) {
    stats.expert_token_counts = runner_.expert_token_counts();
  }
  stats.speculation = speculation_;
}

}  // namespace moeserve::engine
