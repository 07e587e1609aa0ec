#!/usr/bin/env python3
"""Golden chat-template renderings from Hugging Face transformers, for
tests/engine/chat/chat_template_golden_test.cc.

For each real template (tests/engine/chat/chat_conversations.py: TEMPLATE_CONFIGS), builds a
tokenizer with transformers from that tokenizer_config.json (the tokenizer class is replaced by
PreTrainedTokenizerFast over the bundled model's tokenizer.json, because the Kimi and DeepSeek
configs name classes whose vocab files are not in the repo; the chat template and the special
tokens are the config's own), then calls the real tokenizer.apply_chat_template(messages,
tools=..., add_generation_prompt=..., tokenize=False, **kwargs) on seeded random conversations
and writes tests/golden/chat_templates/<name>.json:

  {"template_config": PATH, "transformers_version": ..., "jinja2_version": ..., "seed": N,
   "cases": [{"messages": [...], "add_generation_prompt": b, ["tools": [...]], ["kwargs": {}],
              "expected": {"text": "..."} | {"error": "...", "raised": b}}]}

"raised" marks the template's own raise_exception(), whose message must match exactly.

Setup (no torch needed):
  python3 -m venv /tmp/oracle-venv
  /tmp/oracle-venv/bin/pip install transformers==4.57.1 jinja2==3.1.6
  /tmp/oracle-venv/bin/python tools/oracle/render_chat_templates.py [--per-template 60] [--seed 22]
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile

import jinja2
import transformers
from transformers import AutoTokenizer

SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "engine", "chat"))
import chat_conversations  # noqa: E402

BASE_TOKENIZER = os.path.join(SOURCE_DIR, "models", "kjv-v3-tiny", "tokenizer.json")


def load_tokenizer(config_path, workdir):
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("auto_map", None)
    os.makedirs(workdir)
    shutil.copy(BASE_TOKENIZER, os.path.join(workdir, "tokenizer.json"))
    with open(os.path.join(workdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False)
    tokenizer = AutoTokenizer.from_pretrained(workdir)
    # The C++ side reads special tokens straight from the config; check the rule it follows.
    expected = chat_conversations.special_tokens_map(config)
    if tokenizer.special_tokens_map != expected:
        raise SystemExit("%s: special_tokens_map %r != %r" %
                         (config_path, tokenizer.special_tokens_map, expected))
    return tokenizer


def render(tokenizer, case):
    if not case["messages"]:
        # apply_chat_template raises IndexError reading messages[0]; moeserve refuses too.
        return {"error": "IndexError: list index out of range", "raised": False}
    try:
        text = tokenizer.apply_chat_template(
            case["messages"], tools=case.get("tools"),
            add_generation_prompt=case.get("add_generation_prompt", False), tokenize=False,
            **case.get("kwargs", {}))
        return {"text": text}
    except jinja2.exceptions.TemplateError as e:
        if type(e) is jinja2.exceptions.TemplateError:  # raise_exception()
            return {"error": str(e), "raised": True}
        return {"error": "%s: %s" % (type(e).__name__, e), "raised": False}
    except Exception as e:  # TypeError etc. inside the template
        return {"error": "%s: %s" % (type(e).__name__, e), "raised": False}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-template", type=int, default=50)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--out", default=os.path.join(SOURCE_DIR, "tests", "golden", "chat_templates"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, config_path) in enumerate(chat_conversations.template_configs(SOURCE_DIR)):
            tokenizer = load_tokenizer(config_path, os.path.join(tmp, name))
            rng = random.Random(args.seed * 1000 + index)
            cases = []
            for _ in range(args.per_template):
                case = chat_conversations.random_case(rng, name)
                case["expected"] = render(tokenizer, case)
                cases.append(case)
            golden = {
                "template_config": os.path.relpath(config_path, SOURCE_DIR),
                "transformers_version": transformers.__version__,
                "jinja2_version": jinja2.__version__,
                "seed": args.seed,
                "cases": cases,
            }
            path = os.path.join(args.out, name + ".json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(golden, f, ensure_ascii=False, indent=1)
                f.write("\n")
            texts = sum(1 for c in cases if "text" in c["expected"])
            print("%s: %d cases (%d rendered, %d errors)" % (path, len(cases), texts,
                                                              len(cases) - texts))


if __name__ == "__main__":
    main()
