// The load client's channels to the server and the unary calls it makes around a run:
// waiting for grpc.health.v1 SERVING, GetModelInfo (vocabulary and EOS for random prompts,
// the model name for the report) and Tokenize (token counts of text datasets).
//
// Opened once by main.cc. With --num-channels N it opens N separate HTTP/2 connections (each
// channel its own subchannel pool), so one connection's flow control or one gRPC poller does
// not bound the load; the runner spreads requests over them round-robin.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "moeserve/v1/moeserve.grpc.pb.h"

namespace moeserve::bench {

class BenchConnection {
 public:
  // A non-empty `api_key` goes with every unary call as `authorization: Bearer KEY`.
  BenchConnection(const std::string& target, int num_channels, std::string api_key = "");

  // Polls grpc.health.v1 Check("") until SERVING; DeadlineExceeded (with the last answer)
  // after `timeout_s`.
  absl::Status WaitUntilServing(double timeout_s);
  absl::StatusOr<v1::GetModelInfoResponse> GetModelInfo();
  absl::StatusOr<std::vector<uint32_t>> Tokenize(const std::string& text, bool add_special_tokens);

  std::vector<v1::Moeserve::Stub*> stubs() const;
  const std::string& target() const { return target_; }

 private:
  // A fresh context for a unary call, with the deadline and the API key.
  void Prepare(grpc::ClientContext& context) const;

  const std::string target_;
  const std::string api_key_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Moeserve::Stub>> stubs_;
};

}  // namespace moeserve::bench
