#!/usr/bin/env python3
"""Writes tests/golden/kjv-v3-tiny/: what transformers computes on the bundled model.

    /work/oracle-venv/bin/python tools/train/make_golden.py \
        [--model models/kjv-v3-tiny] [--fp8-model models/kjv-v3-tiny-fp8] \
        [--out tests/golden/kjv-v3-tiny]

Loads the checkpoint with tools/oracle/make_golden.py's loader (BF16 upcast to fp32; FP8
dequantized with weight_scale_inv and run in fp32), builds DeepseekV3ForCausalLM with eager
attention, and runs it with the oracle's reference checks (independent MLA and noaux_tc router
re-implementations hooked onto every layer; the script fails if transformers disagrees).

golden.json holds:
* held_out: the held-out text (the book of Ruth, tools/train/corpus.py), its token ids
  (tokenizers, no BOS), and the perplexity chunks: consecutive pieces of 255 ids, each scored
  after a BOS, with their summed negative log-likelihood; ppl = exp(sum nll / sum count);
* ppl_bf16, ppl_fp8: transformers' held-out perplexity of each variant (fp32 compute);
* greedy: 20 prompts (BOS + the first words of held-out verses, plus the README demo prompt)
  with 24 greedy tokens each, made by re-running the full forward every step, and the smallest
  top-1/top-2 logit margin along the way. Candidates whose margin ever falls under
  --min-margin are skipped, so a legitimate fp32 rounding difference cannot flip a token.
"""

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)


def _import_oracle():
    # tools/oracle/make_golden.py shares this file's name, so load it by path.
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "oracle_make_golden", os.path.join(REPO, "tools", "oracle", "make_golden.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


oracle = _import_oracle()  # sets torch to 1 thread; main() applies --threads
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

import corpus  # noqa: E402

CHUNK = 255  # ids per perplexity chunk; with the BOS each forward sees 256 tokens


def load(model_dir):
    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    quant = cfg.pop("quantization_config", None)
    sd, ignored, n_fp8, files = oracle.load_checkpoint(model_dir, cfg["num_hidden_layers"], quant)
    arch, model, attn_cls = oracle.build_model(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        sys.exit(f"{model_dir}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    checks = oracle.ReferenceChecks(model, cfg, arch, oracle.reference_tau(cfg), attn_cls)
    shas = {f: oracle.sha256_file(model_dir / f) for f in files}
    return model, checks, shas, n_fp8


@torch.no_grad()
def perplexity(model, ids, bos):
    chunks = []
    for s in range(0, len(ids), CHUNK):
        piece = ids[s:s + CHUNK]
        x = torch.tensor([[bos] + piece])
        logits = model(x, use_cache=False).logits[0, :-1].float()
        nll = F.cross_entropy(logits, x[0, 1:], reduction="sum").item()
        chunks.append({"start": s, "count": len(piece), "nll": nll})
    total = sum(c["nll"] for c in chunks)
    count = sum(c["count"] for c in chunks)
    return chunks, math.exp(total / count)


@torch.no_grad()
def greedy(model, prompt, n):
    seq = list(prompt)
    margins = []
    for _ in range(n):
        logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1].float()
        top = logits.topk(2)
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(int(top.indices[0]))
    return seq[len(prompt):], min(margins)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(REPO, "models", "kjv-v3-tiny"))
    ap.add_argument("--fp8-model", default=os.path.join(REPO, "models", "kjv-v3-tiny-fp8"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "golden", "kjv-v3-tiny"))
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--greedy-tokens", type=int, default=24)
    ap.add_argument("--min-margin", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    _, held, digest = corpus.split()
    text = corpus.as_text(held)
    ids = tok.encode(text, add_special_tokens=False).ids
    bos = json.loads(Path(args.model, "config.json").read_text())["bos_token_id"]

    model, checks, shas, _ = load(args.model)
    chunks, ppl = perplexity(model, ids, bos)
    oracle.log(f"held-out ppl (bf16 weights, fp32 compute): {ppl:.4f} over {len(ids)} tokens")

    # Prompts: the demo prompt, then the first 5-9 words of held-out verses.
    candidates = corpus.prompt_candidates(held)
    greedy_cases, skipped = [], []
    for text_prompt in candidates:
        if len(greedy_cases) == args.prompts:
            break
        prompt = tok.encode(text_prompt).ids  # with BOS, as the server's tokenizer adds it
        assert prompt[0] == bos
        out, margin = greedy(model, prompt, args.greedy_tokens)
        if margin < args.min_margin:
            skipped.append({"prompt": text_prompt, "min_margin": margin})
            continue
        greedy_cases.append({"text": text_prompt, "prompt": prompt, "tokens": out,
                             "completion": tok.decode(out), "min_margin": margin})
        oracle.log(f"{text_prompt!r} -> {tok.decode(out)!r}")
    if len(greedy_cases) < args.prompts:
        sys.exit(f"only {len(greedy_cases)} prompts with margin >= {args.min_margin}")
    if not checks.ok():
        sys.exit(f"transformers disagrees with the reference: {checks.summary()}")
    checks_bf16 = checks.summary()
    checks.remove()

    fp8_model, fp8_checks, fp8_shas, n_fp8 = load(args.fp8_model)
    fp8_chunks, fp8_ppl = perplexity(fp8_model, ids, bos)
    if not fp8_checks.ok():
        sys.exit(f"transformers disagrees with the reference (fp8): {fp8_checks.summary()}")
    oracle.log(f"held-out ppl (fp8 weights dequantized, fp32 compute): {fp8_ppl:.4f}")

    golden = {
        "generator": "tools/train/make_golden.py",
        "versions": {"torch": torch.__version__, "transformers": oracle.transformers.__version__},
        "corpus_sha256": digest,
        "held_out_book": corpus.HELD_OUT_BOOK,
        "checkpoint_sha256": {"bf16": shas, "fp8": fp8_shas},
        "bos_token_id": bos,
        "chunk_tokens": CHUNK,
        "held_out": {"text": text, "ids": ids, "chunks": chunks},
        "ppl_bf16": ppl,
        "fp8_chunks": fp8_chunks,
        "ppl_fp8": fp8_ppl,
        "fp8_weights": n_fp8,
        "greedy_tokens": args.greedy_tokens,
        "greedy_min_margin": args.min_margin,
        "greedy": greedy_cases,
        "greedy_skipped_near_ties": skipped,
        "reference_checks": {"bf16": checks_bf16, "fp8": fp8_checks.summary()},
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "golden.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    oracle.log(f"wrote {path} ({os.path.getsize(path)} bytes, sha256 "
               f"{hashlib.sha256(open(path, 'rb').read()).hexdigest()[:16]}...)")


if __name__ == "__main__":
    main()
