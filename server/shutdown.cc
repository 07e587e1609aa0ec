#include "server/shutdown.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/logging.h"

namespace moeserve::server {
namespace {

// Signals whose default action would end the process: the first group drains like SIGTERM (an
// operator or terminal asking us to stop), the second is logged and ignored (nothing here uses
// them; dying of a stray `kill -USR1` would drop every stream). Synchronous faults (SIGSEGV,
// SIGBUS, SIGFPE, SIGILL) and SIGABRT keep their default: blocking them is undefined, and a
// crash must stay visible. SIGPIPE is ignored outright (a peer closing a socket is an EPIPE).
constexpr int kDrainSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPWR, SIGXCPU};
constexpr int kIgnoredSignals[] = {SIGUSR1, SIGUSR2,   SIGALRM, SIGVTALRM, SIGPROF,
                                   SIGIO,   SIGSTKFLT, SIGXFSZ, SIGTRAP,   SIGSYS};

bool IsDrainSignal(int signal) {
  return std::find(std::begin(kDrainSignals), std::end(kDrainSignals), signal) !=
         std::end(kDrainSignals);
}

sigset_t ShutdownSignalSet() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : kDrainSignals) sigaddset(&set, signal);
  for (int signal : kIgnoredSignals) sigaddset(&set, signal);
  // Real-time signals end the process by default too; glibc refuses to add the two it uses
  // internally (thread cancellation, setxid), which is what we want.
  for (int signal = SIGRTMIN; signal <= SIGRTMAX; ++signal) sigaddset(&set, signal);
  return set;
}

std::string SignalName(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat("signal ", signal);
}

// After the engine has stopped, the streams only have their last messages to write; a client
// that does not read them within this long is cut off.
constexpr std::chrono::seconds kFinalWriteTimeout{5};

}  // namespace

absl::Status BlockShutdownSignals() {
  if (std::signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    return absl::InternalError(absl::StrCat("signal(SIGPIPE): ", std::strerror(errno)));
  }
  const sigset_t set = ShutdownSignalSet();
  if (const int error = pthread_sigmask(SIG_BLOCK, &set, nullptr); error != 0) {
    return absl::InternalError(absl::StrCat("pthread_sigmask: ", std::strerror(error)));
  }
  return absl::OkStatus();
}

ShutdownSignal::ShutdownSignal() : thread_([this] { Run(); }) {}

ShutdownSignal::~ShutdownSignal() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  // Wakes the sigwait below: the signal is blocked everywhere, so it stays pending for
  // that thread and is consumed there.
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

void ShutdownSignal::Run() {
  const sigset_t set = ShutdownSignalSet();
  while (true) {
    int signal = 0;
    if (sigwait(&set, &signal) != 0) continue;
    std::unique_lock lock(mu_);
    if (stopping_) return;
    if (!IsDrainSignal(signal)) {
      lock.unlock();
      LogWarning(absl::StrCat(SignalName(signal), " received: ignored"));
      continue;
    }
    if (!serving_) {
      lock.unlock();
      LogInfo(absl::StrCat(SignalName(signal), " during startup: exiting"));
      std::_Exit(0);
    }
    if (++count_ == 1) {
      first_signal_ = signal;
    } else {
      LogWarning(absl::StrCat(SignalName(signal), " again: aborting the requests in flight"));
    }
    received_.notify_all();
  }
}

void ShutdownSignal::MarkServing() {
  std::lock_guard lock(mu_);
  serving_ = true;
}

int ShutdownSignal::Wait() {
  std::unique_lock lock(mu_);
  received_.wait(lock, [&] { return count_ > 0; });
  return first_signal_;
}

int ShutdownSignal::count() const {
  std::lock_guard lock(mu_);
  return count_;
}

void DrainAndStop(GrpcServer& grpc_server, GenerateService& service, OpenAiService* openai,
                  engine::Engine& engine, std::chrono::duration<double> grace,
                  const ShutdownSignal& signal) {
  grpc_server.SetServing(false);
  service.StartDraining();
  if (openai != nullptr) openai->StartDraining();
  const engine::EngineStats stats = engine.Stats();
  LogInfo(absl::StrCat("draining: ", stats.num_running, " running and ", stats.num_waiting,
                       " waiting requests, grace period ", grace.count(), " s"));

  // Engine::Shutdown blocks until the engine thread exits, so it runs on its own thread while
  // this one watches the clock. At the deadline the remaining requests are cancelled (they end
  // with "abort") rather than calling Shutdown(kAbort) here: Shutdown joins the engine thread
  // and must not run on two threads at once.
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    engine.Shutdown(engine::ShutdownMode::kDrain);
    drained.store(true);
  });
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(grace);
  bool aborting = false;
  for (int tick = 0; !drained.load(); ++tick) {
    if (!aborting && (std::chrono::steady_clock::now() >= deadline || signal.count() > 1)) {
      const engine::EngineStats left = engine.Stats();
      LogWarning(absl::StrCat("aborting ", left.num_running + left.num_waiting,
                              " requests still in flight"));
      aborting = true;
    }
    // Repeated while aborting: cheap for ids already gone, and it catches a stream that
    // registered its request just as the deadline passed.
    if (aborting && tick % 10 == 0) {
      service.CancelAll();
      if (openai != nullptr) openai->CancelAll();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  drainer.join();
  // Every request has its final event; the streams only have their last messages to write.
  // gRPC's own Shutdown(deadline) would also wait for idle client connections to go away,
  // i.e. always until the deadline, so wait for the streams here and then close at once.
  LogInfo("engine stopped; waiting for the streams to finish");
  const auto final_writes = std::chrono::steady_clock::now() + kFinalWriteTimeout;
  if (!service.WaitForOpenStreams(final_writes) ||
      (openai != nullptr && !openai->WaitForJobs(final_writes))) {
    LogWarning("some clients did not read their last messages; closing anyway");
  }
  grpc_server.Shutdown(std::chrono::system_clock::now());
  LogInfo("shutdown complete");
}

}  // namespace moeserve::server
