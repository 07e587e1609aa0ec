// Pieces every moeserve-cli subcommand shares: the channel to the server, per-call deadlines,
// JSON rendering of responses, and the one way a failure is reported (the gRPC status code name
// and message on stderr, exit 1), so scripts can rely on the exit status of any subcommand.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "google/protobuf/message.h"
#include "proto/grpc_code_name.h"

namespace moeserve::cli {

// Exit statuses of moeserve-cli.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the call failed, or health is not SERVING
inline constexpr int kExitUsage = 2;    // bad command line

// An insecure channel to `target` ("host:port").
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);

// Sets the call's deadline `seconds` from now; seconds <= 0 leaves the call without one.
void SetTimeout(grpc::ClientContext& context, double seconds);

// Prints "moeserve-cli: CODE: message" to stderr and returns kExitFailure.
int ReportRpcError(const grpc::Status& status);
// Prints "moeserve-cli: message" to stderr and returns kExitFailure.
int ReportError(std::string_view message);

// `message` as one line of proto3 JSON with the proto's field names (token_ids, not tokenIds).
// With `print_defaults`, fields at their zero value are printed too.
std::string ToJson(const google::protobuf::Message& message, bool print_defaults = false);

}  // namespace moeserve::cli
