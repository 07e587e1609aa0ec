// Turns a sampled token into the request's next TokenEvent: text delta from the incremental
// detokenizer, stop decision, usage and timestamps. Engine thread only.
#pragma once

#include "engine/request.h"
#include "engine/sampling/sampler.h"
#include "engine/scheduler/sequence.h"

namespace moeserve::engine {

// `sequence` already holds `token` as its last token. The event's `finish` is set when the
// sequence must end here.
TokenEvent ProcessSampledToken(Sequence& sequence, const SampledToken& token);

// The final event of a sequence ended by the engine itself (cancel, shutdown, error):
// releases held text and unfinished characters.
TokenEvent MakeFinalEvent(Sequence& sequence, FinishReason reason, std::string error_message = "");

}  // namespace moeserve::engine
