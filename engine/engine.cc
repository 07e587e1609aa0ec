#include "engine/engine.h"

#include "absl/strings/str_cat.h"
#include "engine/ops/cpu/cpu_threads.h"

namespace moeserve::engine {

RequestHandle& RequestHandle::operator=(RequestHandle&& other) noexcept {
  if (this != &other) {
    Cancel();
    engine_ = std::exchange(other.engine_, nullptr);
    request_id_ = std::move(other.request_id_);
  }
  return *this;
}

RequestHandle::~RequestHandle() { Cancel(); }

void RequestHandle::Cancel() {
  if (engine_ != nullptr) engine_->Cancel(request_id_);
  engine_ = nullptr;
}

absl::Status Engine::ValidateOptions(const EngineOptions& options) {
  if (options.num_kv_blocks < 1 || options.max_num_seqs < 1 || options.max_num_batched_tokens < 1 ||
      options.max_model_len < 1) {
    return absl::InvalidArgumentError(
        "EngineOptions: num_kv_blocks, max_num_seqs, max_num_batched_tokens and max_model_len "
        "must be positive");
  }
  if (options.max_model_len > options.num_kv_blocks * kKvBlockSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_model_len ", options.max_model_len, " exceeds the KV cache capacity of ",
        options.num_kv_blocks * kKvBlockSize, " tokens (", options.num_kv_blocks, " blocks)"));
  }
  if (options.speculative_tokens < 0 || options.speculative_tokens > kMaxSpeculativeTokens) {
    return absl::InvalidArgumentError(absl::StrCat("EngineOptions: speculative_tokens ",
                                                   options.speculative_tokens, " is outside [0, ",
                                                   kMaxSpeculativeTokens, "]"));
  }
  if (options.speculative_disable_by_batch_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EngineOptions: speculative_disable_by_batch_size ",
                     options.speculative_disable_by_batch_size, " is negative"));
  }
  return absl::OkStatus();
}

absl::Status Engine::ValidateSpeculation(const EngineOptions& options, int64_t num_mtp_modules) {
  if (options.speculative_tokens > 0 && num_mtp_modules == 0) {
    return absl::InvalidArgumentError(
        "speculative_tokens needs the model's multi-token-prediction module: the checkpoint "
        "must have num_nextn_predict_layers >= 1 and be loaded with it (LoadOptions::load_mtp)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const DeepseekModel& model,
                                                       const Tokenizer* tokenizer,
                                                       const EngineOptions& options,
                                                       MetricsRecorder* metrics) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (options.tensor_parallel_size != 1 || options.expert_parallel_size != 1) {
    return absl::InvalidArgumentError(
        "EngineOptions: tensor/expert parallel sizes above 1 need a ParallelModel");
  }
  if (absl::Status s = ValidateSpeculation(options, model.num_mtp_modules()); !s.ok()) return s;
  return std::unique_ptr<Engine>(new Engine(model, tokenizer, options, metrics));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(ParallelModel& model,
                                                       const Tokenizer* tokenizer,
                                                       const EngineOptions& options,
                                                       MetricsRecorder* metrics) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (options.tensor_parallel_size != model.parallel().tensor_parallel_size ||
      options.expert_parallel_size != model.parallel().expert_parallel_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EngineOptions: tensor_parallel_size ", options.tensor_parallel_size,
        " / expert_parallel_size ", options.expert_parallel_size, " do not match the model's ",
        model.parallel().tensor_parallel_size, " / ", model.parallel().expert_parallel_size));
  }
  if (absl::Status s = ValidateSpeculation(options, model.num_mtp_modules()); !s.ok()) return s;
  return std::unique_ptr<Engine>(new Engine(model, tokenizer, options, metrics));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(StepModel& model, const Tokenizer* tokenizer,
                                                       const EngineOptions& options,
                                                       MetricsRecorder* metrics) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (options.num_kv_blocks != model.num_kv_blocks()) {
    return absl::InvalidArgumentError(
        absl::StrCat("EngineOptions: num_kv_blocks ", options.num_kv_blocks,
                     " differs from the model's KV pool of ", model.num_kv_blocks(), " blocks"));
  }
  if (options.tensor_parallel_size != 1 || options.expert_parallel_size != 1) {
    return absl::InvalidArgumentError(
        "EngineOptions: tensor/expert parallelism is not supported by this backend yet");
  }
  if (absl::Status s = ValidateSpeculation(options, model.num_mtp_modules()); !s.ok()) return s;
  return std::unique_ptr<Engine>(new Engine(model, tokenizer, options, metrics));
}

Engine::Engine(const DeepseekModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
               MetricsRecorder* metrics)
    : config_(model.config()), options_(options), loop_(model, tokenizer, options, metrics) {
  Start();
}

Engine::Engine(ParallelModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
               MetricsRecorder* metrics)
    : config_(model.config()), options_(options), loop_(model, tokenizer, options, metrics) {
  Start();
}

Engine::Engine(StepModel& model, const Tokenizer* tokenizer, const EngineOptions& options,
               MetricsRecorder* metrics)
    : config_(model.config()), options_(options), loop_(model, tokenizer, options, metrics) {
  Start();
}

void Engine::Start() {
  {
    std::lock_guard lock(mu_);
    loop_.FillStats(stats_);
  }
  loop_.SetRequestEndedCallback([this](const std::string& id) {
    std::lock_guard lock(mu_);
    live_request_ids_.erase(id);
  });
  // The loop thread's team is the one that computes from now on; the creating thread's team
  // (model loading) would only make libgomp think the CPUs are oversubscribed.
  ReleaseCpuThreadsOfThisThread();
  thread_ = std::thread([this] { Run(); });
}

Engine::~Engine() { Shutdown(ShutdownMode::kAbort); }

absl::Status Engine::Validate(const GenerateRequest& r) const {
  if (r.request_id.empty()) return absl::InvalidArgumentError("request_id must not be empty");
  if (r.prompt_token_ids.empty()) return absl::InvalidArgumentError("prompt must not be empty");
  const int64_t vocab = config_.vocab_size;
  for (size_t i = 0; i < r.prompt_token_ids.size(); ++i) {
    if (r.prompt_token_ids[i] < 0 || r.prompt_token_ids[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt_token_ids[", i, "] = ", r.prompt_token_ids[i],
                       " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  const int64_t total = static_cast<int64_t>(r.prompt_token_ids.size()) + r.stop.max_new_tokens;
  if (total > options_.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", r.prompt_token_ids.size(), " tokens) + max_new_tokens (",
                     r.stop.max_new_tokens, ") exceeds max_model_len ", options_.max_model_len));
  }
  if (absl::Status s = ValidateSamplingParams(r.sampling, vocab); !s.ok()) return s;
  if (absl::Status s = ValidateStopConditions(r.stop); !s.ok()) return s;
  for (int32_t id : r.stop.stop_token_ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("stop_token_ids: ", id, " is out of range"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RequestHandle> Engine::Submit(GenerateRequest request, TokenSink* sink) {
  if (absl::Status s = Validate(request); !s.ok()) return s;
  if (!request.stop.ignore_eos && request.stop.eos_token_ids.empty() &&
      config_.eos_token_id.has_value()) {
    request.stop.eos_token_ids.push_back(static_cast<int32_t>(*config_.eos_token_id));
  }
  std::string id = request.request_id;
  {
    std::lock_guard lock(mu_);
    if (!accepting_) return absl::UnavailableError("the engine is shutting down");
    if (live_request_ids_.contains(id)) {
      return absl::AlreadyExistsError(absl::StrCat("request_id '", id, "' is already running"));
    }
    if (static_cast<int64_t>(live_request_ids_.size()) >=
        options_.max_num_seqs + options_.max_waiting_requests) {
      return absl::ResourceExhaustedError(absl::StrCat("the engine has ", live_request_ids_.size(),
                                                       " requests in flight; try again later"));
    }
    live_request_ids_.insert(id);
    inbox_.push_back({std::move(request), sink});
  }
  wake_.notify_one();
  return RequestHandle(this, std::move(id));
}

void Engine::Cancel(const std::string& request_id) {
  {
    std::lock_guard lock(mu_);
    if (!live_request_ids_.contains(request_id)) return;
    cancels_.push_back(request_id);
  }
  wake_.notify_one();
}

EngineStats Engine::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Engine::Shutdown(ShutdownMode mode) {
  {
    std::lock_guard lock(mu_);
    accepting_ = false;
    // An abort overrides a drain in progress; nothing overrides an abort.
    if (!shutdown_ || mode == ShutdownMode::kAbort) shutdown_ = mode;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Engine::Run() {
  SetCpuThreadsOfThisThread(options_.cpu_threads);
  while (true) {
    std::vector<Submission> submissions;
    std::vector<std::string> cancels;
    std::optional<ShutdownMode> shutdown;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] {
        return !inbox_.empty() || !cancels_.empty() || shutdown_.has_value() || loop_.HasWork();
      });
      submissions.swap(inbox_);
      cancels.swap(cancels_);
      shutdown = shutdown_;
    }
    for (Submission& s : submissions) loop_.AddRequest(std::move(s.request), s.sink);
    // Ended requests leave live_request_ids_ through the loop's request-ended callback.
    for (const std::string& id : cancels) loop_.AbortRequest(id);
    if (shutdown == ShutdownMode::kAbort) {
      loop_.AbortAll();
    } else {
      loop_.RunOnce();
    }
    const bool done = shutdown.has_value() && !loop_.HasWork();
    bool finished = false;
    {
      std::lock_guard lock(mu_);
      loop_.FillStats(stats_);
      stats_.num_waiting += static_cast<int64_t>(inbox_.size());
      finished = done && inbox_.empty();
    }
    // Stats first, then the events: a client that has its final event sees it in Stats().
    loop_.DeliverEvents();
    if (finished) return;
  }
}

}  // namespace moeserve::engine
