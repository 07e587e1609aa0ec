// One /v1/completions or /v1/chat/completions request in flight: its engine requests (one per
// prompt and choice) and its answer, whole or as Server-Sent Events.
//
// OpenAiService validates a request, then hands it here with its engine requests. The job is
// the TokenSink of all of them: events arrive on the engine thread and never block it (a
// chunk is formatted and appended to the exchange's buffer; libmicrohttpd's threads send it).
// `n` choices of one prompt are separate engine requests with the same prompt: the prefix
// cache shares the prompt's full KV blocks between them. A client that leaves, a submission
// that fails or a drain that runs out cancels every engine request of the job, which frees
// their KV blocks at the next step. The job deletes itself once every engine request it
// submitted has delivered its final event and the submitting thread is done with it.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "engine/engine.h"
#include "nlohmann/json.hpp"
#include "server/http/http_server.h"
#include "server/http/openai_request.h"
#include "server/http/reasoning_parser.h"
#include "server/serving_state.h"

namespace moeserve::server {

class OpenAiJobRegistry;

class OpenAiJob final : public engine::TokenSink {
 public:
  struct Params {
    const ServingBackend* backend = nullptr;
    OpenAiJobRegistry* registry = nullptr;
    std::string id;          // "cmpl-…" / "chatcmpl-…"; engine request ids are id-<choice>
    std::string model_name;  // echoed in responses
    int64_t created = 0;     // unix seconds
    OpenAiApi api = OpenAiApi::kCompletions;
    int n = 1;
    bool stream = false;
    bool include_usage = false;
    int logprobs = -1;
    bool parse_reasoning = false;  // --reasoning-parser deepseek_r1 (chat only)
  };

  // Submits `requests` (prompt-major: prompt p's choice c at p * n + c) and answers `exchange`.
  static void Run(std::shared_ptr<HttpExchange> exchange, Params params,
                  std::vector<engine::GenerateRequest> requests);

  // engine::TokenSink (engine thread).
  void OnEvent(engine::TokenEvent event) override;
  // Cancels every engine request still running (client gone, drain deadline).
  void CancelAll();

 private:
  struct Choice {
    engine::RequestHandle handle;
    bool submitted = false;
    bool final_seen = false;
    std::optional<engine::FinishReason> finish;
    std::string error;
    std::string text;       // non-streaming: the whole output (content, for chat)
    std::string reasoning;  // chat with the reasoning parser
    ReasoningParser parser;
    bool role_sent = false;   // chat stream: the first delta carries the role
    nlohmann::json logprobs;  // non-streaming accumulation
    int64_t text_offset = 0;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    int64_t cached_tokens = 0;
  };

  OpenAiJob(std::shared_ptr<HttpExchange> exchange, Params params, size_t num_choices);
  void Submit(std::vector<engine::GenerateRequest> requests);
  // The choice an engine request id belongs to, or -1.
  int ChoiceIndex(const std::string& request_id) const;
  // Streaming: the SSE chunk(s) for one event of choice `index`.
  std::string StreamChunksLocked(int index, const engine::TokenEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AccumulateLocked(int index, const engine::TokenEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Everything after the last choice's final event: the response, or usage + [DONE].
  void CompleteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  nlohmann::json ChunkBase() const;
  nlohmann::json UsageLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops one hold; the last one deletes the job (call with the lock held; it is released).
  void ReleaseLocked(std::unique_lock<std::mutex>& lock, int holds = 1);
  void WriteLocked(std::string bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<HttpExchange> exchange_;
  const Params params_;
  uint64_t serial_ = 0;  // in the registry; set once, before any other thread sees the job

  std::mutex mu_;
  std::vector<Choice> choices_ ABSL_GUARDED_BY(mu_);
  int holds_ ABSL_GUARDED_BY(mu_);  // unfinished submitted requests + the submitter
  int unfinished_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // stream: headers sent
  bool failed_ ABSL_GUARDED_BY(mu_) = false;   // answered with an error already
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  std::string unsent_ ABSL_GUARDED_BY(mu_);  // stream bytes produced before started_
};

// The jobs in flight, so that a drain can cancel them and wait for them.
// Jobs are named by a serial number, never reused, so that a late callback (a client leaving
// after its job ended) cannot reach another job at a recycled address.
class OpenAiJobRegistry {
 public:
  uint64_t Add(OpenAiJob* job);
  void Remove(uint64_t serial);
  // Cancels the job's engine requests if it is still in flight.
  void Cancel(uint64_t serial);
  void CancelAll();
  size_t size() const;

 private:
  mutable std::mutex mu_;
  absl::flat_hash_map<uint64_t, OpenAiJob*> jobs_ ABSL_GUARDED_BY(mu_);
  uint64_t next_serial_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace moeserve::server
