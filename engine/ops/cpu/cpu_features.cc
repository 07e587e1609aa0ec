#include "engine/ops/cpu/cpu_features.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <utility>

#include "absl/strings/str_cat.h"

namespace moeserve::engine {
namespace {

CpuFeatures Detect() {
  CpuFeatures f;
#if defined(__x86_64__)
  __builtin_cpu_init();
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
  f.avx512_vbmi = f.avx512 && __builtin_cpu_supports("avx512vbmi");
  // GCC 12's libgcc does not report AMX: read CPUID.(7, 0):EDX, bit 22 AMX-BF16 and bit 24
  // AMX-TILE (Intel SDM vol. 2A, CPUID). Using the tiles also needs the kernel's permission
  // (arch_prctl ARCH_REQ_XCOMP_PERM), asked for by the AMX kernels themselves.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) != 0) {
    f.amx_bf16 = (edx & (1u << 22)) != 0 && (edx & (1u << 24)) != 0;
  }
#endif
  return f;
}

}  // namespace

const CpuFeatures& DetectedCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

bool CpuIsaAvailable(CpuIsa isa) {
  const CpuFeatures& f = DetectedCpuFeatures();
  switch (isa) {
    case CpuIsa::kPortable:
      return true;
    case CpuIsa::kAvx2:
      return f.avx2_fma;
    case CpuIsa::kAvx512:
      return f.avx512 && f.avx2_fma;
    case CpuIsa::kAvx512Bf16:
      return f.avx512 && f.avx2_fma && f.avx512_bf16;
  }
  return false;
}

CpuIsa BestCpuIsa() {
  if (CpuIsaAvailable(CpuIsa::kAvx512)) return CpuIsa::kAvx512;
  if (CpuIsaAvailable(CpuIsa::kAvx2)) return CpuIsa::kAvx2;
  return CpuIsa::kPortable;
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kPortable:
      return "portable";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx512Bf16:
      return "avx512_bf16";
  }
  return "unknown";
}

std::string CpuFeaturesString() {
  const CpuFeatures& f = DetectedCpuFeatures();
  std::string flags;
  for (const auto& [present, name] :
       {std::pair{f.avx2_fma, "avx2_fma"}, std::pair{f.avx512, "avx512"},
        std::pair{f.avx512_bf16, "avx512_bf16"}, std::pair{f.avx512_vbmi, "avx512_vbmi"},
        std::pair{f.amx_bf16, "amx_bf16"}}) {
    if (present) absl::StrAppend(&flags, flags.empty() ? "" : " ", name);
  }
  return absl::StrCat(CpuIsaName(BestCpuIsa()), " (", flags.empty() ? "none" : flags, ")");
}

}  // namespace moeserve::engine
