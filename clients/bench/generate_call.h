// One streamed Generate call of the load test: a gRPC client read reactor that timestamps
// every response message into a RequestRecord.
//
// GrpcBackend (grpc_backend.h) makes one per request; the runner owns it and calls Start();
// gRPC's callback threads run OnReadDone/OnDone, and OnDone fills in the outcome and calls
// `on_done(this)` as its last act (the BenchCall contract of backend.h). The record must
// outlive the call; nothing else touches it until `on_done` has run. Cancel() may be called
// from any thread while the call object lives (the runner's Ctrl-C path).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "clients/bench/backend.h"
#include "clients/bench/request_record.h"
#include "grpcpp/grpcpp.h"
#include "moeserve/v1/moeserve.grpc.pb.h"

namespace moeserve::bench {

class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse>, public BenchCall {
 public:
  // `run_start` is time zero of the record's times; `timeout_s` sets a gRPC deadline; a
  // non-empty `api_key` is sent as `authorization: Bearer KEY` (the server's --api-key).
  GenerateCall(v1::Moeserve::Stub* stub, v1::GenerateRequest request, RequestRecord* record,
               Clock::time_point run_start, std::optional<double> timeout_s,
               const std::string& api_key, BenchBackend::DoneCallback on_done);

  void Start() override;
  void Cancel() override { context_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  double SecondsSinceRunStart(Clock::time_point t) const {
    return std::chrono::duration<double>(t - run_start_).count();
  }

  v1::Moeserve::Stub* const stub_;
  const v1::GenerateRequest request_;
  RequestRecord* const record_;
  const Clock::time_point run_start_;
  const BenchBackend::DoneCallback on_done_;
  grpc::ClientContext context_;
  v1::GenerateResponse response_;

  // Reactor callbacks are serialised by gRPC, so these need no lock.
  Clock::time_point start_;
  std::optional<Clock::time_point> last_token_message_;
  std::optional<Clock::time_point> complete_received_;
  std::string protocol_error_;  // a stream that broke the chunks-then-complete contract
};

}  // namespace moeserve::bench
