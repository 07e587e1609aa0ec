// Validation at the edge: a moeserve.v1 request message → an engine request, or
// INVALID_ARGUMENT whose message starts with the offending field's path in the proto
// ("sampling_params.top_p must be in (0, 1], got 0").
//
// GenerateStream (one per Generate call) calls ValidateGenerateRequest before anything reaches
// the engine; Tokenize and Abort use the smaller checks below. Every field is checked,
// including NaN/inf floats, ids against the model's vocabulary, list sizes, and fields this
// server does not know (a newer client's), so the engine only ever sees requests it can run
// (ARCHITECTURE.md §4 step 2). Thread-safe: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/chat/chat_template.h"
#include "engine/model/generation_config.h"
#include "engine/request.h"
#include "engine/tokenizer/tokenizer.h"
#include "moeserve/v1/moeserve.pb.h"

namespace moeserve::server {

// request_id: at most this many bytes of printable ASCII.
inline constexpr size_t kMaxRequestIdBytes = 256;
// Default max_tokens when the request leaves it unset (then capped by the context length).
inline constexpr int64_t kDefaultMaxTokens = 16;
// stop_token_ids entries: each generated token is compared with all of them.
inline constexpr size_t kMaxStopTokenIds = 1024;
// logit_bias entries (OpenAI allows 300; the vocabulary bounds it anyway).
inline constexpr size_t kMaxLogitBiasEntries = 1024;
// request_ids of one Abort call.
inline constexpr size_t kMaxAbortIds = 1024;
// Messages of one chat input.
inline constexpr size_t kMaxChatMessages = 4096;

struct RequestLimits {
  int64_t vocab_size = 0;     // the model's: token ids must be below it
  int64_t max_model_len = 0;  // prompt + generated tokens of one request
  // The model's end-of-sequence ids (config.json eos_token_id, int or list); a request stops
  // at any of them unless ignore_eos.
  std::vector<int32_t> eos_token_ids;
  // generation_config.json's sampling defaults (`--generation-config auto`): they replace the
  // plain defaults below for fields a request leaves unset.
  engine::GenerationDefaults generation_defaults;
  // The checkpoint's chat template (or --chat-template's) for chat input; null when it has
  // none (chat input is then refused, naming the fix). Outlives the server.
  const engine::ChatTemplate* chat_template = nullptr;
};

// The engine request for `request`: text is tokenized (add_special_tokens, default true), chat
// input is rendered with limits.chat_template and tokenized (add_special_tokens default false),
// proto3-optional fields absent take the checkpoint's generation_config.json value where it has
// one, else their documented defaults (temperature 1, top_p 1, top_k -1, min_p 0,
// repetition_penalty 1, max_tokens min(16, room left in the context)); skip_special_tokens true.
// request_id is copied as given; an empty one is left empty for the caller to assign.
absl::StatusOr<engine::GenerateRequest> ValidateGenerateRequest(
    const moeserve::v1::GenerateRequest& request, const engine::Tokenizer& tokenizer,
    const RequestLimits& limits);

// Non-empty unless allow_empty, at most kMaxRequestIdBytes, printable ASCII (0x20-0x7E), so
// ids are safe in logs and metadata. `field` names it in the error.
absl::Status ValidateRequestId(std::string_view id, std::string_view field, bool allow_empty);

// Token ids of `text` for the Tokenize RPC (add_special_tokens default true).
absl::StatusOr<std::vector<int32_t>> ValidateTokenizeRequest(
    const moeserve::v1::TokenizeRequest& request, const engine::Tokenizer& tokenizer);

// Every id non-empty and valid (ValidateRequestId), at most kMaxAbortIds of them.
absl::Status ValidateAbortRequest(const moeserve::v1::AbortRequest& request);

}  // namespace moeserve::server
