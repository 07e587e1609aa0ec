// `moeserve-cli tokenize`, `info` and `health`: the unary calls.
#include <cstdio>
#include <string>

#include "clients/cli/cli_commands.h"
#include "clients/cli/cli_common.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "moeserve/v1/moeserve.grpc.pb.h"

namespace moeserve::cli {
namespace {

template <typename Ids>
std::string JsonIdArray(const Ids& ids) {
  std::string out = "[";
  for (int i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

void PrintField(const char* name, const std::string& value) {
  std::printf("  %-26s %s\n", name, value.c_str());
}

void PrintModelInfo(const v1::GetModelInfoResponse& m) {
  std::printf("model\n");
  PrintField("served_model_name", m.served_model_name());
  PrintField("architecture", m.architecture() + " (" + m.model_type() + ")");
  PrintField("dtype", m.dtype());
  PrintField("quantization", m.quantization());
  PrintField("device", m.device());
  PrintField("max_context_length", std::to_string(m.max_context_length()));
  PrintField("vocab_size", std::to_string(m.vocab_size()));
  PrintField("bos_token_id", m.has_bos_token_id() ? std::to_string(m.bos_token_id()) : "none");
  PrintField("eos_token_ids", JsonIdArray(m.eos_token_ids()));
  PrintField("num_layers", std::to_string(m.num_layers()));
  PrintField("num_routed_experts", std::to_string(m.num_routed_experts()));
  PrintField("num_experts_per_token", std::to_string(m.num_experts_per_token()));
  PrintField("kv_cache_capacity_tokens", std::to_string(m.kv_cache_capacity_tokens()));
}

void PrintServerInfo(const v1::GetServerInfoResponse& s) {
  char buffer[64];
  std::printf("server\n");
  PrintField("version", s.version());
  std::snprintf(buffer, sizeof(buffer), "%.1f", s.uptime_seconds());
  PrintField("uptime_seconds", buffer);
  PrintField("active_requests", std::to_string(s.active_requests()));
  PrintField("queued_requests", std::to_string(s.queued_requests()));
  std::snprintf(buffer, sizeof(buffer), "%.1f%%", 100.0 * s.kv_cache_usage());
  PrintField("kv_cache_usage", buffer);
  PrintField("is_draining", s.is_draining() ? "true" : "false");
}

}  // namespace

int RunTokenize(const Connection& connection, const std::string& text, bool add_special_tokens,
                double timeout_seconds) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(connection);
  if (!channel.ok()) return ReportError(std::string(channel.status().message()));
  std::unique_ptr<v1::Moeserve::Stub> stub = v1::Moeserve::NewStub(*channel);
  grpc::ClientContext context;
  PrepareCall(context, connection, timeout_seconds);
  v1::TokenizeRequest request;
  request.set_text(text);
  if (!add_special_tokens) request.set_add_special_tokens(false);
  v1::TokenizeResponse response;
  if (grpc::Status status = stub->Tokenize(&context, request, &response); !status.ok()) {
    return ReportRpcError(status);
  }
  std::printf("%s\n", JsonIdArray(response.token_ids()).c_str());
  return kExitOk;
}

int RunInfo(const Connection& connection, bool json, double timeout_seconds) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(connection);
  if (!channel.ok()) return ReportError(std::string(channel.status().message()));
  std::unique_ptr<v1::Moeserve::Stub> stub = v1::Moeserve::NewStub(*channel);
  v1::GetModelInfoResponse model;
  v1::GetServerInfoResponse server;
  {
    grpc::ClientContext context;
    PrepareCall(context, connection, timeout_seconds);
    grpc::Status status = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &model);
    if (!status.ok()) return ReportRpcError(status);
  }
  {
    grpc::ClientContext context;
    PrepareCall(context, connection, timeout_seconds);
    grpc::Status status = stub->GetServerInfo(&context, v1::GetServerInfoRequest(), &server);
    if (!status.ok()) return ReportRpcError(status);
  }
  if (json) {
    std::printf("{\"model\": %s, \"server\": %s}\n", ToJson(model, true).c_str(),
                ToJson(server, true).c_str());
  } else {
    PrintModelInfo(model);
    PrintServerInfo(server);
  }
  return kExitOk;
}

int RunHealth(const Connection& connection, const std::string& service, double timeout_seconds) {
  using grpc::health::v1::HealthCheckResponse;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(connection);
  if (!channel.ok()) return ReportError(std::string(channel.status().message()));
  std::unique_ptr<grpc::health::v1::Health::Stub> stub =
      grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext context;
  PrepareCall(context, connection, timeout_seconds);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  if (grpc::Status status = stub->Check(&context, request, &response); !status.ok()) {
    return ReportRpcError(status);
  }
  std::printf("%s\n", HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == HealthCheckResponse::SERVING ? kExitOk : kExitFailure;
}

}  // namespace moeserve::cli
