#include "engine/stop_checker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace moeserve::engine {
namespace {

bool Contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "error";
}

absl::Status ValidateStopConditions(const StopConditions& c) {
  if (c.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1, got ", c.max_new_tokens));
  }
  if (c.min_new_tokens < 0 || c.min_new_tokens > c.max_new_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("min_new_tokens must be in [0, max_new_tokens=",
                                                   c.max_new_tokens, "], got ", c.min_new_tokens));
  }
  if (c.stop_strings.size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(absl::StrCat("stop: at most ", kMaxStopStrings,
                                                   " stop strings, got ", c.stop_strings.size()));
  }
  for (size_t i = 0; i < c.stop_strings.size(); ++i) {
    if (c.stop_strings[i].empty() || c.stop_strings[i].size() > kMaxStopStringBytes) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] must be 1..",
                                                     kMaxStopStringBytes, " bytes, got ",
                                                     c.stop_strings[i].size()));
    }
  }
  return absl::OkStatus();
}

StopChecker::StopChecker(StopConditions conditions) : conditions_(std::move(conditions)) {}

StopDecision StopChecker::OnToken(int32_t token_id, std::string_view text_delta,
                                  int64_t num_generated) {
  StopDecision decision;
  const bool may_stop = num_generated >= conditions_.min_new_tokens;
  const bool is_eos = !conditions_.ignore_eos && Contains(conditions_.eos_token_ids, token_id);
  if (may_stop && (is_eos || Contains(conditions_.stop_token_ids, token_id))) {
    // The stopping token's own text is dropped unless asked for (vLLM).
    if (conditions_.include_stop_string) held_.append(text_delta);
    decision.text = Flush();
    decision.finish = FinishReason::kStop;
    decision.matched_stop_token = token_id;
    return decision;
  }

  // held_ keeps at most a stop string's length of earlier text, so searching it whole is cheap
  // and finds matches that span token boundaries.
  held_.append(text_delta);
  if (may_stop && !conditions_.stop_strings.empty()) {
    size_t best = std::string::npos;
    const std::string* best_stop = nullptr;
    for (const std::string& stop : conditions_.stop_strings) {
      const size_t at = held_.find(stop);
      if (at != std::string::npos &&
          (at < best || (at == best && stop.size() > best_stop->size()))) {
        best = at;
        best_stop = &stop;
      }
    }
    if (best_stop != nullptr) {
      decision.text =
          held_.substr(0, conditions_.include_stop_string ? best + best_stop->size() : best);
      held_.clear();
      decision.finish = FinishReason::kStop;
      decision.matched_stop_string = *best_stop;
      return decision;
    }
  }
  if (num_generated >= conditions_.max_new_tokens) {
    decision.text = Flush();
    decision.finish = FinishReason::kLength;
    return decision;
  }
  const size_t emit = held_.size() - HeldBackLength();
  decision.text = held_.substr(0, emit);
  held_.erase(0, emit);
  return decision;
}

std::string StopChecker::Flush() {
  std::string text;
  text.swap(held_);
  return text;
}

size_t StopChecker::HeldBackLength() const {
  size_t longest = 0;
  for (const std::string& stop : conditions_.stop_strings) {
    const size_t limit = std::min(stop.size() - 1, held_.size());
    for (size_t n = limit; n > longest; --n) {
      if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}

}  // namespace moeserve::engine
