#!/usr/bin/env bash
# Runs the CUDA tests and the GPU microbenchmarks in one go on a GPU host.
#
# GPU hosts have CUDA 13, CMake, ninja and PyTorch but none of the Debian -dev packages this
# project builds against (Abseil, GTest, nlohmann-json, PCRE2, ...). So the binaries are built on
# a development machine and carried over with the non-CUDA shared libraries they need:
#
#   here:  cmake -S . -B build-cuda -G Ninja -DMOESERVE_SERVER=OFF
#          ninja -C build-cuda rms_norm_cuda_test cuda_runtime_test ops_cuda_test \
#                gemm_cublaslt_test moeserve-bench-gpu-copy moeserve-bench-gpu-gemm \
#                moeserve-bench-gpu-sampling mla_decode_cuda_test mla_prefill_cuda_test \
#                latent_cache_cuda_test mla_absorb_cuda_test moeserve-bench-gpu-mla \
#                moe_permute_cuda_test silu_mul_fp8_cuda_test moe_layer_cuda_test \
#                moe_grouped_gemm_cuda_test deepseek_model_cuda_test mtp_cuda_test \
#                nccl_communicator_test cuda_rank_group_test \
#                moeserve-bench-gpu-moe moeserve-bench-gpu-model moeserve-bench-gpu-collectives \
#                moeserve-bench-speculative
#          bench/gpu/run_all.sh --pack build-cuda      # → build-gpu-carry/{bin,lib,COMMIT},
#                                                      #   and build-gpu-pack/carry.tar.xz
#   there: bench/gpu/run_all.sh [build-gpu-carry]       # (device tool: carry build-gpu-pack,
#                                                      #   the tree + it < 64 MiB; unpacked here)
#          ONLY=speculative bench/gpu/run_all.sh        # MTP speculation's tests and bench only
#
# On the GPU host it sets LD_LIBRARY_PATH to the carried lib/ plus wherever cudart, cuBLASLt and
# NCCL live (the CUDA toolkit or the nvidia-* wheels), stops at once if a library is still
# missing, runs every test binary (each under TEST_TIMEOUT seconds, default 300), then the
# benchmarks, writing JSON to bench/results/; with $OUT set (the device tool) the logs and JSON
# come back as $OUT/gpu_run.tgz, and the failures with their messages end the output.
# If no carried binaries are present but the build dependencies are, it rebuilds with
# `cmake -DMOESERVE_SERVER=OFF` instead.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
gpu_tests=(cuda_runtime_test rms_norm_cuda_test ops_cuda_test gemm_cublaslt_test
           mla_decode_cuda_test mla_prefill_cuda_test latent_cache_cuda_test mla_absorb_cuda_test
           moe_permute_cuda_test silu_mul_fp8_cuda_test moe_layer_cuda_test
           moe_grouped_gemm_cuda_test deepseek_model_cuda_test mtp_cuda_test
           nccl_communicator_test cuda_rank_group_test)  # these two skip below 2 GPUs
gpu_benches=(moeserve-bench-gpu-copy moeserve-bench-gpu-gemm moeserve-bench-gpu-sampling
             moeserve-bench-gpu-mla moeserve-bench-gpu-moe moeserve-bench-gpu-model
             moeserve-bench-gpu-collectives  # says so and exits below 2 GPUs
             moeserve-bench-speculative)     # with --device cuda: MTP speculation on the GPU

if [[ "${1:-}" == "--pack" ]]; then
  build_dir="${2:-$repo_root/build-cuda}"
  carry="$repo_root/build-gpu-carry"   # matches /build*/ in .gitignore
  # The pack is labelled with HEAD: binaries built from uncommitted sources would run on the GPU
  # under a commit they are not.
  if ! git -C "$repo_root" diff --quiet HEAD -- . 2>/dev/null && [[ -z "${PACK_DIRTY:-}" ]]; then
    echo "uncommitted changes: commit, rebuild $build_dir and pack again (PACK_DIRTY=1 to force)" >&2
    exit 1
  fi
  rm -rf "$carry" && mkdir -p "$carry/bin" "$carry/lib" "$carry/lib-compat"
  for name in "${gpu_tests[@]}" "${gpu_benches[@]}"; do
    bin="$(find "$build_dir" -type f -name "$name" -perm -u+x | head -n1)"
    [[ -n "$bin" ]] || { echo "missing $name in $build_dir: build it first" >&2; exit 1; }
    cp "$bin" "$carry/bin/"
    # Every resolved shared library except glibc's own, the driver and the CUDA libraries
    # (the GPU host has CUDA 13; libcublasLt alone is 541 MB).
    ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*|libcudart*|libcublas*|libnccl*) ;;
        # The host's own (newer) C++ runtime is preferred; these are used only if it is too old.
        libstdc++.so*|libgcc_s.so*) cp -Lu "$lib" "$carry/lib-compat/" ;;
        *) cp -Lu "$lib" "$carry/lib/" ;;
      esac
    done
  done
  git -C "$repo_root" rev-parse --short HEAD > "$carry/COMMIT" 2>/dev/null || echo unknown > "$carry/COMMIT"
  strip --strip-unneeded "$carry"/bin/* 2>/dev/null || true
  du -sh "$carry"
  # The device tool sends at most 64 MiB: the tracked tree (~47 MiB, the bundled models most of
  # it) plus what is carried. The carry dir is ~68 MB (oneDNN alone 40 MB), so it goes as one
  # xz tarball (~11 MB): carry build-gpu-pack, and the run below unpacks it into build-gpu-carry.
  rm -rf "$repo_root/build-gpu-pack" && mkdir -p "$repo_root/build-gpu-pack"  # /build*/ ignored
  tar -C "$repo_root" -cJf "$repo_root/build-gpu-pack/carry.tar.xz" build-gpu-carry
  du -sh "$repo_root/build-gpu-pack/carry.tar.xz"
  exit 0
fi

carry="${1:-$repo_root/build-gpu-carry}"
pack="$repo_root/build-gpu-pack/carry.tar.xz"
if [[ ! -x "$carry/bin/ops_cuda_test" && -f "$pack" ]]; then
  # Python's tarfile when the host has no xz.
  tar -C "$repo_root" -xJf "$pack" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
      "$pack" "$repo_root"
  carry="$repo_root/build-gpu-carry"
fi
if [[ ! -x "$carry/bin/ops_cuda_test" ]]; then
  echo "no carried binaries in $carry; trying to build here" >&2
  build="$repo_root/build-gpu-host"
  cmake -S "$repo_root" -B "$build" -G Ninja -DMOESERVE_SERVER=OFF -DCMAKE_CUDA_ARCHITECTURES=90a \
    && ninja -C "$build" "${gpu_tests[@]}" "${gpu_benches[@]}" \
    || { echo "cannot build here (missing build dependencies?); pack on a dev machine" >&2; exit 1; }
  mkdir -p "$carry/bin"
  for name in "${gpu_tests[@]}" "${gpu_benches[@]}"; do
    cp "$(find "$build" -type f -name "$name" -perm -u+x | head -n1)" "$carry/bin/"
  done
fi

# The CUDA libraries not carried (libcublasLt.so.13 is 541 MB, libnccl.so.2 218 MB): the
# toolkit's lib dir, else the nvidia-* wheels of the host's Python (PyTorch brings them; CUDA 13
# wheels keep cudart and cuBLAS in nvidia/cu13/lib, NCCL in nvidia/nccl/lib).
find_cuda_lib() {  # find_cuda_lib FILE
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -e "$d/$1" ]] && { echo "$d"; return; }
  done
  python3 - "$1" 2>/dev/null <<'PY' || true
import os, sys
import nvidia
for base in nvidia.__path__:
    for sub in ("cu13/lib", "cublas/lib", "cuda_runtime/lib", "nccl/lib"):
        if os.path.exists(os.path.join(base, sub, sys.argv[1])):
            print(os.path.join(base, sub))
            sys.exit(0)
PY
}
lib_path="$carry/lib"
for lib in libcudart.so.13 libcublasLt.so.13 libnccl.so.2; do
  dir="$(find_cuda_lib "$lib")"
  [[ -n "$dir" && ":$lib_path:" != *":$dir:"* ]] && lib_path="$lib_path:$dir"
done
export LD_LIBRARY_PATH="$lib_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Built with GCC 12: needs GLIBCXX_3.4.30 from the host's libstdc++, else the carried one.
if ! grep -aq GLIBCXX_3.4.30 "$(ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/{print $NF; exit}')" 2>/dev/null; then
  export LD_LIBRARY_PATH="$carry/lib-compat:$LD_LIBRARY_PATH"
fi
# A library no path provides fails every binary in a second: say which, before spending the lease.
missing="$(ldd "$carry"/bin/* 2>/dev/null | grep 'not found' | sort -u)"
if [[ -n "$missing" ]]; then
  echo "run_all: shared libraries not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH):" >&2
  echo "$missing" >&2
  exit 1
fi
export MOESERVE_COMMIT="$(cat "$carry/COMMIT" 2>/dev/null || echo unknown)"
# The carried tests find the bundled model here and write their random checkpoints there.
export MOESERVE_SOURCE_DIR="$repo_root"
export MOESERVE_TEST_CHECKPOINT_DIR="${MOESERVE_TEST_CHECKPOINT_DIR:-/tmp/moeserve-test-checkpoints}"
results="$repo_root/bench/results"
mkdir -p "$results"
# Every log goes here; with $OUT set (the device tool, which returns at most 8 files) they and
# the JSON results travel back as one tarball.
log_dir="$(mktemp -d /tmp/moeserve-gpu-logs.XXXXXX)"
# Also when the run is cut short (a hang under the device tool's timeout): what was logged so far.
pack_logs() {
  cp "$results"/gpu_*.json "$log_dir/" 2>/dev/null
  if [[ -n "${OUT:-}" ]]; then tar -C "$log_dir" -czf "$OUT/gpu_run.tgz" .; fi
}
trap pack_logs EXIT
echo "run_all: binaries of commit $MOESERVE_COMMIT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$log_dir/gpu_info.txt"

# ONLY=speculative: just what MTP speculative decoding needs (docs/speculative-decoding.md), for a
# short device lease: the op and model tests it rests on, mtp_cuda_test, and the speculative
# bench with graphs and eagerly.
if [[ "${ONLY:-}" == speculative ]]; then
  gpu_tests=(ops_cuda_test mla_decode_cuda_test deepseek_model_cuda_test mtp_cuda_test)
fi

status=0
# A hung kernel or a stuck engine must not eat the whole lease.
test_timeout="${TEST_TIMEOUT:-300}"
for name in "${gpu_tests[@]}"; do
  echo "=== $name"
  timeout -k 10 "$test_timeout" "$carry/bin/$name" --gtest_color=no > "$log_dir/$name.log" 2>&1
  rc=$?
  grep -E "^\[  (FAILED|SKIPPED|PASSED) |Failure|device:|path=" "$log_dir/$name.log"
  if [[ $rc != 0 ]]; then
    status=1
    echo "$name: exit $rc$([[ $rc == 124 || $rc == 137 ]] && echo " (timed out after ${test_timeout} s)")"
  fi
done
echo "=== benchmarks"
if [[ "${ONLY:-}" != speculative ]]; then
  "$carry/bin/moeserve-bench-gpu-copy" --out "$results/gpu_copy_bandwidth.json" 2>&1 | tee "$log_dir/gpu_copy_bandwidth.log" || status=1
  "$carry/bin/moeserve-bench-gpu-gemm" --out "$results/gpu_gemm.json" 2>&1 | tee "$log_dir/gpu_gemm.log" || status=1
  "$carry/bin/moeserve-bench-gpu-mla" --out "$results/gpu_mla_attention.json" 2>&1 | tee "$log_dir/gpu_mla_attention.log" || status=1
  "$carry/bin/moeserve-bench-gpu-moe" --out "$results/gpu_moe_layer.json" 2>&1 | tee "$log_dir/gpu_moe_layer.log" || status=1
  "$carry/bin/moeserve-bench-gpu-model" --out "$results/gpu_model_v2_lite.json" 2>&1 | tee "$log_dir/gpu_model_v2_lite.log" || status=1
fi
# MTP speculative decoding on the bundled model, k = 0..3, through the engine on the GPU.
bench_timeout="${BENCH_TIMEOUT:-300}"
timeout -k 10 "$bench_timeout" "$carry/bin/moeserve-bench-speculative" --device cuda --model "$repo_root/models/kjv-v3-tiny" \
  --batch-sizes 1,8,32 --max-k 3 --throughput-reps 3 --output "$results/gpu_speculative_decoding.json" \
  2>&1 | tee "$log_dir/gpu_speculative_decoding.log" || status=1
# The same with every step eager (no CUDA graphs for decode, verification or drafts), which
# isolates the cost of verifying k + 1 tokens from the graphs' gain (at batch 32 most
# speculative steps exceed the graphs' 32 tokens and run eagerly in both: the table's last column
# says how many forwards replayed a graph).
timeout -k 10 "$bench_timeout" "$carry/bin/moeserve-bench-speculative" --device cuda --enforce-eager \
  --model "$repo_root/models/kjv-v3-tiny" --batch-sizes 1,8,32 --max-k 3 --throughput-reps 3 \
  --output "$results/gpu_speculative_decoding_eager.json" \
  2>&1 | tee "$log_dir/gpu_speculative_decoding_eager.log" || status=1
# PyTorch eager BF16 on the same shape (skips itself without torch/transformers); prints ours / eager.
if [[ "${ONLY:-}" != speculative ]]; then
  python3 "$repo_root/bench/gpu/torch_eager_baseline.py" --ours "$results/gpu_model_v2_lite.json" \
    --out "$results/gpu_torch_eager_v2_lite.json" 2>&1 | tee "$log_dir/gpu_torch_eager_v2_lite.log" || status=1
fi
# Last, so that the output's tail holds them: every failure with its message.
if [[ $status != 0 ]]; then
  echo "=== failures"
  grep -h -B1 -A8 -E "Failure$|^\[  FAILED  \]|error while loading" "$log_dir"/*.log | head -150
fi
echo "run_all: $([[ $status == 0 ]] && echo OK || echo FAILURES) (logs: $log_dir${OUT:+, $OUT/gpu_run.tgz})"
exit $status
