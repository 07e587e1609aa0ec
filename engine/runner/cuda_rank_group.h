// A model split over several GPUs: the CUDA backend's tensor and expert parallelism behind the
// StepModel seam (docs/parallel.md).
//
// One process drives its node's GPUs with a thread each (RankThreadPool); rank r of the node
// owns a DeepseekModelCuda shard on its GPU and an NcclCommunicator on that model's stream, so
// the per-layer all-reduces run in stream order between the kernels (and inside the captured
// decode graphs). On node 0 the engine calls Forward / ForwardArgmax; every local rank runs the
// step on its shard and rank 0's logits (or greedy ids) come back. Across nodes (`--nnodes`),
// global rank 0 first announces each step (step_broadcast.h) and the other nodes' ranks, which
// have no engine, run it from the announcement (Follow). Built by LoadCudaRunner
// (cuda_runner.h); engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/deepseek_model_cuda.h"
#include "engine/parallel/nccl_communicator.h"
#include "engine/parallel/rank_thread_pool.h"
#include "engine/parallel/step_broadcast.h"
#include "engine/runner/step_model.h"

namespace moeserve::engine {

// One GPU's share of the group. The communicator is declared first so that it outlives the
// model, whose graphs captured its collectives.
struct CudaRank {
  int device = 0;  // local CUDA device index
  std::unique_ptr<NcclCommunicator> comm;
  std::unique_ptr<DeepseekModelCuda> model;
};

class CudaRankGroup final : public StepModel {
 public:
  // ranks: this node's, in global rank order (node 0's first is global rank 0); every model
  // already joined the group (SetRankGroup) and holds the same num_kv_blocks. announce_steps:
  // other nodes follow (nnodes > 1). The pool has one thread per rank.
  CudaRankGroup(std::vector<CudaRank> ranks, std::unique_ptr<RankThreadPool> pool,
                bool announce_steps);
  // Announces kStop to the following nodes, so their processes exit cleanly.
  ~CudaRankGroup() override;

  // A node other than 0: runs rank 0's announced steps on `ranks` until kStop (OK) or an error.
  static absl::Status Follow(std::vector<CudaRank>& ranks, RankThreadPool& pool);

  const ModelConfig& config() const override { return ranks_[0].model->config(); }
  absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch,
                                             const ForwardOptions& options) override;
  absl::StatusOr<std::vector<int32_t>> ForwardArgmax(const ForwardBatch& batch,
                                                     const ForwardOptions& options) override;
  int64_t num_kv_blocks() const override { return ranks_[0].model->num_kv_blocks(); }
  int64_t kv_bytes_per_token() const override { return ranks_[0].model->kv_bytes_per_token(); }
  // Every rank routes every token, so rank 0's counters are the group's.
  std::vector<int64_t> expert_token_counts() const override {
    return ranks_[0].model->expert_token_counts();
  }

 private:
  // Validates the batch (before any collective, so a bad batch cannot stall the group), then
  // runs the step on every local rank; rank 0 fills `logits` or `ids`.
  absl::Status RunGroupStep(StepMessage step, std::vector<float>* logits,
                            std::vector<int32_t>* ids);

  std::vector<CudaRank> ranks_;
  std::unique_ptr<RankThreadPool> pool_;
  bool announce_steps_;
  // A rank failed inside a step: its peers may be stuck in a collective, the group is unusable.
  bool failed_ = false;
};

}  // namespace moeserve::engine
