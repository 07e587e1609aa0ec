#include "engine/runner/cuda_rank_group.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/ops/cuda/check.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

// One rank's part of a step, on a thread whose current device is the rank's. Rank 0 of the
// group passes `logits` or `ids`; the others only run the same device work (the collectives pair
// up) and wait for it.
absl::Status RunRankStep(CudaRank& rank, const StepMessage& step, std::vector<float>* logits,
                         std::vector<int32_t>* ids) {
  DeepseekModelCuda& model = *rank.model;
  if (logits != nullptr) {
    MOESERVE_ASSIGN_OR_RETURN(*logits, model.Forward(step.batch, step.options));
    return absl::OkStatus();
  }
  if (ids != nullptr) {
    MOESERVE_ASSIGN_OR_RETURN(*ids, model.ForwardArgmax(step.batch, step.options));
    return absl::OkStatus();
  }
  MOESERVE_RETURN_IF_ERROR(model.ForwardOnDevice(step.batch, step.options).status());
  return model.context().Synchronize();
}

// A rank that failed aborts every local communicator, so that its peers blocked in a collective
// it will never join come back (with Aborted) instead of waiting forever.
absl::Status AbortPeersOnError(absl::Status status, std::vector<CudaRank>& ranks) {
  if (!status.ok()) {
    for (CudaRank& rank : ranks) rank.comm->Abort();
  }
  return status;
}

}  // namespace

CudaRankGroup::CudaRankGroup(std::vector<CudaRank> ranks, std::unique_ptr<RankThreadPool> pool,
                             bool announce_steps)
    : ranks_(std::move(ranks)), pool_(std::move(pool)), announce_steps_(announce_steps) {}

CudaRankGroup::~CudaRankGroup() {
  if (announce_steps_ && !failed_) {
    StepMessage stop;
    stop.kind = StepMessage::Kind::kStop;
    (void)pool_->Run([&](int local) -> absl::Status {
      CudaRank& rank = ranks_[static_cast<size_t>(local)];
      MOESERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(rank.device));
      StepMessage received;
      return ExchangeStep(*rank.comm, local == 0 ? stop : received);
    });
  }
  // Each shard frees its device memory on its own device.
  const std::vector<absl::Status> ignored = pool_->Run([&](int local) -> absl::Status {
    CudaRank& rank = ranks_[static_cast<size_t>(local)];
    MOESERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(rank.device));
    rank.model.reset();
    rank.comm.reset();
    return absl::OkStatus();
  });
  (void)ignored;
}

absl::Status CudaRankGroup::RunGroupStep(StepMessage step, std::vector<float>* logits,
                                         std::vector<int32_t>* ids) {
  if (failed_) {
    return absl::FailedPreconditionError(
        "a GPU rank of the model-parallel group failed earlier; the group is unusable");
  }
  MOESERVE_RETURN_IF_ERROR(ValidateForwardBatch(step.batch, config().vocab_size, num_kv_blocks()));
  const std::vector<absl::Status> statuses = pool_->Run([&](int local) -> absl::Status {
    CudaRank& rank = ranks_[static_cast<size_t>(local)];
    MOESERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(rank.device));
    StepMessage received;
    const StepMessage* mine = &step;
    if (announce_steps_) {
      MOESERVE_RETURN_IF_ERROR(
          AbortPeersOnError(ExchangeStep(*rank.comm, local == 0 ? step : received), ranks_));
      if (local != 0) mine = &received;
    }
    return AbortPeersOnError(
        RunRankStep(rank, *mine, local == 0 ? logits : nullptr, local == 0 ? ids : nullptr),
        ranks_);
  });
  if (absl::Status s = FirstRankError(statuses); !s.ok()) {
    failed_ = true;
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> CudaRankGroup::Forward(const ForwardBatch& batch,
                                                          const ForwardOptions& options) {
  std::vector<float> logits;
  MOESERVE_RETURN_IF_ERROR(RunGroupStep(
      StepMessage{.kind = StepMessage::Kind::kForward, .batch = batch, .options = options}, &logits,
      nullptr));
  return logits;
}

absl::StatusOr<std::vector<int32_t>> CudaRankGroup::ForwardArgmax(const ForwardBatch& batch,
                                                                  const ForwardOptions& options) {
  // The followers run the same forward as rank 0's ForwardArgmax: last-token logits.
  ForwardOptions last_tokens = options;
  last_tokens.logits_for = LogitsFor::kLastTokenOfEachSequence;
  std::vector<int32_t> ids;
  MOESERVE_RETURN_IF_ERROR(RunGroupStep(
      StepMessage{
          .kind = StepMessage::Kind::kForwardArgmax, .batch = batch, .options = last_tokens},
      nullptr, &ids));
  return ids;
}

absl::Status CudaRankGroup::Follow(std::vector<CudaRank>& ranks, RankThreadPool& pool) {
  const std::vector<absl::Status> statuses = pool.Run([&](int local) -> absl::Status {
    CudaRank& rank = ranks[static_cast<size_t>(local)];
    MOESERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(rank.device));
    return AbortPeersOnError(FollowSteps(*rank.comm,
                                         [&](const StepMessage& step) {
                                           return RunRankStep(rank, step, nullptr, nullptr);
                                         }),
                             ranks);
  });
  return FirstRankError(statuses);
}

}  // namespace moeserve::engine
