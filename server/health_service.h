// grpc.health.v1.Health for the gRPC server: Check and Watch for the whole server ("") and for
// moeserve.v1.Moeserve.
//
// gRPC's built-in health service reports "" as SERVING from the moment the server starts until
// the first SetServingStatus, so a probe that lands in between sees a server that has not loaded
// its model as ready (caught by ServerLifecycleTest under load). This one starts NOT_SERVING and
// changes only when GrpcServer says so. Watch follows the health protocol: the current status
// at once (SERVICE_UNKNOWN for a name this server does not have), then each change; a burst of
// changes while a write is in flight sends only the latest. Watch streams use the callback API,
// so a watching client holds no gRPC thread.
//
// GrpcServer owns it and registers it before the server starts; SetServing and Shutdown are
// called from main.cc's startup and shutdown paths, the RPCs from gRPC threads.
#pragma once

#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace moeserve::server {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // Every name starts NOT_SERVING.
  explicit HealthService(const std::set<std::string>& service_names);
  ~HealthService() override;

  // Every name SERVING or NOT_SERVING; watchers get the change.
  void SetServing(bool serving);
  // NOT_SERVING for good: every Watch stream gets it and then ends (OK). Call before the
  // server's Shutdown, whose drain would otherwise wait for the open streams.
  void Shutdown();

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  class Watcher;

  ServingStatus StatusOf(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;  // guards the statuses, the watcher set and every watcher's state
  absl::flat_hash_map<std::string, ServingStatus> statuses_ ABSL_GUARDED_BY(mu_);
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar watchers_gone_;  // signalled when the last watcher is done
};

}  // namespace moeserve::server
