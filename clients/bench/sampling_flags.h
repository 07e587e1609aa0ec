// The sampling flags of moeserve-bench (--temperature, --top-p, ...): each is sent only when
// given, so the server's defaults apply otherwise. The gRPC backend turns them into
// SamplingParams (main.cc), the openai backends into body fields (openai_request.cc).
#pragma once

#include <cstdint>
#include <optional>

namespace moeserve::bench {

struct SamplingFlags {
  std::optional<double> temperature, top_p, min_p, frequency_penalty, presence_penalty,
      repetition_penalty;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;  // per-request sampling seed
};

}  // namespace moeserve::bench
