#include "clients/bench/grpc_backend.h"

#include <utility>

#include "clients/bench/generate_call.h"

namespace moeserve::bench {

v1::GenerateRequest BuildGenerateRequest(const BenchPrompt& prompt, const RequestTemplate& options,
                                         const std::string& request_id) {
  v1::GenerateRequest request;
  request.set_request_id(request_id);
  if (!prompt.token_ids.empty()) {
    request.mutable_tokenized()->mutable_input_ids()->Add(prompt.token_ids.begin(),
                                                          prompt.token_ids.end());
  } else {
    request.set_text(prompt.text);
  }
  v1::SamplingParams* sampling = request.mutable_sampling_params();
  *sampling = options.sampling;
  sampling->set_max_tokens(static_cast<uint32_t>(prompt.output_len));
  sampling->set_ignore_eos(options.ignore_eos);
  return request;
}

GrpcBackend::GrpcBackend(std::vector<v1::Moeserve::Stub*> stubs, RequestTemplate request_template)
    : stubs_(std::move(stubs)), template_(std::move(request_template)) {}

std::unique_ptr<BenchCall> GrpcBackend::NewCall(const BenchPrompt& prompt, RequestRecord* record,
                                                Clock::time_point run_start, DoneCallback on_done) {
  v1::Moeserve::Stub* stub = stubs_[next_stub_++ % stubs_.size()];
  return std::make_unique<GenerateCall>(
      stub, BuildGenerateRequest(prompt, template_, record->request_id), record, run_start,
      template_.timeout_s, template_.api_key, std::move(on_done));
}

}  // namespace moeserve::bench
