// Request mixes for engine tests: greedy requests of random lengths, every third sharing a
// 70-token prefix (prefix-cache hits) and the others decoding long enough to need new KV blocks
// (preemption when blocks are few). Used by engine_test and mtp_speculator_test.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/request.h"

namespace moeserve::testing {

inline engine::GenerateRequest GreedyRequest(std::string id, std::vector<int32_t> prompt,
                                             int64_t max_tokens) {
  engine::GenerateRequest r;
  r.request_id = std::move(id);
  r.prompt_token_ids = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.stop.max_new_tokens = max_tokens;
  r.stop.ignore_eos = true;
  return r;
}

// `count` requests with token ids in [3, max_token_id], ids "r0", "r1", ...; every third one
// starts with the same shared_prefix_len tokens.
inline std::vector<engine::GenerateRequest> MixedGreedyRequests(int count, uint64_t seed,
                                                                int32_t max_token_id,
                                                                size_t shared_prefix_len = 70) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> token(3, max_token_id);
  std::vector<int32_t> shared(shared_prefix_len);
  for (auto& t : shared) t = token(rng);
  std::vector<engine::GenerateRequest> requests;
  for (int i = 0; i < count; ++i) {
    const bool shares_prefix = i % 3 == 0;
    std::vector<int32_t> prompt = shares_prefix ? shared : std::vector<int32_t>();
    const int extra = 1 + static_cast<int>(rng() % (shares_prefix ? 100 : 40));
    for (int k = 0; k < extra; ++k) prompt.push_back(token(rng));
    const int64_t max_tokens = shares_prefix ? 4 + rng() % 20 : 60 + rng() % 80;
    requests.push_back(GreedyRequest(absl::StrCat("r", i), prompt, max_tokens));
  }
  return requests;
}

}  // namespace moeserve::testing
