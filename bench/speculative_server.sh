#!/usr/bin/env bash
# Speculative decoding through the real server: moeserve on the bundled model with
# --speculative-tokens k for k = 0 (off), 1, 2, 3, each loaded by moeserve-bench over gRPC with
# the 85 held-out verse openings of Ruth (the model never saw them), greedy, 64 tokens each,
# one request at a time and 8 at a time. Prints output tok/s per k, the ratio to k = 0 and the
# server's own acceptance (its spec_decode metrics), and writes every run's JSON to
# bench/results/speculative_server/.
#
#   bench/speculative_server.sh [MODEL_DIR] [BUILD_DIR]     (defaults: models/kjv-v3-tiny build)
#
# Needs the `bible` command (Debian's bible-kjv) for the prompts; nothing else may be running.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/kjv-v3-tiny}"
build="${2:-build}"
out=bench/results/speculative_server
mkdir -p "$out"
prompts="$(mktemp)"
trap 'rm -f "$prompts"' EXIT
# "Ruth1:1 Now it came to pass ..." → the verse's first 8 words as a prompt.
bible -f 'Ruth1:1-4:22' | sed -E 's/^Ruth[0-9]+:[0-9]+ //' |
  awk '{ n = NF < 8 ? NF : 8; s = $1; for (i = 2; i <= n; ++i) s = s " " $i;
         gsub(/"/, "\\\"", s); printf "{\"prompt\": \"%s\", \"output_len\": 64}\n", s }' \
    > "$prompts"

port=$((20000 + RANDOM % 20000))
metrics_port=$((port + 1))
printf '%-11s | %2s | %12s | %8s | %10s | %13s\n' concurrency k "output tok/s" "vs k=0" acceptance \
  "mean accepted"
for concurrency in 1 8; do
  base=""
  for k in 0 1 2 3; do
    "$build/server/moeserve" --model "$model" --host 127.0.0.1 --port "$port" \
      --metrics-port "$metrics_port" --http-port -1 --speculative-tokens "$k" \
      > "$out/server_k${k}_c${concurrency}.log" 2>&1 &
    server=$!
    result="$out/k${k}_c${concurrency}.json"
    "$build/clients/bench/moeserve-bench" --target "127.0.0.1:$port" --dataset-name jsonl \
      --dataset-path "$prompts" --num-prompts 85 --max-concurrency "$concurrency" \
      --temperature 0 --ignore-eos --num-warmups 4 --disable-progress \
      --scrape-metrics "http://127.0.0.1:$metrics_port/metrics" --save-result "$result" \
      --label "kjv-v3-tiny k=$k" --metadata "speculative_tokens=$k" > "$out/bench_k${k}_c${concurrency}.txt"
    kill -TERM "$server" && wait "$server" || true
    read -r tps accept length < <(python3 - "$result" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
spec = r.get("server_metrics", {}).get("speculative_decoding") or {}
print(r["output_throughput"], spec.get("acceptance_rate") or 0.0,
      spec.get("mean_acceptance_length") or 1.0)
EOF
)
    [[ -z "$base" ]] && base="$tps"
    printf '%-11s | %2s | %12.1f | %7.2fx | %10.3f | %13.2f\n' "$concurrency" "$k" "$tps" \
      "$(python3 -c "print($tps / $base)")" "$accept" "$length"
  done
done
