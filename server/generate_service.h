// The moeserve.v1.Moeserve service (callback API): Generate streams, Tokenize, GetModelInfo,
// GetServerInfo and Abort.
//
// grpc_server.cc registers one instance; main.cc attaches the ServingBackend once the model is
// loaded and warmed up (until then the RPCs answer UNAVAILABLE), and the shutdown path calls
// StartDraining (new Generate calls get UNAVAILABLE) and, when the grace period runs out,
// CancelAll. Handlers never block on the engine: Generate hands off to a GenerateStream and
// the unary RPCs read snapshots. Every finished RPC is reported to the CallObserver (metrics).
// Generate, Tokenize and Abort carry strings and are registered raw (ByteBuffer) so that a
// request with invalid UTF-8 gets INVALID_ARGUMENT naming the field (wire_format.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "moeserve/v1/moeserve.grpc.pb.h"
#include "server/api_key.h"
#include "server/serving_state.h"

namespace moeserve::server {

// The callback service with the string-carrying methods raw.
using MoeserveServiceBase = moeserve::v1::Moeserve::WithRawCallbackMethod_Generate<
    moeserve::v1::Moeserve::WithRawCallbackMethod_Tokenize<
        moeserve::v1::Moeserve::WithRawCallbackMethod_Abort<
            moeserve::v1::Moeserve::WithCallbackMethod_GetModelInfo<
                moeserve::v1::Moeserve::WithCallbackMethod_GetServerInfo<
                    moeserve::v1::Moeserve::Service>>>>>;

// Who may call and how much at once (server flags --api-key, --max-concurrent-streams).
struct AccessPolicy {
  std::string api_key;  // empty: no key required
  int max_concurrent_streams =
      0;  // open Generate streams; beyond it RESOURCE_EXHAUSTED; 0 = no cap
  // A Generate stream whose client has not read a response for this long is cancelled (0 =
  // never); GenerateStream::Env::write_timeout.
  std::chrono::milliseconds stream_write_timeout{0};
};

class GenerateService final : public MoeserveServiceBase {
 public:
  explicit GenerateService(CallObserver observer, AccessPolicy policy = {});

  // Once, after warmup; `backend` must outlive the gRPC server.
  void SetBackend(const ServingBackend* backend);
  // From now on Generate answers UNAVAILABLE; running streams continue.
  void StartDraining();
  bool draining() const { return draining_.load(); }
  // Cancels every Generate request still in the engine (they end with finish_reason "abort").
  void CancelAll();
  // Waits until every Generate call has finished (OnDone) or `deadline` passes; true if all did.
  bool WaitForOpenStreams(std::chrono::steady_clock::time_point deadline) const;

  // Request moeserve.v1.GenerateRequest; stream of moeserve.v1.GenerateResponse.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  // moeserve.v1.TokenizeRequest → moeserve.v1.TokenizeResponse.
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const moeserve::v1::GetModelInfoRequest* request,
                                         moeserve::v1::GetModelInfoResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const moeserve::v1::GetServerInfoRequest* request,
                                          moeserve::v1::GetServerInfoResponse* response) override;
  // moeserve.v1.AbortRequest → moeserve.v1.AbortResponse.
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

 private:
  // Finishes a unary call and reports it.
  grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const char* method,
                                  grpc::Status status);
  // A server-assigned request id: a per-process random prefix and a counter, so ids never
  // repeat within a process and are unlikely to match a client's own.
  std::string NextRequestId();
  // Who is calling, for Abort ownership: the client certificate's identity under mutual TLS;
  // else the API key's holder (one key, one principal); else the connection (peer address and
  // port), so a client aborts from the channel it submitted on.
  std::string CallerIdentity(const grpc::ServerContextBase& context) const;

  // Constant after construction.
  const CallObserver observer_;
  const std::chrono::steady_clock::time_point start_time_;
  const std::string request_id_prefix_;
  const ApiKeyCheck api_key_;
  const int max_concurrent_streams_;
  const std::chrono::milliseconds stream_write_timeout_;

  // Lock-free state shared by the RPC threads.
  std::atomic<const ServingBackend*> backend_{nullptr};
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_request_number_{0};
  std::atomic<int> open_streams_{0};
  LiveRequests live_requests_;
};

}  // namespace moeserve::server
