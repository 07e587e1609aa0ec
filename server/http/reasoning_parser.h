// Splits a DeepSeek-R1-style output into its reasoning and its answer, as vLLM's
// `deepseek_r1` reasoning parser does: everything before `</think>` is reasoning (a leading
// `<think>` is dropped: R1's template puts it in the prompt, older outputs repeat it), the rest
// is the answer; an output that never closes its thinking is all reasoning.
//
// The chat completions path (server/http/openai_job.cc) keeps one per choice under
// `--reasoning-parser deepseek_r1` and feeds it each text delta; a tag split across deltas is
// held back until it is complete, so a streamed `reasoning_content` never shows a partial tag.
#pragma once

#include <string>
#include <string_view>

namespace moeserve::server {

class ReasoningParser {
 public:
  struct Delta {
    std::string reasoning;
    std::string content;
  };

  // The reasoning and answer text that `text` (the next piece of the output) completes.
  Delta Feed(std::string_view text);
  // The end of the output: what was held back.
  Delta Finish();
  // Whether the output has closed its reasoning (`</think>` seen).
  bool reasoning_ended() const { return !in_reasoning_; }

 private:
  bool in_reasoning_ = true;
  bool start_checked_ = false;  // the leading `<think>` was looked for
  std::string held_;            // a possible prefix of a tag
};

}  // namespace moeserve::server
