#include "engine/runner/cpu_memory_plan.h"

#include <algorithm>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/io/checkpoint.h"
#include "engine/model/weight_footprint.h"
#include "engine/runner/memory_planner.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

// The first line of a small kernel file, or "" if it cannot be read.
std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// MemAvailable from /proc/meminfo, in bytes; -1 if absent.
int64_t MemAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return -1;
}

// memory.max - memory.current of this process's cgroup (v2); -1 without a limit.
int64_t CgroupHeadroomBytes() {
  // /proc/self/cgroup under v2 is the single line "0::/path".
  const std::string line = ReadFirstLine("/proc/self/cgroup");
  if (!line.starts_with("0::")) return -1;
  const std::string path = line.substr(3);
  const std::string dir = "/sys/fs/cgroup" + (path == "/" ? std::string() : path);
  int64_t max = 0, current = 0;
  if (!absl::SimpleAtoi(ReadFirstLine(dir + "/memory.max"), &max)) return -1;  // "max": none
  if (!absl::SimpleAtoi(ReadFirstLine(dir + "/memory.current"), &current)) return -1;
  return std::max<int64_t>(0, max - current);
}

// a · b · c for non-negative factors, INT64_MAX where it would overflow (a flag may ask for
// 2^63 - 1 bytes of KV cache; the plan must refuse it, not wrap around).
int64_t SaturatingProduct(std::initializer_list<int64_t> factors) {
  int64_t product = 1;
  for (const int64_t f : factors) {
    if (f != 0 && product > std::numeric_limits<int64_t>::max() / f) {
      return std::numeric_limits<int64_t>::max();
    }
    product *= f;
  }
  return product;
}

}  // namespace

absl::StatusOr<HostMemory> ReadHostMemory() {
  HostMemory host{.available_bytes = std::numeric_limits<int64_t>::max(), .source = ""};
  if (const int64_t avail = MemAvailableBytes(); avail >= 0) {
    host = {.available_bytes = avail, .source = "MemAvailable"};
  }
  if (const int64_t cgroup = CgroupHeadroomBytes(); cgroup >= 0 && cgroup < host.available_bytes) {
    host = {.available_bytes = cgroup, .source = "cgroup memory.max"};
  }
  if (host.source.empty()) {
    return absl::UnavailableError("cannot read MemAvailable from /proc/meminfo");
  }
  return host;
}

int64_t EstimateCpuActivationBytes(const ModelConfig& c, int64_t max_num_batched_tokens,
                                   int64_t max_num_seqs, int64_t max_model_len) {
  const int64_t heads = c.num_attention_heads;
  const int64_t mlp_width =
      std::max({c.intermediate_size, c.moe_intermediate_size, c.shared_expert_intermediate_size()});
  // Residual, normed input, attention and MLP outputs, the MoE's gathered rows; queries and
  // per-head outputs; latents; gate_up and its activation.
  const int64_t per_token = 6 * c.hidden_size + 2 * heads * (c.qk_head_dim() + c.v_head_dim) +
                            2 * c.kv_cache_dim() + 4 * mlp_width +
                            c.num_experts_per_tok * c.hidden_size;
  const int64_t context = max_model_len * heads * (c.qk_head_dim() + c.v_head_dim) +
                          max_num_batched_tokens * max_model_len;
  const int64_t logits = 2 * max_num_seqs * c.vocab_size;
  return 4 * (max_num_batched_tokens * per_token + context + logits);
}

absl::StatusOr<CpuMemoryPlan> PlanCpuMemory(const CpuMemoryPlanInput& in) {
  CpuMemoryPlan plan;
  const int64_t max = std::numeric_limits<int64_t>::max();
  plan.needed_bytes = 0;
  for (const int64_t part :
       {in.weight_bytes, in.kv_cache_bytes, in.activation_bytes, in.reserve_bytes}) {
    plan.needed_bytes = part > max - plan.needed_bytes ? max : plan.needed_bytes + part;
  }
  const std::string figures = absl::StrCat(
      "weights ", FormatGiB(in.weight_bytes), " + KV cache ", FormatGiB(in.kv_cache_bytes),
      " + activations ", FormatGiB(in.activation_bytes), " + headroom ",
      FormatGiB(in.reserve_bytes), " = ", FormatGiB(plan.needed_bytes));
  if (plan.needed_bytes > in.host.available_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the model does not fit in memory: it needs ", plan.needed_bytes, " bytes (", figures,
        ") but ", in.host.available_bytes, " bytes (", FormatGiB(in.host.available_bytes),
        ") are available (", in.host.source, ")",
        in.activation_basis.empty() ? ""
                                    : absl::StrCat("; activations follow ", in.activation_basis),
        ". Lower --kv-cache-tokens / --kv-cache-memory-bytes or --max-num-batched-tokens, "
        "or hold the weights in fewer bytes with --quantization fp8"));
  }
  plan.summary = absl::StrCat("memory plan: ", figures, " of ", FormatGiB(in.host.available_bytes),
                              " available (", in.host.source, ")");
  return plan;
}

absl::StatusOr<CpuMemoryPlan> PlanCpuModelMemory(const std::string& model_dir,
                                                 const ModelConfig& config, const LoadOptions& load,
                                                 const CpuServingShape& shape) {
  MOESERVE_ASSIGN_OR_RETURN(const Checkpoint checkpoint, Checkpoint::Open(model_dir));
  MOESERVE_ASSIGN_OR_RETURN(HostMemory host, ReadHostMemory());
  const int64_t world = std::max(1, shape.world_size);
  return PlanCpuMemory(CpuMemoryPlanInput{
      .weight_bytes = EstimateWeightBytes(checkpoint, config, load),
      .kv_cache_bytes = SaturatingProduct({world, shape.num_kv_blocks, shape.kv_bytes_per_block}),
      .activation_bytes =
          world * EstimateCpuActivationBytes(config, shape.max_num_batched_tokens,
                                             shape.max_num_seqs, shape.max_model_len),
      .host = std::move(host),
      .activation_basis =
          absl::StrCat("config.json's vocab_size ", config.vocab_size, " and hidden_size ",
                       config.hidden_size, ", ", shape.max_num_batched_tokens, " batched tokens, ",
                       shape.max_num_seqs, " sequences, max_model_len ", shape.max_model_len)});
}

}  // namespace moeserve::engine
