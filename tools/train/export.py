#!/usr/bin/env python3
"""Writes the shipped checkpoints of kjv-v3-tiny from a training run.

    /work/oracle-venv/bin/python tools/train/export.py --work WORK_DIR \
        --out models/kjv-v3-tiny --out-fp8 models/kjv-v3-tiny-fp8

BF16 variant: every tensor in BF16 except the routers' e_score_correction_bias (F32), as in
DeepSeek-V3's checkpoint. FP8 variant: derived from the BF16 weights (so both ship the same
model): every linear weight of attention and MLPs (the MTP block's too, as in DeepSeek-V3;
its eh_proj stays BF16) becomes F8_E4M3 with a 128x128-block F32
`weight_scale_inv` = amax/448 (an all-zero block gets 1), W = fp8 * scale_inv, the same semantics
as engine/ops/linear/fp8_quant_cpu.cc QuantizeFp8BlockWeight; embeddings, lm_head, norms, the
router weight and its bias stay as in the BF16 variant. Both directories get the tokenizer,
config.json (DeepSeek-V3 style) and generation_config.json.
"""

import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import DeepseekV3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtp as mtp_lib  # noqa: E402
import train  # noqa: E402

BLOCK = 128
FP8_MAX = 448.0
QUANTIZED_SUFFIXES = ("q_a_proj.weight", "q_b_proj.weight", "kv_a_proj_with_mqa.weight",
                      "kv_b_proj.weight", "o_proj.weight", "gate_proj.weight", "up_proj.weight",
                      "down_proj.weight")


def is_quantized(name):
    return name.startswith("model.layers.") and name.endswith(QUANTIZED_SUFFIXES)


def quantize_block_fp8(w):
    """w: fp32 [rows, cols] -> (float8_e4m3fn [rows, cols], fp32 scale_inv [ceil r/128, ceil c/128])."""
    rows, cols = w.shape
    br, bc = -(-rows // BLOCK), -(-cols // BLOCK)
    padded = torch.zeros(br * BLOCK, bc * BLOCK, dtype=torch.float32)
    padded[:rows, :cols] = w
    amax = padded.abs().view(br, BLOCK, bc, BLOCK).amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    expanded = scale.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:rows, :cols]
    q = (w / expanded).to(torch.float8_e4m3fn)
    return q, scale.contiguous()


def config_json(hf_config, fp8):
    c = dict(hf_config)
    for k in ("transformers_version", "_name_or_path", "dtype", "torch_dtype", "use_cache",
              "pad_token_id", "quantization_config"):
        c.pop(k, None)
    c["architectures"] = ["DeepseekV3ForCausalLM"]
    c["model_type"] = "deepseek_v3"
    c["torch_dtype"] = "bfloat16"
    c["use_cache"] = True
    if fp8:
        c["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                    "quant_method": "fp8", "weight_block_size": [BLOCK, BLOCK]}
    return dict(sorted(c.items()))


def write_dir(out, tensors, config, tok_dir, readme_src=None):
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": config["bos_token_id"],
                   "eos_token_id": config["eos_token_id"], "do_sample": True,
                   "temperature": 0.7, "top_p": 0.95}, f, indent=2)
        f.write("\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tok_dir, name), os.path.join(out, name))


def read_run(work, from_checkpoint):
    """The run's tensors under their checkpoint names (the MTP module as model.layers.{N}.*)
    and its config as a dict."""
    if from_checkpoint:
        ck = torch.load(os.path.join(work, "checkpoint.pt"), weights_only=False)
        config = train.model_config()
        model = DeepseekV3ForCausalLM(config)
        model.load_state_dict(ck["model"])
        module = mtp_lib.MtpModule(config)
        module.load_state_dict(ck["mtp"])
        if "ema" in ck:  # a --ema run exports its weight average, as its hf/ would hold
            average = train.WeightAverage({"model": model, "mtp": module})
            average.load(ck["ema"])
            average.swap()
        src = dict(model.state_dict())
        src.update(module.checkpoint_tensors())
        return src, config.to_dict()
    hf = os.path.join(work, "hf")
    src = load_file(os.path.join(hf, "model.safetensors"))
    if os.path.exists(os.path.join(hf, "mtp.safetensors")):
        src.update(load_file(os.path.join(hf, "mtp.safetensors")))
    with open(os.path.join(hf, "config.json")) as f:
        return src, json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, help="train.py's --work directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--out-fp8", required=True)
    ap.add_argument("--from-checkpoint", action="store_true",
                    help="export WORK/checkpoint.pt (a run still going, or one that was cut "
                         "short) instead of the finished run's WORK/hf/")
    args = ap.parse_args()

    src, hf_config = read_run(args.work, args.from_checkpoint)
    tok_dir = os.path.join(args.work, "tokenizer")

    bf16 = {}
    for name, t in sorted(src.items()):
        keep_f32 = name.endswith("e_score_correction_bias")
        bf16[name] = t.float().contiguous() if keep_f32 else t.to(torch.bfloat16).contiguous()
    write_dir(args.out, bf16, config_json(hf_config, fp8=False), tok_dir)

    fp8 = {}
    for name, t in bf16.items():
        if is_quantized(name):
            q, s = quantize_block_fp8(t.float())
            fp8[name] = q.contiguous()
            fp8[name + "_scale_inv"] = s
        else:
            fp8[name] = t
    n_q = sum(1 for n in fp8 if n.endswith("_scale_inv"))
    write_dir(args.out_fp8, fp8, config_json(hf_config, fp8=True), tok_dir)
    for d in (args.out, args.out_fp8):
        size = os.path.getsize(os.path.join(d, "model.safetensors"))
        print(f"{d}/model.safetensors: {size / 1e6:.2f} MB")
    print(f"{n_q} FP8 weights")


if __name__ == "__main__":
    main()
