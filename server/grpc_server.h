// Builds and owns the grpc::Server: the listening port, the Moeserve service, grpc.health.v1
// (health_service.h) and server reflection (v1 and v1alpha, reflection_service.h), the message size
// limit and a bound on gRPC's threads.
//
// main.cc starts it before loading the model, so health checks answer NOT_SERVING during the
// load instead of connection refused, flips it to SERVING after warmup, and the shutdown path
// sets NOT_SERVING before draining and finally calls Shutdown.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "server/health_service.h"
#include "server/reflection_service.h"

namespace moeserve::server {

struct GrpcServerOptions {
  std::string host = "127.0.0.1";
  int port = 50051;  // 0 = ephemeral
  // Largest request accepted; bigger ones fail with RESOURCE_EXHAUSTED inside gRPC.
  int max_receive_message_bytes = 4 << 20;
  int max_threads = 16;
  // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open, so that one
  // client cannot take every one of the server's Generate slots (issue 21, row 3).
  int max_streams_per_connection = 64;
  // A connection with no call for this long is closed with GOAWAY (clients reconnect).
  std::chrono::milliseconds connection_idle_timeout{300'000};
  // From accept until the TLS handshake and the client's HTTP/2 SETTINGS are through; a socket
  // that sends nothing, or stalls its handshake, is closed then.
  std::chrono::milliseconds handshake_timeout{10'000};
  // Null = plaintext; otherwise TLS or mTLS (tls.h).
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

class GrpcServer {
 public:
  // Binds, registers `service` (which must outlive the server) plus health and reflection, and
  // starts serving with health NOT_SERVING.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const GrpcServerOptions& options,
                                                           grpc::Service* service);
  ~GrpcServer();

  int port() const { return port_; }
  // Health of the whole server ("") and of moeserve.v1.Moeserve.
  void SetServing(bool serving);
  // Stops accepting calls, lets running ones finish until `deadline`, then cancels them.
  // Idempotent.
  void Shutdown(std::chrono::system_clock::time_point deadline);

 private:
  GrpcServer() = default;

  // Declared before server_, so that they outlive it.
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<ReflectionV1Service> reflection_v1_;
  std::unique_ptr<ReflectionV1AlphaService> reflection_v1alpha_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace moeserve::server
