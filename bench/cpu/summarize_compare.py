#!/usr/bin/env python3
"""Summary step of bench/cpu/compare_llama_cpp.sh: one table, one JSON.

Reads the raw outputs the script left in RAW_DIR/<model>/roundN/ (moeserve-bench-cpu-forward JSON,
llama-bench JSON, llama-batched-bench JSONL, `/usr/bin/time -v` logs, a GGUF tensor list, and
moeserve-bench-memory-bandwidth JSON taken before, between and after the two engines' runs:
memory_bandwidth_{0,1,2}.json), computes each engine's batch-1 decode floor, prints the
side-by-side table and writes the combined JSON. Standard library only, so it can be rerun on
the raw files by hand:

  python3 bench/cpu/summarize_compare.py --raw-dir build/bench-cpu/raw \
      --model kjv-v3-tiny=models/kjv-v3-tiny --output bench/results/cpu_vs_llama_cpp.json

Decode floor: a batch-1 decode step has to stream every weight it uses from memory once, so
step time >= bytes read per step / read bandwidth. For a MoE layer only the shared experts and
num_experts_per_tok routed experts are read, not all of them. Bytes are counted at the precision
each engine holds: for moeserve from the checkpoint's safetensors headers (checked against the
"linear MiB" the bench loaded), for llama.cpp from the GGUF's tensor sizes. The embedding (one row) and the
KV cache (a few MiB at these contexts) are left out. The bandwidth is the mean of the read
figures taken just before and just after that engine's runs: on a VM it moves (this 2-vCPU
EPYC guest reads ~37 or ~63 GB/s depending on where the host places its vCPUs), and a change of
more than 15 % between the two is flagged.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

MIB = 1048576.0


# ---------------------------------------------------------------------------------------------
# Raw file readers.


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def peak_rss_mib(time_log: Path) -> float | None:
    """Maximum resident set size from a `/usr/bin/time -v` log, MiB."""
    if not time_log.is_file():
        return None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_log.read_text())
    return int(m.group(1)) / 1024.0 if m else None


def moeserve_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [r for r in read_json(path).get("results", []) if r.get("cpu_kernels") == "fast"]


def moeserve_row(rows: list[dict], batch: int) -> dict:
    return next((r for r in rows if r["batch"] == batch), {})


def llama_bench_ts(path: Path, **match) -> float | None:
    """avg_ts of the llama-bench test whose fields equal `match` (e.g. n_prompt=128)."""
    if not path.is_file():
        return None
    for test in read_json(path):
        if all(test.get(k) == v for k, v in match.items()):
            return test["avg_ts"]
    return None


def llama_bench_info(path: Path) -> dict:
    if not path.is_file():
        return {}
    tests = read_json(path)
    if not tests:
        return {}
    t = tests[0]
    return {k: t.get(k) for k in ("build_commit", "build_number", "cpu_info", "backends",
                                   "model_type", "model_size", "model_n_params", "n_threads",
                                   "n_batch", "n_ubatch", "load_mode", "repack", "flash_attn",
                                   "type_k")}


def batched_bench_rows(path: Path) -> list[dict]:
    """llama-batched-bench --output-format jsonl: one object per (pp, tg, pl)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


# ---------------------------------------------------------------------------------------------
# Bytes read per batch-1 decode step.


def config_params(config: dict) -> dict:
    """Linear-weight parameter counts of a DeepSeek config.json: `all` (every expert, what the
    checkpoint holds) and `per_step` (what one batch-1 decode step reads)."""
    d = config["hidden_size"]
    heads = config["num_attention_heads"]
    nope, rope = config["qk_nope_head_dim"], config["qk_rope_head_dim"]
    v_dim, kv_lora = config["v_head_dim"], config["kv_lora_rank"]
    q_lora = config.get("q_lora_rank") or 0
    q_dim = heads * (nope + rope)
    attention = (d * q_lora + q_lora * q_dim if q_lora else d * q_dim) \
        + d * (kv_lora + rope) + kv_lora * heads * (nope + v_dim) + heads * v_dim * d
    expert = 3 * d * config["moe_intermediate_size"]
    dense_mlp = 3 * d * config["intermediate_size"]
    layers = config["num_hidden_layers"]
    dense_layers = min(config.get("first_k_dense_replace", 0), layers)
    moe_layers = layers - dense_layers
    shared = config.get("n_shared_experts") or 0
    routed, active = config["n_routed_experts"], config["num_experts_per_tok"]
    lm_head = d * config["vocab_size"]
    common = layers * attention + dense_layers * dense_mlp + moe_layers * shared * expert + lm_head
    return {"all": common + moe_layers * routed * expert,
            "per_step": common + moe_layers * active * expert}


DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1,
               "U8": 1}
# The tensors moeserve-bench-cpu-forward counts as "linear MiB" (its LinearBytes()).
LINEAR_RE = re.compile(r"(^lm_head|\.self_attn\.(q_proj|q_a_proj|q_b_proj|kv_a_proj_with_mqa|"
                       r"kv_b_proj|o_proj)|\.mlp\.(experts\.\d+\.|shared_experts\.)?"
                       r"(gate_proj|up_proj|down_proj))\.weight(_scale_inv)?$")


def safetensors_linear_bytes(checkpoint: Path) -> tuple[float, float]:
    """(all, routed) bytes of the linear weights (scales included) as the checkpoint stores
    them, from the safetensors headers alone."""
    total = routed = 0.0
    for path in sorted(checkpoint.glob("*.safetensors")):
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        for name, info in header.items():
            if name == "__metadata__" or not LINEAR_RE.search(name):
                continue
            numel = 1
            for dim in info["shape"]:
                numel *= dim
            nbytes = numel * DTYPE_BYTES[info["dtype"]]
            total += nbytes
            if ".mlp.experts." in name:
                routed += nbytes
    return total, routed


def moeserve_step_bytes(checkpoint: Path, config: dict,
                        linear_weight_mib: float) -> tuple[float, float]:
    """(bytes per step, bytes moeserve holds ÷ bytes the checkpoint stores). `--cpu-kernels
    fast` holds every tensor in its checkpoint precision (BF16 lm_head and FP8 + scales experts
    of an FP8 checkpoint alike), so the step reads the checkpoint's bytes of the tensors it
    uses: all linears but the routed experts, plus k / E of those. If the bench loaded a
    different total (another precision), the step is scaled by that ratio."""
    total, routed = safetensors_linear_bytes(checkpoint)
    frac = config["num_experts_per_tok"] / config["n_routed_experts"]
    held_ratio = linear_weight_mib * MIB / total if total else 1.0
    return (total - routed + frac * routed) * held_ratio, held_ratio


def llama_step_bytes(tensors_path: Path, config: dict) -> float | None:
    """Bytes of the GGUF tensors one batch-1 step reads: all but the token embedding, with the
    stacked routed-expert tensors (*_exps) counted for num_experts_per_tok of n_routed_experts."""
    if not tensors_path.is_file():
        return None
    frac = config["num_experts_per_tok"] / config["n_routed_experts"]
    total = 0.0
    for t in read_json(tensors_path):
        name = t["name"]
        if name.startswith("token_embd."):
            continue
        total += t["n_bytes"] * (frac if "_exps." in name else 1.0)
    return total


# ---------------------------------------------------------------------------------------------
# Per-model summary and the printed table.


def read_bandwidth(path: Path) -> dict | None:
    """{"read": best GB/s, "copy": best GB/s} of one moeserve-bench-memory-bandwidth report."""
    if not path.is_file():
        return None
    return {r["kernel"]: r["best_gb_per_s"] for r in read_json(path).get("results", [])}


def bandwidth_around(before: dict | None, after: dict | None) -> dict:
    reads = [b["read"] for b in (before, after) if b and b.get("read")]
    if not reads:
        return {}
    return {"read_gb_per_s_before": before.get("read") if before else None,
            "read_gb_per_s_after": after.get("read") if after else None,
            "read_gb_per_s": sum(reads) / len(reads),
            "changed_during_runs": max(reads) / min(reads) > 1.15}


def measure_round(raw: Path, checkpoint: Path, config: dict,
                  tensors: Path) -> tuple[dict, dict]:
    """(moeserve, llama.cpp) figures of one round: the files of RAW_DIR/<model>/roundN/."""
    short = moeserve_rows(raw / "moeserve_p128.json")
    long = moeserve_rows(raw / "moeserve_p2048.json")
    b1s, b1l = moeserve_row(short, 1), moeserve_row(long, 1)
    linear_mib = b1s.get("linear_weight_mib") or b1l.get("linear_weight_mib")

    pp, tg = raw / "llama_bench_pp.json", raw / "llama_bench_tg.json"
    bb = {r["pl"]: r for r in batched_bench_rows(raw / "llama_batched_bench.jsonl")}

    def bb_tg(pl):
        return bb[pl]["speed_tg"] if pl in bb else None

    moeserve = {
        "prefill_tok_s_p128": b1s.get("prefill_tokens_per_s"),
        "prefill_tok_s_p2048": b1l.get("prefill_tokens_per_s"),
        "decode_tok_s_b1_ctx128": b1s.get("decode_tokens_per_s"),
        "decode_tok_s_b1_ctx2048": b1l.get("decode_tokens_per_s"),
        "decode_tok_s_b8_ctx128": moeserve_row(short, 8).get("decode_tokens_per_s"),
        "decode_tok_s_b32_ctx128": moeserve_row(short, 32).get("decode_tokens_per_s"),
        "peak_rss_mib_b1_ctx2048": peak_rss_mib(raw / "moeserve_p2048.time"),
        "peak_rss_mib_b32_ctx128": peak_rss_mib(raw / "moeserve_p128.time"),
        "linear_weight_mib": linear_mib,
    }
    llama = {
        "prefill_tok_s_p128": llama_bench_ts(pp, n_prompt=128, n_gen=0),
        "prefill_tok_s_p2048": llama_bench_ts(pp, n_prompt=2048, n_gen=0),
        "decode_tok_s_b1_ctx128": llama_bench_ts(tg, n_prompt=0, n_depth=128),
        "decode_tok_s_b1_ctx2048": llama_bench_ts(tg, n_prompt=0, n_depth=2048),
        "decode_tok_s_b8_ctx128": bb_tg(8),
        "decode_tok_s_b32_ctx128": bb_tg(32),
        "batched_bench_decode_tok_s_b1_ctx128": bb_tg(1),
        "peak_rss_mib_b1_ctx2048": peak_rss_mib(raw / "llama_bench_tg.time"),
        "peak_rss_mib_b32_ctx128": peak_rss_mib(raw / "llama_batched_bench.time"),
    }
    if linear_mib:
        step, held_ratio = moeserve_step_bytes(checkpoint, config, linear_mib)
        moeserve["weight_bytes_per_decode_step"] = step
        moeserve["held_over_checkpoint_linear_bytes"] = held_ratio
        moeserve["held_bytes_per_linear_param"] = linear_mib * MIB / config_params(config)["all"]
    llama["weight_bytes_per_decode_step"] = llama_step_bytes(tensors, config)

    bws = [read_bandwidth(raw / f"memory_bandwidth_{i}.json") for i in range(3)]
    moeserve["memory_bandwidth"] = bandwidth_around(bws[0], bws[1])
    llama["memory_bandwidth"] = bandwidth_around(bws[1], bws[2])
    for engine in (moeserve, llama):
        step = engine.get("weight_bytes_per_decode_step")
        bandwidth_gbps = engine["memory_bandwidth"].get("read_gb_per_s")
        if step and bandwidth_gbps:
            floor = bandwidth_gbps * 1e9 / step
            engine["decode_floor_tok_s"] = floor
            for ctx in (128, 2048):
                measured = engine.get(f"decode_tok_s_b1_ctx{ctx}")
                engine[f"fraction_of_floor_b1_ctx{ctx}"] = measured / floor if measured else None
    return moeserve, llama


def median(values: list) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def median_of_rounds(rounds: list[dict]) -> dict:
    """Each figure's median over the rounds; the bandwidth's too, flagged if it moved in any."""
    keys = [k for k in rounds[0] if k != "memory_bandwidth"]
    out = {k: median([r.get(k) for r in rounds]) for k in keys}
    bws = [r["memory_bandwidth"] for r in rounds if r.get("memory_bandwidth")]
    out["memory_bandwidth"] = {
        "read_gb_per_s": median([b.get("read_gb_per_s") for b in bws]),
        "rounds_where_it_changed": sum(1 for b in bws if b.get("changed_during_runs")),
    }
    return out


def summarize_model(name: str, checkpoint: Path, raw: Path, llama_type: str) -> dict:
    """Medians over RAW_DIR/<model>/round1, round2, ... (each engine's runs, in turn)."""
    config = read_json(checkpoint / "config.json")
    round_dirs = sorted((d for d in raw.glob("round*") if d.is_dir()),
                        key=lambda d: int(d.name.removeprefix("round") or 0))
    if not round_dirs:
        raise SystemExit(f"no results in {raw}/round*")
    rounds = [measure_round(d, checkpoint, config, raw / "gguf_tensors.json")
              for d in round_dirs]
    moeserve = median_of_rounds([ms for ms, _ in rounds])
    llama = median_of_rounds([ll for _, ll in rounds])
    llama["gguf_type"] = llama_type
    first_tg = round_dirs[0] / "llama_bench_tg.json"
    llama["bench_info"] = llama_bench_info(first_tg)
    moeserve_fp8 = (moeserve.get("held_bytes_per_linear_param") or 2) < 1.5

    params = config_params(config)
    return {
        "model": name,
        "checkpoint": str(checkpoint),
        "architecture": (config.get("architectures") or ["?"])[0],
        "num_hidden_layers": config["num_hidden_layers"],
        "linear_params_all": params["all"],
        "linear_params_per_decode_step": params["per_step"],
        "moeserve_precision": "fp8" if moeserve_fp8 else "bf16",
        "num_rounds": len(rounds),
        "moeserve": moeserve,
        "llama_cpp": llama,
        "rounds": [{"moeserve": ms, "llama_cpp": ll,
                    "cpu_busy_percent_before": cpu_busy(d)}
                   for (ms, ll), d in zip(rounds, round_dirs)],
    }


def cpu_busy(round_dir: Path) -> float | None:
    path = round_dir / "cpu_busy_percent.txt"
    return float(path.read_text().split()[0]) if path.is_file() else None


def fmt(value, spec=".1f", suffix=""):
    return "—" if value is None else f"{value:{spec}}{suffix}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "—"


def print_table(summary: dict) -> None:
    print()
    print(f"moeserve vs llama.cpp (CPU), {summary['threads']} threads, {summary['device']}, "
          f"{summary['date']}, moeserve {summary['commit']}, llama.cpp "
          f"{summary['llama_cpp']['commit']} (llama-cpp-python "
          f"{summary['llama_cpp']['llama_cpp_python']})")
    print("Floor = read bandwidth measured around that engine's runs (1 GiB, best of 10) / "
          "weight bytes one batch-1 decode step reads.")
    rows = [
        ("prefill tok/s, 128-token prompt", "prefill_tok_s_p128", ".1f", True),
        ("prefill tok/s, 2,048-token prompt", "prefill_tok_s_p2048", ".1f", True),
        ("decode tok/s, batch 1, context 128", "decode_tok_s_b1_ctx128", ".2f", True),
        ("decode tok/s, batch 1, context 2,048", "decode_tok_s_b1_ctx2048", ".2f", True),
        ("decode tok/s, batch 8 (sum), context 128", "decode_tok_s_b8_ctx128", ".1f", True),
        ("decode tok/s, batch 32 (sum), context 128", "decode_tok_s_b32_ctx128", ".1f", True),
        ("weights read per decode step, MiB", "weight_bytes_per_decode_step", "mib", False),
        ("read bandwidth around the runs, GB/s", "read_gb_per_s", "bw", False),
        ("decode floor tok/s (bandwidth / bytes)", "decode_floor_tok_s", ".2f", True),
        ("batch-1 decode, context 128, % of floor", "fraction_of_floor_b1_ctx128", "pct", True),
        ("batch-1 decode, context 2,048, % of floor", "fraction_of_floor_b1_ctx2048", "pct", True),
        ("peak RSS MiB, batch 1, context 2,048", "peak_rss_mib_b1_ctx2048", ".0f", False),
        ("peak RSS MiB, batch 32, context 128", "peak_rss_mib_b32_ctx128", ".0f", False),
    ]
    for m in summary["models"]:
        ms, ll = m["moeserve"], m["llama_cpp"]
        print()
        print(f"{m['model']} ({m['architecture']}, {m['num_hidden_layers']} layers, "
              f"{m['linear_params_per_decode_step'] / 1e6:.1f} M of "
              f"{m['linear_params_all'] / 1e6:.1f} M linear params per decode step) — "
              f"moeserve {m['moeserve_precision'].upper()}, llama.cpp {ll['gguf_type'].upper()}, "
              f"median of {m['num_rounds']} round(s)")
        print(f"  {'':44} {'moeserve':>10} {'llama.cpp':>10} {'moeserve/llama.cpp':>19}")
        for label, key, spec, higher_better in rows:
            a, b = ms.get(key), ll.get(key)
            if spec == "bw":
                a, b = ms["memory_bandwidth"].get(key), ll["memory_bandwidth"].get(key)
                sa, sb = (fmt(x, ".1f") + ("*" if e["memory_bandwidth"].get(
                    "rounds_where_it_changed") else "") for x, e in ((a, ms), (b, ll)))
            elif spec == "mib":
                sa, sb = fmt(a / MIB if a else None), fmt(b / MIB if b else None)
            elif spec == "pct":
                sa, sb = fmt(a * 100 if a else None, ".0f", "%"), fmt(b * 100 if b else None,
                                                                      ".0f", "%")
            else:
                sa, sb = fmt(a, spec), fmt(b, spec)
            print(f"  {label:44} {sa:>10} {sb:>10} {ratio(a, b) if spec != 'bw' else '':>19}")
    print()
    print("moeserve/llama.cpp: > 1 means moeserve is faster (tok/s rows) or larger (MiB rows);"
          " every figure is the median over the rounds;\n"
          "* = the read bandwidth changed by > 15 % during that engine's runs in some round.")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--raw-dir", type=Path, required=True)
    p.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT_DIR",
                   help="a model the raw dir has results for (RAW_DIR/NAME/)")
    p.add_argument("--llama-type", action="append", default=[], metavar="NAME=TYPE")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--llama-cpp-commit", default="unknown")
    p.add_argument("--llama-cpp-python", default="unknown")
    p.add_argument("--converter-packages", default="", help="pinned converter venv, 'a==1 b==2'")
    p.add_argument("--wall-seconds", type=float)
    p.add_argument("--note", action="append", default=[],
                   help="a remark to keep with the results (e.g. what else ran meanwhile)")
    args = p.parse_args()

    llama_types = dict(s.split("=", 1) for s in args.llama_type)

    models = []
    for spec in args.model:
        name, checkpoint = spec.split("=", 1)
        models.append(summarize_model(name, Path(checkpoint), args.raw_dir / name,
                                      llama_types.get(name, "?")))
    # Device, date and moeserve commit: from the first bandwidth report (bench_report.h).
    names = [spec.split("=", 1)[0] for spec in args.model]
    first = args.raw_dir / names[0] / "round1" / "memory_bandwidth_0.json" if names else None
    context = read_json(first) if first and first.is_file() else {}

    summary = {
        "benchmark": "cpu_vs_llama_cpp",
        "device": context.get("device", "unknown"),
        "date": context.get("date", "unknown"),
        "commit": context.get("commit", "unknown"),
        "threads": args.threads,
        "llama_cpp": {
            "commit": args.llama_cpp_commit,
            "llama_cpp_python": args.llama_cpp_python,
            "converter_packages": args.converter_packages.split(),
        },
        "method": {
            "moeserve": "moeserve-bench-cpu-forward --cpu-kernels fast (one measured pass: "
                        "prefill of the prompt, then decode steps)",
            "llama_cpp_batch1": "llama-bench -lm none (pp: -p 128,2048 -n 0; tg: -p 0 -d 128,2048)",
            "llama_cpp_batched": "llama-batched-bench -npp 128 -npl 1,8,32, speed_tg",
            "peak_rss": "/usr/bin/time -v Maximum resident set size of the whole process",
            "decode_floor": "read GB/s of moeserve-bench-memory-bandwidth (1 GiB, best of 10, "
                            "mean of the figures taken just before and after the engine's runs) "
                            "/ weight bytes one batch-1 decode step reads (attention, dense "
                            "MLPs, shared + num_experts_per_tok routed experts, lm_head; "
                            "embedding and KV cache left out)",
        },
        "wall_seconds": args.wall_seconds,
        "notes": args.note,
        "models": models,
    }
    print_table(summary)
    for note in args.note:
        print(f"note: {note}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
