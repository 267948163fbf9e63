"""Greedy decoding: the most probable token at every step."""

from __future__ import annotations

import torch

from transduce.search.common import Hypothesis, force_eos
from transduce.search.controls import NO_CONTROLS, Controls


@torch.no_grad()
def greedy_search(model, src_ids: torch.Tensor, src_mask: torch.Tensor, bos_id: int,
                  eos_id: int, max_len: torch.Tensor, return_attention: bool = False,
                  controls: Controls = NO_CONTROLS) -> list[Hypothesis]:
    """src (B, S) -> one hypothesis per sentence. Finished sentences leave the batch."""
    B = src_ids.size(0)
    enc = model.encode(src_ids, src_mask)
    state = model.start(enc)
    active = torch.arange(B, device=src_ids.device)  # batch rows still decoding
    prev = torch.full((B,), bos_id, dtype=torch.long, device=src_ids.device)
    tokens: list[list[int]] = [[] for _ in range(B)]
    scores = [0.0] * B
    attns: list[list[torch.Tensor]] = [[] for _ in range(B)]
    limit = max_len.to(src_ids.device)
    t = 0
    while active.numel():
        log_probs, state, attn = model.step(prev, state, enc, return_attention)  # (A, V)
        if controls.active:  # every row still decoding has produced t tokens
            history = torch.tensor([tokens[b] for b in active.tolist()], dtype=torch.long,
                                   device=prev.device).reshape(active.numel(), t)
            log_probs = controls.apply(log_probs, history, eos_id)
        log_probs = force_eos(log_probs, t + 1 >= limit[active], eos_id)
        best, ids = log_probs.max(-1)  # (A,)
        finished = ids == eos_id
        for row, (b, tok, lp) in enumerate(zip(active.tolist(), ids.tolist(), best.tolist())):
            scores[b] += lp
            if return_attention and attn is not None:
                attns[b].append(attn[row].float().cpu())
            if tok != eos_id:
                tokens[b].append(tok)
        keep = (~finished).nonzero().squeeze(1)
        if keep.numel() < active.numel():
            active, prev = active[keep], ids[keep]
            state, enc = state.select(keep), enc.select(keep)
        else:
            prev = ids
        t += 1
    return [Hypothesis(tokens[b], scores[b], scores[b],
                       torch.stack(attns[b]) if attns[b] else None) for b in range(B)]
