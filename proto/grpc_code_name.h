// The canonical upper-case name of a gRPC status code ("OK", "INVALID_ARGUMENT", ...), as
// gRPC's docs and grpcurl print it. Shared by the server (metrics labels), moeserve-cli (error
// messages) and moeserve-bench (errors by code); "UNKNOWN" for values outside the enum.
#pragma once

#include <string>

#include "grpcpp/support/status.h"

namespace moeserve {

std::string GrpcCodeName(grpc::StatusCode code);

}  // namespace moeserve
