// HealthService on a real gRPC server on 127.0.0.1, through the generated client stub: every
// name NOT_SERVING from the first call on, unknown names NOT_FOUND (Check) / SERVICE_UNKNOWN
// (Watch), changes streamed to watchers (the latest of a burst last), Shutdown sends
// NOT_SERVING, ends the streams and pins it, and a client that cancels its Watch leaves nothing
// behind.
#include "server/health_service.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace moeserve::server {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr char kService[] = "moeserve.v1.Moeserve";

class HealthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    health_ = std::make_unique<HealthService>(std::set<std::string>{"", kService});
    grpc::EnableDefaultHealthCheckService(false);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(health_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = Health::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (health_ != nullptr) health_->Shutdown();
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
    health_.reset();  // waits for every Watch stream's OnDone
  }

  grpc::Status Check(const std::string& name, HealthCheckResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    HealthCheckRequest request;
    request.set_service(name);
    return stub_->Check(&context, request, response);
  }

  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthServiceTest, CheckIsNotServingUntilSetThenFollowsIt) {
  for (const std::string name : {"", kService}) {
    HealthCheckResponse response;
    ASSERT_TRUE(Check(name, &response).ok()) << name;
    EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING) << name;
  }
  health_->SetServing(true);
  for (const std::string name : {"", kService}) {
    HealthCheckResponse response;
    ASSERT_TRUE(Check(name, &response).ok());
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING) << name;
  }
  HealthCheckResponse response;
  const grpc::Status unknown = Check("no.such.Service", &response);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(unknown.error_message().find("no.such.Service"), std::string::npos);

  health_->Shutdown();
  health_->SetServing(true);  // ignored: shutting down is for good
  ASSERT_TRUE(Check("", &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthServiceTest, WatchStreamsEachChangeAndEndsAtShutdown) {
  grpc::ClientContext context;
  HealthCheckRequest request;
  request.set_service(kService);
  auto reader = stub_->Watch(&context, request);
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);

  health_->SetServing(true);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  health_->SetServing(true);  // no change, no message: the next one read is the next change
  health_->SetServing(false);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);

  // A burst: messages may be merged, but each differs from the one before and the last is the
  // final status.
  for (int i = 0; i < 101; ++i) health_->SetServing(i % 2 == 0);
  HealthCheckResponse::ServingStatus previous = HealthCheckResponse::NOT_SERVING;
  while (previous != HealthCheckResponse::SERVING) {
    ASSERT_TRUE(reader->Read(&response));
    EXPECT_NE(response.status(), previous);
    previous = response.status();
  }

  // Shutdown: what is still queued, then NOT_SERVING last, then the end of the stream.
  health_->Shutdown();
  while (reader->Read(&response)) {
    EXPECT_NE(response.status(), previous);
    previous = response.status();
  }
  EXPECT_EQ(previous, HealthCheckResponse::NOT_SERVING);
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(HealthServiceTest, WatchOfAnUnknownNameSaysSoAndCancelledWatchesGoAway) {
  grpc::ClientContext unknown_context;
  HealthCheckRequest request;
  request.set_service("no.such.Service");
  auto unknown = stub_->Watch(&unknown_context, request);
  HealthCheckResponse response;
  ASSERT_TRUE(unknown->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVICE_UNKNOWN);

  // Many watchers that hang up: TearDown's HealthService destructor waits for each one's
  // OnDone, so a leak would hang the test.
  for (int i = 0; i < 20; ++i) {
    grpc::ClientContext context;
    HealthCheckRequest all;
    auto reader = stub_->Watch(&context, all);
    ASSERT_TRUE(reader->Read(&response));
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  health_->SetServing(true);
  unknown_context.TryCancel();
  while (unknown->Read(&response)) {
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVICE_UNKNOWN);
  }
  unknown->Finish();
}

}  // namespace
}  // namespace moeserve::server
