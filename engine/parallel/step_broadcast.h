// How the driving rank hands each step to the other ranks of a model-parallel group when some
// of them live in other processes (`--nnodes` > 1; docs/parallel.md).
//
// Only node 0 runs the engine: its scheduler forms each ForwardBatch. Global rank 0 announces
// the step — what to run, the batch and the options, encoded by EncodeStep — with one
// Communicator::BroadcastBytes over the whole group, and every rank, on every node, runs its
// shard on the decoded copy. A node other than 0 has no engine at all: its rank threads sit in
// FollowSteps until rank 0 announces kStop (the driver's shutdown). The encoding is checked on
// decode (lengths, counts, enum values), so a corrupt message fails with DataLoss instead of
// driving a forward with garbage.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/batch/forward_batch.h"
#include "engine/batch/forward_options.h"
#include "engine/parallel/communicator.h"

namespace moeserve::engine {

struct StepMessage {
  enum class Kind : int32_t {
    kForward = 1,        // logits to the host on rank 0
    kForwardArgmax = 2,  // greedy ids on rank 0
    kStop = 3,           // the driver is shutting down: leave FollowSteps
  };
  Kind kind = Kind::kForward;
  ForwardBatch batch;
  ForwardOptions options;
};

std::string EncodeStep(const StepMessage& step);
// DataLoss naming what is wrong for a truncated or inconsistent encoding.
absl::StatusOr<StepMessage> DecodeStep(const std::string& bytes);

// Rank 0 broadcasts `step`; every other rank's `step` is replaced by it. Collective.
absl::Status ExchangeStep(Communicator& comm, StepMessage& step);

// A following rank's loop (any rank but 0): receive each step and run it, until kStop (returns OK)
// or an error (the step's or the communicator's, returned as is).
absl::Status FollowSteps(Communicator& comm,
                         const std::function<absl::Status(const StepMessage&)>& run_step);

}  // namespace moeserve::engine
