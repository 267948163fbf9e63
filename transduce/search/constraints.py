"""Lexically constrained beam search: dynamic beam allocation (Post & Vilar, NAACL 2018).

Each sentence may carry constraints, token sequences that must appear in its output (a
glossary's target terms, for instance). A hypothesis tracks which constraints it has met
and how far it is into the one it is producing. At every step the candidates are the best
2K continuations of the whole beam, as in plain beam search, plus, for every hypothesis,
its single best token and the next token of each constraint it could advance. Candidates
are grouped into banks by the number of constraint tokens they have met, and the K beam
slots are shared out among the banks, so that hypotheses which have just placed a
constraint token (and score lower for it) are not pushed out by unconstrained ones. </s> is
allowed only once every constraint is met, or at the length limit, where the best
hypotheses finish as they are and are ranked after complete ones. A sentence without
constraints is searched exactly as by plain beam search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Progress = tuple[int, int, int]  # (bitmask of met constraints, constraint in progress or -1, pos)
START: Progress = (0, -1, 0)


@dataclass(frozen=True)
class Constraints:
    """The constraints of one sentence: each a non-empty tuple of token ids."""

    phrases: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if any(not p for p in self.phrases):
            raise ValueError("a constraint must have at least one token")

    @property
    def total(self) -> int:
        """Constraint tokens in all: the number of banks is total + 1."""
        return sum(len(p) for p in self.phrases)

    def met_tokens(self, p: Progress) -> int:
        met, c, pos = p
        done = sum(len(ph) for i, ph in enumerate(self.phrases) if met >> i & 1)
        return done + (pos if c >= 0 else 0)

    def complete(self, p: Progress) -> bool:
        return p[0] == (1 << len(self.phrases)) - 1

    def advance(self, p: Progress, token: int) -> Progress:
        """The progress after `token`: it continues the constraint in progress, or starts
        (or completes) an unmet one; any other token drops a constraint half produced."""
        met, c, pos = p
        if c >= 0:
            phrase = self.phrases[c]
            if phrase[pos] == token:
                return (met | 1 << c, -1, 0) if pos + 1 == len(phrase) else (met, c, pos + 1)
        for i, phrase in enumerate(self.phrases):
            if not met >> i & 1 and phrase[0] == token:
                return (met | 1 << i, -1, 0) if len(phrase) == 1 else (met, i, 1)
        return (met, -1, 0)

    def next_tokens(self, p: Progress) -> list[int]:
        """The tokens that make progress: the next one of the constraint in progress, or the
        first of each unmet constraint."""
        met, c, pos = p
        if c >= 0:
            return [self.phrases[c][pos]]
        return [ph[0] for i, ph in enumerate(self.phrases) if not met >> i & 1]


NONE = Constraints()


def bank_sizes(counts: list[int], k: int) -> list[int]:
    """Share k slots among banks holding counts[i] candidates: evenly, the remainder to the
    banks with most constraint tokens met, then slots a bank cannot fill go to the others,
    highest bank first (Post & Vilar's reallocation)."""
    n = len(counts)
    sizes = [k // n] * n
    for i in range(k % n):
        sizes[n - 1 - i] += 1
    spare = sum(max(0, s - c) for s, c in zip(sizes, counts))
    sizes = [min(s, c) for s, c in zip(sizes, counts)]
    for i in reversed(range(n)):
        take = min(spare, counts[i] - sizes[i])
        sizes[i] += take
        spare -= take
    return sizes


@dataclass
class Candidate:
    score: float
    row: int  # parent row, within its sentence's rows
    token: int
    progress: Progress


class ConstrainedChoice:
    """The per-step choice of `beam_search` under constraints; it keeps every alive row's
    progress, row by row as in the search's flat tensors."""

    def __init__(self, constraints: list[Constraints], k: int):
        self.constraints, self.k = constraints, k
        self.progress: list[list[Progress]] = [[START] for _ in constraints]

    def keep(self, sentences: list[int]) -> None:
        """Only these sentences (positions among those still decoding) go on."""
        self.constraints = [self.constraints[a] for a in sentences]
        self.progress = [self.progress[a] for a in sentences]

    def ban_early_eos(self, log_probs: torch.Tensor, eos_id: int) -> torch.Tensor:
        """No </s> for a row that has not met every constraint."""
        open_rows = [not cons.complete(p) for cons, rows in zip(self.constraints, self.progress)
                     for p in rows]
        if not any(open_rows):
            return log_probs
        log_probs = log_probs.clone()
        log_probs[torch.tensor(open_rows, device=log_probs.device), eos_id] = float("-inf")
        return log_probs

    def candidates(self, scores: torch.Tensor, log_probs: torch.Tensor, top: list[list[int]],
                   eos_id: int) -> list[list[Candidate]]:
        """Each sentence's candidates: `top` (A, 2K) flat (row * V + token) indices of the
        best continuations, each row's best token and every token that advances a
        constraint; scored in one gather."""
        A, R = scores.shape
        V = log_probs.size(1)
        best = log_probs.argmax(1).tolist()
        pairs: list[list[tuple[int, int]]] = []
        for a in range(A):
            seen: dict[tuple[int, int], None] = {}
            for idx in top[a]:
                seen[divmod(idx, V)] = None
            for r in range(R):
                seen[(r, best[a * R + r])] = None
                for tok in self.constraints[a].next_tokens(self.progress[a][r]):
                    seen[(r, tok)] = None
            pairs.append(list(seen))
        rows = torch.tensor([a * R + r for a, ps in enumerate(pairs) for r, _ in ps])
        toks = torch.tensor([t for ps in pairs for _, t in ps])
        values = (scores.reshape(-1)[rows] + log_probs[rows, toks]).tolist()
        out: list[list[Candidate]] = []
        i = 0
        for a, ps in enumerate(pairs):
            cons, prog = self.constraints[a], self.progress[a]
            out.append([Candidate(v, r, t, prog[r] if t == eos_id else cons.advance(prog[r], t))
                        for (r, t), v in zip(ps, values[i:i + len(ps)]) if math.isfinite(v)])
            i += len(ps)
        return out

    def choose(self, a: int, cands: list[Candidate], eos_id: int
               ) -> tuple[list[Candidate], list[Candidate], bool]:
        """Sentence a's step: (ended, alive, top ended). Ended: candidates ending in </s>
        among the K best of those that meet every constraint (all of them at the length
        limit, where </s> is all there is); alive: up to K candidates chosen bank by bank
        (the row progress is updated to theirs); top ended: the best complete candidate
        ends in </s>."""
        cons = self.constraints[a]
        complete = sorted((c for c in cands if cons.complete(c.progress)), key=lambda c: -c.score)
        only_eos = bool(cands) and all(c.token == eos_id for c in cands)
        ended = [c for c in (cands if only_eos else complete[: self.k]) if c.token == eos_id]
        going = [c for c in cands if c.token != eos_id]
        banks: list[list[Candidate]] = [[] for _ in range(cons.total + 1)]
        for c in going:
            banks[cons.met_tokens(c.progress)].append(c)
        sizes = bank_sizes([len(b) for b in banks], self.k)
        alive = [c for bank, n in zip(banks, sizes)
                 for c in sorted(bank, key=lambda c: -c.score)[:n]]
        alive.sort(key=lambda c: -c.score)
        self.progress[a] = [c.progress for c in alive] + \
            [START] * (self.k - len(alive))
        return ended, alive, bool(complete) and complete[0].token == eos_id
