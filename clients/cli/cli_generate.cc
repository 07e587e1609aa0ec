// `moeserve-cli generate` (and each turn of `chat`): one streaming Generate call, printed as it
// arrives.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

#include "clients/cli/cli_commands.h"
#include "clients/cli/cli_common.h"
#include "moeserve/v1/moeserve.grpc.pb.h"

namespace moeserve::cli {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One line on stderr: the server's counts and timing, and what the client saw.
void PrintStats(const v1::GenerateComplete& complete, std::optional<double> client_ttft,
                double client_e2e) {
  std::string matched;
  if (complete.has_matched_token_id()) {
    matched = " matched_token_id=" + std::to_string(complete.matched_token_id());
  } else if (complete.has_matched_stop_str()) {
    matched = " matched_stop_str=\"" + complete.matched_stop_str() + "\"";
  }
  const v1::Timing& timing = complete.timing();
  const double decode_seconds = timing.e2e_seconds() - timing.time_to_first_token_seconds();
  const double decode_rate = complete.completion_tokens() > 1 && decode_seconds > 0
                                 ? (complete.completion_tokens() - 1) / decode_seconds
                                 : 0.0;
  std::fprintf(stderr,
               "[finish_reason=%s%s prompt_tokens=%u completion_tokens=%u cached_tokens=%u]\n"
               "[server: queue %.3f s, ttft %.3f s, e2e %.3f s, decode %.1f tokens/s]\n"
               "[client: ttft %.3f s, e2e %.3f s]\n",
               complete.finish_reason().c_str(), matched.c_str(), complete.prompt_tokens(),
               complete.completion_tokens(), complete.cached_tokens(), timing.queue_seconds(),
               timing.time_to_first_token_seconds(), timing.e2e_seconds(), decode_rate,
               client_ttft.value_or(0.0), client_e2e);
}

}  // namespace

int RunGenerate(const Connection& connection, const GenerateFlags& flags) {
  absl::StatusOr<v1::GenerateRequest> request = BuildGenerateRequest(flags, std::cin);
  if (!request.ok()) {
    std::fprintf(stderr, "moeserve-cli generate: %s\n",
                 std::string(request.status().message()).c_str());
    return kExitUsage;
  }
  return StreamGenerate(connection, *request, flags, nullptr);
}

int StreamGenerate(const Connection& connection, const v1::GenerateRequest& request,
                   const GenerateFlags& flags, std::string* text_out) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(connection);
  if (!channel.ok()) return ReportError(std::string(channel.status().message()));
  std::unique_ptr<v1::Moeserve::Stub> stub = v1::Moeserve::NewStub(*channel);
  grpc::ClientContext context;
  PrepareCall(context, connection, flags.timeout_seconds);

  const Clock::time_point start = Clock::now();
  std::optional<double> client_ttft;
  std::optional<v1::GenerateComplete> complete;
  bool wrote_text = false;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (flags.json) {
      std::printf("%s\n", ToJson(response).c_str());
      std::fflush(stdout);
    }
    if (response.has_chunk()) {
      if (!client_ttft && response.chunk().token_ids_size() > 0) client_ttft = SecondsSince(start);
      if (!flags.json) {
        const std::string& text = response.chunk().text();
        std::fwrite(text.data(), 1, text.size(), stdout);
        if (text_out != nullptr) text_out->append(text);
        wrote_text = wrote_text || !text.empty();
        std::fflush(stdout);  // show each piece as it arrives
      }
    } else if (response.has_complete()) {
      complete = response.complete();
    }
  }
  const grpc::Status status = reader->Finish();
  const double client_e2e = SecondsSince(start);
  // End the streamed line (an empty completion prints an empty line; a failed call only a
  // line break after what was streamed, before the error).
  if (!flags.json && (status.ok() || wrote_text)) std::printf("\n");
  if (!status.ok()) return ReportRpcError(status);
  if (!complete) return ReportError("the stream ended without a complete message");
  if (flags.stats) PrintStats(*complete, client_ttft, client_e2e);
  return kExitOk;
}

}  // namespace moeserve::cli
