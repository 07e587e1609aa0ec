// Pieces every moeserve-cli subcommand shares: the channel to the server, per-call deadlines,
// JSON rendering of responses, and the one way a failure is reported (the gRPC status code name
// and message on stderr, exit 1), so scripts can rely on the exit status of any subcommand.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "proto/grpc_code_name.h"

namespace moeserve::cli {

// Exit statuses of moeserve-cli.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the call failed, or health is not SERVING
inline constexpr int kExitUsage = 2;    // bad command line

// Where the server is and how to reach it (global flags of moeserve-cli).
struct Connection {
  std::string target = "127.0.0.1:50051";  // host:port
  std::string api_key;   // sent as 'authorization: Bearer KEY' (also MOESERVE_API_KEY)
  std::string tls_ca;    // PEM roots: connect with TLS, verifying the server against them
  std::string tls_cert;  // PEM client certificate for mutual TLS (with tls_key)
  std::string tls_key;
  std::string tls_server_name;  // expected name in the server certificate (default: the host)
};

// A channel to the connection's target: plaintext, or TLS when tls_ca is set. Fails when a
// named PEM file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const Connection& connection);

// Prepares one call: its deadline `seconds` from now (none when seconds <= 0) and the API key.
void PrepareCall(grpc::ClientContext& context, const Connection& connection, double seconds);

// Prints "moeserve-cli: CODE: message" to stderr and returns kExitFailure.
int ReportRpcError(const grpc::Status& status);
// Prints "moeserve-cli: message" to stderr and returns kExitFailure.
int ReportError(std::string_view message);

// `message` as one line of proto3 JSON with the proto's field names (token_ids, not tokenIds).
// With `print_defaults`, fields at their zero value are printed too.
std::string ToJson(const google::protobuf::Message& message, bool print_defaults = false);

}  // namespace moeserve::cli
