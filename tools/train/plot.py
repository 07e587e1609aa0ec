#!/usr/bin/env python3
"""Turns train.py's train_log.jsonl into the committed training record.

    /work/oracle-venv/bin/python tools/train/plot.py --log WORK/train_log.jsonl \
        --out models/kjv-v3-tiny/training

Writes loss.png (training loss, smoothed, and held-out loss), expert_load.csv (tokens routed
to each expert of each MoE layer, summed over windows of --window steps, with max/mean and the
router bias at the window's end) and expert_load.png (max/mean load per layer over training).
A resumed run logs some steps twice; the later record of a step wins.
"""

import argparse
import csv
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path):
    by_step, final = {}, None
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("final"):
                final = r
            else:
                by_step[r["step"]] = r
    return [by_step[s] for s in sorted(by_step)], final


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--window", type=int, default=25)
    args = ap.parse_args()
    recs, final = read_log(args.log)
    os.makedirs(args.out, exist_ok=True)

    steps = [r["step"] for r in recs]
    loss = [r["loss"] for r in recs]
    smooth, acc = [], 0.0
    for n, x in enumerate(loss, 1):
        acc = 0.95 * acc + 0.05 * x
        smooth.append(acc / (1 - 0.95**n))  # bias-corrected, as Adam's moments
    held = [(r["step"], r["held_out_loss"]) for r in recs if "held_out_loss" in r]
    if final:
        held.append((final["step"], final["held_out_loss"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, loss, color="0.8", linewidth=0.6, label="training loss (per step)")
    ax.plot(steps, smooth, color="C0", label="training loss (EMA 0.95)")
    if held:
        ax.plot([h[0] for h in held], [h[1] for h in held], "o-", color="C3",
                label="held-out loss (Ruth)")
    # The MTP module's next-next-token loss (runs continued with an MTP module log it).
    mtp = [(r["step"], r["mtp_loss"]) for r in recs if "mtp_loss" in r]
    if mtp:
        acc, mtp_smooth = 0.0, []
        for n, (_, x) in enumerate(mtp, 1):
            acc = 0.95 * acc + 0.05 * x
            mtp_smooth.append(acc / (1 - 0.95**n))
        # --mtp-weight 0 trains the main model alone: the module's loss is not computed.
        if any(x > 0 for _, x in mtp):
            ax.plot([m[0] for m in mtp], mtp_smooth, color="C2", label="MTP loss (EMA 0.95)")
        held_mtp = [(r["step"], r["held_out_mtp_loss"]) for r in recs
                    if "held_out_mtp_loss" in r]
        if final and "held_out_mtp_loss" in final:
            held_mtp.append((final["step"], final["held_out_mtp_loss"]))
        ax.plot([h[0] for h in held_mtp], [h[1] for h in held_mtp], "s--", color="C1",
                label="held-out MTP loss (Ruth)")
    ax.set_xlabel("optimizer step (8 x 255 predicted tokens)")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title("kjv-v3-tiny training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "loss.png"), dpi=100)

    layers = sorted(recs[0]["expert_load"], key=int)
    n_experts = len(recs[0]["expert_load"][layers[0]])
    rows, series = [], {l: ([], []) for l in layers}
    for start in range(0, len(recs), args.window):
        window = recs[start:start + args.window]
        for l in layers:
            load = [sum(r["expert_load"][l][e] for r in window) for e in range(n_experts)]
            mean = sum(load) / n_experts
            ratio = max(load) / mean if mean else 0.0
            rows.append([window[-1]["step"], l] + load + [round(ratio, 3)]
                        + window[-1]["bias"][l])
            series[l][0].append(window[-1]["step"])
            series[l][1].append(ratio)
    with open(os.path.join(args.out, "expert_load.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "layer"] + [f"tokens_e{e}" for e in range(n_experts)]
                   + ["max_over_mean"] + [f"bias_e{e}" for e in range(n_experts)])
        w.writerows(rows)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for l in layers:
        ax.plot(series[l][0], series[l][1],
                label=f"layer {l}" + (" (MTP)" if mtp and l == layers[-1] else ""))
    ax.axhline(1.0, color="0.5", linestyle="--", linewidth=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"max / mean tokens per expert ({args.window}-step windows)")
    ax.set_title("kjv-v3-tiny expert load (auxiliary-loss-free bias balancing)")
    ax.set_ylim(bottom=0.9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "expert_load.png"), dpi=100)
    last = {l: round(series[l][1][-1], 3) for l in layers}
    print(f"{len(recs)} steps; final loss EMA {smooth[-1]:.4f}; held-out {held[-1] if held else None}; "
          f"last-window max/mean load {last}")


if __name__ == "__main__":
    main()
