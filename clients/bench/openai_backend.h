// The HTTP transport of the load test: each request is one streamed POST to an OpenAI-compatible
// server's /v1/completions or /v1/chat/completions (ours, vLLM, llama.cpp's llama-server), read
// as Server-Sent Events by an OpenAiStreamReader.
//
// One thread drives every transfer through libcurl's multi interface (non-blocking sockets,
// one poll over all of them), the way gRPC's callback threads drive the Generate streams: the
// runner's dispatcher hands a started call over with Submit (a queue plus curl_multi_wakeup),
// the transfer thread adds it, feeds the bytes of each write callback to the call's reader as
// they arrive, and finishes the call when its transfer ends. Each HTTP/1.1 stream needs its own
// connection; finished ones are kept for reuse, and the process's open-file limit is raised to
// its hard limit so hundreds of streams fit.
//
// Thread-safety: NewCall from the dispatcher thread; Start/Cancel of calls from any thread;
// everything else runs on the transfer thread. The destructor ends that thread and must come
// after every call has finished (the runner drains before it returns).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "clients/bench/backend.h"
#include "clients/bench/openai_request.h"
#include "curl/curl.h"

namespace moeserve::bench {

struct OpenAiBackendOptions {
  std::string base_url;  // e.g. "http://127.0.0.1:8000" (NormalizeBaseUrl's form)
  std::string api_key;   // `Authorization: Bearer KEY` when set
  OpenAiRequestOptions request;
  std::optional<double> timeout_s;  // per-request limit on the whole transfer
};

class OpenAiCall;

class OpenAiBackend final : public BenchBackend {
 public:
  explicit OpenAiBackend(OpenAiBackendOptions options);
  ~OpenAiBackend() override;
  OpenAiBackend(const OpenAiBackend&) = delete;
  OpenAiBackend& operator=(const OpenAiBackend&) = delete;

  std::unique_ptr<BenchCall> NewCall(const BenchPrompt& prompt, RequestRecord* record,
                                     Clock::time_point run_start, DoneCallback on_done) override;

  const OpenAiBackendOptions& options() const { return options_; }

 private:
  friend class OpenAiCall;
  // Any thread: hand a started call to the transfer thread / ask it to look for cancels.
  void Submit(OpenAiCall* call);
  void WakeForCancel();

  void TransferLoop();
  void EndCancelled();  // transfer thread: finishes the active calls that asked to be cancelled

  const OpenAiBackendOptions options_;
  CURLM* const multi_;
  std::atomic<bool> cancel_requested_{false};
  std::mutex mu_;
  std::vector<OpenAiCall*> submitted_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::set<OpenAiCall*> active_;  // transfer thread only
  std::thread thread_;            // last: starts after everything above exists
};

}  // namespace moeserve::bench
