// What the x86-64 CPU under us can run, read once with cpuid (and the OS's XSAVE state, which
// libgcc's __builtin_cpu_supports checks): the CPU kernels pick their instruction set here at
// run time, so one binary built for baseline x86-64 runs everywhere and uses AVX-512 where it
// exists (issue 20). Called by the kernel dispatchers in engine/ops and by the server's startup
// log. Thread-safe: the detection runs once, the result is constant afterwards.
#pragma once

#include <string>

namespace moeserve::engine {

// The instruction sets the CPU kernels are built for, from the oldest up. kPortable is plain
// C++ (the reference the others are tested against).
enum class CpuIsa {
  kPortable,
  kAvx2,    // AVX2 + FMA (Haswell, Zen)
  kAvx512,  // AVX-512 F/BW/VL/DQ (Skylake-SP and later, Zen 4)
  // AVX-512 plus BF16 dot products (vdpbf16ps: Cooper Lake, Sapphire Rapids, Zen 4): BF16
  // weights, and FP8 weights where AVX-512-VBMI converts them, multiply bf16-rounded
  // activations; everything else runs as kAvx512.
  kAvx512Bf16,
};

struct CpuFeatures {
  bool avx2_fma = false;
  bool avx512 = false;       // F, BW, VL and DQ together
  bool avx512_bf16 = false;  // vdpbf16ps
  bool avx512_vbmi = false;  // vpermi2b: 128-entry byte tables (Ice Lake, Sapphire Rapids, Zen 4)
  bool amx_bf16 = false;     // AMX tiles with BF16 (Sapphire Rapids and later)
};

const CpuFeatures& DetectedCpuFeatures();

// The newest instruction set the CPU supports whose results equal the portable kernel's up to
// fp32 summation order (kAvx512Bf16, which rounds inputs to bf16, is asked for by name).
CpuIsa BestCpuIsa();
bool CpuIsaAvailable(CpuIsa isa);
const char* CpuIsaName(CpuIsa isa);
// "avx512 (avx2_fma avx512 avx512_bf16 amx_bf16)" for the startup log.
std::string CpuFeaturesString();

}  // namespace moeserve::engine
