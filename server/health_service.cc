#include "server/health_service.h"

#include <optional>
#include <utility>
#include <vector>

namespace moeserve::server {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream. Its state changes under the service's mutex, and each change yields at most
// one action (a write or the finish) that the caller performs after releasing it: gRPC may run
// a reaction inline inside StartWrite or Finish, and reactions take the mutex. At most one
// write is in flight, and the finish is decided only while none is and only once, so a watcher
// with a pending action cannot reach OnDone before that action has run.
class HealthService::Watcher final : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  struct Action {
    Watcher* watcher = nullptr;
    bool write = false;
    std::optional<grpc::Status> finish;
  };

  Watcher(HealthService* service, std::string name) : service_(service), name_(std::move(name)) {}

  const std::string& name() const { return name_; }

  // Queues `status`: written now, or after the write in flight (only the newest waits).
  Action Send(ServingStatus status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(service_->mu_) {
    if (end_.has_value()) return {};
    pending_ = status;
    return Next();
  }

  // Ends the stream with `status`, after writing `last` (when given and new) and whatever is
  // in flight.
  Action End(grpc::Status status, std::optional<ServingStatus> last)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(service_->mu_) {
    if (end_.has_value()) return {};
    if (last.has_value()) pending_ = last;
    end_ = std::move(status);
    return Next();
  }

  // Performs what Send, End or a reaction decided, outside the mutex.
  static void Perform(const Action& action) {
    if (action.watcher == nullptr) return;
    if (action.write) {
      action.watcher->StartWrite(&action.watcher->response_);
    } else if (action.finish.has_value()) {
      action.watcher->Finish(*action.finish);  // may delete the watcher
    }
  }

  void OnWriteDone(bool ok) override {
    Action action;
    {
      absl::MutexLock lock(&service_->mu_);
      writing_ = false;
      if (!ok) {  // the stream is broken: nothing more can be written
        pending_.reset();
        if (!end_.has_value()) end_ = grpc::Status::CANCELLED;
      }
      action = Next();
    }
    Perform(action);
  }

  void OnCancel() override {
    Action action;
    {
      absl::MutexLock lock(&service_->mu_);
      pending_.reset();
      if (!end_.has_value()) end_ = grpc::Status::CANCELLED;
      action = Next();
    }
    Perform(action);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&service_->mu_);
      service_->watchers_.erase(this);
      if (service_->watchers_.empty()) service_->watchers_gone_.SignalAll();
    }
    delete this;
  }

 private:
  // The one thing to do next: write the pending status if it is new, else finish once asked
  // to; nothing while a write is in flight or after the finish.
  Action Next() ABSL_EXCLUSIVE_LOCKS_REQUIRED(service_->mu_) {
    if (finished_ || writing_) return {};
    if (pending_.has_value()) {
      const ServingStatus status = *pending_;
      pending_.reset();
      if (status != sent_) {
        response_.set_status(status);
        sent_ = status;
        writing_ = true;
        return {.watcher = this, .write = true};
      }
    }
    if (!end_.has_value()) return {};
    finished_ = true;
    return {.watcher = this, .finish = *end_};
  }

  HealthService* const service_;
  const std::string name_;
  HealthCheckResponse response_;          // the write in flight's message
  std::optional<ServingStatus> sent_;     // the last status written
  std::optional<ServingStatus> pending_;  // the newest status not yet written
  bool writing_ = false;
  std::optional<grpc::Status> end_;  // how the stream ends, once it is to end
  bool finished_ = false;            // Finish decided
};

HealthService::HealthService(const std::set<std::string>& service_names) {
  absl::MutexLock lock(&mu_);
  for (const std::string& name : service_names) {
    statuses_[name] = HealthCheckResponse::NOT_SERVING;
  }
}

HealthService::~HealthService() {
  // The server is gone by now (GrpcServer declares this service before it), and with it every
  // stream; wait for the last OnDone all the same.
  absl::MutexLock lock(&mu_);
  while (!watchers_.empty()) watchers_gone_.Wait(&mu_);
}

HealthService::ServingStatus HealthService::StatusOf(const std::string& name) const {
  const auto it = statuses_.find(name);
  return it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
}

void HealthService::SetServing(bool serving) {
  std::vector<Watcher::Action> actions;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    for (auto& [name, status] : statuses_) {
      status = serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
    }
    for (Watcher* watcher : watchers_) actions.push_back(watcher->Send(StatusOf(watcher->name())));
  }
  for (const Watcher::Action& action : actions) Watcher::Perform(action);
}

void HealthService::Shutdown() {
  std::vector<Watcher::Action> actions;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (auto& [name, status] : statuses_) status = HealthCheckResponse::NOT_SERVING;
    for (Watcher* watcher : watchers_) {
      actions.push_back(watcher->End(grpc::Status::OK, StatusOf(watcher->name())));
    }
  }
  for (const Watcher::Action& action : actions) Watcher::Perform(action);
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const HealthCheckRequest* request,
                                               HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  ServingStatus status;
  {
    absl::MutexLock lock(&mu_);
    status = StatusOf(request->service());
  }
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                 "unknown service \"" + request->service() + "\""));
    return reactor;
  }
  response->set_status(status);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* /*context*/, const HealthCheckRequest* request) {
  auto* watcher = new Watcher(this, request->service());
  Watcher::Action action;
  {
    absl::MutexLock lock(&mu_);
    watchers_.insert(watcher);
    action = shut_down_ ? watcher->End(grpc::Status::OK, StatusOf(watcher->name()))
                        : watcher->Send(StatusOf(watcher->name()));
  }
  Watcher::Perform(action);
  return watcher;
}

}  // namespace moeserve::server
