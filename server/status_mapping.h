// The one place where absl::Status becomes grpc::Status (ARCHITECTURE.md §5 rule 5).
//
// The engine and the server's validation speak absl::Status; every RPC handler converts at the
// edge with ToGrpcStatus, and the metrics label each finished call with GrpcCodeName. absl's
// canonical codes are gRPC's codes by design, so the mapping is one to one; it is spelled out
// anyway so that a change on either side shows up here and in status_mapping_test.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "proto/grpc_code_name.h"

namespace moeserve::server {

grpc::StatusCode ToGrpcCode(absl::StatusCode code);

// Same code, same message. Payloads are dropped (nothing in the engine sets them).
grpc::Status ToGrpcStatus(const absl::Status& status);

using ::moeserve::GrpcCodeName;  // proto/grpc_code_name.h

}  // namespace moeserve::server
