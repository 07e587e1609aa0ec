// Decides when a sequence stops, and which of its text may be streamed yet.
//
// Rules follow vLLM's (vllm/v1/engine/detokenizer.py, sampling_params.py): no condition
// applies before min_new_tokens; EOS stops unless ignore_eos; a stop token id stops; a stop
// string is matched on the detokenized text, across token boundaries, and neither it nor the
// text after it is emitted unless include_stop_string; max_new_tokens ends with "length".
// Text that could be the start of a stop string is held back until it is ruled out, so a
// client never sees part of a stop string. One StopChecker per sequence, used by the
// engine's output processing on the engine thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace moeserve::engine {

enum class FinishReason { kStop, kLength, kAbort, kError };

std::string_view FinishReasonName(FinishReason reason);  // "stop", "length", "abort", "error"

struct StopConditions {
  int64_t max_new_tokens = 16;
  int64_t min_new_tokens = 0;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_token_ids;
  std::vector<int32_t> eos_token_ids;  // the model's; ignored when ignore_eos
  bool ignore_eos = false;
  bool include_stop_string =
      false;  // emit the matched stop string (vLLM include_stop_str_in_output)
};

// Limits that keep per-token matching cheap; the server validates requests against them.
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

// Field-named InvalidArgument for out-of-range conditions (stop strings empty, too many or too
// long, min > max, max < 1).
absl::Status ValidateStopConditions(const StopConditions& conditions);

struct StopDecision {
  std::string text;                           // to stream now (may be empty)
  std::optional<FinishReason> finish;         // set when the sequence ends with this token
  std::string matched_stop_string;            // when a stop string matched
  std::optional<int32_t> matched_stop_token;  // when EOS or a stop token id matched
};

class StopChecker {
 public:
  explicit StopChecker(StopConditions conditions);

  // Called once per generated token with that token's text delta; num_generated counts the
  // tokens generated so far including this one.
  StopDecision OnToken(int32_t token_id, std::string_view text_delta, int64_t num_generated);
  // Releases text still held back (for a finish decided elsewhere, e.g. abort).
  std::string Flush();

 private:
  // Length of the longest suffix of held_ that is a proper prefix of a stop string.
  size_t HeldBackLength() const;

  StopConditions conditions_;
  std::string held_;  // text not yet streamed
};

}  // namespace moeserve::engine
