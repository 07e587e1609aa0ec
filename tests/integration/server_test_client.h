// Client-side helpers for the server integration tests: a channel and stubs to a running
// `moeserve`, a blocking Generate that collects the whole stream, raw-bytes calls (for input
// a typed client cannot produce, such as invalid UTF-8), health checks, and a /metrics scrape.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/impl/client_unary_call.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/sync_stream.h"
#include "gtest/gtest.h"
#include "moeserve/v1/moeserve.grpc.pb.h"

namespace moeserve::testing {

namespace v1 = moeserve::v1;

// A channel that reconnects quickly: tests poll servers that are still starting.
inline std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // Its own connection: channels to one target otherwise share a subchannel, and the server
  // tells clients apart by connection when no API key or certificate is set (Abort ownership).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

struct StreamResult {
  grpc::Status status;
  std::vector<uint32_t> token_ids;  // from the chunks
  std::string text;                 // concatenated chunk text
  int num_chunks = 0;
  int num_logprob_entries = 0;  // chunk output_logprobs.token_logprobs entries
  std::optional<v1::GenerateComplete> complete;
  bool complete_was_last = true;  // nothing came after the complete message
};

inline StreamResult Generate(v1::Moeserve::Stub& stub, const v1::GenerateRequest& request,
                             std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  StreamResult result;
  auto reader = stub.Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (result.complete) result.complete_was_last = false;
    if (response.has_chunk()) {
      ++result.num_chunks;
      const v1::GenerateStreamChunk& chunk = response.chunk();
      result.token_ids.insert(result.token_ids.end(), chunk.token_ids().begin(),
                              chunk.token_ids().end());
      result.text += chunk.text();
      result.num_logprob_entries += chunk.output_logprobs().token_logprobs_size();
    } else if (response.has_complete()) {
      result.complete = response.complete();
    }
  }
  result.status = reader->Finish();
  return result;
}

// Server-streaming or unary call with hand-made request bytes; returns the status.
inline grpc::Status RawGenerate(grpc::Channel& channel, const std::string& request_bytes) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const grpc::internal::RpcMethod method("/moeserve.v1.Moeserve/Generate",
                                         grpc::internal::RpcMethod::SERVER_STREAMING);
  grpc::Slice slice(request_bytes);
  const grpc::ByteBuffer request(&slice, 1);
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(&channel, method, &context,
                                                                    request));
  grpc::ByteBuffer response;
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

inline grpc::Status RawUnary(grpc::Channel& channel, const std::string& method_name,
                             const std::string& request_bytes) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const grpc::internal::RpcMethod method(method_name.c_str(),
                                         grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::Slice slice(request_bytes);
  const grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  return grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      &channel, method, &context, request, &response);
}

// grpc.health.v1 Check for the whole server; nullopt when the call fails.
inline std::optional<grpc::health::v1::HealthCheckResponse::ServingStatus> HealthStatus(
    grpc::Channel& channel, std::chrono::milliseconds timeout = std::chrono::milliseconds(500)) {
  auto stub = grpc::health::v1::Health::NewStub(
      std::shared_ptr<grpc::Channel>(&channel, [](grpc::Channel*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&context, request, &response).ok()) return std::nullopt;
  return response.status();
}

inline v1::GetServerInfoResponse ServerInfo(v1::Moeserve::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetServerInfoResponse response;
  const grpc::Status status = stub.GetServerInfo(&context, {}, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

// Polls GetServerInfo until no request is running or waiting and no KV block is in use.
inline bool WaitUntilIdle(v1::Moeserve::Stub& stub,
                          std::chrono::seconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const v1::GetServerInfoResponse info = ServerInfo(stub);
    if (info.active_requests() == 0 && info.queued_requests() == 0 &&
        info.kv_cache_usage() == 0.0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// GET http://127.0.0.1:port/metrics; the body, or "" on failure.
inline std::string ScrapeMetrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request =
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      ssize_t n;
      while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
    }
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The value of the first sample line starting with `series` (name plus labels prefix), or -1.
inline double MetricValue(const std::string& metrics, const std::string& series) {
  size_t at = 0;
  while ((at = metrics.find(series, at)) != std::string::npos) {
    if (at == 0 || metrics[at - 1] == '\n') {
      const size_t line_end = metrics.find('\n', at);
      const std::string line = metrics.substr(at, line_end - at);
      const size_t space = line.rfind(' ');
      return std::stod(line.substr(space + 1));
    }
    at += series.size();
  }
  return -1;
}

// A port that was free a moment ago on 127.0.0.1 (for tests that must know the port before
// the server writes its port file).
inline int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

}  // namespace moeserve::testing
