// The OpenAI-compatible HTTP API: routes of the `--http-port` server (HttpServer's handler).
//
//   POST /v1/completions, /v1/chat/completions   generation (SSE when "stream": true)
//   GET  /v1/models                               the served model, its limits and defaults
//   POST /tokenize, /detokenize                   vLLM's tokenizer endpoints
//   GET  /health                                  200 when serving, else 503 (no key needed)
//   GET  /version, /metrics                       (no key needed)
//
// main.cc creates one before the model loads (every route but /version and /metrics answers
// 503 until SetBackend), and the shutdown path drains it next to the gRPC service. Requests are
// validated by the same code as gRPC's (ValidateGenerateRequest) after their JSON is turned
// into moeserve.v1 messages (openai_request.h); errors are OpenAI's JSON with the field named.
// With an API key, every route but /health, /version and /metrics needs
// `Authorization: Bearer KEY`.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "server/http/http_server.h"
#include "server/http/openai_job.h"
#include "server/http/openai_request.h"
#include "server/serving_state.h"

namespace moeserve::server {

class OpenAiService {
 public:
  struct Options {
    std::string served_model_name;
    std::string api_key;  // empty: open
    // --reasoning-parser deepseek_r1: chat output split into reasoning_content and content.
    bool parse_reasoning = false;
    std::function<std::string()> metrics_text;  // GET /metrics
  };

  explicit OpenAiService(Options options);

  // Once, after warmup; `backend` must outlive the HTTP server.
  void SetBackend(const ServingBackend* backend);
  // From now on generation answers 503 and /health reports 503; running requests continue.
  void StartDraining();
  // Cancels every generation in flight (drain deadline).
  void CancelAll() { jobs_.CancelAll(); }
  // Waits until no generation is in flight or `deadline` passes; true if none is.
  bool WaitForJobs(std::chrono::steady_clock::time_point deadline) const;

  // The HttpServer handler (HTTP threads).
  void Handle(std::shared_ptr<HttpExchange> exchange);

 private:
  void Generate(const std::shared_ptr<HttpExchange>& exchange, OpenAiApi api,
                const ServingBackend& backend);
  HttpResponse Models(const ServingBackend& backend) const;
  HttpResponse Tokenize(const HttpRequest& request, const ServingBackend& backend) const;
  HttpResponse Detokenize(const HttpRequest& request, const ServingBackend& backend) const;
  // The chat request's prompt text, rendered with the model's chat template.
  absl::StatusOr<std::string> RenderChat(const OpenAiRequest& request,
                                         const ServingBackend& backend) const;
  bool Authorized(const HttpRequest& request) const;
  // 404 naming the model when the request names another than the served one.
  std::optional<HttpResponse> CheckModel(const std::string& model) const;
  std::string NextId(std::string_view prefix);

  const Options options_;
  const std::string id_prefix_;  // random per process
  const int64_t created_;        // unix seconds, for /v1/models
  std::atomic<const ServingBackend*> backend_{nullptr};
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_id_{0};
  OpenAiJobRegistry jobs_;
};

}  // namespace moeserve::server
