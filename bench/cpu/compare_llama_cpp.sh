#!/usr/bin/env bash
# moeserve vs llama.cpp on this CPU, side by side, in one command (issue 20, item 9).
#
# What it does:
#   1. builds llama.cpp from the llama-cpp-python 0.3.36 sdist (its vendor/llama.cpp; CPU only,
#      Release, -DGGML_NATIVE=ON, no CURL/OpenSSL): llama-bench, llama-batched-bench,
#      llama-quantize; and a Python venv with pinned versions (bench/cpu/requirements-convert.txt)
#      for its converter convert_hf_to_gguf.py;
#   2. takes or generates the checkpoints: kjv-v3-tiny (models/, bundled), v2-lite-3l (the
#      V2-Lite preset cut to 3 layers, BF16, ~3.3 GB) and, with --with-v2-lite-fp8, the full
#      V2-Lite preset in FP8 (~16 GB checkpoint + ~17 GB GGUF);
#   3. converts each to GGUF (F32, BF16, and for the FP8 model Q8_0 linears) through a patched
#      copy of the converter and an edited copy of config.json (see llama_cpp_helpers.py);
#   4. measures at $BENCH_THREADS threads (default 2): prefill tok/s of 128- and 2,048-token
#      prompts, decode tok/s at batch 1 (context 128 and 2,048) and batch 8 / 32 (aggregate),
#      peak RSS (/usr/bin/time -v), the host memory bandwidth, and each engine's batch-1
#      decode floor (weight bytes read per step / read bandwidth);
#   5. prints one table and writes bench/results/cpu_vs_llama_cpp.json (summarize_compare.py).
#
# How long (measured on the 2-core AMD EPYC VM): the first run spends ~35 min on setup (sdist
# ~1 min, llama.cpp build ~25 min, venv ~3 min: the CPU wheel index is unreachable there, so
# torch comes from PyPI with ~3 GB of CUDA wheels it never uses; v2-lite-3l conversion ~2 min,
# its generation a few more), then ~6.5 min measuring the two default models (3 rounds each).
# Later runs reuse everything in the work dir and take only the measurement time.
# --with-v2-lite-fp8 adds ~13 min of generation (16 GB), ~6 min of conversion (17 GB GGUF) and
# ~30 min per round (BENCH_ROUNDS=1 advised); it needs ~35 GB free disk and ~18 GB free RAM.
#
# Usage: bench/cpu/compare_llama_cpp.sh [--with-v2-lite-fp8] [--models a,b] [--no-build]
#                                       [--output FILE]
#   --models LIST       from kjv-v3-tiny, v2-lite-3l, v2-lite-fp8 (default: the first two)
#   --with-v2-lite-fp8  add v2-lite-fp8 to the models
#   --no-build          use the moeserve binaries already in the build dir (no cmake --build)
#   --output FILE       combined JSON (default bench/results/cpu_vs_llama_cpp.json)
#
# Environment:
#   MOESERVE_BUILD_DIR   configured moeserve build dir (default: build)
#   BENCH_CPU_WORK_DIR   where everything built or downloaded goes (default: $BUILD/bench-cpu;
#                        under build/, which git ignores)
#   BENCH_THREADS        threads for both engines (default 2)
#   BENCH_DECODE_STEPS   decode steps / generated tokens per measurement (default 32)
#   BENCH_LLAMA_REPS     llama-bench repetitions after its warm-up (default 2)
#   BENCH_ROUNDS         rounds of (moeserve runs, llama.cpp runs) per model; the table shows
#                        medians (default 3)
#   BENCH_LLAMA_EXTRA    extra llama-bench flags (e.g. "--repack 0")
#   V2L3_CHECKPOINT      reuse an existing 3-layer V2-Lite checkpoint dir instead of generating
#   V2L_FP8_GGUF         fp8-as-q8 (default: the converter writes the FP8 linears as Q8_0 and
#                        keeps embedding/lm_head/router BF16, as moeserve holds them) or q8_0
#                        (BF16 GGUF, then llama-quantize Q8_0 of every matrix; +31 GB disk)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${MOESERVE_BUILD_DIR:-$ROOT/build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
WORK=${BENCH_CPU_WORK_DIR:-$BUILD/bench-cpu}
THREADS=${BENCH_THREADS:-2}
DECODE_STEPS=${BENCH_DECODE_STEPS:-32}
LLAMA_REPS=${BENCH_LLAMA_REPS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
JOBS=2                      # build parallelism: these machines have 2 cores
NICE=(nice -n 19)           # builds and conversions must not starve the rest of the machine

LLAMA_CPP_PYTHON_VERSION=0.3.36
# The llama.cpp commit vendored in that sdist, from its CHANGELOG.md ("update llama.cpp to
# ggml-org/llama.cpp@0c1e57098"). The sdist has no .git, so it is passed to cmake by hand.
LLAMA_CPP_COMMIT=0c1e57098
LLAMA_SRC=$WORK/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp
LLAMA_BUILD=$WORK/llama.cpp-build
LLAMA_BIN=$LLAMA_BUILD/bin
VENV=$WORK/convert-venv
REQUIREMENTS=$ROOT/bench/cpu/requirements-convert.txt
HELPERS=$ROOT/bench/cpu/llama_cpp_helpers.py
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

MODELS=kjv-v3-tiny,v2-lite-3l
DO_BUILD=1
OUTPUT=$ROOT/bench/results/cpu_vs_llama_cpp.json

log() { printf '\n== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --models) MODELS=$2; shift 2 ;;
      --with-v2-lite-fp8) MODELS="$MODELS,v2-lite-fp8"; shift ;;
      --no-build) DO_BUILD=0; shift ;;
      --output) OUTPUT=$2; shift 2 ;;
      -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) die "unknown argument $1 (see --help)" ;;
    esac
  done
  case "$OUTPUT" in /*) ;; *) OUTPUT="$PWD/$OUTPUT" ;; esac
}

check_prerequisites() {
  local tool
  for tool in cmake ninja python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install cmake ninja-build time)"
  done
  [[ -f "$BUILD/CMakeCache.txt" ]] || die "$BUILD is not a configured moeserve build dir"
}

# --- moeserve -------------------------------------------------------------------------------

MAKE_MODEL=$BUILD/tools/make_model/moeserve-make-model
CPU_FORWARD=$BUILD/bench/moeserve-bench-cpu-forward
MEMORY_BANDWIDTH=$BUILD/bench/moeserve-bench-memory-bandwidth

build_moeserve() {
  if [[ $DO_BUILD == 1 ]]; then
    log "building moeserve bench targets"
    "${NICE[@]}" cmake --build "$BUILD" -j "$JOBS" --target moeserve-make-model \
      moeserve-bench-cpu-forward moeserve-bench-memory-bandwidth
  fi
  local bin
  for bin in "$MAKE_MODEL" "$CPU_FORWARD" "$MEMORY_BANDWIDTH"; do
    [[ -x "$bin" ]] || die "$bin missing (build it, or drop --no-build)"
  done
}

# --- llama.cpp ------------------------------------------------------------------------------

# The source comes from the llama-cpp-python sdist on PyPI (a pinned release with llama.cpp
# vendored inside); it is unpacked in the work dir and never committed.
fetch_llama_cpp() {
  if [[ -f "$LLAMA_SRC/CMakeLists.txt" ]]; then return; fi
  log "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist"
  mkdir -p "$WORK/src"
  python3 -m pip download --no-binary :all: --no-deps -d "$WORK/src" \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  tar -xzf "$WORK/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$WORK/src"
  [[ -f "$LLAMA_SRC/CMakeLists.txt" ]] || die "no vendor/llama.cpp in the sdist"
}

build_llama_cpp() {
  if [[ -x "$LLAMA_BIN/llama-bench" && -x "$LLAMA_BIN/llama-batched-bench" \
        && -x "$LLAMA_BIN/llama-quantize" ]]; then
    return
  fi
  log "building llama.cpp $LLAMA_CPP_COMMIT (CPU, native; ~25 min on 2 cores)"
  # LLAMA_CURL is deprecated in this version (a warning) but still says what we mean; OpenSSL is
  # its replacement for downloads. Static libs so the tools need no LD_LIBRARY_PATH.
  "${NICE[@]}" cmake -S "$LLAMA_SRC" -B "$LLAMA_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMIT="$LLAMA_CPP_COMMIT" -DLLAMA_BUILD_NUMBER=0
  "${NICE[@]}" cmake --build "$LLAMA_BUILD" -j "$JOBS" \
    --target llama-bench llama-batched-bench llama-quantize
}

# --- converter venv -------------------------------------------------------------------------

# Rebuilt only when requirements-convert.txt changes (its hash is kept in the venv).
setup_converter_venv() {
  local want
  want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
  if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" == "$want" ]]
  then
    return
  fi
  log "creating the converter venv ($VENV)"
  python3 -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  local torch_pin
  torch_pin=$(grep -E '^torch==' "$REQUIREMENTS")
  # The CPU wheel is ~200 MB; PyPI's Linux torch brings ~3 GB of CUDA wheels it never uses here.
  if python3 -c "import urllib.request as u; u.urlopen('$TORCH_CPU_INDEX/torch/', timeout=10)" \
       2>/dev/null; then
    "${NICE[@]}" "$VENV/bin/python" -m pip install --index-url "$TORCH_CPU_INDEX" "$torch_pin"
  else
    echo "($TORCH_CPU_INDEX unreachable: torch from PyPI)" >&2
  fi
  "${NICE[@]}" "$VENV/bin/python" -m pip install -r "$REQUIREMENTS"
  echo "$want" >"$VENV/.requirements.sha256"
}

converter_packages() {
  "$VENV/bin/python" -m pip freeze 2>/dev/null |
    grep -iE '^(torch|numpy|transformers|tokenizers|safetensors)==' | tr '\n' ' '
}

# --- checkpoints and GGUF -------------------------------------------------------------------

# Prints the checkpoint dir of model $1, generating it first if needed. Generation writes to a
# temporary dir that is renamed at the end, so an interrupted run never leaves a half model.
checkpoint_dir() {
  local name=$1 dir args=()
  case "$name" in
    kjv-v3-tiny) echo "$ROOT/models/kjv-v3-tiny"; return ;;
    v2-lite-3l) dir=${V2L3_CHECKPOINT:-$WORK/checkpoints/v2-lite-3l}
                args=(--preset v2-lite --num-layers 3) ;;
    v2-lite-fp8) dir=$WORK/checkpoints/v2-lite-fp8; args=(--preset v2-lite --fp8) ;;
    *) die "unknown model $name" ;;
  esac
  if [[ ! -f "$dir/config.json" ]]; then
    log "generating $name checkpoint (moeserve-make-model ${args[*]})"
    rm -rf "$dir.partial"
    "${NICE[@]}" "$MAKE_MODEL" "${args[@]}" --out "$dir.partial" >&2
    mv "$dir.partial" "$dir"
  fi
  echo "$dir"
}

# GGUF type per model: the closest to what moeserve holds that llama.cpp runs.
gguf_type() {
  case "$1" in
    kjv-v3-tiny) echo f32 ;;
    v2-lite-3l) echo bf16 ;;
    v2-lite-fp8) echo "${V2L_FP8_GGUF:-fp8-as-q8}" ;;
  esac
}

# Converts checkpoint $2 of model $1 to $WORK/gguf/<model>-<type>.gguf (skipped if present)
# and writes its tensor list to the model's raw dir; prints the GGUF path.
convert_to_gguf() {
  local name=$1 checkpoint=$2 type out in_dir
  type=$(gguf_type "$name")
  out=$WORK/gguf/$name-$type.gguf
  in_dir=$WORK/convert-in/$name
  if [[ ! -f "$out" ]]; then
    log "converting $name to GGUF ($type)"
    mkdir -p "$WORK/gguf"
    "$VENV/bin/python" "$HELPERS" prepare-convert-dir "$checkpoint" "$in_dir" >&2
    local convert=("${NICE[@]}" env MOESERVE_GGUF_PRE=deepseek-v3 "$VENV/bin/python"
                   "$LLAMA_SRC/convert_hf_to_gguf.py" "$in_dir")
    case "$type" in
      f32|bf16) "${convert[@]}" --outtype "$type" --outfile "$out.partial" >&2 ;;
      fp8-as-q8)  # the converter dequantizes weight_scale_inv itself; FP8 linears -> Q8_0
        "${convert[@]}" --outtype bf16 --fp8-as-q8 --outfile "$out.partial" >&2 ;;
      q8_0)
        "${convert[@]}" --outtype bf16 --outfile "$WORK/gguf/$name-bf16-tmp.gguf" >&2
        "${NICE[@]}" "$LLAMA_BIN/llama-quantize" "$WORK/gguf/$name-bf16-tmp.gguf" \
          "$out.partial" Q8_0 "$THREADS" >&2
        rm -f "$WORK/gguf/$name-bf16-tmp.gguf" ;;
      *) die "unknown GGUF type $type" ;;
    esac
    mv "$out.partial" "$out"
  fi
  mkdir -p "$WORK/raw/$name"
  PYTHONPATH=$LLAMA_SRC/gguf-py "$VENV/bin/python" "$HELPERS" gguf-tensors "$out" \
    "$WORK/raw/$name/gguf_tensors.json" >&2
  echo "$out"
}

# --- measurements ---------------------------------------------------------------------------

# timed LOG CMD...: runs CMD under /usr/bin/time -v (peak RSS), its report in LOG.
timed() {
  local log_file=$1; shift
  /usr/bin/time -v -o "$log_file" "$@"
}

# check_cpu_idle OUT: both engines spin their threads on every core, so anything else running
# skews the figures (llama.cpp's busy-waiting thread pool most). Samples the machine's busy
# share over one second (the load average would count this script's own runs), keeps it in
# OUT, and warns above 10 %.
cpu_times() {  # busy and total jiffies of all CPUs since boot
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat
}
check_cpu_idle() {
  local busy0 total0 busy1 total1 busy
  read -r busy0 total0 < <(cpu_times)
  sleep 1
  read -r busy1 total1 < <(cpu_times)
  busy=$((100 * (busy1 - busy0) / (total1 - total0 > 0 ? total1 - total0 : 1)))
  echo "$busy" >"$1"
  if ((busy > 10)); then
    echo "warning: the CPUs were ${busy}% busy before this round: other processes share them" >&2
  fi
}

# measure_memory_bandwidth OUT_JSON: ~2 s. Taken before and after each engine's runs, because
# on a VM it is not a constant: this 2-vCPU EPYC guest reads ~37 GB/s when the host runs both
# vCPUs on one CCD and ~63 GB/s when it spreads them (seen within minutes of each other). Each
# engine's floor uses the mean of the two taken around its runs; a change is flagged.
measure_memory_bandwidth() {
  OMP_NUM_THREADS=$THREADS "$MEMORY_BANDWIDTH" --threads "$THREADS" --size-mib 1024 \
    --repeats 10 --output "$1" | grep -E '^ *(read|copy) '
}

# measure_moeserve CHECKPOINT RAW_DIR: two cpu-forward runs: prompt 128 at batch 1, 8, 32
# (prefill 128, decode at context 128, the aggregate decode rows) and prompt 2,048 at batch 1
# (prefill 2,048, decode at context 2,048, and the batch-1 peak RSS).
measure_moeserve() {
  local checkpoint=$1 raw=$2
  # --cpu-kernels fast holds the checkpoint's precision (BF16, or FP8 + scales) as it is.
  local common=(--model "$checkpoint" --cpu-kernels fast --decode-steps "$DECODE_STEPS")
  OMP_NUM_THREADS=$THREADS timed "$raw/moeserve_p128.time" "$CPU_FORWARD" "${common[@]}" \
    --batch-sizes 1,8,32 --prompt-len 128 --output "$raw/moeserve_p128.json"
  OMP_NUM_THREADS=$THREADS timed "$raw/moeserve_p2048.time" "$CPU_FORWARD" "${common[@]}" \
    --batch-sizes 1 --prompt-len 2048 --output "$raw/moeserve_p2048.json"
}

# measure_llama_cpp GGUF RAW_DIR: llama-bench for batch 1 (pp: prompt 128 / 2,048; tg:
# DECODE_STEPS tokens after a context of 128 / 2,048 filled by -d), llama-batched-bench for
# the aggregate decode of 1, 8, 32 sequences with 128-token prompts. -lm none (load mode:
# read, no mmap) puts the weights in anonymous memory, as moeserve holds them, so this VM's
# reclaimer (kdamond / DAMON) cannot drop mmap'd weight pages between runs, and peak RSS counts
# the same things for both engines. Weight repacking stays on (llama.cpp's default; it runs fine on this AVX-512, no-AMX CPU: pass
# BENCH_LLAMA_EXTRA="--repack 0" to llama-bench if it aborts on another).
measure_llama_cpp() {
  local gguf=$1 raw=$2
  local common=(-m "$gguf" -t "$THREADS" -lm none -r "$LLAMA_REPS" -o json)
  # shellcheck disable=SC2206  # word splitting of the extra flags is wanted
  common+=(${BENCH_LLAMA_EXTRA:-})
  timed "$raw/llama_bench_pp.time" "$LLAMA_BIN/llama-bench" "${common[@]}" \
    -p 128,2048 -n 0 >"$raw/llama_bench_pp.json"
  timed "$raw/llama_bench_tg.time" "$LLAMA_BIN/llama-bench" "${common[@]}" \
    -p 0 -n "$DECODE_STEPS" -d 128,2048 >"$raw/llama_bench_tg.json"
  # Each of the 32 sequences needs 128 + DECODE_STEPS cells of the unified KV cache (-kvu).
  local ctx=$((32 * (128 + DECODE_STEPS)))
  timed "$raw/llama_batched_bench.time" "$LLAMA_BIN/llama-batched-bench" -m "$gguf" \
    -t "$THREADS" -tb "$THREADS" -lm none -c "$ctx" -b 2048 -ub 512 -kvu \
    -npp 128 -ntg "$DECODE_STEPS" -npl 1,8,32 --output-format jsonl \
    >"$raw/llama_batched_bench.jsonl"
}

# --- main -----------------------------------------------------------------------------------

main() {
  parse_args "$@"
  check_prerequisites
  local start=$SECONDS
  mkdir -p "$WORK/raw"
  build_moeserve
  fetch_llama_cpp
  build_llama_cpp
  setup_converter_venv
  "$VENV/bin/python" "$HELPERS" patch-converter "$LLAMA_SRC" >&2

  local name checkpoint gguf summary_args=()
  IFS=, read -r -a models <<<"$MODELS"
  # Checkpoints and GGUFs first, so the measurements below run back to back.
  declare -A checkpoints ggufs
  for name in "${models[@]}"; do
    checkpoint=$(checkpoint_dir "$name")
    checkpoints[$name]=$checkpoint
    ggufs[$name]=$(convert_to_gguf "$name" "$checkpoint")
  done

  # Rounds: moeserve then llama.cpp, ROUNDS times per model; the summary takes medians, so a
  # stretch of slow memory or a busy neighbour does not decide the comparison alone.
  local round raw
  for name in "${models[@]}"; do
    rm -rf "$WORK/raw/$name"/round*
    for ((round = 1; round <= ROUNDS; round++)); do
      raw=$WORK/raw/$name/round$round
      mkdir -p "$raw"
      log "$name, round $round of $ROUNDS"
      check_cpu_idle "$raw/cpu_busy_percent.txt"
      measure_memory_bandwidth "$raw/memory_bandwidth_0.json"
      measure_moeserve "${checkpoints[$name]}" "$raw"
      measure_memory_bandwidth "$raw/memory_bandwidth_1.json"
      measure_llama_cpp "${ggufs[$name]}" "$raw"
      measure_memory_bandwidth "$raw/memory_bandwidth_2.json"
    done
    summary_args+=(--model "$name=${checkpoints[$name]}" --llama-type "$name=$(gguf_type "$name")")
  done

  python3 "$ROOT/bench/cpu/summarize_compare.py" --raw-dir "$WORK/raw" "${summary_args[@]}" \
    --threads "$THREADS" --llama-cpp-commit "$LLAMA_CPP_COMMIT" \
    --llama-cpp-python "$LLAMA_CPP_PYTHON_VERSION" \
    --converter-packages "$(converter_packages)" \
    --wall-seconds $((SECONDS - start)) --output "$OUTPUT"
  log "done in $(((SECONDS - start) / 60)) min"
}

# Sourcing the file (for trying one step) defines the functions without running anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
