#!/usr/bin/env python3
"""The model card's quality figures for a shipped kjv-v3-tiny checkpoint (transformers, fp32).

    tools/oracle/.venv/bin/python tools/train/evaluate.py [--model models/kjv-v3-tiny]
        [--out models/kjv-v3-tiny/training/evaluation.json]

* held-out perplexity: the book of Ruth (tools/train/corpus.py), in chunks of 255 tokens each
  after a BOS, as tools/train/make_golden.py and tests/models/kjv_v3_tiny_test.cc measure it;
* KJV words: 20 sampled continuations (temperature 0.8, 48 tokens, seeds 1..20) of the
  golden prompts (make_golden.py's: the demo prompt, then the openings of held-out verses); the
  share of the words the model wrote (runs of letters, case-insensitive; generated_words: the
  prompt's words excluded unless the continuation extends its last one, and a last word cut by
  the token limit excluded) that occur anywhere in the KJV;
* lexicon leaks: on the held-out text, teacher-forced, the probability (at the sampling
  temperature) the model gives tokens that would spell a word not in the KJV
  (tools/train/lexicon.py), summed over positions, per held-out word: a low-noise companion to
  the sampled count (it is higher, since held-out text is harder for the model than its own);
* MTP: on the held-out text, teacher-forced, how often the MTP module's argmax for token i+2
  equals the model's own argmax at position i+1 (the greedy acceptance rate of speculative
  decoding with one draft token), and the module's cross-entropy.
"""

import argparse
import json
import math
import os
import sys

import torch
from tokenizers import Tokenizer
from transformers import DeepseekV3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
import lexicon  # noqa: E402
import mtp as mtp_lib  # noqa: E402
import train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORD = lexicon.WORD


def generated_words(prompt, continuation):
    """The words the model wrote: those of prompt + continuation that contain generated
    letters (a continuation that goes on the prompt's last word makes one word with it), less
    a last word that runs to the end of the text (the token limit may have cut it)."""
    text = prompt + continuation
    spans = [m for m in WORD.finditer(text) if m.end() > len(prompt)]
    if spans and spans[-1].end() == len(text):
        spans.pop()
    return [m.group() for m in spans]


@torch.no_grad()
def sample(model, prompt_ids, n, temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    seq = list(prompt_ids)
    for _ in range(n):
        logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1].float()
        probs = torch.softmax(logits / temperature, dim=-1)
        seq.append(int(torch.multinomial(probs, 1, generator=gen)))
    return seq[len(prompt_ids):]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(REPO, "models", "kjv-v3-tiny"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    config = train.model_config()
    model = DeepseekV3ForCausalLM(config)
    module = mtp_lib.MtpModule(config)
    train.init_from(model, module, args.model)
    model.eval()
    module.eval()
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    train_v, held, _ = corpus.split()
    held_ids = torch.tensor(tok.encode(corpus.as_text(held), add_special_tokens=False).ids)

    lex = lexicon.Lexicon([v[3] for v in train_v + held], tok)
    kjv_words = lex.words
    leaks = []  # per chunk, the probability (at the sampling temperature) of leaving the lexicon

    def count_leaks(chunk, logits):
        leak = lexicon.leak_log_prob(logits / args.temperature, lex.masks_for(chunk)[0]).exp()
        leaks.append(leak.sum().item())

    loss, mtp_loss, acceptance = mtp_lib.held_out(model, module, held_ids, config.bos_token_id,
                                                  train.SEQ_LEN, on_chunk=count_leaks)
    leaks_per_word = sum(leaks) / len(WORD.findall(corpus.as_text(held)))
    samples, total, known, unknown = [], 0, 0, {}
    for i, text in enumerate(corpus.prompt_candidates(held)[:args.samples]):
        ids = tok.encode(text).ids
        out = sample(model, ids, args.tokens, args.temperature, seed=i + 1)
        continuation = tok.decode(out)
        for w in generated_words(text, continuation):
            total += 1
            if w.lower() in kjv_words:
                known += 1
            else:
                unknown[w] = unknown.get(w, 0) + 1
        samples.append({"prompt": text, "continuation": continuation})
    result = {
        "model": os.path.relpath(args.model, REPO),
        "held_out_loss": loss,
        "held_out_perplexity": math.exp(loss),
        "kjv_word_share": known / total,
        "words": total,
        "non_kjv_words": unknown,
        "sampling": {"temperature": args.temperature, "tokens": args.tokens,
                     "seeds": [1, args.samples]},
        "held_out_lexicon_leaks_per_word": leaks_per_word,
        "mtp_held_out_loss": mtp_loss,
        "mtp_greedy_acceptance": acceptance,
        "samples": samples,
    }
    print(f"held-out perplexity {result['held_out_perplexity']:.2f}; KJV words "
          f"{100 * result['kjv_word_share']:.1f}% of {total} (non-words: "
          f"{', '.join(sorted(unknown)) or 'none'}); held-out lexicon leaks "
          f"{leaks_per_word:.4f} per word; MTP greedy acceptance "
          f"{100 * acceptance:.1f}% (MTP loss {mtp_loss:.3f})")
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, ensure_ascii=False, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
