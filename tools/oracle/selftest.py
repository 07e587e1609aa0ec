#!/usr/bin/env python3
"""Self-test of make_golden.py with small random checkpoints built by transformers.

Builds, in a scratch directory (default: a fresh /tmp dir, removed afterwards unless
--keep), random fp32 models with transformers and saves them with save_pretrained
(safetensors, sharded), then checks that make_golden.py reproduces the in-memory
model's logits and greedy tokens exactly:

  v2-lite   DeepseekV2: q_lora_rank None, greedy routing, yarn mscale_all_dim 0.707
  v2        DeepseekV2: q_lora_rank 256, group_limited_greedy (4 groups, keep 2), scale 16
  v3        DeepseekV3: q_lora_rank 256, noaux_tc (4 groups, keep 2), 16 experts top-4,
            random e_score_correction_bias, yarn mscale 1.0
  v3-fp8    the v3 weights block-quantized to FP8 e4m3 (128x128, scale = amax/448,
            saturating) by this script, non-quantized tensors in BF16 (bias F32), two
            shards + index, plus fake MTP tensors for layer num_hidden_layers; expected
            = the v3 model with every weight replaced by its (loop-)dequantized /
            bf16-rounded value.
  v3-negbias  v3 with e_score_correction_bias = -1: every biased score is negative, so
            transformers' 0.0 group masking selects experts from dropped groups; the
            oracle must refuse (reference check) unless --allow-divergence.

All models: hidden 256, 3 layers, 4 heads, kv_lora_rank 512, qk_nope 128, qk_rope 64,
v 128, intermediate 512, moe_intermediate 128, vocab 512, first_k_dense_replace 1.

Usage: tools/oracle/selftest.py [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_golden as mg  # noqa: E402

SEED = 1234
LENGTHS = [1, 6, 19, 42]
GREEDY_PROMPTS, GREEDY_TOKENS = 2, 16

COMMON = dict(
    vocab_size=512,
    hidden_size=256,
    intermediate_size=512,
    moe_intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=4,
    kv_lora_rank=512,
    qk_nope_head_dim=128,
    qk_rope_head_dim=64,
    v_head_dim=128,
    first_k_dense_replace=1,
    n_routed_experts=16,
    num_experts_per_tok=4,
    max_position_embeddings=163840,
    rms_norm_eps=1e-6,
    initializer_range=0.05,
    tie_word_embeddings=False,
)
YARN_V2 = {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
           "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}
YARN_V3 = {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
           "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}


def v2_config(q_lora, method, n_group, topk_group, scale, shared):
    return transformers.DeepseekV2Config(
        **COMMON, q_lora_rank=q_lora, topk_method=method, n_group=n_group, topk_group=topk_group,
        routed_scaling_factor=scale, n_shared_experts=shared, norm_topk_prob=False,
        rope_scaling=dict(YARN_V2), architectures=["DeepseekV2ForCausalLM"],
    )


def v3_config():
    return transformers.DeepseekV3Config(
        **COMMON, q_lora_rank=256, n_group=4, topk_group=2, routed_scaling_factor=2.5, n_shared_experts=1,
        norm_topk_prob=True, rope_scaling=dict(YARN_V3), architectures=["DeepseekV3ForCausalLM"],
        topk_method="noaux_tc", scoring_func="sigmoid",
    )


def random_model(cfg, seed):
    torch.manual_seed(seed)
    cls = transformers.DeepseekV2ForCausalLM if cfg.model_type == "deepseek_v2" else transformers.DeepseekV3ForCausalLM
    model = cls._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn_like(b))
    return model


def patch_tau(model, cfg_dict):
    """Same V2 patch as the oracle, applied to the in-memory reference model."""
    tau = mg.reference_tau(cfg_dict)
    for m in model.modules():
        if isinstance(m, (mg.hf_v2.DeepseekV2Attention, mg.hf_v3.DeepseekV3Attention)):
            if isinstance(m, mg.hf_v3.DeepseekV3Attention):
                assert math.isclose(m.scaling, tau, rel_tol=1e-12)
            m.scaling = tau
    return tau


@torch.no_grad()
def expected_outputs(model, vocab):
    rng = np.random.default_rng(SEED)
    prompts = [rng.integers(0, vocab, size=L, dtype=np.int64).tolist() for L in LENGTHS]
    logits = np.full((len(prompts), max(LENGTHS), vocab), np.nan, dtype=np.float32)

    def fwd(ids):
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]

    for i, ids in enumerate(prompts):
        logits[i, : len(ids)] = fwd(ids).numpy()
    greedy = []
    for i in range(GREEDY_PROMPTS):
        seq = list(prompts[i])
        toks = []
        for _ in range(GREEDY_TOKENS):
            t = int(torch.argmax(fwd(seq)[-1]))
            toks.append(t)
            seq.append(t)
        greedy.append(toks)
    return prompts, logits, greedy


def run_oracle(model_dir: Path, out_dir: Path, extra=()):
    cmd = [sys.executable, str(HERE / "make_golden.py"), "--model", str(model_dir), "--out", str(out_dir),
           "--seed", str(SEED), "--prompt-lengths", ",".join(map(str, LENGTHS)),
           "--greedy-prompts", str(GREEDY_PROMPTS), "--greedy-tokens", str(GREEDY_TOKENS), *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def compare(name, out_dir: Path, prompts, logits, greedy, tol=0.0):
    man = json.loads((out_dir / "manifest.json").read_text())
    got = np.load(out_dir / "logits.npy")
    assert man["prompts"] == prompts, f"{name}: prompts differ"
    assert got.shape == logits.shape and got.dtype == np.float32, (got.shape, got.dtype)
    assert np.array_equal(np.isnan(got), np.isnan(logits)), f"{name}: NaN padding differs"
    m = ~np.isnan(logits)
    diff = float(np.abs(got[m] - logits[m]).max())
    assert diff <= tol, f"{name}: max |logits diff| {diff} > {tol}"
    for g, toks in zip(man["greedy"], greedy):
        assert g["tokens"] == toks, f"{name}: greedy tokens differ {g['tokens']} vs {toks}"
    print(f"  {name}: logits max|diff| = {diff:.3g}, greedy equal, "
          f"min margins {[round(g['min_margin'], 4) for g in man['greedy']]}, "
          f"scale {man['softmax_scale']}, checks {man['reference_checks']}")
    return man


# ---- FP8 -----------------------------------------------------------------------------

FP8_MAX = 448.0


def quantize_fp8_block(w: torch.Tensor, block=128):
    rows, cols = w.shape
    nr, nc = math.ceil(rows / block), math.ceil(cols / block)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    s = torch.empty(nr, nc, dtype=torch.float32)
    for bi in range(nr):
        for bj in range(nc):
            blk = w[bi * block:(bi + 1) * block, bj * block:(bj + 1) * block]
            amax = float(blk.abs().max())
            scale = amax / FP8_MAX if amax > 0 else 1.0
            s[bi, bj] = scale
            q[bi * block:(bi + 1) * block, bj * block:(bj + 1) * block] = (
                (blk / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn))
    return q, s


def dequant_loop(q: torch.Tensor, s: torch.Tensor, block=128):
    out = torch.empty(q.shape, dtype=torch.float32)
    for bi in range(s.shape[0]):
        for bj in range(s.shape[1]):
            sl = (slice(bi * block, (bi + 1) * block), slice(bj * block, (bj + 1) * block))
            out[sl] = q[sl].to(torch.float32) * s[bi, bj]
    return out


def is_quantized_name(name: str) -> bool:
    if not name.endswith(".weight") or not name.startswith("model.layers."):
        return False
    if "norm" in name or name.endswith("mlp.gate.weight"):
        return False
    return "_proj" in name


def write_fp8_checkpoint(model, cfg_dict, out_dir: Path):
    """Writes an FP8 checkpoint in two shards; returns the expected fp32 state dict."""
    out_dir.mkdir(parents=True)
    sd = model.state_dict()
    tensors, expected = {}, {}
    for k, v in sd.items():
        v = v.detach().contiguous()
        if is_quantized_name(k):
            q, s = quantize_fp8_block(v)
            tensors[k], tensors[k + "_scale_inv"] = q, s
            expected[k] = dequant_loop(q, s)
        elif k.endswith("e_score_correction_bias"):
            tensors[k] = v.to(torch.float32)
            expected[k] = tensors[k]
        else:
            tensors[k] = v.to(torch.bfloat16)
            expected[k] = tensors[k].to(torch.float32)
    nl = cfg_dict["num_hidden_layers"]
    g = torch.Generator().manual_seed(7)
    mtp = {
        f"model.layers.{nl}.enorm.weight": torch.ones(256, dtype=torch.bfloat16),
        f"model.layers.{nl}.eh_proj.weight": torch.randn(256, 512, generator=g).to(torch.bfloat16),
    }
    q, s = quantize_fp8_block(torch.randn(576, 256, generator=g))
    mtp[f"model.layers.{nl}.self_attn.kv_a_proj_with_mqa.weight"] = q
    mtp[f"model.layers.{nl}.self_attn.kv_a_proj_with_mqa.weight_scale_inv"] = s
    tensors.update(mtp)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    # keep weight and scale together in one shard, as real checkpoints do
    for fn in list(shards):
        shards[fn] = [n for n in shards[fn] if not n.endswith("_scale_inv")]
    for n in names:
        if n.endswith("_scale_inv"):
            w = n[: -len("_scale_inv")]
            for fn in shards:
                if w in shards[fn]:
                    shards[fn].append(n)
    weight_map = {}
    for fn, ns in shards.items():
        save_file({n: tensors[n] for n in ns}, str(out_dir / fn), metadata={"format": "pt"})
        weight_map.update({n: fn for n in ns})
    assert len(weight_map) == len(tensors)
    (out_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}, indent=2))
    cfg = dict(cfg_dict)
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": [128, 128]}
    cfg["torch_dtype"] = "bfloat16"
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    return expected, len(mtp)


def test_dequant_unit():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(200, 300, generator=g) * 3
    q, s = quantize_fp8_block(w)
    a = mg.dequantize_fp8_block(q, s, (128, 128))
    b = dequant_loop(q, s)
    assert torch.equal(a, b), "vectorized dequant != loop dequant"
    # saturation + the quantization error bound (e4m3: 3 mantissa bits -> rel err <= 2^-4)
    assert float(q.to(torch.float32).abs().max()) <= FP8_MAX
    assert float(((a - w).abs() / w.abs().clamp_min(1e-3)).median()) < 2**-4
    print("  dequant unit test (200x300, partial edge blocks): vectorized == loop")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="oracle-selftest-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir {work}")
    try:
        test_dequant_unit()
        cases = {
            "v2-lite": v2_config(None, "greedy", 1, 1, 1.0, 2),
            "v2": v2_config(256, "group_limited_greedy", 4, 2, 16.0, 2),
            "v3": v3_config(),
        }
        models = {}
        for i, (name, cfg) in enumerate(cases.items()):
            model = random_model(cfg, 100 + i)
            ckpt = work / "ckpt" / name
            model.save_pretrained(ckpt, safe_serialization=True, max_shard_size="2MB")
            assert (ckpt / "model.safetensors.index.json").exists(), "expected a sharded checkpoint"
            cfg_dict = json.loads((ckpt / "config.json").read_text())
            patch_tau(model, cfg_dict)
            prompts, logits, greedy = expected_outputs(model, cfg.vocab_size)
            r = run_oracle(ckpt, work / "out" / name)
            if r.returncode != 0:
                raise SystemExit(f"{name}: oracle failed\n{r.stderr}")
            man = compare(name, work / "out" / name, prompts, logits, greedy)
            assert man["fp8"] is False and man["dequantized_by_oracle"] is False
            assert man["softmax_scale"]["used"] == mg.reference_tau(cfg_dict)
            models[name] = (model, cfg_dict)

        # FP8
        model, cfg_dict = models["v3"]
        ckpt = work / "ckpt" / "v3-fp8"
        expected_sd, n_mtp = write_fp8_checkpoint(model, cfg_dict, ckpt)
        ref = random_model(transformers.DeepseekV3Config.from_dict(cfg_dict), 999)
        ref.load_state_dict(expected_sd, strict=True)
        patch_tau(ref, cfg_dict)
        prompts, logits, greedy = expected_outputs(ref, cfg_dict["vocab_size"])
        r = run_oracle(ckpt, work / "out" / "v3-fp8")
        if r.returncode != 0:
            raise SystemExit(f"v3-fp8: oracle failed\n{r.stderr}")
        man = compare("v3-fp8", work / "out" / "v3-fp8", prompts, logits, greedy)
        assert man["fp8"] is True and man["dequantized_by_oracle"] is True
        assert len(man["ignored_tensors"]) == n_mtp, man["ignored_tensors"]
        assert "model.safetensors.index.json" in man["checkpoint_files"]
        # the FP8 model really differs from the fp32 one (the dequant path is exercised)
        fp32_logits = np.load(work / "out" / "v3" / "logits.npy")
        m = ~np.isnan(logits)
        print(f"  v3-fp8 vs v3 fp32 logits max|diff| = {float(np.abs(fp32_logits[m] - logits[m]).max()):.3g} (expected > 0)")

        # Divergence detection: negative correction bias breaks transformers' 0.0 group masking.
        model, cfg_dict = models["v3"]
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n.endswith("e_score_correction_bias"):
                    b.fill_(-1.0)
        ckpt = work / "ckpt" / "v3-negbias"
        model.save_pretrained(ckpt, safe_serialization=True)
        r = run_oracle(ckpt, work / "out" / "v3-negbias")
        assert r.returncode != 0 and "disagrees with the independent DeepSeek reference" in r.stderr, r.stderr[-2000:]
        r = run_oracle(ckpt, work / "out" / "v3-negbias", ["--allow-divergence"])
        assert r.returncode == 0, r.stderr
        man = json.loads((work / "out" / "v3-negbias" / "manifest.json").read_text())
        print(f"  v3-negbias: oracle refused as expected; with --allow-divergence: {man['reference_checks']}")
        assert man["reference_checks"]["router_set_mismatches"] > 0 and man["divergences"]
        print("selftest OK")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
