#include "clients/cli/cli_common.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace moeserve::cli {

namespace {

absl::StatusOr<std::string> ReadFile(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const Connection& connection) {
  if (connection.tls_ca.empty()) {
    if (!connection.tls_cert.empty() || !connection.tls_key.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key need --tls-ca");
    }
    return grpc::CreateChannel(connection.target, grpc::InsecureChannelCredentials());
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> roots = ReadFile("--tls-ca", connection.tls_ca);
  if (!roots.ok()) return roots.status();
  ssl.pem_root_certs = *roots;
  if (!connection.tls_cert.empty() || !connection.tls_key.empty()) {
    absl::StatusOr<std::string> cert = ReadFile("--tls-cert", connection.tls_cert);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile("--tls-key", connection.tls_key);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  grpc::ChannelArguments args;
  if (!connection.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(connection.tls_server_name);
  }
  return grpc::CreateCustomChannel(connection.target, grpc::SslCredentials(ssl), args);
}

void PrepareCall(grpc::ClientContext& context, const Connection& connection, double seconds) {
  if (!connection.api_key.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", connection.api_key));
  }
  if (seconds <= 0) return;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::duration_cast<std::chrono::system_clock::duration>(
                           std::chrono::duration<double>(seconds)));
}

int ReportRpcError(const grpc::Status& status) {
  std::fflush(stdout);  // what was streamed so far comes before the error
  std::fprintf(stderr, "moeserve-cli: %s: %s\n", GrpcCodeName(status.error_code()).c_str(),
               status.error_message().c_str());
  return kExitFailure;
}

int ReportError(std::string_view message) {
  std::fflush(stdout);
  std::fprintf(stderr, "moeserve-cli: %.*s\n", static_cast<int>(message.size()), message.data());
  return kExitFailure;
}

std::string ToJson(const google::protobuf::Message& message, bool print_defaults) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = print_defaults;
  std::string json;
  // Serializing a well-formed message cannot fail (no Any fields in our API).
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

}  // namespace moeserve::cli
