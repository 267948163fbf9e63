"""Batched beam search over the whole batch at once (no Python loop over sentences).

Shapes: B sentences still decoding, K beams each, V target vocabulary. Alive hypotheses
live in flat (B*K, ...) tensors (one row per sentence at the first step, where all beams
would be the same); a sentence leaves the batch as soon as it is finished (see
`beam_search`), so long sentences do not keep short ones busy.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from transduce.search.common import (
    Hypothesis,
    StepChoice,
    coverage_penalty,
    force_eos,
    length_penalty,
)
from transduce.search.constraints import START, Candidate, ConstrainedChoice, Constraints
from transduce.search.controls import NO_CONTROLS, Controls


def top_candidates(scores: torch.Tensor, log_probs: torch.Tensor,
                   k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best 2k continuations of each sentence's R beams (R is 1 at the first step, else k).

    scores (B, R) cumulative log-probs; log_probs (B*R, V).
    Returns candidate scores, parent beam and token, each (B, 2k), best first; columns
    beyond R*V candidates (a vocabulary smaller than 2k) score -inf.
    The best 2k of a sentence are among the best 2k of each of its beams, so each beam's
    vocabulary is cut to its 2k best first: the full (B*R, V) scores are never summed.
    """
    B, R = scores.shape
    n = min(2 * k, log_probs.size(-1))
    beam_best, beam_tokens = log_probs.topk(n, dim=1)  # (B*R, n)
    cand = (scores.reshape(B * R, 1) + beam_best).view(B, R * n)
    top_scores, top_idx = cand.topk(min(2 * k, R * n), dim=1)  # (B, 2k)
    tokens = beam_tokens.view(B, R * n).gather(1, top_idx)
    missing = 2 * k - top_idx.size(1)
    if missing > 0:
        top_scores = F.pad(top_scores, (0, missing), value=float("-inf"))
        top_idx, tokens = F.pad(top_idx, (0, missing)), F.pad(tokens, (0, missing))
    return top_scores, top_idx // n, tokens


def select_alive(top_scores: torch.Tensor, parents: torch.Tensor, tokens: torch.Tensor,
                 eos_id: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best K candidates that do not end in </s>: scores, parents, tokens (B, K)."""
    masked = top_scores.masked_fill(tokens == eos_id, float("-inf"))
    keep = masked.topk(k, dim=1).indices  # (B, K)
    return masked.gather(1, keep), parents.gather(1, keep), tokens.gather(1, keep)


def plain_step(scores: torch.Tensor, log_probs: torch.Tensor, eos_id: int, k: int) -> StepChoice:
    """Plain beam search's choice: hypotheses ending in </s> among the K best candidates
    finish, the K best of the others go on."""
    A, R = scores.shape
    top_scores, parents, tokens = top_candidates(scores, log_probs, k)
    rows = torch.arange(A, device=scores.device).unsqueeze(1) * R
    ended_mask = (tokens[:, :k] == eos_id) & torch.isfinite(top_scores[:, :k])
    flat_parent = rows + parents
    ended = [(a, int(flat_parent[a, j]), float(top_scores[a, j]), True)
             for a, j in ended_mask.nonzero().tolist()]
    alive, parents, tokens = select_alive(top_scores, parents, tokens, eos_id, k)
    return StepChoice(ended, alive, (rows + parents).view(-1), tokens.view(-1),
                      ended_mask[:, 0].tolist())


def constrained_step(choice: ConstrainedChoice, scores: torch.Tensor, log_probs: torch.Tensor,
                     eos_id: int, k: int) -> StepChoice:
    """Dynamic beam allocation's choice (constraints.py), in the same form."""
    A, R = scores.shape
    _, parents, tokens = top_candidates(scores, log_probs, k)
    top = (parents * log_probs.size(1) + tokens).tolist()
    cands = choice.candidates(scores, log_probs, top, eos_id)
    ended: list[tuple[int, int, float, bool]] = []
    alive: list[Candidate] = []
    top_ended = []
    for a in range(A):
        done, going, first = choice.choose(a, cands[a], eos_id)
        cons = choice.constraints[a]
        ended += [(a, a * R + c.row, c.score, cons.complete(c.progress)) for c in done]
        alive += going + [Candidate(float("-inf"), 0, eos_id, START)] * (k - len(going))
        top_ended.append(first)
    device = scores.device
    return StepChoice(ended, torch.tensor([c.score for c in alive], device=device).view(A, k),
                      torch.tensor([(i // k) * R + c.row for i, c in enumerate(alive)],
                                   device=device),
                      torch.tensor([c.token for c in alive], device=device), top_ended)


@torch.no_grad()
def beam_search(model, src_ids: torch.Tensor, src_mask: torch.Tensor, bos_id: int,
                eos_id: int, max_len: torch.Tensor, beam_size: int = 5, n_best: int = 1,
                alpha: float = 1.0, return_attention: bool = False,
                controls: Controls = NO_CONTROLS, beta: float = 0.0,
                constraints: list[Constraints] | None = None) -> list[list[Hypothesis]]:
    """src (B, S) -> for each sentence its `n_best` hypotheses, best first.

    Hypotheses are ranked by log P(y|x) / lp(|y|) + cp(x, y) with the GNMT length penalty
    `alpha` and coverage penalty `beta` (common.py); `controls` shape each step's choice.
    A sentence stops as soon as its best candidate at a step ends in </s> and it has
    `n_best` finished hypotheses (the candidates of one step all have the same length, so
    the penalty does not change which is best), as OpenNMT-py's translator does; otherwise
    when it has `beam_size` finished hypotheses or reaches its length limit.
    `constraints` (one per sentence): token sequences each output must contain, searched
    with dynamic beam allocation (constraints.py); a hypothesis that reaches the length
    limit without them ranks after every one that has them.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    B, K, device = src_ids.size(0), beam_size, src_ids.device
    src_lens = src_mask.sum(1).tolist()
    track = return_attention or beta != 0.0  # the coverage penalty needs the attention
    dba = ConstrainedChoice(list(constraints), K) if constraints else None
    enc = model.encode(src_ids, src_mask)
    # The first step has one row per sentence (all K beams would be identical); the state
    # is expanded to K rows per sentence after it.
    state = model.start(enc)
    sent = torch.arange(B, device=device)  # original index of each sentence still decoding
    scores = torch.zeros(B, 1, device=device)  # (A, R): R rows per sentence, 1 then K
    history = torch.zeros(B, 0, dtype=torch.long, device=device)  # (A*R, t)
    attn_history: torch.Tensor | None = None  # (A*R, t, S)
    prev = torch.full((B,), bos_id, dtype=torch.long, device=device)
    limit = max_len.to(device)
    finished: list[list[tuple[bool, Hypothesis]]] = [[] for _ in range(B)]
    t = 0
    while sent.numel():
        A, R = scores.shape
        log_probs, state, attn = model.step(prev, state, enc, track)  # (A*R, V)
        log_probs = controls.apply(log_probs, history, eos_id)
        if dba is not None:
            log_probs = dba.ban_early_eos(log_probs, eos_id)
        at_limit = t + 1 >= limit[sent]  # (A,)
        log_probs = force_eos(log_probs, at_limit.repeat_interleave(R), eos_id)
        choice = plain_step(scores, log_probs, eos_id, K) if dba is None else \
            constrained_step(dba, scores, log_probs, eos_id, K)
        if track and attn is not None:
            step_attn = attn.float().unsqueeze(1)  # (A*K, 1, S)
            attn_history = step_attn if attn_history is None else \
                torch.cat([attn_history, step_attn], 1)
        penalty = float(length_penalty(torch.tensor(t + 1), alpha))
        for a, row, lp, complete in choice.ended:
            b = int(sent[a])
            if len(finished[b]) < K:
                att = attn_history[row] if attn_history is not None else None
                cp = coverage_penalty(att, src_lens[b], beta) if att is not None else 0.0
                finished[b].append((complete, Hypothesis(
                    history[row].tolist(), lp / penalty + cp, lp,
                    att if return_attention else None)))
        scores, order = choice.scores, choice.order
        history = torch.cat([history.index_select(0, order), choice.tokens.view(-1, 1)], 1)
        if attn_history is not None:
            attn_history = attn_history.index_select(0, order)
        if R < K:  # after the first step: every new row's parent is its sentence's one row
            state = state.expand(K)
            enc = enc.select(torch.arange(A, device=device).repeat_interleave(K))
        else:
            state = state.select(order)
        prev = choice.tokens
        # A sentence leaves the batch at its length limit, with K finished hypotheses, or
        # when its best candidate of this step has ended and it has n_best finished ones.
        done = at_limit | torch.tensor(
            [len(finished[b]) >= K or (top and len(finished[b]) >= n_best)
             for b, top in zip(sent.tolist(), choice.top_ended)], device=device)
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)  # (A',)
            rows = (keep.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
            sent, scores = sent[keep], scores[keep]
            history, prev = history[rows], prev[rows]
            state, enc = state.select(rows), enc.select(rows)
            if attn_history is not None:
                attn_history = attn_history[rows]
            if dba is not None:
                dba.keep(keep.tolist())
        t += 1
    return [[h for _, h in sorted(hyps, key=lambda ch: (not ch[0], -ch[1].score))[:n_best]]
            for hyps in finished]
