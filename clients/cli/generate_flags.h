// The flags of `moeserve-cli generate` and their translation into a moeserve.v1.GenerateRequest.
//
// There is one flag per SamplingParams field. An optional field is set only when its flag is
// given, so the server's defaults apply otherwise. Values are not range-checked here: the
// server validates every field and names it in INVALID_ARGUMENT, and the CLI reports that
// (it is also how the server's validation is exercised from the shell). Only what cannot be
// expressed in the request at all (a malformed --logit-bias or --token-ids, both or neither of
// PROMPT and --token-ids) is a usage error.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "moeserve/v1/moeserve.pb.h"

namespace moeserve::cli {

struct GenerateFlags {
  std::optional<std::string> prompt;     // positional PROMPT
  std::optional<std::string> token_ids;  // "1,2,3": a tokenized prompt instead of PROMPT
  bool no_add_special_tokens = false;

  std::optional<uint32_t> max_tokens;
  uint32_t min_tokens = 0;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<float> frequency_penalty;
  std::optional<float> presence_penalty;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<uint32_t> stop_token_ids;
  bool ignore_eos = false;
  bool include_stop_str = false;
  std::optional<int32_t> logprobs;
  std::vector<std::string> logit_bias;  // "ID=BIAS", repeatable
  bool no_skip_special_tokens = false;

  int32_t priority = 0;
  std::string request_id;
  double timeout_seconds = 0;  // 0: no deadline
  bool json = false;           // print every GenerateResponse as one JSON line
  bool stats = false;          // usage and timing to stderr at the end
};

// Registers the flags on the `generate` subcommand, writing into `flags`.
void AddGenerateFlags(CLI::App& command, GenerateFlags& flags);
// Only the sampling and call flags (--max-tokens ... --stats), for `chat`.
void AddSamplingFlags(CLI::App& command, GenerateFlags& flags);

// A PROMPT of "-" is read from `input` (the CLI passes std::cin) up to this many bytes.
inline constexpr size_t kMaxStdinPromptBytes = size_t{16} << 20;

// The request the flags describe; InvalidArgument (a usage error) if they describe none, or if
// a "-" prompt cannot be read from `input` or is larger than kMaxStdinPromptBytes.
absl::StatusOr<v1::GenerateRequest> BuildGenerateRequest(const GenerateFlags& flags,
                                                         std::istream& input);

// Sets request_id, priority and sampling_params from the flags; InvalidArgument for a
// malformed --logit-bias.
absl::Status FillSamplingAndOptions(const GenerateFlags& flags, v1::GenerateRequest& request);

// One message of `moeserve-cli chat`'s conversation.
struct ChatTurn {
  std::string role;  // system, user or assistant
  std::string content;
};
// A Generate request with chat input (the server renders the model's chat template).
absl::StatusOr<v1::GenerateRequest> BuildChatRequest(const GenerateFlags& flags,
                                                     const std::vector<ChatTurn>& turns);

// `argument`, or all of `input` when it is "-" (bounded by kMaxStdinPromptBytes).
absl::StatusOr<std::string> ReadPromptArgument(const std::string& argument, std::istream& input);

}  // namespace moeserve::cli
