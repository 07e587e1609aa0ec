// Engine TokenEvents → moeserve.v1 GenerateResponse messages for one Generate stream.
//
// GenerateStream owns one ResponseBuilder per call and feeds it every event in order: each
// event that carries tokens or text becomes a GenerateStreamChunk (ids, text delta, logprobs
// when asked for, cumulative usage), and the final event also becomes the GenerateComplete
// (finish reason, matched stop, usage, timing, and every generated id, accumulated here).
// Not thread-safe: the stream calls it under its own lock.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "engine/request.h"
#include "moeserve/v1/moeserve.pb.h"

namespace moeserve::server {

class ResponseBuilder {
 public:
  // num_logprobs as in engine::SamplingParams: -1 none, 0 chosen token only, N also the top N.
  explicit ResponseBuilder(int32_t num_logprobs) : num_logprobs_(num_logprobs) {}

  // The chunk for `event`, or nothing when it carries neither tokens nor text (a final event
  // after a cancel, say). Records the event's token ids for the complete message.
  std::optional<moeserve::v1::GenerateResponse> Chunk(const engine::TokenEvent& event);

  // The complete message for the final event (event.finish set), after its Chunk.
  moeserve::v1::GenerateResponse Complete(const engine::TokenEvent& event) const;

 private:
  const int32_t num_logprobs_;
  std::vector<uint32_t> output_ids_;  // every token id streamed so far
};

// Seconds between two steady-clock points; 0 when `to` is unset.
double SecondsBetween(engine::Clock::time_point from,
                      const std::optional<engine::Clock::time_point>& to);

}  // namespace moeserve::server
