#!/usr/bin/env python3
"""Live oracle for moeserve's chat templates (engine/chat/): on every run, renders FRESH random
conversations with Python's jinja2 set up exactly as transformers 4.57.1 sets it up for
apply_chat_template (transformers/utils/chat_template_utils.py: ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks, loopcontrols and a {% generation %} tag; its tojson;
raise_exception and strftime_now; messages/tools/documents/add_generation_prompt plus the
special tokens map), renders the same with moeserve-chat-template, and requires byte-identical
text, or an error on both sides (with the same message for raise_exception).

Covers the real templates under tests/data/configs/ and the bundled model's, plus a list of
Jinja snippets that exercise the interpreter beyond what those templates use.

Run by CTest with /usr/bin/python3 (Debian's python3-jinja2); exits 77 (skipped) when jinja2
is missing. --seed fixes the conversations (default: random, printed for reproduction).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime

try:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("SKIP: python3-jinja2 is not installed (scripts/setup installs it)")
    sys.exit(77)

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_conversations  # noqa: E402  (the shared conversation generator)


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker without tracking: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_environment()


def python_render(template_source, variables):
    try:
        return {"text": ENV.from_string(template_source).render(**variables)}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception raises the base TemplateError; Jinja's own errors are subclasses.
        if type(e) is jinja2.exceptions.TemplateError:
            return {"error": str(e), "raised": True}
        return {"error": "%s: %s" % (type(e).__name__, e)}
    except Exception as e:  # TypeError, ZeroDivisionError, ... in the template
        return {"error": "%s: %s" % (type(e).__name__, e)}


def run_tool(tool, args, cases):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
        path = f.name
    try:
        out = subprocess.run([tool, *args, "--cases", path], capture_output=True, check=False)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise SystemExit("moeserve-chat-template failed: %s" % out.stderr.decode(errors="replace"))
    return json.loads(out.stdout.decode("utf-8"))


def same(expected, actual):
    if "text" in expected:
        return actual.get("text") == expected["text"]
    if "error" not in actual:
        return False
    return not expected.get("raised") or actual["error"] == expected["error"]


def check(label, cases, expected, actual, failures):
    for case, want, got in zip(cases, expected, actual):
        if not same(want, got):
            failures.append((label, case, want, got))
    return len(cases)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", required=True, help="moeserve-chat-template")
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--conversations", type=int, default=150, help="per template")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    print("seed %d (rerun with --seed %d)" % (seed, seed))
    rng = random.Random(seed)
    failures = []
    total = 0

    # 1. Jinja snippets, each with its own context.
    snippets = chat_conversations.snippet_cases()
    expected = [python_render(c["template"], c["context"]) for c in snippets]
    actual = run_tool(args.tool, [], snippets)
    total += check("snippet", snippets, expected, actual, failures)

    # 2. The real chat templates over fresh random conversations.
    for name, config_path in chat_conversations.template_configs(args.source_dir):
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        template = config["chat_template"]
        special = chat_conversations.special_tokens_map(config)
        cases = [chat_conversations.random_case(rng, name) for _ in range(args.conversations)]
        expected = [{"error": chat_conversations.expected_failure(c)}
                    if chat_conversations.expected_failure(c) else
                    python_render(template, chat_conversations.template_variables(c, special))
                    for c in cases]
        actual = run_tool(args.tool, ["--tokenizer-config", config_path], cases)
        total += check(name, cases, expected, actual, failures)
        texts = sum(1 for e in expected if "text" in e)
        print("%-40s %d conversations, %d rendered, %d errors on both sides" %
              (name, len(cases), texts, len(cases) - texts))

    for label, case, want, got in failures[:10]:
        print("\nMISMATCH in %s\n case: %s\n python:   %r\n moeserve: %r" %
              (label, json.dumps(case, ensure_ascii=False)[:2000], want, got))
    print("\n%d of %d cases identical" % (total - len(failures), total))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
