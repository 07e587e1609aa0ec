#include "engine/parallel/parallel_model.h"

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
absl::StatusOr<std::unique_ptr<ParallelModel>> ParallelModel::Load(
    const std::string& model_dir, const LoadOptions& options, const ParallelConfig& parallel,
    std::optional<ExpertPlacement> placement, int omp_threads_per_rank) {
  MOESERVE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir + "/config.json"));
  MOESERVE_RETURN_IF_ERROR(ValidateParallelConfig(parallel, config));
  std::unique_ptr<ParallelModel> model(new ParallelModel());
  model->parallel_ = parallel;
  const int world = parallel.world_size();
  if (parallel.expert_parallel_size > 1) {
    if (!placement.has_value()) {
      placement = ContiguousPlacement(MoeLayerMask(config), config.n_routed_experts,
                                      parallel.expert_parallel_size);
    }
    MOESERVE_RETURN_IF_ERROR(ValidatePlacement(
        *placement, MoeLayerMask(config), config.n_routed_experts, parallel.expert_parallel_size));
    model->placement_ = std::move(placement);
  }
  model->owned_.resize(static_cast<size_t>(world));
  if (world == 1) {
    MOESERVE_ASSIGN_OR_RETURN(model->owned_[0], DeepseekModel::Load(model_dir, options));
  } else {
    model->group_ = std::make_unique<ThreadCommGroup>(world);
    model->pool_ = std::make_unique<RankThreadPool>(world, omp_threads_per_rank);
    ParallelModel* m = model.get();
    const std::vector<absl::Status> statuses = m->pool_->Run([&](int rank) -> absl::Status {
      RankContext context{.rank = rank,
                          .parallel = parallel,
                          .comm = &m->group_->rank(rank),
                          .placement = m->placement()};
      MOESERVE_ASSIGN_OR_RETURN(m->owned_[rank],
                                DeepseekModel::LoadShard(model_dir, options, context));
      return absl::OkStatus();
    });
    MOESERVE_RETURN_IF_ERROR(FirstRankError(statuses));
  }
  for (const auto& shard : model->owned_) model->shards_.push_back(shard.get());
  return model;
}

std::unique_ptr<ParallelModel> ParallelModel::Wrap(const DeepseekModel& model) {
  std::unique_ptr<ParallelModel> wrapped(new ParallelModel());
  wrapped->shards_.push_back(&model);
  return wrapped;
}

ParallelModel::~ParallelModel() = default;

std::vector<KvPages> ParallelModel::MakeKvPages(int64_t num_blocks) const {
  std::vector<KvPages> pages;
  for (const DeepseekModel* shard : shards_) pages.push_back(shard->MakeKvPages(num_blocks));
  return pages;
}

template <typename Result, typename Step>
absl::StatusOr<Result> ParallelModel::OnEveryRank(const char* what, const ForwardBatch& batch,
                                                  std::vector<KvPages>& pages, const Step& step) {
  if (pages.size() != shards_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("ParallelModel::", what, ": ", pages.size(),
                                                   " KV page sets for ", shards_.size(), " ranks"));
  }
  if (world_size() == 1) return step(*shards_[0], pages[0]);
  if (group_->aborted()) {
    return absl::FailedPreconditionError(
        "a rank of the model-parallel group failed earlier; the group is unusable");
  }
  // A bad batch fails identically on every rank before any collective, but check it here so
  // that it cannot poison the group.
  MOESERVE_RETURN_IF_ERROR(shards_[0]->ValidateBatch(batch, pages[0]));
  Result out;
  const std::vector<absl::Status> statuses = pool_->Run([&](int rank) -> absl::Status {
    absl::StatusOr<Result> result = step(*shards_[rank], pages[rank]);
    if (!result.ok()) {
      group_->Abort();  // peers waiting in a collective must not wait forever
      return result.status();
    }
    if (rank == 0) out = *std::move(result);
    return absl::OkStatus();
  });
  MOESERVE_RETURN_IF_ERROR(FirstRankError(statuses));
  return out;
}

absl::StatusOr<std::vector<float>> ParallelModel::Forward(const ForwardBatch& batch,
                                                          std::vector<KvPages>& pages,
                                                          const ForwardOptions& options) {
  return OnEveryRank<std::vector<float>>("Forward", batch, pages,
                                         [&](const DeepseekModel& shard, KvPages& rank_pages) {
                                           return shard.Forward(batch, rank_pages, options);
                                         });
}

absl::StatusOr<ForwardOutput> ParallelModel::ForwardWithHidden(const ForwardBatch& batch,
                                                               std::vector<KvPages>& pages,
                                                               const ForwardOptions& options) {
  return OnEveryRank<ForwardOutput>("ForwardWithHidden", batch, pages,
                                    [&](const DeepseekModel& shard, KvPages& rank_pages) {
                                      return shard.ForwardWithHidden(batch, rank_pages, options);
                                    });
}

absl::StatusOr<ForwardOutput> ParallelModel::ForwardMtp(int64_t module, const ForwardBatch& batch,
                                                        absl::Span<const float> prev_hidden,
                                                        std::vector<KvPages>& pages,
                                                        const ForwardOptions& options) {
  if (module < 0 || module >= num_mtp_modules()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MTP module ", module, " is not loaded (", num_mtp_modules(), " are)"));
  }
  // Checked inside each shard too, but here first: a rank's error would abort the group.
  const int64_t expected = batch.num_tokens() * config().hidden_size;
  if (static_cast<int64_t>(prev_hidden.size()) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("MTP prev_hidden has ", prev_hidden.size(), " values; expected ", expected));
  }
  return OnEveryRank<ForwardOutput>(
      "ForwardMtp", batch, pages, [&](const DeepseekModel& shard, KvPages& rank_pages) {
        return shard.ForwardMtp(module, batch, prev_hidden, rank_pages, options);
      });
}

std::vector<int64_t> ParallelModel::expert_token_counts() const {
  std::vector<int64_t> total = shards_[0]->expert_token_counts();
  for (size_t r = 1; r < shards_.size(); ++r) {
    const std::vector<int64_t>& counts = shards_[r]->expert_token_counts();
    for (size_t i = 0; i < total.size(); ++i) total[i] += counts[i];
  }
  return total;
}

}  // namespace moeserve::engine
