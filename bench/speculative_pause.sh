#!/usr/bin/env bash
# What --speculative-disable-by-batch-size saves: moeserve-bench-speculative on the bundled model
# at batch 1, 8 and 32 with k = 0, 1, 2, ROUNDS times without and with a pause above PAUSE_ABOVE
# sequences, alternated (so a slow spell of the machine hits both alike). Each run's k > 0 rows
# are taken relative to its own k = 0 row; the table gives the median ratio over the runs, and
# every run's JSON goes into bench/results/speculative_pause.json with machine and date.
#
#   [ROUNDS=3] [PAUSE_ABOVE=4] bench/speculative_pause.sh [MODEL_DIR] [BUILD_DIR]   (models/kjv-v3-tiny build)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/kjv-v3-tiny}"
build="${2:-build}"
rounds="${ROUNDS:-3}"
pause="${PAUSE_ABOVE:-4}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for round in $(seq 1 "$rounds"); do
  for limit in 0 "$pause"; do
    "$build/bench/moeserve-bench-speculative" --model "$model" --cost-model "$model" --reps 1 \
      --batch-sizes 1,8,32 --max-k 2 --output-len 64 --throughput-reps 5 \
      --disable-by-batch-size "$limit" --output "$out/pause${limit}_r$round.json" > /dev/null
  done
done
python3 - "$out" "$rounds" "$pause" bench/results/speculative_pause.json <<'PY'
import json, statistics, sys
out, rounds, pause, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
runs = {limit: [json.load(open(f"{out}/pause{limit}_r{r}.json")) for r in range(1, rounds + 1)]
        for limit in (0, pause)}
def ratios(run):
    base = {r["batch"]: r["output_tokens_per_second"] for r in run["throughput"] if r["k"] == 0}
    return {(r["batch"], r["k"]): r["output_tokens_per_second"] / base[r["batch"]]
            for r in run["throughput"] if r["k"] > 0}
table = []
print(f"{'batch':>5} | {'k':>2} | {'never paused':>12} | {'paused above ' + str(pause):>16}")
for batch, k in sorted(ratios(runs[0][0])):
    never = statistics.median(ratios(run)[(batch, k)] for run in runs[0])
    paused = statistics.median(ratios(run)[(batch, k)] for run in runs[pause])
    print(f"{batch:>5} | {k:>2} | {never:>11.2f}x | {paused:>15.2f}x")
    table.append({"batch": batch, "k": k, "vs_k0_never_paused": never,
                  "vs_k0_paused": paused})
first = runs[0][0]
summary = {"bench": "speculative_pause", "model": first["model"], "pause_above": pause,
           "rounds": rounds, "date": first["date"], "device": first["device"],
           "commit": first["commit"], "medians": table,
           "runs": {"never_paused": runs[0], "paused": runs[pause]}}
with open(path, "w") as f:
    json.dump(summary, f, indent=1)
print(f"wrote {path}")
PY
