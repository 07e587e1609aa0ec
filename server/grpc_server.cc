#include "server/grpc_server.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "moeserve/v1/moeserve.pb.h"

namespace moeserve::server {
namespace {

constexpr char kServiceName[] = "moeserve.v1.Moeserve";

// "::1" → "[::1]:port"; names and IPv4 literals as they are.
std::string ListenAddress(const std::string& host, int port) {
  const bool ipv6_literal = host.find(':') != std::string::npos && host.front() != '[';
  return ipv6_literal ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

// The full name of the one service declared in `message`'s file. Naming a message of each file
// also keeps that file's generated code in the link, which is what registers it in protobuf's
// generated pool for reflection.
std::string ServiceOfFile(const google::protobuf::Descriptor* message) {
  return message->file()->service(0)->full_name();
}

// What reflection lists: every service this server exposes.
std::vector<std::string> ExposedServiceNames() {
  return {ServiceOfFile(moeserve::v1::GenerateRequest::descriptor()),
          ServiceOfFile(grpc::health::v1::HealthCheckRequest::descriptor()),
          ServiceOfFile(grpc::reflection::v1::ServerReflectionRequest::descriptor()),
          ServiceOfFile(grpc::reflection::v1alpha::ServerReflectionRequest::descriptor())};
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const GrpcServerOptions& options,
                                                              grpc::Service* service) {
  // Ours (health_service.h): gRPC's reports SERVING until its first SetServingStatus.
  grpc::EnableDefaultHealthCheckService(false);
  auto result = std::unique_ptr<GrpcServer>(new GrpcServer());
  result->health_ = std::make_unique<HealthService>(std::set<std::string>{"", kServiceName});
  result->reflection_v1_ = std::make_unique<ReflectionV1Service>(ExposedServiceNames());
  result->reflection_v1alpha_ = std::make_unique<ReflectionV1AlphaService>(ExposedServiceNames());

  grpc::ServerBuilder builder;
  const std::string address = ListenAddress(options.host, options.port);
  int bound_port = 0;
  builder.AddListeningPort(
      address,
      options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials(),
      &bound_port);
  builder.RegisterService(service);
  builder.RegisterService(result->health_.get());
  builder.RegisterService(result->reflection_v1_.get());
  builder.RegisterService(result->reflection_v1alpha_.get());
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // gRPC enables SO_REUSEPORT by default: a second server on a taken port would then start and
  // silently share the traffic. Binding must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Health and reflection are synchronous services: their pollers notice a shutdown only when
  // a completion-queue wait times out (10 s by default), which would add seconds to every
  // SIGTERM. A short timeout costs a few idle wakeups per second.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::CQ_TIMEOUT_MSEC, 200);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_streams_per_connection);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(options.connection_idle_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(options.handshake_timeout.count()));
  // Keepalive: probe a silent peer every minute and drop it after 20 s without an answer; a
  // client pinging more often than every 10 s without calls gets GOAWAY after two strikes.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // No message compression, so a compressed request never costs more memory than
  // max_receive_message_bytes (issue 21, row 2): gRPC checks an incoming message's
  // grpc-encoding against the enabled set before it inflates anything, and fails the call with
  // UNIMPLEMENTED otherwise.
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, false);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, false);
  grpc::ResourceQuota quota("moeserve");
  quota.SetMaxThreads(options.max_threads);
  builder.SetResourceQuota(quota);

  result->server_ = builder.BuildAndStart();
  if (result->server_ == nullptr || bound_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", address,
                     options.credentials != nullptr
                         ? " (address in use, not local, or --tls-cert and --tls-key do not match?)"
                         : " (address in use or not local?)"));
  }
  result->port_ = bound_port;
  return result;
}

GrpcServer::~GrpcServer() {
  if (server_ != nullptr) Shutdown(std::chrono::system_clock::now());  // null: Start failed
}

void GrpcServer::SetServing(bool serving) { health_->SetServing(serving); }

void GrpcServer::Shutdown(std::chrono::system_clock::time_point deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  health_->Shutdown();  // NOT_SERVING, and Watch streams end before the drain waits on them
  server_->Shutdown(deadline);
  server_->Wait();
}

}  // namespace moeserve::server
