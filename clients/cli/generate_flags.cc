#include "clients/cli/generate_flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace moeserve::cli {
namespace {

// "1, 2,3" -> {1, 2, 3}.
absl::StatusOr<std::vector<uint32_t>> ParseTokenIds(const std::string& text) {
  std::vector<uint32_t> ids;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    uint32_t id = 0;
    if (!absl::SimpleAtoi(piece, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-ids: '", piece, "' is not a token id (want e.g. \"1,2,3\")"));
    }
    ids.push_back(id);
  }
  return ids;
}

// "ID=BIAS" -> (ID, BIAS).
absl::Status AddLogitBias(const std::string& entry, v1::SamplingParams& params) {
  const std::vector<absl::string_view> parts = absl::StrSplit(entry, absl::MaxSplits('=', 1));
  uint32_t id = 0;
  float bias = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &id) || !absl::SimpleAtof(parts[1], &bias)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--logit-bias: '", entry, "' is not ID=BIAS (e.g. 42=-100)"));
  }
  (*params.mutable_logit_bias())[id] = bias;
  return absl::OkStatus();
}

// All of `input` (a "-" prompt), refusing more than kMaxStdinPromptBytes before buffering it.
absl::StatusOr<std::string> ReadBounded(std::istream& input) {
  std::string text;
  char buffer[65536];
  while (input.read(buffer, sizeof(buffer)) || input.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(input.gcount()));
    if (text.size() > kMaxStdinPromptBytes) {
      return absl::InvalidArgumentError(absl::StrCat("PROMPT -: stdin holds more than ",
                                                     kMaxStdinPromptBytes,
                                                     " bytes; give a shorter prompt"));
    }
  }
  if (input.bad()) return absl::InvalidArgumentError("PROMPT -: cannot read stdin");
  return text;
}

}  // namespace

void AddGenerateFlags(CLI::App& command, GenerateFlags& flags) {
  command.add_option("PROMPT", flags.prompt, "prompt text; - reads it from stdin (or --token-ids)");
  command.add_option("--token-ids", flags.token_ids,
                     "comma-separated prompt token ids, used as given, instead of PROMPT");
  command.add_flag("--no-add-special-tokens", flags.no_add_special_tokens,
                   "do not add BOS etc. when tokenizing PROMPT");
  AddSamplingFlags(command, flags);
}

void AddSamplingFlags(CLI::App& command, GenerateFlags& flags) {
  command.add_option("--max-tokens", flags.max_tokens, "tokens to generate at most (server: 16)");
  command.add_option("--min-tokens", flags.min_tokens, "tokens to generate before EOS/stop ids");
  command.add_option("--temperature", flags.temperature, "0 = greedy (server: 1.0)");
  command.add_option("--top-p", flags.top_p, "nucleus sampling, (0, 1]");
  command.add_option("--top-k", flags.top_k, "-1 = off, or >= 1");
  command.add_option("--min-p", flags.min_p, "[0, 1]");
  command.add_option("--repetition-penalty", flags.repetition_penalty, "> 0; 1 = off");
  command.add_option("--frequency-penalty", flags.frequency_penalty, "[-2, 2]");
  command.add_option("--presence-penalty", flags.presence_penalty, "[-2, 2]");
  command.add_option("--seed", flags.seed, "sampling seed (server: random per request)");
  // One value per occurrence, so `--stop . PROMPT` leaves PROMPT positional.
  command.add_option("--stop", flags.stop, "stop string (repeatable)")->allow_extra_args(false);
  command.add_option("--stop-token-id", flags.stop_token_ids, "stop token id (repeatable)")
      ->allow_extra_args(false);
  command.add_flag("--ignore-eos", flags.ignore_eos, "keep generating after EOS");
  command.add_flag("--include-stop-str", flags.include_stop_str,
                   "include the matched stop string in the output");
  command.add_option("--logprobs", flags.logprobs,
                     "0 = logprob of each token; N in [1, 20] = also the top N (see --json)");
  command.add_option("--logit-bias", flags.logit_bias, "ID=BIAS, bias in [-100, 100] (repeatable)")
      ->allow_extra_args(false);
  command.add_flag("--no-skip-special-tokens", flags.no_skip_special_tokens,
                   "show special tokens in the text");

  command.add_option("--priority", flags.priority, "lower is served first (default 0)");
  command.add_option("--request-id", flags.request_id, "default: assigned by the server");
  command.add_option("--timeout", flags.timeout_seconds, "deadline in seconds (default: none)");
  command.add_flag("--json", flags.json, "print each GenerateResponse as one JSON line");
  command.add_flag("--stats", flags.stats, "print usage and timing to stderr");
}

absl::StatusOr<v1::GenerateRequest> BuildGenerateRequest(const GenerateFlags& flags,
                                                         std::istream& input) {
  v1::GenerateRequest request;
  if (flags.prompt.has_value() == flags.token_ids.has_value()) {
    return absl::InvalidArgumentError("give either PROMPT or --token-ids");
  }
  if (flags.token_ids.has_value()) {
    absl::StatusOr<std::vector<uint32_t>> ids = ParseTokenIds(*flags.token_ids);
    if (!ids.ok()) return ids.status();
    request.mutable_tokenized()->mutable_input_ids()->Assign(ids->begin(), ids->end());
  } else if (*flags.prompt == "-") {
    absl::StatusOr<std::string> text = ReadBounded(input);
    if (!text.ok()) return text.status();
    request.set_text(*std::move(text));
    if (flags.no_add_special_tokens) request.set_add_special_tokens(false);
  } else {
    request.set_text(*flags.prompt);
    if (flags.no_add_special_tokens) request.set_add_special_tokens(false);
  }
  if (absl::Status status = FillSamplingAndOptions(flags, request); !status.ok()) return status;
  return request;
}

absl::Status FillSamplingAndOptions(const GenerateFlags& flags, v1::GenerateRequest& request) {
  request.set_request_id(flags.request_id);
  request.set_priority(flags.priority);

  v1::SamplingParams& params = *request.mutable_sampling_params();
  if (flags.max_tokens) params.set_max_tokens(*flags.max_tokens);
  params.set_min_tokens(flags.min_tokens);
  if (flags.temperature) params.set_temperature(*flags.temperature);
  if (flags.top_p) params.set_top_p(*flags.top_p);
  if (flags.top_k) params.set_top_k(*flags.top_k);
  if (flags.min_p) params.set_min_p(*flags.min_p);
  if (flags.repetition_penalty) params.set_repetition_penalty(*flags.repetition_penalty);
  if (flags.frequency_penalty) params.set_frequency_penalty(*flags.frequency_penalty);
  if (flags.presence_penalty) params.set_presence_penalty(*flags.presence_penalty);
  if (flags.seed) params.set_seed(*flags.seed);
  for (const std::string& stop : flags.stop) params.add_stop(stop);
  for (uint32_t id : flags.stop_token_ids) params.add_stop_token_ids(id);
  params.set_ignore_eos(flags.ignore_eos);
  params.set_include_stop_str_in_output(flags.include_stop_str);
  if (flags.logprobs) params.set_logprobs(*flags.logprobs);
  for (const std::string& entry : flags.logit_bias) {
    if (absl::Status status = AddLogitBias(entry, params); !status.ok()) return status;
  }
  if (flags.no_skip_special_tokens) params.set_skip_special_tokens(false);
  return absl::OkStatus();
}

absl::StatusOr<v1::GenerateRequest> BuildChatRequest(const GenerateFlags& flags,
                                                     const std::vector<ChatTurn>& turns) {
  v1::GenerateRequest request;
  for (const ChatTurn& turn : turns) {
    v1::ChatMessage& message = *request.mutable_chat()->add_messages();
    message.set_role(turn.role);
    message.set_content(turn.content);
  }
  if (absl::Status status = FillSamplingAndOptions(flags, request); !status.ok()) return status;
  return request;
}

absl::StatusOr<std::string> ReadPromptArgument(const std::string& argument, std::istream& input) {
  if (argument != "-") return argument;
  return ReadBounded(input);
}

}  // namespace moeserve::cli
