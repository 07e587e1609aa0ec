// A model split over the ranks of one process: the shards, their communicator group and a
// persistent thread per rank (the CPU backend's tensor and expert parallelism).
//
// The model runner calls Forward once per step; every rank thread runs its DeepseekModel shard
// on the same batch against its own KV pages (the latent cache is replicated: each rank holds
// a full copy, as each GPU would) and rank 0's logits come back. With one rank there is no
// thread and no communicator: Forward runs on the caller's thread, so a single-rank engine
// behaves exactly as before. See docs/parallel.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/deepseek_model.h"
#include "engine/parallel/expert_placement.h"
#include "engine/parallel/parallel_config.h"
#include "engine/parallel/rank_thread_pool.h"
#include "engine/parallel/thread_communicator.h"

namespace moeserve::engine {

class ParallelModel {
 public:
  // Loads every rank's shard in parallel, each on its own rank thread. placement: for
  // expert_parallel_size > 1 (default: the contiguous partition); ignored otherwise.
  // omp_threads_per_rank as in RankThreadPool.
  static absl::StatusOr<std::unique_ptr<ParallelModel>> Load(
      const std::string& model_dir, const LoadOptions& options, const ParallelConfig& parallel,
      std::optional<ExpertPlacement> placement = std::nullopt, int omp_threads_per_rank = 0);

  // One rank around an already loaded model, which must outlive the result.
  static std::unique_ptr<ParallelModel> Wrap(const DeepseekModel& model);

  ~ParallelModel();

  const ModelConfig& config() const { return shards_[0]->config(); }
  const ParallelConfig& parallel() const { return parallel_; }
  int world_size() const { return static_cast<int>(shards_.size()); }
  const DeepseekModel& shard(int rank) const { return *shards_[static_cast<size_t>(rank)]; }
  // The expert layout in use (null without expert parallelism).
  const ExpertPlacement* placement() const { return placement_ ? &*placement_ : nullptr; }

  // One set of KV pages per rank.
  std::vector<KvPages> MakeKvPages(int64_t num_blocks) const;

  // One step on every rank; rank 0's logits (every rank computes the same). The batch is
  // validated once up front (InvalidArgument, the group stays usable); an error inside a rank
  // aborts the communicator group, and every later call fails with FailedPrecondition.
  absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch, std::vector<KvPages>& pages,
                                             const ForwardOptions& options = {});

  // DeepseekModel::ForwardWithHidden and ForwardMtp on every rank, as Forward; rank 0's output.
  // The MTP modules are those each shard loaded (LoadOptions::load_mtp), cut like its layers.
  int64_t num_mtp_modules() const { return shards_[0]->num_mtp_modules(); }
  absl::StatusOr<ForwardOutput> ForwardWithHidden(const ForwardBatch& batch,
                                                  std::vector<KvPages>& pages,
                                                  const ForwardOptions& options = {});
  absl::StatusOr<ForwardOutput> ForwardMtp(int64_t module, const ForwardBatch& batch,
                                           absl::Span<const float> prev_hidden,
                                           std::vector<KvPages>& pages,
                                           const ForwardOptions& options = {});

  // Tokens routed to each (layer, expert) so far, summed over ranks: [num_layers, n_experts].
  // Call between steps.
  std::vector<int64_t> expert_token_counts() const;

 private:
  ParallelModel() = default;

  // Validates the batch against rank 0's pages, then runs step(shard, its pages) on every rank
  // (on the caller's thread for one rank) and returns rank 0's result.
  template <typename Result, typename Step>
  absl::StatusOr<Result> OnEveryRank(const char* what, const ForwardBatch& batch,
                                     std::vector<KvPages>& pages, const Step& step);

  ParallelConfig parallel_;
  std::optional<ExpertPlacement> placement_;
  std::unique_ptr<ThreadCommGroup> group_;
  std::unique_ptr<RankThreadPool> pool_;
  std::vector<std::unique_ptr<DeepseekModel>> owned_;
  std::vector<const DeepseekModel*> shards_;
};

}  // namespace moeserve::engine
