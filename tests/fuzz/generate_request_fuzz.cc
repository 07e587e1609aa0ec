// Fuzzes what a Generate call does with its request bytes before the engine sees them: parse
// the wire bytes (ParseRequest, the raw-method path) and validate against the tiny test model's
// limits and the KJV tokenizer. An accepted request must be one the engine can run: a non-empty
// prompt of in-vocabulary ids that, with max_tokens, fits the context.
#include <memory>
#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "server/request_validation.h"
#include "server/wire_format.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/kjv_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeserve;
  grpc::Slice slice(data, size);
  grpc::ByteBuffer buffer(&slice, 1);
  v1::GenerateRequest request;
  if (!server::ParseRequest(buffer, request).ok()) return 0;
  const server::RequestLimits limits{
      .vocab_size = 8192, .max_model_len = 512, .eos_token_ids = {1}};
  absl::StatusOr<engine::GenerateRequest> validated =
      server::ValidateGenerateRequest(request, KjvTokenizer(), limits);
  if (!validated.ok()) {
    FUZZ_CHECK(validated.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(!validated->prompt_token_ids.empty());
  for (int32_t id : validated->prompt_token_ids) FUZZ_CHECK(id >= 0 && id < limits.vocab_size);
  FUZZ_CHECK(static_cast<int64_t>(validated->prompt_token_ids.size()) +
                 validated->stop.max_new_tokens <=
             limits.max_model_len);
  return 0;
}
