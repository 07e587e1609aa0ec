#include "engine/sampling/sampling_params.h"

#include <cmath>
#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// True for finite x in [lo, hi]; false for NaN.
bool InClosedRange(float x, float lo, float hi) { return std::isfinite(x) && x >= lo && x <= hi; }

absl::Status CheckAdditivePenalty(const char* name, float value) {
  if (InClosedRange(value, -kMaxAdditivePenalty, kMaxAdditivePenalty)) return absl::OkStatus();
  return Invalid(absl::StrCat(name, " must be in [-", kMaxAdditivePenalty, ", ",
                              kMaxAdditivePenalty, "], got ", value));
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p, int64_t vocab_size) {
  if (vocab_size <= 0) return Invalid(absl::StrCat("vocab_size must be > 0, got ", vocab_size));
  if (!std::isfinite(p.temperature) || p.temperature < 0.0f) {
    return Invalid(absl::StrCat("temperature must be finite and >= 0, got ", p.temperature));
  }
  if (p.top_k < -1) {
    return Invalid(absl::StrCat("top_k must be -1 or 0 (disabled) or > 0, got ", p.top_k));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return Invalid(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (!InClosedRange(p.min_p, 0.0f, 1.0f)) {
    return Invalid(absl::StrCat("min_p must be in [0, 1], got ", p.min_p));
  }
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0.0f) {
    return Invalid(
        absl::StrCat("repetition_penalty must be finite and > 0, got ", p.repetition_penalty));
  }
  MOESERVE_RETURN_IF_ERROR(CheckAdditivePenalty("frequency_penalty", p.frequency_penalty));
  MOESERVE_RETURN_IF_ERROR(CheckAdditivePenalty("presence_penalty", p.presence_penalty));
  for (size_t i = 0; i < p.logit_bias.size(); ++i) {
    const auto& [token_id, bias] = p.logit_bias[i];
    if (token_id < 0 || token_id >= vocab_size) {
      return Invalid(absl::StrCat("logit_bias[", i, "]: token id ", token_id,
                                  " is out of range [0, ", vocab_size, ")"));
    }
    if (!InClosedRange(bias, -kMaxLogitBias, kMaxLogitBias)) {
      return Invalid(absl::StrCat("logit_bias[", i, "]: bias for token ", token_id,
                                  " must be in [-", kMaxLogitBias, ", ", kMaxLogitBias, "], got ",
                                  bias));
    }
  }
  if (p.num_logprobs < -1 || p.num_logprobs > kMaxNumLogprobs) {
    return Invalid(
        absl::StrCat("num_logprobs must be in [-1, ", kMaxNumLogprobs, "], got ", p.num_logprobs));
  }
  return absl::OkStatus();
}

}  // namespace moeserve::engine
