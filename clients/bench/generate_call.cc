#include "clients/bench/generate_call.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/grpc_code_name.h"

namespace moeserve::bench {
GenerateCall::GenerateCall(v1::Moeserve::Stub* stub, v1::GenerateRequest request,
                           RequestRecord* record, Clock::time_point run_start,
                           std::optional<double> timeout_s, const std::string& api_key,
                           BenchBackend::DoneCallback on_done)
    : stub_(stub),
      request_(std::move(request)),
      record_(record),
      run_start_(run_start),
      on_done_(std::move(on_done)) {
  if (timeout_s) {
    // gRPC deadlines are on the system clock.
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(*timeout_s)));
  }
  if (!api_key.empty()) context_.AddMetadata("authorization", absl::StrCat("Bearer ", api_key));
}

void GenerateCall::Start() {
  start_ = Clock::now();
  record_->start_time = SecondsSinceRunStart(start_);
  stub_->async()->Generate(&context_, &request_, this);
  StartRead(&response_);
  StartCall();
}

void GenerateCall::OnReadDone(bool ok) {
  if (!ok) return;  // end of stream: OnDone follows
  const Clock::time_point now = Clock::now();
  if (complete_received_ && protocol_error_.empty()) {
    protocol_error_ = "a message arrived after GenerateComplete";
  }
  if (response_.has_chunk()) {
    const v1::GenerateStreamChunk& chunk = response_.chunk();
    const int num_ids = chunk.token_ids_size();
    if (num_ids > 0) {
      // vLLM: the first message with output starts the clock of TTFT; each later one adds an ITL.
      if (!last_token_message_) {
        record_->ttft = std::chrono::duration<double>(now - start_).count();
      } else {
        record_->itl.push_back(std::chrono::duration<double>(now - *last_token_message_).count());
      }
      last_token_message_ = now;
      record_->output_tokens += num_ids;
      record_->token_message_times.push_back(SecondsSinceRunStart(now));
      record_->token_message_counts.push_back(num_ids);
    }
  } else if (response_.has_complete()) {
    const v1::GenerateComplete& complete = response_.complete();
    complete_received_ = now;
    record_->finish_reason = complete.finish_reason();
    record_->server_prompt_tokens = complete.prompt_tokens();
    record_->server_completion_tokens = complete.completion_tokens();
    record_->server_cached_tokens = complete.cached_tokens();
    record_->complete_output_ids = complete.output_ids_size();
    record_->server_ttft = complete.timing().time_to_first_token_seconds();
    record_->server_e2e = complete.timing().e2e_seconds();
    record_->server_queue = complete.timing().queue_seconds();
  }
  StartRead(&response_);
}

void GenerateCall::OnDone(const grpc::Status& status) {
  const Clock::time_point end = complete_received_.value_or(Clock::now());
  record_->latency = std::chrono::duration<double>(end - start_).count();
  if (!status.ok()) {
    record_->success = false;
    record_->status_code = GrpcCodeName(status.error_code());
    record_->error = status.error_message();
  } else if (!complete_received_) {
    record_->success = false;
    record_->status_code = "INCOMPLETE_STREAM";
    record_->error = "the stream ended with OK but without a GenerateComplete";
  } else if (!protocol_error_.empty()) {
    record_->success = false;
    record_->status_code = "PROTOCOL_ERROR";
    record_->error = protocol_error_;
  } else if (record_->finish_reason == "abort") {
    // The server gave up on it (drain, Abort RPC): not a response the client asked for.
    record_->success = false;
    record_->status_code = "FINISH_ABORT";
    record_->error = "the server ended the request with finish_reason abort";
  } else {
    record_->success = true;
    record_->status_code = "OK";
    // The server's count of the prompt is the truth for text prompts (BOS, tokenizer).
    if (record_->server_prompt_tokens > 0) record_->prompt_len = record_->server_prompt_tokens;
  }
  on_done_(this);
}

}  // namespace moeserve::bench
