#!/usr/bin/env python3
"""Golden logits of a checkpoint's multi-token-prediction (MTP) module.

transformers has no MTP module, so this is our own PyTorch forward, written from the
DeepSeek-V3 technical report §2.2 with the conventions of the reference page
(/work/shared/reference/deepseek-architecture.md §3.4, vLLM's deepseek_mtp.py):

    h_i   = the main model's hidden state at position i after its final norm
            (transformers' last_hidden_state)
    e_i   = Emb(t_{i+1}), set to 0 at position 0
    h'_i  = M · [RMSNorm_enorm(e_i) ; RMSNorm_hnorm(h_i)]          (M = eh_proj, [D, 2D])
    h''   = TRM(h'_{0..i})   one decoder block, causal over the module's own positions
    logits of t_{i+2} = shared_head.head(RMSNorm_shared_head.norm(h''_i))

The decoder block is transformers' own DeepseekV{2,3}DecoderLayer (layer index
num_hidden_layers, so MoE as in V3's layer 61), loaded from model.layers.{N}.*; with V2 the
softmax scale is patched to DeepSeek's tau as make_golden.py does for the main stack. The
module's embed_tokens / shared_head.head are used when the checkpoint has them, else the main
embedding and lm_head.

Output: OUT/mtp_logits.npy, float32 [num_prompts, max_len, vocab]: row i of prompt p holds the
MTP logits at position i (predicting token i+2), for i in [0, len(p) - 2]; other rows are NaN.
OUT/mtp_manifest.json records prompts, versions and checkpoint hashes. Prompts are drawn as in
make_golden.py (numpy default_rng(seed).integers(0, vocab, L) per L, in order).

    python tools/oracle/make_mtp_golden.py --model CKPT --out DIR [--seed 1234]
        [--prompt-lengths 2,7,19,42]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_golden as mg  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402

torch.set_num_threads(1)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def read_module_tensors(model_dir: Path, prefix: str, quant_cfg: dict | None) -> dict[str, torch.Tensor]:
    """Every tensor under `prefix`, FP8 dequantized with its block scales, as fp32."""
    files, _ = mg.checkpoint_shards(model_dir)
    raw: dict[str, torch.Tensor] = {}
    for fn in files:
        with safe_open(str(model_dir / fn), framework="pt", device="cpu") as f:
            for key in f.keys():
                if key.startswith(prefix):
                    raw[key[len(prefix):]] = f.get_tensor(key)
    block = tuple(quant_cfg.get("weight_block_size", [128, 128])) if quant_cfg else (128, 128)
    out = {}
    for key, t in raw.items():
        if key.endswith(".weight_scale_inv"):
            continue
        if t.dtype == torch.float8_e4m3fn:
            out[key] = mg.dequantize_fp8_block(t, raw[key + "_scale_inv"], block)
        else:
            out[key] = t.to(torch.float32)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--prompt-lengths", default="2,7,19,42")
    args = ap.parse_args(argv)
    lengths = [int(s) for s in args.prompt_lengths.split(",")]
    if min(lengths) < 2:
        raise SystemExit("--prompt-lengths: an MTP row needs at least 2 tokens")

    cfg_file = json.loads((args.model / "config.json").read_text())
    cfg = copy.deepcopy(cfg_file)
    quant_cfg = cfg.pop("quantization_config", None)
    nl, vocab, eps = cfg["num_hidden_layers"], cfg["vocab_size"], cfg["rms_norm_eps"]
    if cfg.get("num_nextn_predict_layers", 0) < 1:
        raise SystemExit("config.json has no MTP module (num_nextn_predict_layers = 0)")

    arch, model, attn_cls = mg.build_model(cfg)
    sd, _, _, _ = mg.load_checkpoint(args.model, nl, quant_cfg)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    model.load_state_dict(sd, strict=not tied)
    if tied:
        model.tie_weights()
    del sd

    # The MTP block: transformers' decoder layer at index nl, its weights from model.layers.{nl}.
    layer_cls = (mg.hf_v2.DeepseekV2DecoderLayer if arch == "v2" else mg.hf_v3.DeepseekV3DecoderLayer)
    block = layer_cls(model.config, layer_idx=nl).to(torch.float32).eval()
    tensors = read_module_tensors(args.model, f"model.layers.{nl}.", quant_cfg)
    mtp_only = {"enorm.weight", "hnorm.weight", "eh_proj.weight", "embed_tokens.weight",
                "shared_head.head.weight", "shared_head.norm.weight"}
    block.load_state_dict({k: v for k, v in tensors.items() if k not in mtp_only}, strict=True)
    tau = mg.reference_tau(cfg)
    if arch == "v2":
        block.self_attn.scaling = tau
        for m in model.modules():
            if isinstance(m, attn_cls):
                m.scaling = tau
    assert math.isclose(float(block.self_attn.scaling), tau, rel_tol=1e-12)
    embed = tensors.get("embed_tokens.weight", model.model.embed_tokens.weight)
    head = tensors.get("shared_head.head.weight", model.lm_head.weight)

    @torch.no_grad()
    def mtp_logits(ids: list[int]) -> torch.Tensor:
        n = len(ids) - 1  # positions 0..n-1 have a next token t_{i+1}
        tokens = torch.tensor([ids], dtype=torch.long)
        h = model.model(input_ids=tokens, use_cache=False).last_hidden_state[0, :n]
        e = embed[tokens[0, 1 : n + 1]].clone()
        e[0] = 0.0  # position 0
        x = torch.cat([rms_norm(e, tensors["enorm.weight"], eps), rms_norm(h, tensors["hnorm.weight"], eps)], -1)
        x = (x @ tensors["eh_proj.weight"].T)[None]
        pos = torch.arange(n)[None]
        cos_sin = model.model.rotary_emb(x, pos)
        mask = torch.full((n, n), torch.finfo(torch.float32).min).triu(1)[None, None]
        y = block(x, attention_mask=mask, position_ids=pos, position_embeddings=cos_sin)
        y = y[0] if isinstance(y, tuple) else y
        return rms_norm(y[0], tensors["shared_head.norm.weight"], eps) @ head.T

    rng = np.random.default_rng(args.seed)
    prompts = [rng.integers(0, vocab, size=L, dtype=np.int64).tolist() for L in lengths]
    out = np.full((len(prompts), max(lengths), vocab), np.nan, dtype=np.float32)
    for p, ids in enumerate(prompts):
        out[p, : len(ids) - 1] = mtp_logits(ids).numpy()
        mg.log(f"prompt {p}: {len(ids)} tokens, {len(ids) - 1} MTP rows")
    assert np.isfinite(out[~np.isnan(out)]).all()

    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "mtp_logits.npy", out)
    files, _ = mg.checkpoint_shards(args.model)
    manifest = {
        "architecture": arch,
        "seed": args.seed,
        "prompt_lengths": lengths,
        "prompts": prompts,
        "mtp_logits_shape": list(out.shape),
        "softmax_scale": tau,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "checkpoint_sha256": {f: mg.sha256_file(args.model / f) for f in ["config.json", *files]},
        "notes": [
            "mtp_logits.npy[p, i, :] = MTP logits at position i of prompt p (predicting token i+2), "
            "i in [0, len(p)-2]; other rows NaN.",
            "Main hidden = transformers last_hidden_state (after model.norm); Emb(t_{i+1}) zero at position 0; "
            "eh_proj input [enorm(e); hnorm(h)]; block = transformers decoder layer at index num_hidden_layers.",
        ],
    }
    (args.out / "mtp_manifest.json").write_text(mg.dumps_pretty(manifest))
    mg.log(f"wrote {args.out}/mtp_logits.npy {out.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
