#!/usr/bin/env python3
"""Checks tools/train/lexicon.py against a brute-force reading of the same rule, on the shipped
tokenizer and the real training split (needs the training venv):

    .venv-train/bin/python tools/train/lexicon_test.py
"""

import os
import random
import sys
import unittest

import torch
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
import lexicon  # noqa: E402
import train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def leaves_lexicon(words, prefixes, partial, text):
    """The rule read directly: in partial + text, every letter run that ends before the text
    does must be a word, and one that runs to its end must be a word's prefix."""
    spelled = partial + text
    for m in lexicon.WORD.finditer(spelled):
        run = m.group().lower()
        if m.end() == len(spelled):
            if run not in prefixes:
                return True
        elif run not in words:
            return True
    return False


class LexiconTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tok = Tokenizer.from_file(os.path.join(REPO, "models", "kjv-v3-tiny", "tokenizer.json"))
        cls.train_v, _, _ = corpus.split()
        cls.lex = lexicon.Lexicon([v[3] for v in cls.train_v], cls.tok)
        cls.stream, cls.starts = train.tokenize_verses(cls.tok, cls.train_v)

    def windows(self, seed, n=4):
        return train.sample_batch(self.stream, self.starts, n, random.Random(seed), bos=0)

    def test_training_text_never_leaves_the_lexicon(self):
        batch = self.windows(seed=random.randrange(1 << 30))
        masks = self.lex.masks_for(batch[:, :-1])
        self.assertEqual(int(masks.gather(-1, batch[:, 1:, None]).sum()), 0)
        self.assertGreater(float(masks.float().mean()), 0.05)  # and masks do mask something

    def test_masks_match_the_rule_read_directly(self):
        rng = random.Random()
        special = set(self.tok.get_added_tokens_decoder())
        texts = ["\x00" if i in special else self.tok.decode([i])
                 for i in range(self.lex.vocab)]
        partials = {""}
        for seq in self.windows(seed=rng.randrange(1 << 30), n=2).tolist():
            p = ""
            for t in seq:
                p = self.lex.next_partial(p, t)
                partials.add(p)
        partials |= {"zq", "naom", "th", "shimri"}  # no prefix; Ruth only; common; a name's
        for p in sorted(partials):
            expected = [leaves_lexicon(self.lex.words, self.lex.prefixes, p, t) for t in texts]
            got = self.lex.leak_mask(p).tolist()
            diff = [texts[i] for i in range(len(texts)) if expected[i] != got[i]]
            self.assertEqual(diff, [], f"partial {p!r}")

    def test_unlikelihood_is_minus_log_of_the_mass_left(self):
        logits = torch.randn(64, self.lex.vocab) * 3
        masks = torch.rand(64, self.lex.vocab) < 0.3
        masks[0] = False  # nothing masked: no penalty
        p = torch.softmax(logits.double(), dim=-1)
        expected = -torch.log(1 - (p * masks).sum(-1)).mean()
        self.assertAlmostEqual(float(lexicon.unlikelihood(logits, masks)), float(expected),
                               places=5)


if __name__ == "__main__":
    unittest.main()
