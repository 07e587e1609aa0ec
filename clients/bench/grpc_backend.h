// The gRPC transport of the load test: each request is one streamed Moeserve.Generate call
// (GenerateCall, a callback-API reactor), spread round-robin over the channels of
// --num-channels. gRPC's callback threads finish the calls.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "clients/bench/backend.h"
#include "clients/bench/dataset.h"
#include "moeserve/v1/moeserve.grpc.pb.h"

namespace moeserve::bench {

// What every request of a run shares; max_tokens comes from each prompt.
struct RequestTemplate {
  v1::SamplingParams sampling;
  bool ignore_eos = false;
  std::optional<double> timeout_s;  // per-request gRPC deadline
  std::string api_key;              // sent as `authorization: Bearer KEY` when set
};

// Builds the GenerateRequest for `prompt` (ids as TokenizedInput, else text).
v1::GenerateRequest BuildGenerateRequest(const BenchPrompt& prompt, const RequestTemplate& options,
                                         const std::string& request_id);

class GrpcBackend final : public BenchBackend {
 public:
  // `stubs` are used round-robin (one per channel) and must outlive the backend.
  GrpcBackend(std::vector<v1::Moeserve::Stub*> stubs, RequestTemplate request_template);

  std::unique_ptr<BenchCall> NewCall(const BenchPrompt& prompt, RequestRecord* record,
                                     Clock::time_point run_start, DoneCallback on_done) override;

 private:
  const std::vector<v1::Moeserve::Stub*> stubs_;
  const RequestTemplate template_;
  size_t next_stub_ = 0;  // dispatcher thread only
};

}  // namespace moeserve::bench
