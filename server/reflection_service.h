// gRPC server reflection under both of its package names, grpc.reflection.v1 and the older
// grpc.reflection.v1alpha, so that grpcurl, Postman and other generic clients can list, describe
// and call every service the server exposes without a .proto file. It replaces Debian's
// grpc++_reflection (gRPC 1.51), which answers only v1alpha and cannot describe
// grpc.health.v1.Health: gRPC's health service is upb-based, so its descriptor was never in
// protobuf's generated pool (proto/CMakeLists.txt now compiles it in).
//
// The two packages declare the same messages with the same field numbers, so one implementation,
// a template over the generated types, serves both; the answers follow gRPC's own
// ProtoServerReflection (files with their transitive dependencies, errors as NOT_FOUND /
// UNIMPLEMENTED error responses on the stream, never a failed stream).
//
// GrpcServer registers one service of each package. Thread-safe: the services hold only
// constants, and each stream's state lives on its handler's stack.
#pragma once

#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/sync_stream.h"

namespace moeserve::server {

// The answer to one reflection request: a file descriptor response, an extension number list, the
// service list, or an error response (NOT_FOUND naming the unknown file, symbol, type or
// extension; UNIMPLEMENTED when no request is set). Descriptors come from `pool`; listed names
// are `service_names` as given. Instantiated for the v1 and v1alpha message types.
template <typename Request, typename Response>
Response AnswerReflectionRequest(const Request& request,
                                 const std::vector<std::string>& service_names,
                                 const google::protobuf::DescriptorPool& pool);

// One package's ServerReflection service. `service_names` are the full names ListServices
// reports (each should resolve in `pool`); `pool` must outlive the service.
template <typename GeneratedService, typename Request, typename Response>
class ServerReflectionService final : public GeneratedService::Service {
 public:
  explicit ServerReflectionService(std::vector<std::string> service_names,
                                   const google::protobuf::DescriptorPool* pool =
                                       google::protobuf::DescriptorPool::generated_pool())
      : service_names_(std::move(service_names)), pool_(pool) {}

  // Answers each request on the stream in order until the client half-closes.
  grpc::Status ServerReflectionInfo(grpc::ServerContext* context,
                                    grpc::ServerReaderWriter<Response, Request>* stream) override;

 private:
  const std::vector<std::string> service_names_;
  const google::protobuf::DescriptorPool* const pool_;
};

using ReflectionV1Service = ServerReflectionService<grpc::reflection::v1::ServerReflection,
                                                    grpc::reflection::v1::ServerReflectionRequest,
                                                    grpc::reflection::v1::ServerReflectionResponse>;
using ReflectionV1AlphaService =
    ServerReflectionService<grpc::reflection::v1alpha::ServerReflection,
                            grpc::reflection::v1alpha::ServerReflectionRequest,
                            grpc::reflection::v1alpha::ServerReflectionResponse>;

extern template class ServerReflectionService<grpc::reflection::v1::ServerReflection,
                                              grpc::reflection::v1::ServerReflectionRequest,
                                              grpc::reflection::v1::ServerReflectionResponse>;
extern template class ServerReflectionService<grpc::reflection::v1alpha::ServerReflection,
                                              grpc::reflection::v1alpha::ServerReflectionRequest,
                                              grpc::reflection::v1alpha::ServerReflectionResponse>;

}  // namespace moeserve::server
