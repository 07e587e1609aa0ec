#!/usr/bin/env python3
"""Trains kjv-v3-tiny, the bundled default model: a tiny DeepSeek-V3-architecture MoE on the KJV.

    /work/oracle-venv/bin/python tools/train/train.py --work WORK_DIR [--steps N] [--max-minutes M]
        [--batch 8] [--lr 2.5e-3] [--bf16] [--threads 1]

Steps: (1) trains the byte-level BPE tokenizer on the training split (tools/oracle/train_tokenizer.py
with --vocab-size 4079, so that with DeepSeek's 17 chat tokens appended the vocabulary is exactly
4096); (2) tokenizes the training verses; (3) trains DeepseekV3ForCausalLM from transformers on
random 256-token windows that start with BOS at a verse boundary, AdamW with warmup + cosine decay;
(4) after every optimizer step updates each MoE layer's router bias the auxiliary-loss-free way
(DeepSeek-V3 paper §2.1.2): bias_e += rate * sign(mean_load - load_e), outside the gradient.

Everything goes under WORK_DIR: tokenizer/, checkpoint.pt (every --ckpt-every steps; a rerun
resumes from it), train_log.jsonl (loss, lr, per-layer expert load per logged step), and
hf/ (the final model, fp32 safetensors + config). tools/train/export.py turns hf/ into the
shipped BF16 and FP8 checkpoints.

One multi-token-prediction (MTP) module (num_nextn_predict_layers = 1) trains beside the main
model with DeepSeek-V3's λ-weighted next-next-token loss (tools/train/mtp.py; transformers has no
MTP module). --init-from DIR starts the main model from a shipped checkpoint (continued training;
the MTP module, if DIR has none, starts fresh).

--lexicon-weight W adds W times an unlikelihood term on the tokens that would spell a word the
training text does not contain (tools/train/lexicon.py); --distill-alongside distils the module
from the main model while the main model trains (mtp.alongside_distill_loss).
"""

import argparse
import contextlib
import json
import math
import os
import random
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
import lexicon  # noqa: E402
import mtp as mtp_lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BPE_VOCAB = 4079  # + 17 added chat tokens = 4096
SEQ_LEN = 256


def model_config():
    return DeepseekV3Config(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=768,
        moe_intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=2,
        n_shared_experts=1,
        n_routed_experts=8,
        routed_scaling_factor=2.5,
        kv_lora_rank=512,
        q_lora_rank=256,
        qk_rope_head_dim=64,
        v_head_dim=128,
        qk_nope_head_dim=128,
        n_group=4,
        topk_group=2,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        norm_topk_prob=True,
        hidden_act="silu",
        max_position_embeddings=4096,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        # Same YaRN shape as DeepSeek-V3 (factor 40 over 4096 there); factor 1 keeps the trained
        # context exact while exercising the YaRN code path (mscale terms = 1).
        rope_scaling={"type": "yarn", "rope_type": "yarn", "factor": 1.0,
                      "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1,
                      "mscale": 1.0, "mscale_all_dim": 1.0},
        attention_bias=False,
        attention_dropout=0.0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=None,
        num_nextn_predict_layers=1,
        topk_method="noaux_tc",
        scoring_func="sigmoid",
    )


def train_tokenizer(work, train_text):
    out = os.path.join(work, "tokenizer")
    if os.path.exists(os.path.join(out, "tokenizer.json")):
        return out
    os.makedirs(work, exist_ok=True)
    text_path = os.path.join(work, "train_text.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(train_text)
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "oracle", "train_tokenizer.py"),
                    "--out", out, "--vocab-size", str(BPE_VOCAB), "--corpus", text_path],
                   check=True)
    return out


def tokenize_verses(tok, verses):
    """Returns (stream of token ids, start offset of each verse in it)."""
    stream, starts = [], []
    encs = tok.encode_batch([v[3] + "\n" for v in verses], add_special_tokens=False)
    for e in encs:
        starts.append(len(stream))
        stream.extend(e.ids)
    return torch.tensor(stream, dtype=torch.long), torch.tensor(starts, dtype=torch.long)


def sample_batch(stream, starts, batch, rng, bos):
    rows = []
    for _ in range(batch):
        while True:
            s = int(starts[rng.randrange(len(starts))])
            if s + SEQ_LEN - 1 <= len(stream):
                break
        rows.append(torch.cat([torch.tensor([bos]), stream[s:s + SEQ_LEN - 1]]))
    return torch.stack(rows)


class LoadMeter:
    """Counts tokens routed to each expert of each MoE layer (the MTP block is layer
    num_hidden_layers) via forward hooks on the routers."""

    def __init__(self, model, mtp):
        self.gates = {}
        self.counts = {}
        for i, layer in enumerate(list(model.model.layers) + [mtp.block]):
            gate = getattr(layer.mlp, "gate", None)
            if gate is None:
                continue
            self.gates[i] = gate
            self.counts[i] = torch.zeros(gate.n_routed_experts, dtype=torch.float64)
            gate.register_forward_hook(self._hook(i))

    def _hook(self, i):
        def hook(_module, _inputs, output):
            topk_indices = output[0]
            self.counts[i] += torch.bincount(topk_indices.reshape(-1),
                                             minlength=self.counts[i].numel()).double()
        return hook

    def take(self):
        out = {i: c.clone() for i, c in self.counts.items()}
        for c in self.counts.values():
            c.zero_()
        return out


def add_dropout(model, mtp, p):
    """Dropout on the embedding output and on every decoder block's attention and MLP branch
    before it joins the residual stream (transformers' DeepseekV3 has attention-probability
    dropout only). Forward hooks, so the modules and the checkpoint stay transformers' own;
    active in train() mode only, so evaluation and export see the plain model."""
    drop = torch.nn.functional.dropout

    def hook(module, _inputs, output):
        if isinstance(output, tuple):
            return (drop(output[0], p, module.training),) + output[1:]
        return drop(output, p, module.training)

    model.model.embed_tokens.register_forward_hook(hook)
    for layer in list(model.model.layers) + [mtp.block]:
        layer.self_attn.register_forward_hook(hook)
        layer.mlp.register_forward_hook(hook)


def lr_at(step, progress, peak, warmup, floor=0.1):
    """Linear warmup over `warmup` steps, then cosine from peak to peak * floor as progress goes
    0..1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging), evaluated and exported
    in place of the last step's. With batches of 8 windows the held-out loss of consecutive
    checkpoints moved by +-0.01 nats late in stage 4: noise the steps leave in the weights,
    which the average smooths while the learning rate is high. (Once the cosine has decayed it
    matters little: at the end of stage 6 the live weights scored 4.0511, the average 4.0522.)
    Covers the router biases too, which the balancing rule nudges every step.

    `modules` maps a prefix to each module whose weights train ({"mtp": ...} alone when
    distilling: the frozen main model needs no average); the saved state is keyed by
    prefixed name, so export.py can load it into the full model."""

    def __init__(self, modules, decay=0.0):
        self.decay = decay
        self.live = {f"{prefix}.{name}": t for prefix, m in modules.items()
                     for name, t in m.state_dict().items() if t.is_floating_point()}
        self.average = {name: t.detach().clone() for name, t in self.live.items()}

    @torch.no_grad()
    def update(self):
        torch._foreach_lerp_(list(self.average.values()), list(self.live.values()),
                             1.0 - self.decay)

    @torch.no_grad()
    def swap(self):
        """Exchanges live and averaged weights (call twice to restore)."""
        for name, live in self.live.items():
            tmp = live.clone()
            live.copy_(self.average[name])
            self.average[name].copy_(tmp)

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in place for the duration (a periodic evaluation)."""
        self.swap()
        try:
            yield
        finally:
            self.swap()

    def state(self):
        return {name: t.clone() for name, t in self.average.items()}

    @torch.no_grad()
    def load(self, state):
        for name, saved in state.items():
            self.average[name].copy_(saved)


def evaluate(model, mtp, held_ids, bos):
    main, extra, acceptance = mtp_lib.held_out(model, mtp, held_ids, bos, SEQ_LEN)
    return {"held_out_loss": main, "held_out_mtp_loss": extra,
            "held_out_mtp_acceptance": acceptance}


def init_from(model, mtp, directory):
    """Loads a shipped checkpoint (BF16 safetensors) into the main model, and its MTP module
    (model.layers.{N}.*) when it has one."""
    tensors = {k: v.float() for k, v in load_file(os.path.join(directory,
                                                                "model.safetensors")).items()}
    prefix = f"model.layers.{mtp.layer_index}."
    main = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
    model.load_state_dict(main, strict=True)
    module = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if module:
        renamed = {"enorm.weight": "enorm.weight", "hnorm.weight": "hnorm.weight",
                   "eh_proj.weight": "eh_proj.weight",
                   "shared_head.norm.weight": "head_norm.weight"}
        mtp.load_state_dict({renamed.get(k, "block." + k): v for k, v in module.items()},
                            strict=True)
    print(f"initialized from {directory} ({'with' if module else 'without'} an MTP module)",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--bias-rate", type=float, default=1e-3)
    ap.add_argument("--ckpt-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--max-minutes", type=float, default=1e9,
                    help="wall-time budget: the schedule's progress is max(step / steps, "
                         "elapsed / budget), so on a busy machine training ends on time with "
                         "the learning rate fully decayed")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (fp32 master weights)")
    # On a shared 2-core machine 2 threads made steps 10x slower than 1 (tools/train/README.md).
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--mtp-weight", type=float, default=0.3,
                    help="λ of the MTP loss (DeepSeek-V3 used 0.3, then 0.1 late in training)")
    ap.add_argument("--init-from", help="a shipped checkpoint directory to continue training "
                    "(its tokenizer must be the one in WORK/tokenizer)")
    ap.add_argument("--distill", action="store_true",
                    help="train only the MTP module, on the frozen main model's own next-token "
                         "distribution (tools/train/mtp.py distill_loss); needs --init-from")
    ap.add_argument("--lexicon-weight", type=float, default=0.0,
                    help="weight of the unlikelihood of tokens that would spell a word outside "
                         "the training text's lexicon (tools/train/lexicon.py)")
    ap.add_argument("--distill-alongside", action="store_true",
                    help="with --mtp-weight 0: distil the MTP module from the main model while "
                         "the main model trains (mtp.alongside_distill_loss)")
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="residual-branch and embedding dropout (add_dropout); the model "
                         "card's stage 4 compares 0.1 with none")
    ap.add_argument("--final-lr", type=float, default=0.1,
                    help="where the cosine ends, as a fraction of --lr")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="decay of an exponential moving average of the weights (e.g. 0.998); "
                         "when set, held-out figures and the saved model are the average's")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()

    train_v, held_v, digest = corpus.split()
    tok_dir = train_tokenizer(args.work, corpus.as_text(train_v))
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    stream, starts = tokenize_verses(tok, train_v)
    held_ids = torch.tensor(tok.encode(corpus.as_text(held_v), add_special_tokens=False).ids)
    print(f"corpus sha256 {digest}: {len(stream)} training tokens, {len(held_ids)} held-out "
          f"tokens", flush=True)

    config = model_config()
    model = DeepseekV3ForCausalLM(config)
    mtp = mtp_lib.MtpModule(config)
    if args.init_from:
        init_from(model, mtp, args.init_from)
    if args.distill and not args.init_from:
        sys.exit("--distill needs --init-from: a trained main model to distil from")
    if args.distill and args.dropout > 0:
        sys.exit("--distill takes no --dropout: the frozen teacher must be the served model")
    if args.distill_alongside and (args.distill or args.mtp_weight != 0):
        sys.exit("--distill-alongside goes with --mtp-weight 0 and without --distill")
    if args.distill and args.lexicon_weight > 0:
        sys.exit("--distill trains the module alone; --lexicon-weight is for the main model")
    lex = lexicon.Lexicon([v[3] for v in train_v], tok) if args.lexicon_weight > 0 else None
    if args.dropout > 0:
        add_dropout(model, mtp, args.dropout)
    model.train()
    mtp.train()
    if args.distill:
        model.requires_grad_(False)
    params = [("mtp." + n, p) for n, p in mtp.named_parameters()]
    if not args.distill:
        params = list(model.named_parameters()) + params
    n_params = sum(p.numel() for _, p in params)
    print(f"parameters: {n_params} ({n_params * 2 / 1e6:.1f} MB in BF16), of which MTP "
          f"{sum(p.numel() for p in mtp.parameters())}", flush=True)
    decay = [p for n, p in params if p.dim() >= 2]
    no_decay = [p for n, p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    meter = LoadMeter(model, mtp)
    ema = None
    if args.ema > 0:
        trained = {"mtp": mtp} if args.distill else {"model": model, "mtp": mtp}
        ema = WeightAverage(trained, args.ema)
    rng = random.Random(args.seed)
    step = 0
    ckpt_path = os.path.join(args.work, "checkpoint.pt")
    log_path = os.path.join(args.work, "train_log.jsonl")
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        mtp.load_state_dict(ck["mtp"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        rng.setstate(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        if ema is not None and "ema" in ck:
            ema.load(ck["ema"])
        print(f"resumed at step {step}", flush=True)

    def save():
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "mtp": mtp.state_dict(), "opt": opt.state_dict(), "step": step,
                    "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                    "elapsed": elapsed0 + time.time() - t0,
                    **({"ema": ema.state()} if ema is not None else {})}, tmp)
        os.replace(tmp, ckpt_path)

    log = open(log_path, "a")
    tokens_per_step = args.batch * (SEQ_LEN - 1)
    budget_s = args.max_minutes * 60
    elapsed0 = ck["elapsed"] if os.path.exists(ckpt_path) else 0.0
    progress = 0.0
    while progress < 1.0:
        ts = time.time()
        elapsed = elapsed0 + ts - t0
        progress = max(step / args.steps, elapsed / budget_s)
        if progress >= 1.0:
            break
        lr = lr_at(step, progress, args.lr, args.warmup, args.final_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = sample_batch(stream, starts, args.batch, rng, config.bos_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            if args.distill:
                # The log's "mtp" is the KL here; "loss" stays the main model's (unchanged).
                loss = mtp_lib.distill_loss(model, mtp, batch)
                main_loss, mtp_loss = torch.zeros(()), loss
            else:
                hidden, logits = mtp_lib.main_forward(model, batch)
                main_loss = mtp_lib.next_token_loss(logits, batch)
                loss = main_loss
                if args.mtp_weight > 0:
                    mtp_loss = mtp_lib.next_next_token_loss(model, mtp, hidden, batch)
                    loss = loss + args.mtp_weight * mtp_loss
                elif args.distill_alongside:  # the log's "mtp" is the KL
                    mtp_loss = mtp_lib.alongside_distill_loss(model, mtp, hidden, logits, batch)
                    loss = loss + mtp_loss
                else:
                    mtp_loss = torch.zeros(())
                if lex is not None:
                    lexicon_loss = lexicon.unlikelihood(logits[:, :-1],
                                                        lex.masks_for(batch[:, :-1]))
                    loss = loss + args.lexicon_weight * lexicon_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0).item()
        opt.step()
        loads = meter.take()
        # Auxiliary-loss-free balancing: nudge each expert's selection bias toward equal load.
        with torch.no_grad():
            for i, gate in meter.gates.items():
                if args.distill and i != mtp.layer_index:
                    continue  # the frozen main model's routers stay as they are
                load = loads[i]
                gate.e_score_correction_bias += args.bias_rate * torch.sign(
                    load.mean() - load).float()
        if ema is not None:
            ema.update()
        step += 1
        rec = {"step": step, "loss": main_loss.item(), "mtp_loss": mtp_loss.item(),
               **({"lexicon_loss": lexicon_loss.item()} if lex is not None else {}),
               "lr": lr, "grad_norm": gnorm,
               "seconds": time.time() - ts, "elapsed": elapsed0 + time.time() - t0,
               "tokens": step * tokens_per_step,
               "expert_load": {str(i): [int(x) for x in loads[i].tolist()] for i in loads},
               "bias": {str(i): [round(x, 5) for x in g.e_score_correction_bias.tolist()]
                        for i, g in meter.gates.items()}}
        if step % args.eval_every == 0:
            with ema.applied() if ema is not None else contextlib.nullcontext():
                rec.update(evaluate(model, mtp, held_ids, config.bos_token_id))
        log.write(json.dumps(rec) + "\n")
        log.flush()
        maxmean = {i: round(float(l.max() / l.mean()), 2) for i, l in loads.items()}
        print(f"step {step} ({progress:.0%}) loss {main_loss.item():.4f} "
              f"mtp {mtp_loss.item():.4f} "
              + (f"lexicon {lexicon_loss.item():.4f} " if lex is not None else "")
              + f"lr {lr:.2e} "
              f"gnorm {gnorm:.2f} {rec['seconds']:.2f}s max/mean load {maxmean}"
              + (f" held-out loss {rec['held_out_loss']:.4f} mtp {rec['held_out_mtp_loss']:.4f}"
                 f" acceptance {rec['held_out_mtp_acceptance']:.3f}"
                 if "held_out_loss" in rec else ""),
              flush=True)
        if step % args.ckpt_every == 0:
            save()
    save()
    if ema is not None:
        ema.swap()  # from here on the model is the average: evaluated and saved
    rec = {"step": step, "final": True, **evaluate(model, mtp, held_ids, config.bos_token_id)}
    log.write(json.dumps(rec) + "\n")
    print(f"final held-out loss {rec['held_out_loss']:.4f} "
          f"(ppl {math.exp(rec['held_out_loss']):.2f}), MTP loss {rec['held_out_mtp_loss']:.4f}, "
          f"greedy MTP acceptance {rec['held_out_mtp_acceptance']:.3f}", flush=True)
    hf = os.path.join(args.work, "hf")
    model.save_pretrained(hf, safe_serialization=True)
    save_file(mtp.checkpoint_tensors(), os.path.join(hf, "mtp.safetensors"))
    print(f"saved {hf} after {step} steps, {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
