#include "clients/cli/cli_common.h"

#include <chrono>
#include <cstdio>

#include "google/protobuf/util/json_util.h"

namespace moeserve::cli {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
}

void SetTimeout(grpc::ClientContext& context, double seconds) {
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
