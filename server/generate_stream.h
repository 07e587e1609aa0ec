// One Generate call: a gRPC server-write reactor that is also the engine request's TokenSink.
//
// GenerateService creates one per call; it validates the request, submits it to the engine and
// streams what the engine sends back (ARCHITECTURE.md §4 steps 2-6). Threads:
//   - OnEvent runs on the engine thread and must not block: it converts the event under mu_,
//     queues the responses and starts a write if none is in flight;
//   - OnWriteDone / OnCancel / OnDone run on gRPC threads; OnWriteDone starts the next write,
//     and once the queue is empty after the final event, the call finishes with OK.
// Leaving early: a client cancel, a broken stream or a passed deadline cancels the engine
// request (its KV blocks are freed at the next step) and finishes the call at once with
// CANCELLED or DEADLINE_EXCEEDED. So does a client that reads nothing: a write still in flight
// after Env::write_timeout (HTTP/2 flow control holding it) ends the call, which also frees the
// stream's slot in the connection's and the server's stream limits (issue 21, row 3). An Abort RPC
// or an aborting shutdown ends it normally, with finish_reason "abort" in the complete message.
// Lifetime: the engine may call OnEvent until the request's final event, even after gRPC's
// OnDone, so the object deletes itself only when both have happened and no thread is still
// inside one of its methods (gRPC may run a reaction inline inside StartWrite or Finish).
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "engine/engine.h"
#include "grpcpp/alarm.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "moeserve/v1/moeserve.pb.h"
#include "server/response_builder.h"
#include "server/serving_state.h"

namespace moeserve::server {

class GenerateStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                             public engine::TokenSink {
 public:
  // Everything a stream needs from its service; the references outlive every stream.
  struct Env {
    const ServingBackend* backend = nullptr;  // null: the model is still loading
    LiveRequests* live_requests = nullptr;
    std::atomic<int>* open_streams = nullptr;  // incremented by the service, decremented in OnDone
    const CallObserver* observer = nullptr;
    bool draining = false;           // the server is shutting down: refuse the call
    std::string default_request_id;  // used when the request has none
    std::string owner;               // who may Abort it (LiveRequests, generate_service.h)
    // A response write that has not completed after this long ends the call (0 = never).
    std::chrono::milliseconds write_timeout{0};
    // Not OK: finish the call with this before anything else (API key, stream limit).
    grpc::Status refusal = grpc::Status::OK;
  };

  // Starts the call with the request's wire bytes (a moeserve.v1.GenerateRequest; the method is
  // registered raw, see wire_format.h): the returned reactor has either submitted the request
  // or finished the call with the error (UNAVAILABLE, INVALID_ARGUMENT, RESOURCE_EXHAUSTED...).
  static GenerateStream* Start(grpc::CallbackServerContext* context,
                               const grpc::ByteBuffer& request, Env env);

  // engine::TokenSink (engine thread).
  void OnEvent(engine::TokenEvent event) override;

  // grpc::ServerWriteReactor (gRPC threads).
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  GenerateStream(grpc::CallbackServerContext* context, Env env);
  ~GenerateStream() override = default;

  void Begin(const grpc::ByteBuffer& request_bytes);

  // What a method decided under mu_ and performs after releasing it: gRPC may run another
  // reaction inline inside StartWrite or Finish, and that reaction takes mu_ too.
  struct Action {
    const grpc::ByteBuffer* write = nullptr;
    std::optional<grpc::Status> finish;
    // Arm write_alarm_ for this time (the object is kept alive until it has fired).
    std::optional<std::chrono::steady_clock::time_point> arm_write_alarm;
    // The client stalled: tell gRPC to reset the stream, so the write in flight completes.
    bool try_cancel = false;
  };
  // Enters a method: the object stays alive until the matching Leave.
  void EnterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ++busy_; }
  // Performs `action` without the lock, then leaves; deletes the object when it was the last
  // thing keeping it alive.
  void PerformAndLeave(std::unique_lock<std::mutex>& lock, Action action);
  // The next write, or the Finish once the final event's responses are all written.
  Action NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the call now with `status` (cancel, deadline, broken stream): cancels the engine
  // request and drops whatever is still queued.
  Action AbandonLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool DeadlinePassedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  grpc::Status CancelStatusLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // write_alarm_ fired (ok) or was cancelled: ends the call if the write in flight is older than
  // the timeout, else re-arms for when it would be.
  void OnWriteAlarm(bool ok);

  // Constant after construction.
  grpc::CallbackServerContext* const context_;  // valid until OnDone
  const Env env_;

  // State below is protected by mu_.
  std::mutex mu_;
  std::string request_id_ ABSL_GUARDED_BY(mu_);
  engine::RequestHandle handle_ ABSL_GUARDED_BY(mu_);
  std::optional<ResponseBuilder> builder_ ABSL_GUARDED_BY(mu_);
  std::deque<grpc::ByteBuffer> pending_ ABSL_GUARDED_BY(mu_);  // serialized responses
  grpc::ByteBuffer in_flight_ ABSL_GUARDED_BY(mu_);            // until OnWriteDone
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point write_started_ ABSL_GUARDED_BY(mu_);
  // Set and cancelled outside mu_ (their callback takes mu_), under alarm_mu_: two threads may
  // arm and cancel at once. Each arming gets a fresh alarm (a grpc::Alarm is not re-Set, and a
  // re-arm happens inside the previous alarm's callback); the previous one is kept until the
  // next arming, so its callback never outlives its alarm. Armed while write_alarm_armed_.
  std::mutex alarm_mu_;
  std::unique_ptr<grpc::Alarm> write_alarm_ ABSL_GUARDED_BY(alarm_mu_);
  std::unique_ptr<grpc::Alarm> previous_write_alarm_ ABSL_GUARDED_BY(alarm_mu_);
  bool write_alarm_armed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);   // after the queue drains
  std::optional<grpc::Status> finished_with_ ABSL_GUARDED_BY(mu_);  // Finish was called
  bool engine_holds_sink_ ABSL_GUARDED_BY(mu_) = false;  // submitted, final event not yet in
  bool final_event_seen_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;  // the call ended before the engine request
  bool done_ ABSL_GUARDED_BY(mu_) = false;       // OnDone ran
  int busy_ ABSL_GUARDED_BY(mu_) = 0;            // threads inside a method
};

}  // namespace moeserve::server
