#include "clients/bench/bench_connection.h"

#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace moeserve::bench {
namespace {

constexpr auto kUnaryTimeout = std::chrono::seconds(30);

absl::Status ToStatus(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

}  // namespace

BenchConnection::BenchConnection(const std::string& target, int num_channels, std::string api_key)
    : target_(target), api_key_(std::move(api_key)) {
  for (int i = 0; i < std::max(num_channels, 1); ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    // A private subchannel pool gives each channel its own TCP connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels_.push_back(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
    stubs_.push_back(v1::Moeserve::NewStub(channels_.back()));
  }
}

std::vector<v1::Moeserve::Stub*> BenchConnection::stubs() const {
  std::vector<v1::Moeserve::Stub*> stubs;
  for (const auto& stub : stubs_) stubs.push_back(stub.get());
  return stubs;
}

absl::Status BenchConnection::WaitUntilServing(double timeout_s) {
  auto health = grpc::health::v1::Health::NewStub(channels_.front());
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  std::string last = "no answer";
  while (std::chrono::system_clock::now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(
        std::min(deadline, std::chrono::system_clock::now() + std::chrono::seconds(5)));
    context.set_wait_for_ready(true);  // ride out a server that is still binding its port
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = health->Check(&context, request, &response);
    if (status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = status.ok()
               ? grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())
               : absl::StrCat("status ", status.error_code(), " ", status.error_message());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(target_, " is not SERVING after ", timeout_s, " s (last answer: ", last, ")"));
}

void BenchConnection::Prepare(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() + kUnaryTimeout);
  if (!api_key_.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", api_key_));
}

absl::StatusOr<v1::GetModelInfoResponse> BenchConnection::GetModelInfo() {
  grpc::ClientContext context;
  Prepare(context);
  v1::GetModelInfoResponse response;
  const grpc::Status status = stubs_.front()->GetModelInfo(&context, {}, &response);
  if (!status.ok()) return ToStatus(status, "GetModelInfo");
  return response;
}

absl::StatusOr<std::vector<uint32_t>> BenchConnection::Tokenize(const std::string& text,
                                                                bool add_special_tokens) {
  grpc::ClientContext context;
  Prepare(context);
  v1::TokenizeRequest request;
  request.set_text(text);
  request.set_add_special_tokens(add_special_tokens);
  v1::TokenizeResponse response;
  const grpc::Status status = stubs_.front()->Tokenize(&context, request, &response);
  if (!status.ok()) return ToStatus(status, "Tokenize");
  return std::vector<uint32_t>(response.token_ids().begin(), response.token_ids().end());
}

}  // namespace moeserve::bench
