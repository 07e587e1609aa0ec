// The transport boundary of the load test: the runner decides when a request leaves and how
// many are in flight; a BenchBackend turns one prompt into one streamed request and fills its
// RequestRecord. Two implementations: GrpcBackend (our Generate stream, grpc_backend.h) and
// OpenAiBackend (an OpenAI-compatible /v1/completions or /v1/chat/completions SSE stream over
// HTTP, openai_backend.h), so one runner, one set of metrics and one report serve every server.
//
// Contract of a call: the runner makes it with NewCall, then Start()s it once. The backend
// finishes it on a thread of its own and calls `on_done(call)` exactly once, as the call's last
// act; until then only the call writes its record. Cancel() may come from any thread at any
// time while the call object lives (before Start, in flight, or after it ended). The runner
// frees its calls only after every one has ended; the backend must outlive the runner.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "clients/bench/dataset.h"
#include "clients/bench/request_record.h"

namespace moeserve::bench {

using Clock = std::chrono::steady_clock;

class BenchCall {
 public:
  virtual ~BenchCall() = default;
  virtual void Start() = 0;
  virtual void Cancel() = 0;
};

class BenchBackend {
 public:
  using DoneCallback = std::function<void(BenchCall*)>;

  virtual ~BenchBackend() = default;

  // A call sending `prompt` (which must outlive it) under `record->request_id`; `run_start` is
  // time zero of the record's times. Called from the runner's dispatcher thread only.
  virtual std::unique_ptr<BenchCall> NewCall(const BenchPrompt& prompt, RequestRecord* record,
                                             Clock::time_point run_start, DoneCallback on_done) = 0;
};

}  // namespace moeserve::bench
