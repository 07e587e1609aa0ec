#include "engine/ops/linear/weight_gemm_onednn.h"

#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "engine/ops/cpu/cpu_features.h"

#if MOESERVE_HAVE_ONEDNN
#include "engine/ops/cpu/parallel_for.h"
#include "oneapi/dnnl/dnnl.hpp"
#endif

namespace moeserve::engine {

#if MOESERVE_HAVE_ONEDNN
namespace {

using dnnl::memory;

// One matmul primitive per (N, K, y's row stride, accumulate), with the row count M a run-time
// dimension: primitives are built once and executed from any thread. (x is always the dense
// bf16 copy, row stride K.)
struct Key {
  int64_t n, k, ldy;
  bool accumulate;
  auto operator<=>(const Key&) const = default;
};

struct Plan {
  dnnl::matmul primitive;
  memory::desc src, weights, dst;
};

dnnl::engine& CpuEngine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

const Plan& PlanFor(const Key& key) {
  static std::mutex mu;
  static std::map<Key, Plan>* plans = new std::map<Key, Plan>();
  std::lock_guard lock(mu);
  auto it = plans->find(key);
  if (it != plans->end()) return it->second;
  const memory::dim runtime = DNNL_RUNTIME_DIM_VAL;
  Plan plan;
  plan.src = memory::desc({runtime, key.k}, memory::data_type::bf16, memory::dims{key.k, 1});
  // W is [N, K] row-major: as the [K, N] operand oneDNN multiplies by, that is strides {1, K}.
  plan.weights = memory::desc({key.k, key.n}, memory::data_type::bf16, memory::dims{1, key.k});
  plan.dst = memory::desc({runtime, key.n}, memory::data_type::f32, memory::dims{key.ldy, 1});
  dnnl::primitive_attr attr;
  if (key.accumulate) {
    dnnl::post_ops sum;
    sum.append_sum(1.0f);
    attr.set_post_ops(sum);
  }
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(plan.src, plan.weights, plan.dst), attr,
                                        CpuEngine());
  plan.primitive = dnnl::matmul(pd);
  return plans->emplace(key, std::move(plan)).first->second;
}

uint16_t RoundToBf16(float f) {  // nearest even, as the kAvx512Bf16 kernels round x
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

}  // namespace

bool OneDnnGemmAvailable() { return CpuIsaAvailable(CpuIsa::kAvx512Bf16); }

void WeightGemmOneDnnBf16(const float* x, int64_t ldx, const WeightMatrixView& w, float* y,
                          int64_t ldy, int64_t m, bool accumulate) {
  if (m <= 0) return;
  const int64_t k = w.cols, n = w.rows;
  const Plan& plan = PlanFor(Key{n, k, ldy, accumulate});
  thread_local std::vector<uint16_t> x_bf16;
  x_bf16.resize(static_cast<size_t>(m * k));
  uint16_t* const rounded = x_bf16.data();  // this thread's buffer, shared with the team below
  ParallelFor(m, m * k > (1 << 16), [&](int64_t r) {
    for (int64_t c = 0; c < k; ++c) rounded[r * k + c] = RoundToBf16(x[r * ldx + c]);
  });
  const memory::desc src({m, k}, memory::data_type::bf16, memory::dims{k, 1});
  const memory::desc dst({m, n}, memory::data_type::f32, memory::dims{ldy, 1});
  memory src_memory(src, CpuEngine(), rounded);
  memory weight_memory(plan.weights, CpuEngine(), const_cast<void*>(w.data));
  memory dst_memory(dst, CpuEngine(), y);
  dnnl::stream stream(CpuEngine());
  plan.primitive.execute(
      stream,
      {{DNNL_ARG_SRC, src_memory}, {DNNL_ARG_WEIGHTS, weight_memory}, {DNNL_ARG_DST, dst_memory}});
  stream.wait();
}

#else  // built without oneDNN

bool OneDnnGemmAvailable() { return false; }

void WeightGemmOneDnnBf16(const float* x, int64_t ldx, const WeightMatrixView& w, float* y,
                          int64_t ldy, int64_t m, bool accumulate) {
  // Unreachable behind OneDnnGemmAvailable(); the same numerics on our own kernel regardless.
  WeightGemmCpu(x, ldx, w, y, ldy, m, accumulate, CpuIsa::kAvx512Bf16);
}

#endif

}  // namespace moeserve::engine
