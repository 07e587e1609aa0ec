"""Which next tokens would make the model spell a word that is not in the training text.

The sampled text of a small byte-level-BPE model has non-words ("hoatter", "Shimrielatth"):
inside a word the model spreads probability over pieces that glue into no word it was trained
on. Cross-entropy only ever pushes up the one piece the text continues with; `Lexicon` lists,
for the partial word at the end of a context, every token that would leave the lexicon (a letter
run that is no word's prefix, or a word ended that is no word), and `unlikelihood` penalises the
probability the model gives them, -log(1 - P(those tokens)) (Welleck et al. 2019, "Neural text
generation with unlikelihood training"). The true next token of a training text is never among
them, so the term agrees with cross-entropy: a model that had learnt the lexicon exactly would
pay nothing for it. Words are runs of ASCII letters, case-insensitive, as tools/train/evaluate.py
counts them.

train.py's --lexicon-weight uses it; evaluate.py reports the expected non-word events per word on
held-out text (`expected_leaks`), a low-noise companion to the sampled count.
"""

import re

import torch

WORD = re.compile(r"[A-Za-z]+")


def _leading_letters(s):
    m = re.match(r"[A-Za-z]*", s)
    return m.group()


def _trailing_letters(s):
    m = re.search(r"[A-Za-z]*$", s)
    return m.group()


class Lexicon:
    """The words of `texts` and their prefixes, and per partial word the mask of next tokens
    that would leave them (computed on first use and kept: the training text has 18,509
    distinct partial words, 4 KB of mask each)."""

    def __init__(self, texts, tokenizer):
        self.words = {w.lower() for t in texts for w in WORD.findall(t)}
        self.prefixes = {w[:i] for w in self.words for i in range(len(w) + 1)}
        self.vocab = tokenizer.get_vocab_size(with_added_tokens=True)
        special = set(tokenizer.get_added_tokens_decoder())  # BOS, EOS, chat tokens
        self.surface = [("" if i in special else tokenizer.decode([i])).lower()
                        for i in range(self.vocab)]
        # Per token: all letters (extends the partial word), or else the letters it starts with
        # (they end the partial word), whether its own inner words and trailing letters are
        # fine whatever came before, and the partial word it leaves.
        self.all_letters = []
        self.lead = []
        self.self_ok = []
        self.trail = []
        for s in self.surface:
            letters_only = bool(s) and s.isascii() and s.isalpha()
            self.all_letters.append(letters_only)
            lead, trail = _leading_letters(s), _trailing_letters(s)  # both s if all letters
            inner = WORD.findall(s[len(lead):len(s) - len(trail)])
            self.lead.append(lead)
            self.trail.append(trail)
            self.self_ok.append(letters_only or (all(w in self.words for w in inner)
                                                 and trail in self.prefixes))
        # Masks are rows of one table that grows by doubling: a cache of thousands of small
        # tensors, allocated between each training step's large ones, fragmented the heap until
        # the process held 18 GB.
        self._rows = {}
        self._table = torch.zeros(1024, self.vocab, dtype=torch.bool)

    def next_partial(self, partial, token):
        """The partial word after `token` follows `partial`."""
        return partial + self.surface[token] if self.all_letters[token] else self.trail[token]

    def _row(self, partial):
        row = self._rows.get(partial)
        if row is None:
            bad = []
            for t in range(self.vocab):
                if self.all_letters[t]:
                    bad.append(partial + self.surface[t] not in self.prefixes)
                else:
                    ended = partial + self.lead[t]
                    bad.append(not self.self_ok[t] or (ended != "" and ended not in self.words))
            row = len(self._rows)
            if row == len(self._table):
                self._table = torch.cat([self._table, torch.zeros_like(self._table)])
            self._table[row] = torch.tensor(bad, dtype=torch.bool)
            self._rows[partial] = row
        return row

    def leak_mask(self, partial):
        """Bool tensor [vocab]: the tokens that, after `partial`, spell outside the lexicon."""
        return self._table[self._row(partial)]

    def masks_for(self, batch):
        """Bool tensor [B, T, vocab]: row (b, t) masks the tokens that must not follow
        batch[b, :t + 1]."""
        rows = []
        for seq in batch.tolist():
            partial = ""
            for token in seq:
                partial = self.next_partial(partial, token)
                rows.append(self._row(partial))
        return self._table[torch.tensor(rows)].view(*batch.shape, self.vocab)


def leak_log_prob(logits, masks):
    """log P(a masked token) per row, in fp32 (-inf where nothing is masked)."""
    logits = logits.float()
    return (torch.logsumexp(logits.masked_fill(~masks, float("-inf")), dim=-1)
            - torch.logsumexp(logits, dim=-1))


def unlikelihood(logits, masks):
    """Mean over rows of -log(1 - P(a masked token))."""
    log_p = leak_log_prob(logits, masks).clamp(max=-1e-6)
    return -torch.log1p(-torch.exp(log_p)).mean()
