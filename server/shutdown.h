// SIGTERM / SIGINT handling and the graceful drain (DESIGN.md §7).
//
// SIGHUP, SIGQUIT, SIGPWR and SIGXCPU drain exactly like SIGTERM; SIGUSR1/2, SIGALRM and the
// other signals whose default is to terminate (real-time ones included) are logged and ignored;
// SIGPIPE is ignored. Only SIGKILL and genuine crashes end the process without a drain.
//
// main.cc calls BlockShutdownSignals first thing, before any thread exists, so every thread
// inherits the blocked mask and the signals are only ever taken by ShutdownSignal's sigwait
// thread (no async-signal-safety concerns). Once the server is SERVING, main waits on it and
// then runs DrainAndStop:
//   1. health NOT_SERVING, new Generate calls refused with UNAVAILABLE (HTTP: /health and new
//      generations 503);
//   2. the engine drains (finishes the requests in flight, admits none) for up to the grace
//      period; then, or at a second signal, every remaining request is aborted;
//   3. the gRPC server stops once the streams (gRPC and HTTP) have sent their last messages.
// A signal that arrives before SERVING ends the process at once with exit code 0: nothing is
// being served yet, and a model load can take minutes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "engine/engine.h"
#include "server/generate_service.h"
#include "server/grpc_server.h"
#include "server/http/openai_service.h"

namespace moeserve::server {

// Ignores SIGPIPE and blocks the drained and ignored signals in the calling thread; threads
// created afterwards inherit the mask.
absl::Status BlockShutdownSignals();

class ShutdownSignal {
 public:
  // Starts the sigwait thread (signals must already be blocked).
  ShutdownSignal();
  ~ShutdownSignal();
  ShutdownSignal(const ShutdownSignal&) = delete;
  ShutdownSignal& operator=(const ShutdownSignal&) = delete;

  // From now on a signal starts a graceful shutdown instead of exiting at once.
  void MarkServing();
  // Blocks until the first draining signal after MarkServing; returns its number.
  int Wait();
  // Signals received so far (a second one cuts the drain short).
  int count() const;

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable received_;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
  int first_signal_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// Steps 1-3 above. Returns when the engine thread has exited and the gRPC server has stopped.
// `openai` (the HTTP API; null when --http-port 0) drains alongside the gRPC service.
void DrainAndStop(GrpcServer& grpc_server, GenerateService& service, OpenAiService* openai,
                  engine::Engine& engine, std::chrono::duration<double> grace,
                  const ShutdownSignal& signal);

}  // namespace moeserve::server
