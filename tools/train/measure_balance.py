#!/usr/bin/env python3
"""Measures the bundled model's expert balance through moeserve's own /metrics.

    python3 tools/train/measure_balance.py --build build [--model models/kjv-v3-tiny]

Starts `BUILD/server/moeserve --per-expert-metrics` on the model (ephemeral ports), sends every
held-out verse (the book of Ruth, tools/train/corpus.py) as a prompt through
`BUILD/clients/cli/moeserve-cli generate --max-tokens 1`, scrapes /metrics and prints a markdown
table per MoE layer: tokens per expert (moeserve_moe_expert_tokens_total), max/mean, and the
server's moeserve_moe_expert_balancedness (mean/max). Uses only the standard library.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import corpus  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--model", default=os.path.join(REPO, "models", "kjv-v3-tiny"))
    args = ap.parse_args()
    _, held, _ = corpus.split()

    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "ports.json")
        log = open(os.path.join(tmp, "server.log"), "w")
        server = subprocess.Popen(
            [os.path.join(args.build, "server", "moeserve"), "--model", args.model,
             "--per-expert-metrics", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
             "--port-file", port_file], stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(600):
                if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
                    break
                if server.poll() is not None:
                    sys.exit(f"moeserve exited: {open(log.name).read()}")
                time.sleep(0.1)
            ports = json.load(open(port_file))
            metrics_url = f"http://127.0.0.1:{ports['metrics_port']}/metrics"

            def routed():
                text = urllib.request.urlopen(metrics_url).read().decode()
                out = {}
                for m in re.finditer(r'^moeserve_moe_expert_tokens_total\{([^}]*)\} (\S+)$', text,
                                     re.M):
                    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
                    out[(int(labels["layer"]), int(labels["expert"]))] = float(m.group(2))
                bal = {int(l): float(v) for l, v in re.findall(
                    r'^moeserve_moe_expert_balancedness\{[^}]*layer="(\d+)"[^}]*\} (\S+)$', text,
                    re.M)}
                return out, bal

            warm, _ = routed()  # the server's warm-up forward is counted too; subtract it
            cli = [os.path.join(args.build, "clients", "cli", "moeserve-cli"), "--target",
                   f"127.0.0.1:{ports['grpc_port']}", "generate", "--max-tokens", "1",
                   "--temperature", "0"]
            for v in held:
                subprocess.run(cli + [v[3]], check=True, stdout=subprocess.DEVNULL)
            counts, bal = routed()
        finally:
            server.terminate()
            server.wait()

    layers = sorted({l for l, _ in counts})
    experts = sorted({e for _, e in counts})
    print(f"{len(held)} held-out verses of {corpus.HELD_OUT_BOOK} served by moeserve "
          f"({os.path.relpath(args.model, REPO)}):\n")
    print("| layer | " + " | ".join(f"e{e}" for e in experts)
          + " | max/mean | balancedness (mean/max, since start) |")
    print("|---" * (len(experts) + 3) + "|")
    for l in layers:
        c = [counts[(l, e)] - warm.get((l, e), 0.0) for e in experts]
        mean = sum(c) / len(c)
        print(f"| {l} | " + " | ".join(f"{int(x)}" for x in c)
              + f" | {max(c) / mean:.2f} | {bal.get(l, float('nan')):.3f} |")


if __name__ == "__main__":
    main()
