"""The King James Bible corpus for the bundled model, split into training text and a held-out book.

Source: Debian package `bible-kjv` (public domain text of the Authorized Version, 1769 Oxford
edition as distributed by Project Gutenberg / the `bible-kjv` upstream). `bible -f
'Gen1:1-Rev22:21'` prints one verse per line as "<Book><chapter>:<verse> <text>"; we strip the
reference, so the model sees plain verse text, one verse per line.

The book of Ruth (85 verses) is held out: the model never trains on it and the tokenizer is not
trained on it either; it is the perplexity set.
"""

import hashlib
import re
import subprocess
import sys

HELD_OUT_BOOK = "Ruth"
_REF = re.compile(r"^([0-9]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def read_verses():
    """Returns [(book, chapter, verse, text)] in canonical order."""
    try:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True)
    except FileNotFoundError:
        sys.exit("error: `bible` not found; apt-get install bible-kjv")
    raw = out.stdout.decode("utf-8")
    verses = []
    for n, line in enumerate(raw.splitlines(), 1):
        m = _REF.match(line)
        if not m:
            sys.exit(f"error: bible output line {n} is not '<ref> <text>': {line[:60]!r}")
        verses.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4).strip()))
    return verses, hashlib.sha256(out.stdout).hexdigest()


def split():
    """Returns (train_verses, held_out_verses, sha256 of the raw `bible` output)."""
    verses, digest = read_verses()
    train = [v for v in verses if v[0] != HELD_OUT_BOOK]
    held = [v for v in verses if v[0] == HELD_OUT_BOOK]
    assert held and len(train) + len(held) == len(verses)
    return train, held, digest


def as_text(verses):
    return "".join(v[3] + "\n" for v in verses)


if __name__ == "__main__":
    tr, ho, d = split()
    print(f"sha256 {d}: {len(tr)} training verses ({len(as_text(tr))} chars), "
          f"{len(ho)} held-out verses of {HELD_OUT_BOOK} ({len(as_text(ho))} chars)")


DEMO_PROMPT = "In the beginning God created"


def prompt_candidates(held):
    """The golden and evaluation prompts, in order: scripts/run's demo prompt, then the first
    5-9 words of each held-out verse."""
    out = [DEMO_PROMPT]
    for i, v in enumerate(held):
        out.append(" ".join(v[3].split()[:5 + i % 5]))
    return out
