"""DeepSeek-V3's multi-token-prediction (MTP) module and training objective, for tools/train.

transformers has no MTP module, so this is ours, written from the DeepSeek-V3 technical report
§2.2 with the conventions moeserve serves (engine/model/deepseek_model.h ForwardMtp, reference
page §3.4) and tools/oracle/make_mtp_golden.py checks:

    h_i   = the main model's hidden state at position i after its final norm
    e_i   = Emb(t_{i+1}) (the main embedding, shared), set to 0 at position 0
    h'_i  = M · [RMSNorm_enorm(e_i) ; RMSNorm_hnorm(h_i)]          (M = eh_proj, [D, 2D])
    h''   = TRM(h'_{0..i})   one decoder block (transformers' own layer, index num_hidden_layers)
    P(t_{i+2}) = softmax(lm_head(RMSNorm_shared_head.norm(h''_i)))  (the main lm_head, shared)

Loss (report eq. 24–25, depth D = 1): L = L_main + λ · CE(P(t_{i+2}), t_{i+2}), gradients flow
into the main model through h and the shared embedding/head, as in the report.

Distillation (`distill_loss`, train.py --distill): the main model frozen, the module alone learns
the main model's own next-token distribution one position on, KL(P_main(· | t_≤i+1) ‖ P(t_{i+2})).
What speculative decoding accepts is agreement with the main model, not with the data, so this
targets acceptance directly (as draft heads such as EAGLE's are trained), and it leaves the
main model, its goldens and its perplexity bit-for-bit as they were. `alongside_distill_loss`
(train.py --distill-alongside) does the same while the main model trains, against each step's
main forward, so one run yields both.
"""

import torch
from torch import nn
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (DeepseekV3DecoderLayer,
                                                                    DeepseekV3RMSNorm)


class MtpModule(nn.Module):
    def __init__(self, config):
        super().__init__()
        d, eps = config.hidden_size, config.rms_norm_eps
        self.layer_index = config.num_hidden_layers
        self.enorm = DeepseekV3RMSNorm(d, eps)
        self.hnorm = DeepseekV3RMSNorm(d, eps)
        self.eh_proj = nn.Linear(2 * d, d, bias=False)
        self.block = DeepseekV3DecoderLayer(config, layer_idx=self.layer_index)
        self.head_norm = DeepseekV3RMSNorm(d, eps)
        std = config.initializer_range
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std)
        gate = getattr(self.block.mlp, "gate", None)
        if gate is not None:
            nn.init.normal_(gate.weight, 0.0, std)
            nn.init.zeros_(gate.e_score_correction_bias)

    def forward(self, model, hidden, tokens, detach_shared=False):
        """hidden: [B, T, D] main final-normed states; tokens: [B, T]. Returns logits
        [B, T-1, V]: row i predicts t_{i+2} (the last row has no target inside the window).
        detach_shared: no gradient reaches the main model's embedding and lm_head (distilling
        alongside the main model's own training)."""
        n = tokens.shape[1] - 1
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        if detach_shared:
            emb, head = emb.detach(), head.detach()
        e = nn.functional.embedding(tokens[:, 1:n + 1], emb)
        e = torch.cat([torch.zeros_like(e[:, :1]), e[:, 1:]], dim=1)  # position 0
        x = self.eh_proj(torch.cat([self.enorm(e), self.hnorm(hidden[:, :n])], dim=-1))
        pos = torch.arange(n, device=tokens.device)[None].expand(tokens.shape[0], n)
        cos_sin = model.model.rotary_emb(x, pos)
        mask = torch.full((n, n), torch.finfo(x.dtype).min, device=x.device).triu(1)[None, None]
        y = self.block(x, attention_mask=mask, position_ids=pos, position_embeddings=cos_sin)
        y = y[0] if isinstance(y, tuple) else y
        return nn.functional.linear(self.head_norm(y), head)

    def checkpoint_tensors(self):
        """The module's tensors under the real V3/R1 names model.layers.{N}.* (embed_tokens and
        shared_head.head are the main model's, so they are not written, as the loaders allow)."""
        p = f"model.layers.{self.layer_index}."
        out = {p + "enorm.weight": self.enorm.weight, p + "hnorm.weight": self.hnorm.weight,
               p + "eh_proj.weight": self.eh_proj.weight,
               p + "shared_head.norm.weight": self.head_norm.weight}
        for name, t in self.block.state_dict().items():
            out[p + name] = t
        return {k: v.detach().float().contiguous() for k, v in out.items()}


def main_forward(model, batch):
    """The main model's final-normed hidden states and logits for `batch`."""
    hidden = model.model(input_ids=batch, use_cache=False).last_hidden_state
    return hidden, model.lm_head(hidden)


def next_token_loss(logits, batch):
    vocab = logits.shape[-1]
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(),
                                       batch[:, 1:].reshape(-1))


def next_next_token_loss(model, mtp, hidden, batch):
    """The module's CE on t_{i+2}; gradients flow into the main model (report §2.2)."""
    mtp_logits = mtp(model, hidden, batch)[:, :-1]  # rows 0..T-3 have targets t_2..t_{T-1}
    vocab = mtp_logits.shape[-1]
    return nn.functional.cross_entropy(mtp_logits.reshape(-1, vocab).float(),
                                       batch[:, 2:].reshape(-1))


def _kl_to_next_position(model, mtp, hidden, logits, batch, detach_shared):
    teacher = torch.log_softmax(logits[:, 1:].detach().float(), dim=-1)
    student = torch.log_softmax(
        mtp(model, hidden, batch, detach_shared=detach_shared).float(), dim=-1)
    vocab = student.shape[-1]
    return nn.functional.kl_div(student.reshape(-1, vocab), teacher.reshape(-1, vocab),
                                log_target=True, reduction="batchmean")


def alongside_distill_loss(model, mtp, hidden, logits, batch):
    """distill_loss against the main model as it trains: the teacher is this step's main
    forward, and no gradient flows back into the main model (its states, embedding and head
    are detached); train.py's global gradient-norm clip, which counts the module's gradients
    too, is the one thing the two share."""
    return _kl_to_next_position(model, mtp, hidden.detach(), logits, batch, detach_shared=True)


def distill_loss(model, mtp, batch):
    """KL from the frozen main model's next-token distribution at position i+1 to the module's
    row i, over every row of the window (the teacher needs no data target, so the last row
    counts too). Only the module gets gradients."""
    with torch.no_grad():
        hidden, logits = main_forward(model, batch)
    return _kl_to_next_position(model, mtp, hidden, logits, batch, detach_shared=False)


@torch.no_grad()
def held_out(model, mtp, ids, bos, seq_len, on_chunk=None):
    """Held-out main loss, MTP loss, and greedy MTP acceptance: how often the module's argmax
    for t_{i+2} equals the main model's argmax at position i+1 (what greedy speculative decoding
    accepts), teacher-forced over `ids` in BOS-prefixed chunks. on_chunk(chunk, logits), if
    given, sees each chunk [1, T] and the main model's fp32 logits [T, V] for it."""
    model.eval()
    mtp.eval()
    tot_main = tot_mtp = 0.0
    n_main = n_mtp = accepted = 0
    for s in range(0, len(ids), seq_len - 1):
        chunk = torch.cat([torch.tensor([bos]), ids[s:s + seq_len - 1]]).unsqueeze(0)
        hidden = model.model(input_ids=chunk, use_cache=False).last_hidden_state
        logits = model.lm_head(hidden)[0].float()
        if on_chunk is not None:
            on_chunk(chunk, logits)
        tot_main += nn.functional.cross_entropy(logits[:-1], chunk[0, 1:], reduction="sum").item()
        n_main += chunk.shape[1] - 1
        if chunk.shape[1] < 3:
            continue
        draft = mtp(model, hidden, chunk)[0, :-1].float()
        tot_mtp += nn.functional.cross_entropy(draft, chunk[0, 2:], reduction="sum").item()
        n_mtp += chunk.shape[1] - 2
        accepted += (draft.argmax(-1) == logits[1:-1].argmax(-1)).sum().item()
    model.train()
    mtp.train()
    return tot_main / n_main, tot_mtp / n_mtp, accepted / n_mtp
