// The sampling defaults a checkpoint ships in generation_config.json (Hugging Face's
// GenerationConfig): temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens and
// extra end-of-sequence ids. The server applies them to requests that leave a field unset, as
// vLLM does with `--generation-config auto` (issue 22, item 5): the bundled model asks for
// temperature 0.7 and top_p 0.95, and a request must sample the same here as there.
//
// Like vLLM, `do_sample` is not consulted: a checkpoint that ships temperature 0.6 with
// do_sample false still gets 0.6. Keys other than the ones above are ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve::engine {

struct GenerationDefaults {
  std::optional<float> temperature;         // finite, >= 0
  std::optional<float> top_p;               // (0, 1]
  std::optional<int32_t> top_k;             // >= 1, or -1 (off); HF's 0 also means off
  std::optional<float> min_p;               // [0, 1]
  std::optional<float> repetition_penalty;  // finite, > 0
  std::optional<int64_t> max_new_tokens;    // >= 1: the default max_tokens
  std::vector<int64_t> eos_token_ids;       // "eos_token_id", int or list

  bool empty() const;
  // "temperature 0.7, top_p 0.95" for the startup log; "none" when empty.
  std::string Summary() const;
};

// generation_config.json of `model_dir`; no file means no defaults. A value out of range or of
// the wrong type is InvalidArgument naming the file and the field.
absl::StatusOr<GenerationDefaults> LoadGenerationDefaults(const std::string& model_dir);
absl::StatusOr<GenerationDefaults> ParseGenerationDefaults(const std::string& text,
                                                           const std::string& source);

}  // namespace moeserve::engine
