#include "server/generate_stream.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/logging.h"
#include "server/request_validation.h"
#include "server/status_mapping.h"
#include "server/wire_format.h"

namespace moeserve::server {

namespace v1 = moeserve::v1;

GenerateStream* GenerateStream::Start(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer& request, Env env) {
  auto* stream = new GenerateStream(context, std::move(env));
  stream->Begin(request);
  return stream;
}

GenerateStream::GenerateStream(grpc::CallbackServerContext* context, Env env)
    : context_(context), env_(std::move(env)) {}

void GenerateStream::Begin(const grpc::ByteBuffer& request_bytes) {
  std::unique_lock lock(mu_);
  EnterLocked();
  auto fail = [&](grpc::Status status) {
    finished_with_ = status;
    return Action{.finish = std::move(status)};
  };
  if (!env_.refusal.ok()) return PerformAndLeave(lock, fail(env_.refusal));
  if (env_.backend == nullptr) {
    return PerformAndLeave(lock, fail(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                   "the model is still loading; retry once "
                                                   "grpc.health.v1 reports SERVING")));
  }
  if (env_.draining) {
    return PerformAndLeave(
        lock, fail(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down")));
  }
  if (DeadlinePassedLocked()) {
    return PerformAndLeave(lock, fail(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                                   "the deadline passed before the request ran")));
  }
  lock.unlock();  // validation tokenizes: no lock needed, nothing else can touch us yet

  v1::GenerateRequest request;
  const absl::Status parsed = ParseRequest(request_bytes, request);
  absl::StatusOr<engine::GenerateRequest> validated =
      parsed.ok() ? ValidateGenerateRequest(request, *env_.backend->tokenizer, env_.backend->limits)
                  : absl::StatusOr<engine::GenerateRequest>(parsed);
  if (!validated.ok()) {
    LogDebug(absl::StrCat("Generate: ", validated.status().ToString()));
    lock.lock();
    return PerformAndLeave(lock, fail(ToGrpcStatus(validated.status())));
  }
  if (validated->request_id.empty()) validated->request_id = env_.default_request_id;
  const std::string id = validated->request_id;
  lock.lock();
  request_id_ = id;
  builder_.emplace(validated->sampling.num_logprobs);
  // Before Submit: the engine may deliver events before Submit returns.
  engine_holds_sink_ = true;
  lock.unlock();

  env_.live_requests->Add(id, env_.owner);
  absl::StatusOr<engine::RequestHandle> handle =
      env_.backend->engine->Submit(*std::move(validated), this);

  lock.lock();
  if (!handle.ok()) {
    engine_holds_sink_ = false;
    env_.live_requests->Remove(id, env_.owner);
    LogDebug(absl::StrCat("Generate ", id, ": ", handle.status().ToString()));
    return PerformAndLeave(lock, fail(ToGrpcStatus(handle.status())));
  }
  if (final_event_seen_) {
    handle->Detach();  // already over; the id may be reused by someone else from now on
  } else {
    handle_ = *std::move(handle);
    if (cancelled_) handle_.Cancel();
  }
  PerformAndLeave(lock, Action{});
}

void GenerateStream::OnEvent(engine::TokenEvent event) {
  std::unique_lock lock(mu_);
  EnterLocked();
  const bool last = event.finish.has_value();
  if (last) {
    final_event_seen_ = true;
    engine_holds_sink_ = false;
    handle_.Detach();
    env_.live_requests->Remove(request_id_, env_.owner);
  }
  Action action;
  if (!finished_with_) {
    if (!last && DeadlinePassedLocked()) {
      // gRPC cancels the call at the deadline too (OnCancel); this catches it a step earlier.
      action = AbandonLocked(CancelStatusLocked());
    } else {
      if (std::optional<v1::GenerateResponse> chunk = builder_->Chunk(event)) {
        pending_.push_back(ToByteBuffer(*chunk));
      }
      if (last) {
        if (*event.finish == engine::FinishReason::kError) {
          LogError(absl::StrCat("Generate ", request_id_, " failed: ", event.error_message));
          final_status_ = grpc::Status(
              grpc::StatusCode::INTERNAL,
              event.error_message.empty() ? "the engine failed the request" : event.error_message);
        } else {
          pending_.push_back(ToByteBuffer(builder_->Complete(event)));
          final_status_ = grpc::Status::OK;
        }
      }
      action = NextLocked();
    }
  }
  PerformAndLeave(lock, std::move(action));
}

void GenerateStream::OnWriteDone(bool ok) {
  std::unique_lock lock(mu_);
  EnterLocked();
  write_in_flight_ = false;
  Action action;
  if (!ok) {
    // The stream broke (client gone): nobody will read the rest.
    if (!finished_with_) action = AbandonLocked(CancelStatusLocked());
  } else {
    action = NextLocked();
  }
  PerformAndLeave(lock, std::move(action));
}

void GenerateStream::OnCancel() {
  std::unique_lock lock(mu_);
  EnterLocked();
  Action action;
  if (!finished_with_) action = AbandonLocked(CancelStatusLocked());
  PerformAndLeave(lock, std::move(action));
}

void GenerateStream::OnDone() {
  std::unique_lock lock(mu_);
  done_ = true;
  const grpc::StatusCode code = finished_with_.value_or(grpc::Status::OK).error_code();
  // Copied under the lock: once it is released another thread may delete this object.
  const CallObserver* observer = env_.observer;
  std::atomic<int>* open_streams = env_.open_streams;
  const bool remove = !engine_holds_sink_ && busy_ == 0;
  lock.unlock();
  if (observer != nullptr && *observer) (*observer)("Generate", code);
  if (open_streams != nullptr) open_streams->fetch_sub(1);
  if (remove) delete this;
}

GenerateStream::Action GenerateStream::NextLocked() {
  if (finished_with_ || write_in_flight_) return {};
  if (!pending_.empty()) {
    in_flight_ = std::move(pending_.front());
    pending_.pop_front();
    write_in_flight_ = true;
    write_started_ = std::chrono::steady_clock::now();
    Action action{.write = &in_flight_};
    // One alarm at a time: when it fires it looks at whichever write is then in flight.
    if (env_.write_timeout.count() > 0 && !write_alarm_armed_) {
      write_alarm_armed_ = true;
      EnterLocked();  // left in OnWriteAlarm
      action.arm_write_alarm = write_started_ + env_.write_timeout;
    }
    return action;
  }
  if (final_status_) {
    finished_with_ = *final_status_;
    return Action{.finish = *final_status_};
  }
  return {};
}

GenerateStream::Action GenerateStream::AbandonLocked(grpc::Status status) {
  cancelled_ = true;
  // The engine ends the request with "abort" at its next step and frees its KV blocks; the
  // final event still arrives here (engine_holds_sink_) and is dropped.
  if (engine_holds_sink_) handle_.Cancel();
  pending_.clear();
  final_status_.reset();
  finished_with_ = status;
  LogDebug(absl::StrCat("Generate ", request_id_, ": ", GrpcCodeName(status.error_code())));
  return Action{.finish = std::move(status)};
}

bool GenerateStream::DeadlinePassedLocked() const {
  return context_->deadline() <= std::chrono::system_clock::now();
}

grpc::Status GenerateStream::CancelStatusLocked() const {
  if (DeadlinePassedLocked()) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "the deadline passed; the request was cancelled");
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
}

void GenerateStream::OnWriteAlarm(bool ok) {
  std::unique_lock lock(mu_);
  write_alarm_armed_ = false;
  Action action;
  if (ok && !finished_with_ && write_in_flight_) {
    const auto stalled_until = write_started_ + env_.write_timeout;
    if (std::chrono::steady_clock::now() >= stalled_until) {
      LogWarning(absl::StrCat("Generate ", request_id_, ": the client read nothing for ",
                              env_.write_timeout.count() / 1000.0,
                              " s (--stream-write-timeout); cancelling the request"));
      action = AbandonLocked(grpc::Status(
          grpc::StatusCode::CANCELLED,
          absl::StrCat("the client read no response for ", env_.write_timeout.count() / 1000.0,
                       " s (--stream-write-timeout); the request was cancelled")));
      action.try_cancel = true;
    } else {
      write_alarm_armed_ = true;
      EnterLocked();
      action.arm_write_alarm = stalled_until;
    }
  }
  // This reaction's own hold (taken when the alarm was armed) is released by PerformAndLeave.
  PerformAndLeave(lock, std::move(action));
}

void GenerateStream::PerformAndLeave(std::unique_lock<std::mutex>& lock, Action action) {
  lock.unlock();
  if (action.arm_write_alarm) {
    const auto remaining = *action.arm_write_alarm - std::chrono::steady_clock::now();
    std::lock_guard alarm_lock(alarm_mu_);
    previous_write_alarm_ = std::move(write_alarm_);
    write_alarm_ = std::make_unique<grpc::Alarm>();
    write_alarm_->Set(
        std::chrono::system_clock::now() +
            std::chrono::duration_cast<std::chrono::system_clock::duration>(remaining),
        [this](bool ok) { OnWriteAlarm(ok); });
  }
  if (action.try_cancel) context_->TryCancel();
  if (action.write != nullptr) StartWrite(action.write);
  if (action.finish) {
    Finish(*std::move(action.finish));
    // Nothing more to watch; the alarm's callback runs now (not ok) and releases its hold.
    std::lock_guard alarm_lock(alarm_mu_);
    if (write_alarm_ != nullptr) write_alarm_->Cancel();
  }
  lock.lock();
  --busy_;
  const bool remove = done_ && !engine_holds_sink_ && busy_ == 0;
  lock.unlock();
  if (remove) delete this;
}

}  // namespace moeserve::server
