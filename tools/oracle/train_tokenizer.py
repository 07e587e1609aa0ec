#!/usr/bin/env python3
"""Train a small byte-level BPE tokenizer with DeepSeek-V3's pipeline, for C++ tokenizer tests.

    python tools/oracle/train_tokenizer.py --out tests/data/tokenizers/kjv-bpe-8k [--vocab-size 8192]
        [--corpus FILE]

The corpus is the King James Bible as printed by `bible -f 'Gen1:1-Rev22:21'` (Debian package
`bible-kjv`, public domain, 4,404,412 bytes, sha256 cd45f0c9…229d), unless --corpus FILE is given.
Each corpus line (with its trailing "\\n") is one training sequence.

The tokenizer copies DeepSeek-V3's tokenizer.json settings (everything except the vocabulary and
merges):

* normalizer: Sequence([]) (no normalization; DeepSeek-V3 and deepseek-coder serialize an empty
  Sequence rather than null);
* pre_tokenizer: Sequence of three Split(regex, behavior=Isolated, invert=false) then
  ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=false);
* model: BPE, no unk token, no byte fallback, every one of the 256 byte symbols in the vocab;
* post_processor: TemplateProcessing "<bos> $A" / "<bos> $A <bos> $B", which is what
  transformers' LlamaTokenizerFast.update_post_processor() builds for add_bos_token=true,
  add_eos_token=false (and what DeepSeek-R1-Distill's tokenizer.json carries);
* decoder: ByteLevel;
* added tokens: ids 0,1,2 = <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>, <｜▁pad▁｜> (special, in
  the BPE vocab as in DeepSeek-V3), then after the trained vocab a few of DeepSeek-V3/R1's chat
  tokens in R1's order; <think> and </think> are special=false. All have lstrip=rstrip=
  single_word=false and normalized=true, like DeepSeek's.

Also writes tokenizer_config.json modelled on DeepSeek-V3's (chat_template copied verbatim from
shared/data/configs/deepseek-v3.tokenizer_config.json).

Training is deterministic: the same corpus and vocab size give a byte-identical tokenizer.json.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V3_TOKENIZER_CONFIG = os.path.join(os.path.dirname(REPO), "shared", "data", "configs",
                                   "deepseek-v3.tokenizer_config.json")

# DeepSeek-V3's pre-tokenizer regexes, exactly as in its tokenizer.json. Copied from
# ggml-org/llama.cpp src/llama-vocab.cpp @ 00ad355e009e83abf98f96a6ded7193b95763681,
# case LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM (llama.cpp copies the tokenizer.json strings; the C
# escapes there are the same as the Python escapes here). The same three strings, as JSON, appear
# in a pretty-printed excerpt of deepseek-ai/DeepSeek-V3's tokenizer.json (HF commit e815299) and
# in several other public tokenizer loaders. Note: "\r" and "\n" below are real CR/LF characters
# inside the regex character classes (the JSON has "\r\n", not "\\r\\n"), while "\\s", "\\p{L}"
# etc. are regex escapes.
DSV3_DIGITS = "\\p{N}{1,3}"
DSV3_CJK = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"  # [一-龥぀-ゟ゠-ヿ]+ ; no Hangul
DSV3_MAIN = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
             "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
             "| ?[\\p{P}\\p{S}]+[\r\n]*"
             "|\\s*[\r\n]+"
             "|\\s+(?!\\S)"
             "|\\s+")

BOS = "<｜begin▁of▁sentence｜>"  # U+FF5C fullwidth vertical bar, U+2581 lower one eighth block
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"

# (content, special) appended after the trained vocab, in DeepSeek-R1's id order (R1 has them at
# 128798..128814, after the <｜place▁holder▁no▁N｜> tokens, which are left out here).
EXTRA_TOKENS = [
    ("<think>", False),
    ("</think>", False),
    ("<｜fim▁hole｜>", True),
    ("<｜fim▁begin｜>", True),
    ("<｜fim▁end｜>", True),
    ("<｜User｜>", True),
    ("<｜Assistant｜>", True),
    ("<|EOT|>", True),
    ("<｜tool▁calls▁begin｜>", True),
    ("<｜tool▁calls▁end｜>", True),
    ("<｜tool▁call▁begin｜>", True),
    ("<｜tool▁call▁end｜>", True),
    ("<｜tool▁outputs▁begin｜>", True),
    ("<｜tool▁outputs▁end｜>", True),
    ("<｜tool▁output▁begin｜>", True),
    ("<｜tool▁output▁end｜>", True),
    ("<｜tool▁sep｜>", True),
]

EXPECTED_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": DSV3_DIGITS}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": DSV3_CJK}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": DSV3_MAIN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}


def added(content, special):
    return AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=True,
                      special=special)


def read_corpus(path):
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read()
    try:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True)
    except FileNotFoundError:
        sys.exit("error: `bible` not found; apt-get install bible-kjv, or pass --corpus FILE")
    return out.stdout.decode("utf-8")


def build(corpus_text, vocab_size):
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(DSV3_DIGITS), behavior="isolated", invert=False),
        pre_tokenizers.Split(Regex(DSV3_CJK), behavior="isolated", invert=False),
        pre_tokenizers.Split(Regex(DSV3_MAIN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[added(BOS, True), added(EOS, True), added(PAD, True)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    lines = corpus_text.splitlines(keepends=True)
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))

    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0",
        pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
        special_tokens=[(BOS, tok.token_to_id(BOS))],
    )
    for content, special in EXTRA_TOKENS:
        if special:
            tok.add_special_tokens([added(content, True)])
        else:
            tok.add_tokens([added(content, False)])
    return tok


def check(tok_json_path, vocab_size):
    """Reloads the saved file and checks the structure the C++ side relies on."""
    d = json.load(open(tok_json_path, encoding="utf-8"))
    assert d["pre_tokenizer"] == EXPECTED_PRE_TOKENIZER, d["pre_tokenizer"]
    assert d["normalizer"] == {"type": "Sequence", "normalizers": []}, d["normalizer"]
    assert d["decoder"]["type"] == "ByteLevel"
    m = d["model"]
    assert m["type"] == "BPE" and m["byte_fallback"] is False and m["unk_token"] is None
    assert len(m["vocab"]) == vocab_size, len(m["vocab"])
    assert sorted(m["vocab"].values()) == list(range(vocab_size))
    for ch in pre_tokenizers.ByteLevel.alphabet():
        assert ch in m["vocab"], ch
    want = [(0, BOS, True), (1, EOS, True), (2, PAD, True)]
    want += [(vocab_size + i, c, s) for i, (c, s) in enumerate(EXTRA_TOKENS)]
    got = [(a["id"], a["content"], a["special"]) for a in d["added_tokens"]]
    assert got == want, got
    for a in d["added_tokens"]:
        assert (a["lstrip"], a["rstrip"], a["single_word"], a["normalized"]) == (False, False, False, True), a
    for i, c, _ in want[:3]:
        assert m["vocab"][c] == i
    tok = Tokenizer.from_file(tok_json_path)
    sample = "In the beginning God created the heaven and the earth.\n"
    enc = tok.encode(sample)
    assert enc.ids[0] == 0 and tok.encode(sample, add_special_tokens=False).ids == enc.ids[1:]
    assert tok.decode(enc.ids, skip_special_tokens=False) == BOS + sample
    assert tok.decode(enc.ids) == sample


def write_tokenizer_config(out_dir):
    with open(V3_TOKENIZER_CONFIG, encoding="utf-8") as f:
        v3 = json.load(f)

    def tokdict(content):
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}

    # Same keys, order and values as DeepSeek-V3's tokenizer_config.json (pad_token is EOS there
    # too); only the token dicts are rebuilt so that this file does not depend on V3's spelling.
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": tokdict(BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": tokdict(EOS),
        "legacy": True,
        "model_max_length": v3["model_max_length"],
        "pad_token": tokdict(EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": v3["chat_template"],
    }
    for k in ("bos_token", "eos_token", "pad_token"):
        assert cfg[k] == v3[k], k
    assert list(cfg) == list(v3), (list(cfg), list(v3))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--vocab-size", type=int, default=8192,
                    help="BPE vocab size including the 3 special tokens at ids 0-2 "
                         "(the extra added tokens come after it)")
    ap.add_argument("--corpus", help="UTF-8 text file to train on instead of `bible -f ...`")
    args = ap.parse_args()

    text = read_corpus(args.corpus)
    print(f"corpus: {len(text.encode('utf-8'))} bytes, sha256 "
          f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}", file=sys.stderr)
    tok = build(text, args.vocab_size)
    if tok.get_vocab_size(with_added_tokens=False) != args.vocab_size:
        sys.exit(f"error: trained only {tok.get_vocab_size(with_added_tokens=False)} tokens; "
                 f"the corpus is too small for --vocab-size {args.vocab_size}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "tokenizer.json")
    tok.save(path, pretty=True)
    check(path, args.vocab_size)
    write_tokenizer_config(args.out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        p = os.path.join(args.out, name)
        print(f"{p}: {os.path.getsize(p)} bytes, sha256 "
              f"{hashlib.sha256(open(p, 'rb').read()).hexdigest()}", file=sys.stderr)


if __name__ == "__main__":
    main()
