#!/usr/bin/env bash
# Speculative decoding through the real server: moeserve on the bundled model with
# --speculative-tokens k for k = 0 (off), 1, 2, 3, each loaded by moeserve-bench over gRPC with
# the 85 held-out verse openings of Ruth (the model never saw them), greedy, 64 tokens each,
# one request at a time and 8 at a time. ROUNDS rounds of k = 0..3 (interleaved, so a slow spell
# of the machine hits every k alike); the table gives each k's median output tok/s and median
# TPOT (decode alone) with their ratios to k = 0, and the server's own acceptance (its
# spec_decode metrics); the summary, with every run's figures, machine and date, goes to
# bench/results/speculative_server[_threadsN][_KERNELS].json.
#
#   [ROUNDS=3] [THREADS=0] [CPU_KERNELS=fast] [PAUSE_ABOVE=0] bench/speculative_server.sh [MODEL_DIR] [BUILD_DIR]   (models/kjv-v3-tiny build)
#
# PAUSE_ABOVE=N serves k > 0 with --speculative-disable-by-batch-size N (no drafts while more
# than N sequences decode); the summary then ends in _pauseN.
#
# Needs the `bible` command (Debian's bible-kjv) for the prompts; nothing else may be running.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/kjv-v3-tiny}"
build="${2:-build}"
rounds="${ROUNDS:-3}"
threads="${THREADS:-0}"  # the server's --threads (0: every CPU)
kernels="${CPU_KERNELS:-fast}"  # the server's --cpu-kernels
pause="${PAUSE_ABOVE:-0}"  # the server's --speculative-disable-by-batch-size when k > 0
summary=bench/results/speculative_server
[[ "$threads" != 0 ]] && summary="${summary}_threads$threads"
[[ "$kernels" != fast ]] && summary="${summary}_$kernels"
[[ "$pause" != 0 ]] && summary="${summary}_pause$pause"
out="$(mktemp -d)"  # each run's moeserve-bench JSON and the server's log
prompts="$out/prompts.jsonl"
trap 'rm -rf "$out"' EXIT
# "Ruth1:1 Now it came to pass ..." → the verse's first 8 words as a prompt.
bible -f 'Ruth1:1-4:22' | sed -E 's/^Ruth[0-9]+:[0-9]+ //' |
  awk '{ n = NF < 8 ? NF : 8; s = $1; for (i = 2; i <= n; ++i) s = s " " $i;
         gsub(/"/, "\\\"", s); printf "{\"prompt\": \"%s\", \"output_len\": 64}\n", s }' \
    > "$prompts"

port=$((20000 + RANDOM % 20000))
metrics_port=$((port + 1))
for round in $(seq 1 "$rounds"); do
  for concurrency in 1 8; do
    for k in 0 1 2 3; do
      pause_flag=()
      [[ "$pause" != 0 && "$k" != 0 ]] && pause_flag=(--speculative-disable-by-batch-size "$pause")
      "$build/server/moeserve" --model "$model" --host 127.0.0.1 --port "$port" \
        --metrics-port "$metrics_port" --http-port -1 --speculative-tokens "$k" --threads "$threads" \
        --cpu-kernels "$kernels" "${pause_flag[@]}" \
        > "$out/server.log" 2>&1 &
      server=$!
      "$build/clients/bench/moeserve-bench" --target "127.0.0.1:$port" --dataset-name jsonl \
        --dataset-path "$prompts" --num-prompts 85 --max-concurrency "$concurrency" \
        --temperature 0 --ignore-eos --num-warmups 4 --disable-progress \
        --scrape-metrics "http://127.0.0.1:$metrics_port/metrics" \
        --save-result "$out/k${k}_c${concurrency}_r${round}.json" \
        --label "kjv-v3-tiny k=$k" --metadata "speculative_tokens=$k" > /dev/null
      kill -TERM "$server" && wait "$server" || true
    done
  done
done

python3 - "$out" "$rounds" "$model" "$summary.json" <<'EOF'
import datetime, json, os, platform, statistics, subprocess, sys
out, rounds, model, summary_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = []
# Output tok/s includes each request's prefill and first token; median TPOT (time per output
# token after the first) is the decode speed alone, which speculation changes.
print(f"{'concurrency':<11} | {'k':>2} | {'output tok/s':>12} | {'vs k=0':>7} | "
      f"{'TPOT ms':>7} | {'vs k=0':>7} | {'acceptance':>10} | {'mean accepted':>13}")
for concurrency in (1, 8):
    base = base_tpot = None
    for k in range(4):
        runs = [json.load(open(f"{out}/k{k}_c{concurrency}_r{r}.json"))
                for r in range(1, rounds + 1)]
        tps = statistics.median(r["output_throughput"] for r in runs)
        spec = runs[0].get("server_metrics", {}).get("speculative_decoding") or {}
        accept = spec.get("acceptance_rate") or 0.0
        length = spec.get("mean_acceptance_length") or 1.0
        tpot = statistics.median(r["median_tpot_ms"] for r in runs)
        base = base or tps
        base_tpot = base_tpot or tpot
        print(f"{concurrency:<11} | {k:>2} | {tps:>12.1f} | {tps / base:>6.2f}x | "
              f"{tpot:>7.3f} | {base_tpot / tpot:>6.2f}x | {accept:>10.3f} | {length:>13.2f}")
        rows.append({"concurrency": concurrency, "speculative_tokens": k,
                     "output_tok_s_median": tps, "vs_k0": tps / base,
                     "output_tok_s_runs": [r["output_throughput"] for r in runs],
                     "median_tpot_ms_median": tpot, "tpot_speedup_vs_k0": base_tpot / tpot,
                     "median_tpot_ms_runs": [r["median_tpot_ms"] for r in runs],
                     "acceptance_rate": accept, "mean_acceptance_length": length})
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
summary = {"bench": "speculative_server", "model": model, "rounds": rounds,
           "threads": int(os.environ.get("THREADS", "0")),
           "cpu_kernels": os.environ.get("CPU_KERNELS", "fast"),
           "speculative_disable_by_batch_size": int(os.environ.get("PAUSE_ABOVE", "0")),
           "prompts": "85 held-out Ruth verse openings (8 words), greedy, 64 tokens, ignore_eos",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"host": platform.node(), "cpus": os.cpu_count(),
                       "cpu": next((l.split(":", 1)[1].strip()
                                    for l in open("/proc/cpuinfo") if l.startswith("model name")),
                                   platform.processor())},
           "commit": commit, "rows": rows}
with open(summary_path, "w") as f:
    json.dump(summary, f, indent=1)
print(f"wrote {summary_path}")
EOF
