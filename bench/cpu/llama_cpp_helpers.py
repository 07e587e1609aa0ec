#!/usr/bin/env python3
"""Small steps of bench/cpu/compare_llama_cpp.sh that are easier in Python than in sed.

  patch-converter LLAMA_CPP_SRC
      Lets convert_hf_to_gguf.py accept our tokenizers. Its BPE pre-tokenizer check hashes the
      token ids of a probe string, so it only knows tokenizers it has seen; ours (trained on the
      KJV text) use DeepSeek-V3's pre-tokenizer byte for byte but a different vocabulary, so
      the hash is new. The patch makes an unknown hash fall back to $MOESERVE_GGUF_PRE
      ("deepseek-v3") when that is set. Applied to the copy in the work dir only; idempotent.

  prepare-convert-dir CHECKPOINT_DIR OUT_DIR
      OUT_DIR gets a symlink to every checkpoint file except config.json, and a config.json with
      "q_lora_rank": null written as 0. llama.cpp's DeepSeek-2 loader only treats a model
      without q_lora_rank as "lite" (no q LoRA) when it has 26 or 27 layers; for any other
      layer count it requires the GGUF key, which the converter only writes when the value is
      not null. 0 means "no q LoRA" to both.

  gguf-tensors GGUF OUT_JSON
      Name, type, shape and byte size of every tensor in a GGUF file (for the decode floor).
      Needs the gguf-py of the llama.cpp source on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PATCH_MARK = "moeserve bench patch"


def patch_converter(src: Path) -> None:
    target = src / "conversion" / "base.py"
    text = target.read_text()
    if PATCH_MARK in text:
        print(f"{target}: already patched")
        return
    # The first `if res is None:` after the hash table, inside get_vocab_base_pre.
    start = text.index("def get_vocab_base_pre(")
    anchor = "        if res is None:\n"
    at = text.index(anchor, start)
    patch = (f"        # {PATCH_MARK}: an unknown hash falls back to $MOESERVE_GGUF_PRE.\n"
             "        if res is None and os.environ.get(\"MOESERVE_GGUF_PRE\"):\n"
             "            res = os.environ[\"MOESERVE_GGUF_PRE\"]\n"
             "            logger.warning(\n"
             "                f\"unknown pre-tokenizer hash {chkhsh}: using {res!r}\")\n")
    target.write_text(text[:at] + patch + text[at:])
    print(f"{target}: patched")


def prepare_convert_dir(checkpoint: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for entry in checkpoint.iterdir():
        if entry.name == "config.json" or not entry.is_file():
            continue
        link = out / entry.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(entry.resolve())
    config = json.loads((checkpoint / "config.json").read_text())
    if "q_lora_rank" in config and config["q_lora_rank"] is None:
        config["q_lora_rank"] = 0
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def gguf_tensors(path: Path, out: Path) -> None:
    import gguf  # from the llama.cpp source's gguf-py

    reader = gguf.GGUFReader(str(path))
    rows = [{"name": t.name, "type": t.tensor_type.name,
             "shape": [int(x) for x in t.shape], "n_bytes": int(t.n_bytes)}
            for t in reader.tensors]
    out.write_text(json.dumps(rows, indent=1) + "\n")
    by_type: dict[str, int] = {}
    for r in rows:
        by_type[r["type"]] = by_type.get(r["type"], 0) + r["n_bytes"]
    print(f"{path.name}: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in by_type.items()))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "patch-converter":
        patch_converter(Path(argv[1]))
    elif len(argv) == 3 and argv[0] == "prepare-convert-dir":
        prepare_convert_dir(Path(argv[1]), Path(argv[2]))
    elif len(argv) == 3 and argv[0] == "gguf-tensors":
        gguf_tensors(Path(argv[1]), Path(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
