#!/usr/bin/env python3
"""PyTorch eager BF16 baseline for the GPU benchmark suite (issue 9).

Builds transformers' own DeepseekV2ForCausalLM from DeepSeek-V2-Lite's config.json with random
BF16 weights on the GPU, prefills `batch` prompts of `context` tokens, then times greedy decode
steps (one forward with the KV cache plus an argmax per step): the "what you get from plain
PyTorch" number that moeserve-bench-gpu-model is compared with. Writes JSON with the device and
date; with --ours (moeserve-bench-gpu-model's JSON) it prints our decode tokens/s and the ratio at
the same batch and context.

  python3 bench/gpu/torch_eager_baseline.py [--batch 64] [--context 1024] [--ours FILE]
  python3 bench/gpu/torch_eager_baseline.py --device cpu --shrink   # smoke test without a GPU
"""
import argparse
import datetime
import json
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(path, shrink):
    from transformers import DeepseekV2Config

    with open(path) as f:
        raw = json.load(f)
    for key in ("auto_map", "architectures", "transformers_version", "torch_dtype", "model_type"):
        raw.pop(key, None)
    scaling = raw.get("rope_scaling") or {}
    for key in ("factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim"):
        if key in scaling:  # the checkpoint writes ints; transformers' validation wants floats
            scaling[key] = float(scaling[key])
    if shrink:  # a few-MB model with the same structure, for a CPU smoke test
        raw.update(num_hidden_layers=2, hidden_size=256, intermediate_size=512,
                   moe_intermediate_size=64, n_routed_experts=8, num_experts_per_tok=2,
                   num_attention_heads=4, num_key_value_heads=4, vocab_size=1024)
    return DeepseekV2Config(**raw)


def measure(model, batch, context, steps, device):
    import torch

    vocab = model.config.vocab_size
    prompts = torch.randint(2, vocab, (batch, context), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        start = time.perf_counter()
        out = model(input_ids=prompts, use_cache=True)
        sync()
        prefill_s = time.perf_counter() - start
        cache = out.past_key_values
        next_ids = out.logits[:, -1].argmax(-1, keepdim=True)
        # One untimed step so lazy initialisation does not count.
        out = model(input_ids=next_ids, past_key_values=cache, use_cache=True)
        cache, next_ids = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=next_ids, past_key_values=cache, use_cache=True)
            cache, next_ids = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
        decode_s = time.perf_counter() - start
    return {
        "batch": batch,
        "context": context,
        "prefill_tokens_per_s": batch * context / prefill_s,
        "decode_step_ms": decode_s / steps * 1e3,
        "decode_tokens_per_s": batch * steps / decode_s,
    }


def ours_at(path, batch, context):
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError):
        return None
    for row in report.get("results", []):
        if row.get("phase") == "decode" and row.get("batch") == batch and row.get("context") == context:
            return row["tokens_per_s"]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(REPO, "tests/data/configs/deepseek-v2-lite.config.json"))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shrink", action="store_true")
    parser.add_argument("--ours", default=os.path.join(REPO, "bench/results/gpu_model_v2_lite.json"))
    parser.add_argument("--out", default=os.path.join(REPO, "bench/results/gpu_torch_eager_v2_lite.json"))
    args = parser.parse_args()

    try:
        import torch
        import transformers
        from transformers import DeepseekV2ForCausalLM
    except ImportError as e:  # the suite goes on without the baseline
        print(f"torch_eager_baseline: skipped ({e})")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_eager_baseline: skipped (no CUDA device visible to PyTorch)")
        return 0

    config = load_config(args.config, args.shrink)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(args.device):
        model = DeepseekV2ForCausalLM(config)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
    print(f"device: {device_name}; transformers {transformers.__version__}, torch {torch.__version__}; "
          f"{params / 1e9:.2f} B parameters in bf16, eager")

    report = {
        "benchmark": "torch_eager_deepseek_v2_lite" + ("_shrunk" if args.shrink else ""),
        "device": device_name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "commit": os.environ.get("MOESERVE_COMMIT", ""),
        "parameters": params,
        "results": [],
    }
    print(f"{'batch':>6} {'context':>8} {'step ms':>10} {'tokens/s':>10} {'ours tok/s':>11} {'ours / eager':>12}")
    for batch in args.batch:
        row = measure(model, batch, args.context, args.steps, args.device)
        ours = ours_at(args.ours, batch, args.context)
        if ours is not None:
            row["ours_decode_tokens_per_s"] = ours
            row["ours_over_eager"] = ours / row["decode_tokens_per_s"]
        report["results"].append(row)
        print(f"{batch:>6} {args.context:>8} {row['decode_step_ms']:>10.2f} {row['decode_tokens_per_s']:>10.1f} "
              f"{ours if ours is not None else float('nan'):>11.1f} {row.get('ours_over_eager', float('nan')):>12.2f}")
        if args.device == "cuda":
            torch.cuda.empty_cache()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
