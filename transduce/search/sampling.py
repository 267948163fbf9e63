"""Sampling with temperature, top-k and nucleus (top-p) filtering (Holtzman et al. 2020)."""

from __future__ import annotations

import torch

from transduce.search.common import Hypothesis, force_eos
from transduce.search.controls import NO_CONTROLS, Controls


def filter_logits(log_probs: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> torch.Tensor:
    """(B, V) log-probs -> (B, V) logits with disallowed tokens at -inf."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = log_probs / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop_sorted = cum - torch.softmax(sorted_logits, -1) >= top_p  # keep the first above p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def sample(model, src_ids: torch.Tensor, src_mask: torch.Tensor, bos_id: int, eos_id: int,
           max_len: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           generator: torch.Generator | None = None,
           controls: Controls = NO_CONTROLS) -> list[Hypothesis]:
    """One sampled output per sentence (B, S) -> B hypotheses."""
    B = src_ids.size(0)
    enc = model.encode(src_ids, src_mask)
    state = model.start(enc)
    prev = torch.full((B,), bos_id, dtype=torch.long, device=src_ids.device)
    done = torch.zeros(B, dtype=torch.bool, device=src_ids.device)
    out = torch.zeros(B, 0, dtype=torch.long, device=src_ids.device)
    score = torch.zeros(B, device=src_ids.device)
    limit = max_len.to(src_ids.device)
    t = 0
    while not bool(done.all()):
        log_probs, state, _ = model.step(prev, state, enc, False)
        log_probs = controls.apply(log_probs, out, eos_id)
        log_probs = force_eos(log_probs, (t + 1 >= limit) | done, eos_id)
        logits = filter_logits(log_probs, temperature, top_k, top_p)
        ids = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)
        score += torch.where(done, 0.0, log_probs.gather(1, ids[:, None]).squeeze(1))
        out = torch.cat([out, torch.where(done, eos_id, ids)[:, None]], 1)
        done |= ids == eos_id
        prev = ids
        t += 1
    hyps = []
    for b in range(B):
        ids_b = out[b].tolist()
        ids_b = ids_b[: ids_b.index(eos_id)] if eos_id in ids_b else ids_b
        hyps.append(Hypothesis(ids_b, float(score[b]), float(score[b])))
    return hyps
