"""Helpers the Python integration tests share (python_client_test.py, openai_api_test.py)."""

import os
import re
import subprocess


def ensure_checkpoint(make_model, root, preset="tiny-v3", seed=1234):
    """The checkpoint the C++ tests use (TestCheckpointDir): written once, renamed into place."""
    final_dir = os.path.join(root, f"{preset}-s{seed}")
    if os.path.exists(os.path.join(final_dir, "config.json")):
        return final_dir
    os.makedirs(root, exist_ok=True)
    temp_dir = os.path.join(root, f".tmp-{preset}-py-{os.getpid()}")
    subprocess.run([make_model, "--preset", preset, "--out", temp_dir, "--shards", "2",
                    "--seed", str(seed)], check=True)
    try:
        os.rename(temp_dir, final_dir)
    except OSError:  # another test process got there first
        subprocess.run(["rm", "-rf", temp_dir], check=False)
    return final_dir


def metric_value(text, name, labels=""):
    """Sum of the samples of `name` whose label set contains `labels` (Prometheus text format);
    None if absent."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if match and match.group(1) == name and labels in (match.group(2) or ""):
            total += float(match.group(3))
            found = True
    return total if found else None
