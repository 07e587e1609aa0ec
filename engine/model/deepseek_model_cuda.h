// A DeepSeek-V2/V3 causal LM on one GPU: the CUDA backend (the runner puts it behind its
// StepModel seam with CudaStepModel, engine/runner/cuda_step_model.h).
//
// The same forward as DeepseekModel (deepseek_model.h), on device weights (CudaModelWeights:
// FP8 block-scaled or BF16 linears, FP8 MoE experts) and a BF16 paged latent cache of
// [num_blocks, 64, 576] per layer that this object owns. The residual stream is BF16 with
// fp32 norm statistics. For each step, sequences with one new token (decode) attend in the
// absorbed form with the MLA decode kernel, all of them in one launch; sequences with several
// (prefill chunks) expand their cached latents through kv_b_proj and run the MHA prefill
// kernel, as the CPU backend's MlaForm::kAuto does. The host reorders the batch so the decode
// sequences come first (their tokens then form one contiguous run), and puts the logits back
// in the caller's order. Every activation comes from the context's arena: no cudaMalloc per
// step. MTP modules loaded with the weights (speculative decoding) get one latent-cache layer
// each after the main stack's, and run through ForwardMtp. Created by LoadCudaRunner
// (engine/runner/cuda_runner.h); engine thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/batch/forward_batch.h"
#include "engine/batch/forward_options.h"
#include "engine/model/cuda_model_weights.h"
#include "engine/model/model_config.h"
#include "engine/ops/cuda/cuda_context.h"
#include "engine/ops/linear/gemm_cublaslt.h"
#include "engine/parallel/communicator.h"
#include "engine/parallel/parallel_config.h"

namespace moeserve::engine {

// The largest step the arena must hold.
struct CudaStepLimits {
  int64_t max_num_batched_tokens = 0;
  int64_t max_num_seqs = 0;
  int64_t max_model_len = 0;
};

// Steps replayed from captured CUDA graphs. A batch whose sequences all have the same q new
// tokens and ask for the same number of logits (a decode step: q = 1; a speculative
// verification: q = 1 + k; an MTP pass or draft step), all in the absorbed MLA form, is padded to
// the next of `batch_sizes` (decode_padding.h); the graph for that (forward, size, q, logits per
// sequence) is captured the first time it runs and replayed afterwards, so a step costs one graph
// launch instead of ~20 launches per layer. Padded steps stay within MoeLayerCuda::
// kGroupedMaxTokens tokens (the MoE path without host syncs) and the step limits the arena was
// sized for. The captured MLA decode split plan is the one for max_model_len.
struct CudaGraphOptions {
  std::vector<int64_t> batch_sizes = {1, 2, 4, 8, 16, 32};  // ascending; empty: always eager
  int64_t max_model_len = 0;
  // The arena's step limits (CudaStepLimits); 0: no bound beyond the sizes.
  int64_t max_num_batched_tokens = 0;
  int64_t max_num_seqs = 0;
};

class DeepseekModelCuda {
 public:
  // Bytes of latent cache per block over all layers (BF16, 64 × 576 per layer): the main
  // stack's and one per loaded MTP module.
  static int64_t KvBytesPerBlock(const ModelConfig& config, int64_t mtp_modules = 0);
  // Arena bytes one step within `limits` takes at most (with margin) for these weights.
  static size_t ActivationBytes(const ModelConfig& config, const CudaModelWeights& weights,
                                const CudaStepLimits& limits, int num_sms);

  // Allocates the KV pool (zeroed) of num_kv_blocks blocks. The context's arena must already
  // hold ActivationBytes(...). `context` and `gemm` are the ones the weights were uploaded
  // with; the model owns all of them.
  static absl::StatusOr<std::unique_ptr<DeepseekModelCuda>> Create(
      std::unique_ptr<CudaContext> context, std::unique_ptr<CublasLtGemm> gemm, ModelConfig config,
      CudaModelWeights weights, int64_t num_kv_blocks);

  ~DeepseekModelCuda();

  // Makes this model one rank's shard of a model-parallel group (its weights uploaded with the
  // rank's CudaWeightShard). Partial sums are all-reduced in bf16 over `comm`: after o_proj and
  // the dense MLP when tensor_parallel_size > 1, after every MoE layer when either size is > 1.
  // `comm` must queue on context().stream() without waiting (NcclOptions::stream), so the
  // collectives sit in stream order between the kernels and a CUDA graph captures them; it
  // must outlive the model. Every rank must then run the same steps (step_broadcast.h).
  absl::Status SetRankGroup(Communicator* comm, const ParallelConfig& parallel);

  // InvalidArgument for sizes that are not ascending, not positive, above
  // MoeLayerCuda::kGroupedMaxTokens, or a max_model_len below 1 with sizes given. Drops graphs
  // captured before.
  absl::Status SetCudaGraphs(CudaGraphOptions options);

  const ModelConfig& config() const { return config_; }
  absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch,
                                             const ForwardOptions& options);
  // The argmax runs on the device; only [num_seqs] ids are copied back.
  absl::StatusOr<std::vector<int32_t>> ForwardArgmax(const ForwardBatch& batch,
                                                     const ForwardOptions& options);
  int64_t num_kv_blocks() const { return num_kv_blocks_; }
  int64_t num_mtp_modules() const { return static_cast<int64_t>(weights_.mtp.size()); }

  // DeepseekModel::ForwardWithHidden's contract: the logits, and every token's state after the
  // final norm ([num_tokens, hidden] fp32 from the BF16 stream, the caller's token order).
  // A verification step of uniform shape replays a graph (CudaGraphOptions).
  absl::StatusOr<ForwardOutput> ForwardWithHidden(const ForwardBatch& batch,
                                                  const ForwardOptions& options);
  // DeepseekModel::ForwardMtp's contract: token i is t_{i+1}, prev_hidden [num_tokens, hidden]
  // the previous depth's state at position i; writes the module's latents into its KV layer and
  // returns the logits of t_{i+2} for the rows `options` selects, with the module's states after
  // shared_head.norm for those rows (logits_per_sequence 0: none for that sequence; its block
  // still runs here, its row dropped). Replays a graph as ForwardWithHidden does.
  absl::StatusOr<ForwardOutput> ForwardMtp(int64_t module, const ForwardBatch& batch,
                                           absl::Span<const float> prev_hidden,
                                           const ForwardOptions& options);
  int64_t kv_bytes_per_token() const;
  std::vector<int64_t> expert_token_counts() const;

  // Forward without the copy to the host: fp32 logits stay in the arena until the next step,
  // [rows, vocab] with rows = num_seqs or num_tokens (benchmarks time this, plus an argmax).
  struct DeviceLogits {
    const float* data = nullptr;
    int64_t rows = 0;
  };
  absl::StatusOr<DeviceLogits> ForwardOnDevice(const ForwardBatch& batch,
                                               const ForwardOptions& options);

  CudaContext& context() { return *context_; }
  const CudaModelWeights& weights() const { return weights_; }
  size_t arena_peak_bytes() const { return context_->arena().peak_bytes(); }
  // Graphs whose capture failed and now run eagerly, with the reason.
  const std::vector<absl::Status>& capture_failures() const { return capture_failures_; }
  // Forward passes (main stack or MTP module) so far that replayed a CUDA graph, and those that
  // ran eagerly (shapes beyond the graph limits, prefill chunks, failed captures, graphs off):
  // what a benchmark reports beside its timings.
  struct ForwardCounts {
    int64_t graphed = 0;
    int64_t eager = 0;
  };
  const ForwardCounts& forward_counts() const { return forward_counts_; }

 private:
  struct StepInputs;  // one step's device inputs and layout (deepseek_model_cuda.cc)
  // What a step leaves in the arena: the logits, and the BF16 states that go with them (the
  // main stack: every token's after the final norm, attention order; an MTP module: the logits
  // rows' after shared_head.norm, the caller's order).
  struct DeviceStep {
    DeviceLogits logits;
    const uint16_t* hidden = nullptr;
  };
  // Which graph a padded step replays.
  struct GraphKey {
    int64_t module = -1;  // -1: the main stack; else that MTP module
    int64_t num_seqs = 0;
    int64_t tokens_per_seq = 1;
    int64_t logits_per_seq = 1;
    auto operator<=>(const GraphKey&) const = default;
  };
  struct StepGraph {
    void* exec = nullptr;  // cudaGraphExec_t
    DeviceStep outputs;
    size_t arena_end = 0;     // arena bytes in use once the graph's buffers are taken
    bool eager_only = false;  // capture failed (on some rank): this key runs padded, eagerly
  };

  DeepseekModelCuda(std::unique_ptr<CudaContext> context, std::unique_ptr<CublasLtGemm> gemm,
                    ModelConfig config, CudaModelWeights weights)
      : context_(std::move(context)),
        gemm_(std::move(gemm)),
        config_(std::move(config)),
        weights_(std::move(weights)) {}

  // Resets the arena, orders the batch for attention and uploads its inputs.
  absl::Status PrepareStep(const ForwardBatch& batch, const ForwardOptions& options,
                           StepInputs& in);
  // The step's device work, from the uploaded inputs to the logits (what a graph captures).
  // `final_hidden`, when given, receives every token's final-normed state (attention order),
  // valid until the next step.
  absl::StatusOr<DeviceLogits> RunStep(const StepInputs& in,
                                       const uint16_t** final_hidden = nullptr);
  // One decoder layer on the residual `h`: `first` when no earlier branch is pending (the
  // input norm then adds nothing). Leaves the layer's MLP output in `branch`, to be added by the
  // next norm. The arena is rewound to `mark` between its halves.
  absl::Status RunLayer(const CudaLayerWeights& layer, int64_t kv_layer, const StepInputs& in,
                        bool first, size_t mark, uint16_t* h, uint16_t* normed, uint16_t* branch);
  // logits = rows `in.logit_rows` of `normed` · headᵀ (fp32); the gathered rows go to
  // `final_rows`.
  absl::StatusOr<DeviceLogits> Head(const StepInputs& in, const CudaLinear& head,
                                    const uint16_t* normed, uint16_t* final_rows);
  // The logits on the host (waits for the stream).
  absl::StatusOr<std::vector<float>> LogitsToHost(const DeviceLogits& logits);
  // The first `device_rows` BF16 rows of the hidden size on the device → `count` host fp32 rows:
  // row i is device row (*order)[i] when `order` (AttentionOrderedBatch::new_index) is given,
  // else row i.
  absl::StatusOr<std::vector<float>> HiddenToHost(const uint16_t* rows, int64_t device_rows,
                                                  int64_t count, const std::vector<int32_t>* order);
  // The graph `batch` can replay under `options` as `module`'s step (nullopt: run it eagerly).
  std::optional<GraphKey> GraphFor(int64_t module, const ForwardBatch& batch,
                                   const ForwardOptions& options) const;
  // PrepareStep for a step run eagerly (no key), or for `batch` padded to key->num_seqs
  // sequences, with the MLA split plan for max_model_len, for its graph.
  absl::Status PrepareStepFor(const std::optional<GraphKey>& key, const ForwardBatch& batch,
                              const ForwardOptions& options, StepInputs& in);
  // `body` eagerly (no key), or through RunCaptured with the logits cut to the batch's
  // num_seqs real sequences.
  absl::StatusOr<DeviceStep> RunStepFor(const std::optional<GraphKey>& key, int64_t num_seqs,
                                        const std::function<absl::StatusOr<DeviceStep>()>& body);
  // `body`, the device work of a step whose inputs sit in the arena below its current mark,
  // from the graph for `key`: run eagerly once, then captured, then replayed; eagerly on every
  // call when capture failed. The outputs' rows are the padded step's.
  absl::StatusOr<DeviceStep> RunCaptured(const GraphKey& key,
                                         const std::function<absl::StatusOr<DeviceStep>()>& body);
  // RunStep with its final-normed states.
  absl::StatusOr<DeviceStep> RunMainStep(const StepInputs& in);
  // A pass whose sequences ran different numbers of positions (a speculative step's, when
  // they accepted different numbers of drafts) as one uniform group per count, each replaying
  // its graph; nullopt when some group cannot (or the options ask for other logits than each
  // sequence's last), and the pass then runs eagerly as a whole.
  absl::StatusOr<std::optional<ForwardOutput>> ForwardMtpInGroups(
      int64_t module, const ForwardBatch& batch, absl::Span<const float> prev_hidden,
      const ForwardOptions& options);
  // ForwardMtp's device work after the previous states `prev` (attention order) are uploaded.
  absl::StatusOr<DeviceStep> RunMtpStep(int64_t module, const StepInputs& in, const uint16_t* prev);
  int64_t graph_table_width() const {
    return (graph_options_.max_model_len + kKvBlockSize - 1) / kKvBlockSize;
  }
  void DestroyGraphs();

  // y = x · Wᵀ for `rows` rows of x (bf16); y must hold Fp8PaddedTokens(rows) rows.
  absl::Status Linear(const CudaLinear& w, const uint16_t* x, int64_t rows, uint16_t* y);
  absl::Status Mlp(const CudaMlp& mlp, const uint16_t* x, int64_t rows, uint16_t* out);
  absl::Status Attention(const CudaMlaWeights& w, int64_t kv_layer, const StepInputs& in,
                         const uint16_t* x, uint16_t* out);
  absl::Status AttendAbsorbed(const CudaMlaWeights& w, const StepInputs& in, const uint16_t* q,
                              const uint16_t* pages, uint16_t* attn);
  absl::Status AttendNaive(const CudaMlaWeights& w, const StepInputs& in, int64_t seq,
                           const uint16_t* q, const uint16_t* pages, uint16_t* attn);
  uint16_t* layer_pages(int64_t layer) const;
  // Whether every rank of the group passes `mine` = true (one tiny all-reduce and a host wait);
  // `mine` alone without a group.
  absl::StatusOr<bool> EveryRankAgrees(bool mine);
  // Sums `rows` hidden-size bf16 rows over the group when `needed` (no-op otherwise).
  absl::Status AllReduceRows(bool needed, uint16_t* rows, int64_t count);

  std::unique_ptr<CudaContext> context_;
  std::unique_ptr<CublasLtGemm> gemm_;
  const ModelConfig config_;
  const CudaModelWeights weights_;
  int64_t num_kv_blocks_ = 0;
  DeviceBuffer kv_pages_;                 // [layers + MTP modules, num_blocks, 64, 576] bf16
  DeviceBuffer expert_token_counts_;      // [layers, n_routed_experts] int64
  std::vector<uint8_t> staging_;          // the step's packed host inputs
  std::vector<uint16_t> hidden_staging_;  // ForwardMtp's previous states, BF16
  CudaGraphOptions graph_options_{.batch_sizes = {}};
  Communicator* comm_ = nullptr;  // null: one rank
  DeviceBuffer agreement_;        // EveryRankAgrees' int32, allocated on first use
  // Why a graph size fell back to eager (kept for the log and tests).
  std::vector<absl::Status> capture_failures_;
  ForwardCounts forward_counts_;
  bool reduce_attention_ = false;  // o_proj and dense MLP outputs are partial sums (TP)
  bool reduce_moe_ = false;        // MoE outputs are partial sums (TP or EP)
  std::map<GraphKey, StepGraph> graphs_;
  // gemm_'s scratch generation the graphs were captured with (RunCaptured).
  uint64_t graphs_scratch_generation_ = 0;
};

}  // namespace moeserve::engine
