#include "server/generate_service.h"

#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/generate_stream.h"
#include "server/request_validation.h"
#include "server/status_mapping.h"
#include "server/wire_format.h"

#ifndef MOESERVE_VERSION
#define MOESERVE_VERSION "0.0.0"
#endif

namespace moeserve::server {
namespace {

namespace v1 = moeserve::v1;

std::string RandomPrefix() {
  std::random_device device;
  return absl::StrFormat("moeserve-%08x", device());
}

const grpc::Status& NotReady() {
  static const grpc::Status* status =
      new grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       "the model is still loading; retry once grpc.health.v1 reports SERVING");
  return *status;
}

}  // namespace

GenerateService::GenerateService(CallObserver observer, AccessPolicy policy)
    : observer_(std::move(observer)),
      start_time_(std::chrono::steady_clock::now()),
      request_id_prefix_(RandomPrefix()),
      api_key_(std::move(policy.api_key)),
      max_concurrent_streams_(policy.max_concurrent_streams),
      stream_write_timeout_(policy.stream_write_timeout) {}

void GenerateService::SetBackend(const ServingBackend* backend) { backend_.store(backend); }

void GenerateService::StartDraining() { draining_.store(true); }

void GenerateService::CancelAll() {
  const ServingBackend* backend = backend_.load();
  if (backend == nullptr) return;
  for (const std::string& id : live_requests_.Ids()) backend->engine->Cancel(id);
}

bool GenerateService::WaitForOpenStreams(std::chrono::steady_clock::time_point deadline) const {
  while (open_streams_.load() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string GenerateService::NextRequestId() {
  return absl::StrCat(request_id_prefix_, "-", next_request_number_.fetch_add(1));
}

grpc::ServerUnaryReactor* GenerateService::Reply(grpc::CallbackServerContext* context,
                                                 const char* method, grpc::Status status) {
  if (observer_) observer_(method, status.error_code());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  grpc::Status refusal = api_key_.Check(*context);
  const int already_open = open_streams_.fetch_add(1);
  if (refusal.ok() && max_concurrent_streams_ > 0 && already_open >= max_concurrent_streams_) {
    refusal = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                           absl::StrCat("the server already has ", max_concurrent_streams_,
                                        " Generate streams open (--max-concurrent-streams); "
                                        "retry later"));
  }
  GenerateStream::Env env{.backend = backend_.load(),
                          .live_requests = &live_requests_,
                          .open_streams = &open_streams_,
                          .observer = &observer_,
                          .draining = draining_.load(),
                          .default_request_id = NextRequestId(),
                          .owner = CallerIdentity(*context),
                          .write_timeout = stream_write_timeout_,
                          .refusal = std::move(refusal)};
  return GenerateStream::Start(context, *request, std::move(env));
}

grpc::ServerUnaryReactor* GenerateService::Tokenize(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request_bytes,
                                                    grpc::ByteBuffer* response_bytes) {
  if (grpc::Status s = api_key_.Check(*context); !s.ok()) return Reply(context, "Tokenize", s);
  const ServingBackend* backend = backend_.load();
  if (backend == nullptr) return Reply(context, "Tokenize", NotReady());
  v1::TokenizeRequest request;
  if (absl::Status s = ParseRequest(*request_bytes, request); !s.ok()) {
    return Reply(context, "Tokenize", ToGrpcStatus(s));
  }
  absl::StatusOr<std::vector<int32_t>> ids = ValidateTokenizeRequest(request, *backend->tokenizer);
  if (!ids.ok()) return Reply(context, "Tokenize", ToGrpcStatus(ids.status()));
  v1::TokenizeResponse response;
  for (int32_t id : *ids) response.add_token_ids(static_cast<uint32_t>(id));
  *response_bytes = ToByteBuffer(response);
  return Reply(context, "Tokenize", grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerateService::GetModelInfo(grpc::CallbackServerContext* context,
                                                        const v1::GetModelInfoRequest* /*request*/,
                                                        v1::GetModelInfoResponse* response) {
  if (grpc::Status s = api_key_.Check(*context); !s.ok()) {
    return Reply(context, "GetModelInfo", s);
  }
  const ServingBackend* backend = backend_.load();
  if (backend == nullptr) return Reply(context, "GetModelInfo", NotReady());
  *response = backend->model_info;
  return Reply(context, "GetModelInfo", grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerateService::GetServerInfo(
    grpc::CallbackServerContext* context, const v1::GetServerInfoRequest* /*request*/,
    v1::GetServerInfoResponse* response) {
  if (grpc::Status s = api_key_.Check(*context); !s.ok()) {
    return Reply(context, "GetServerInfo", s);
  }
  // Answers during startup too (zero counts), so operators can watch a slow model load.
  response->set_uptime_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count());
  response->set_version(MOESERVE_VERSION);
  response->set_is_draining(draining_.load());
  if (const ServingBackend* backend = backend_.load(); backend != nullptr) {
    const engine::EngineStats stats = backend->engine->Stats();
    response->set_active_requests(static_cast<uint32_t>(stats.num_running));
    response->set_queued_requests(static_cast<uint32_t>(stats.num_waiting));
    response->set_kv_cache_usage(stats.kv_usage);
  }
  return Reply(context, "GetServerInfo", grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerateService::Abort(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request_bytes,
                                                 grpc::ByteBuffer* response_bytes) {
  if (grpc::Status s = api_key_.Check(*context); !s.ok()) return Reply(context, "Abort", s);
  const ServingBackend* backend = backend_.load();
  if (backend == nullptr) return Reply(context, "Abort", NotReady());
  v1::AbortRequest request;
  absl::Status status = ParseRequest(*request_bytes, request);
  if (status.ok()) status = ValidateAbortRequest(request);
  if (!status.ok()) return Reply(context, "Abort", ToGrpcStatus(status));
  // A caller ends only its own requests. Another client's id gets exactly the answer an unknown
  // or finished one gets, so Abort reveals nothing about other clients' request ids.
  const std::string caller = CallerIdentity(*context);
  std::vector<std::string> not_found;
  for (const std::string& id : request.request_ids()) {
    if (live_requests_.OwnedBy(id, caller)) {
      backend->engine->Cancel(id);
    } else {
      not_found.push_back(id);
    }
  }
  if (!not_found.empty()) {
    const bool some_aborted = static_cast<int>(not_found.size()) < request.request_ids().size();
    return Reply(context, "Abort",
                 grpc::Status(grpc::StatusCode::NOT_FOUND,
                              absl::StrCat("no running request of this client has the id",
                                           not_found.size() > 1 ? "s" : "", " '",
                                           absl::StrJoin(not_found, "', '"), "'",
                                           some_aborted ? "; the other ids were aborted" : "")));
  }
  *response_bytes = ToByteBuffer(v1::AbortResponse());
  return Reply(context, "Abort", grpc::Status::OK);
}

std::string GenerateService::CallerIdentity(const grpc::ServerContextBase& context) const {
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    std::string identity = "certificate:";
    for (const grpc::string_ref& part : auth->GetPeerIdentity()) {
      identity.append(part.data(), part.size());
      identity.push_back('/');
    }
    return identity;
  }
  if (api_key_.enabled()) return "api-key";
  return absl::StrCat("peer:", context.peer());
}

}  // namespace moeserve::server
