"""Search strategies: a scripted model whose best beam is worked out by hand, beam 1 == greedy
(random and trained models), n-best order, length penalty, max length, sampling filters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from transduce.config import ModelConfig
from transduce.data import collate
from transduce.models import EncoderOutput, build_model
from transduce.search import Hypothesis, beam_search, greedy_search, max_lengths, sample
from transduce.search.beam import top_candidates
from transduce.search.common import length_penalty
from transduce.search.sampling import filter_logits
from transduce.translator import Translator

PAD, UNK, BOS, EOS, A, B, C, D = range(8)
V = 8


# ---- a scripted model ----------------------------------------------------------------------

Script = dict[tuple[int, ...], dict[int, float]]  # prefix -> {next token: probability}


@dataclass
class ScriptState:
    prefix: torch.Tensor  # (B, t) tokens emitted before the previous one (without <s>)
    started: bool = False  # False before the first step, when the previous token is <s>

    def select(self, index: torch.Tensor) -> ScriptState:
        return ScriptState(self.prefix.index_select(0, index), self.started)

    def expand(self, beams: int) -> ScriptState:
        return self.select(torch.arange(self.prefix.size(0)).repeat_interleave(beams))


class ScriptedModel:
    """Obeys the model contract in models/seq2seq.py. Sentence i follows scripts[src_ids[i, 0]]:
    the next-token distribution is looked up by the prefix emitted so far; a prefix not in the
    script goes on with `default`. Tokens not listed have probability 0."""

    def __init__(self, scripts: dict[int, Script], default: dict[int, float] | None = None):
        self.scripts = scripts
        self.default = default or {EOS: 1.0}
        self.batch_sizes: list[int] = []  # rows decoded at each step

    def encode(self, src_ids: torch.Tensor, src_mask: torch.Tensor) -> EncoderOutput:
        memory = src_ids.float().unsqueeze(-1)  # (B, S, 1): the script id is at position 0
        return EncoderOutput(memory, src_mask, memory[:, 0])

    def start(self, enc: EncoderOutput) -> ScriptState:
        return ScriptState(torch.zeros(enc.memory.size(0), 0, dtype=torch.long))

    def distribution(self, script: int, prefix: tuple[int, ...]) -> dict[int, float]:
        return self.scripts[script].get(prefix, self.default)

    def step(self, prev_ids: torch.Tensor, state: ScriptState, enc: EncoderOutput,
             attention: bool = True):
        self.batch_sizes.append(prev_ids.size(0))
        if state.started:
            prefix = torch.cat([state.prefix, prev_ids[:, None]], 1)  # (B, t + 1)
        else:
            assert torch.all(prev_ids == BOS)
            prefix = state.prefix
        log_probs = torch.full((prev_ids.size(0), V), float("-inf"))
        for row, (script, p) in enumerate(zip(enc.memory[:, 0, 0].long().tolist(),
                                              prefix.tolist())):
            for tok, prob in self.distribution(script, tuple(p)).items():
                log_probs[row, tok] = math.log(prob)
        attn = enc.src_mask.float() / enc.src_mask.sum(1, keepdim=True)  # (B, S) uniform
        return log_probs, ScriptState(prefix, True), attn

    def log_prob(self, script: int, ids: list[int]) -> float:
        """log P(ids </s>) under the script."""
        total, prefix = 0.0, ()
        for tok in list(ids) + [EOS]:
            total += math.log(self.distribution(script, prefix).get(tok, 0.0) or 1e-300)
            prefix += (tok,)
        return total


def run_search(model, scripts: list[int], beam: int | None, limit: int = 10, **kw):
    src = torch.tensor([[s, EOS] for s in scripts])
    mask = torch.ones_like(src, dtype=torch.bool)
    max_len = torch.full((len(scripts),), limit)
    if beam is None:
        return greedy_search(model, src, mask, BOS, EOS, max_len, **kw)
    return beam_search(model, src, mask, BOS, EOS, max_len, beam_size=beam, **kw)


# Script 10: greedy takes 'a' (0.5) but then faces a three-way split; 'b c' is worth 0.4 * 0.9.
#   greedy:  a a </s>  = 0.5 * 0.34 = 0.17
#   best:    b c </s>  = 0.4 * 0.9  = 0.36
GARDEN_PATH: Script = {
    (): {A: 0.5, B: 0.4, EOS: 0.1},
    (A,): {A: 0.34, B: 0.33, C: 0.33},
    (B,): {C: 0.9, D: 0.1},
}
# Script 11: '</s>' at once (0.55) beats 'a b c </s>' (0.45) on raw log-probability, but the
# GNMT length penalty ((5 + |y|) / 6) ** alpha favours the longer one:
#   alpha 0: log 0.55 = -0.598 > log 0.45 = -0.799
#   alpha 1: -0.598 / 1 < -0.799 / 1.5 = -0.533
SHORT_OR_LONG: Script = {
    (): {EOS: 0.55, A: 0.45},
    (A,): {B: 1.0},
    (A, B): {C: 1.0},
}
SCRIPTS = {10: GARDEN_PATH, 11: SHORT_OR_LONG}


def test_greedy_follows_the_most_probable_token():
    model = ScriptedModel(SCRIPTS)
    [hyp] = run_search(model, [10], beam=None)
    assert hyp.ids == [A, A]
    assert hyp.log_prob == pytest.approx(math.log(0.5 * 0.34))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_finds_a_better_sequence_than_greedy(alpha: float):
    model = ScriptedModel(SCRIPTS)
    [[best]] = run_search(model, [10], beam=2, alpha=alpha)
    assert best.ids == [B, C]
    assert best.log_prob == pytest.approx(math.log(0.4 * 0.9))
    assert best.score == pytest.approx(math.log(0.36) / float(length_penalty(torch.tensor(3),
                                                                              alpha)))
    [greedy] = run_search(ScriptedModel(SCRIPTS), [10], beam=None)
    assert best.log_prob > greedy.log_prob


def test_n_best_lists_are_sorted_distinct_and_scored_correctly():
    model = ScriptedModel(SCRIPTS)
    [nbest] = run_search(model, [10], beam=4, n_best=4, alpha=0.0)
    assert [h.ids for h in nbest][:2] == [[B, C], [A, A]]
    scores = [h.score for h in nbest]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(h.ids) for h in nbest}) == len(nbest) == 4
    for h in nbest:
        assert h.log_prob == pytest.approx(model.log_prob(10, h.ids))
        assert h.score == pytest.approx(h.log_prob)  # alpha 0: the raw log-probability


@pytest.mark.parametrize("alpha, expected", [(0.0, [[], [A, B, C]]), (1.0, [[A, B, C], []])])
def test_length_penalty_changes_the_ranking(alpha: float, expected: list[list[int]]):
    model = ScriptedModel(SCRIPTS)
    [nbest] = run_search(model, [11], beam=2, n_best=2, alpha=alpha)
    assert [h.ids for h in nbest] == expected
    for h in nbest:
        lp = ((5 + len(h.ids) + 1) / 6) ** alpha
        assert h.score == pytest.approx(model.log_prob(11, h.ids) / lp)


def test_beam_stops_when_its_best_candidate_ends():
    """Script 11's best first candidate is '</s>': with n_best 1 the search ends after one
    step, although only one of the two beams has finished; with n_best 2 it goes on."""
    model = ScriptedModel(SCRIPTS)
    [[best]] = run_search(model, [11], beam=2, alpha=0.0)
    assert best.ids == [] and len(model.batch_sizes) == 1
    model = ScriptedModel(SCRIPTS)
    [nbest] = run_search(model, [11], beam=2, n_best=2, alpha=0.0)
    assert [h.ids for h in nbest] == [[], [A, B, C]] and len(model.batch_sizes) == 4


def test_length_penalty_formula():
    lengths = torch.tensor([1, 4, 10])
    torch.testing.assert_close(length_penalty(lengths, 0.0), torch.ones(3))
    torch.testing.assert_close(length_penalty(lengths, 1.0), (5 + lengths.float()) / 6)
    assert float(length_penalty(torch.tensor(1), 0.6)) == pytest.approx(1.0)


@pytest.mark.parametrize("beam", [None, 1, 3])
def test_max_length_forces_end_of_sentence(beam):
    never_ends = ScriptedModel({12: {}}, default={A: 0.7, B: 0.3})
    src = torch.tensor([[12, EOS], [12, EOS]])
    mask = torch.ones_like(src, dtype=torch.bool)
    limits = torch.tensor([3, 6])
    if beam is None:
        hyps = greedy_search(never_ends, src, mask, BOS, EOS, limits)
    else:
        hyps = [nb[0] for nb in beam_search(never_ends, src, mask, BOS, EOS, limits,
                                            beam_size=beam, alpha=0.0)]
    assert [h.ids for h in hyps] == [[A] * 2, [A] * 5]  # limit counts the forced </s>
    k = 1 if beam is None else beam
    # One row per sentence at the first step, then k; the short one leaves after step 3.
    assert never_ends.batch_sizes == [2] + [2 * k] * 2 + [k] * 3


@pytest.mark.parametrize("rows, vocab, k", [(1, 50, 5), (5, 50, 5), (3, 4, 5), (1, 3, 2)])
def test_top_candidates_are_the_best_continuations_over_all_beams(rows, vocab, k):
    g = torch.Generator().manual_seed(rows * 100 + vocab)
    B = 4
    scores = -torch.rand(B, rows, generator=g) * 5
    log_probs = torch.log_softmax(torch.randn(B * rows, vocab, generator=g) * 3, -1)
    top, parents, tokens = top_candidates(scores, log_probs, k)
    assert top.shape == parents.shape == tokens.shape == (B, 2 * k)
    # brute force: every (beam, token) continuation of a sentence, ranked
    every = (scores.reshape(-1, 1) + log_probs).view(B, rows * vocab)
    best = every.sort(dim=1, descending=True).values[:, :2 * k]
    n = best.size(1)
    assert torch.equal(top[:, :n], best)
    assert bool(torch.isinf(top[:, n:]).all())  # fewer continuations than 2k: padded
    # each candidate's parent and token give back its score
    picked = (scores.gather(1, parents[:, :n])
              + log_probs.view(B, rows, vocab)[torch.arange(B).unsqueeze(1), parents[:, :n],
                                                tokens[:, :n]])
    torch.testing.assert_close(picked, top[:, :n])


def test_max_lengths_scale_with_source_length():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert max_lengths(mask, 1.5, 2).tolist() == [6, 8]
    assert max_lengths(mask, 1.5, 2, cap=7).tolist() == [6, 7]


@pytest.mark.parametrize("beam", [None, 1, 2, 5])
def test_batch_of_scripts_each_sentence_gets_its_own_answer(beam):
    order = [11, 10, 11, 10, 10]
    kw = {} if beam is None else {"alpha": 0.0}
    results = run_search(ScriptedModel(SCRIPTS), order, beam=beam, **kw)
    best = [r if beam is None else r[0] for r in results]
    for script, hyp in zip(order, best):
        alone = run_search(ScriptedModel(SCRIPTS), [script], beam=beam, **kw)[0]
        alone = alone if beam is None else alone[0]
        assert hyp.ids == alone.ids
        assert hyp.score == pytest.approx(alone.score)


def test_beam_attention_has_one_row_per_output_token():
    model = ScriptedModel(SCRIPTS)
    src = torch.tensor([[10, 4, EOS], [11, EOS, PAD]])
    mask = src != PAD
    results = beam_search(model, src, mask, BOS, EOS, torch.tensor([9, 9]), beam_size=3,
                          n_best=2, alpha=0.0, return_attention=True)
    for nbest, m in zip(results, mask):
        for h in nbest:
            assert h.attention.shape == (len(h.ids) + 1, src.size(1))
            torch.testing.assert_close(h.attention[:, m], (m.float() / m.sum())[m].expand(
                len(h.ids) + 1, -1))


def test_n_best_must_not_exceed_beam():
    with pytest.raises(ValueError, match="n_best"):
        run_search(ScriptedModel(SCRIPTS), [10], beam=2, n_best=3)


# ---- beam 1 == greedy on real models ---------------------------------------------------------

def random_model(seed: int, **overrides):
    torch.manual_seed(seed)
    cfg = ModelConfig(emb_dim=16, hidden_size=24, encoder_layers=1, dropout=0.0, **overrides)
    return build_model(cfg, 30, 30, PAD).eval()


def random_sources(seed: int, n: int = 12) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, 30, (int(torch.randint(1, 12, (1,), generator=g)),),
                          generator=g).tolist() for _ in range(n)]


def same_hypotheses(greedy: list[Hypothesis], beam: list[list[Hypothesis]]) -> None:
    for g, [b] in zip(greedy, beam):
        assert b.ids == g.ids
        assert b.log_prob == pytest.approx(g.log_prob, abs=1e-4)


@pytest.mark.parametrize("overrides", [
    dict(rnn_type="lstm", attention="luong_general", input_feeding=True),
    dict(rnn_type="gru", attention="bahdanau"),
    dict(encoder="cnn", attention="luong_dot"),
    dict(rnn_type="lstm", attention="none", bidirectional=False),
], ids=["lstm-luong", "gru-bahdanau", "cnn-dot", "lstm-none"])
def test_beam_one_equals_greedy_on_a_random_model(overrides: dict):
    model = random_model(seed=1, **overrides)
    b = collate(random_sources(seed=2), None, PAD, BOS, EOS)
    limit = max_lengths(b.src_mask, 1.5, 5)
    greedy = greedy_search(model, b.src_ids, b.src_mask, BOS, EOS, limit)
    beam = beam_search(model, b.src_ids, b.src_mask, BOS, EOS, limit, beam_size=1, alpha=0.0)
    same_hypotheses(greedy, beam)
    assert len({len(h.ids) for h in greedy}) > 1  # not a degenerate model


def test_beam_result_does_not_depend_on_batch_mates():
    model = random_model(seed=3, rnn_type="gru", attention="luong_general")
    sources = random_sources(seed=4, n=6)
    b = collate(sources, None, PAD, BOS, EOS)
    limit = max_lengths(b.src_mask, 1.5, 5)
    batched = beam_search(model, b.src_ids, b.src_mask, BOS, EOS, limit, beam_size=4, n_best=2)
    for i, src in enumerate(sources):
        one = collate([src], None, PAD, BOS, EOS)
        [alone] = beam_search(model, one.src_ids, one.src_mask, BOS, EOS, limit[i:i + 1],
                              beam_size=4, n_best=2)
        assert [h.ids for h in alone] == [h.ids for h in batched[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in batched[i]], abs=1e-4)


@pytest.fixture(scope="module")
def demo_translator(demo_model_dir: Path) -> Translator:
    return Translator.load(demo_model_dir)


def test_beam_one_equals_greedy_on_the_trained_demo_model(demo_translator, demo_splits):
    tr = demo_translator
    sources = [tr.src.encode(s) for s, _ in demo_splits["test"][:60]]
    b = collate(sources, None, PAD, BOS, EOS)
    limit = max_lengths(b.src_mask, 1.5, 10)
    bos, eos = tr.tgt.vocab.bos_id, tr.tgt.vocab.eos_id
    model = tr.engine.model
    greedy = greedy_search(model, b.src_ids, b.src_mask, bos, eos, limit)
    beam = beam_search(model, b.src_ids, b.src_mask, bos, eos, limit, beam_size=1, alpha=0.0)
    same_hypotheses(greedy, beam)
    # and a wider beam never scores worse than greedy on a model this confident
    wide = beam_search(model, b.src_ids, b.src_mask, bos, eos, limit, beam_size=5, alpha=0.0)
    better_or_equal = sum(w[0].log_prob >= g.log_prob - 1e-4 for w, g in zip(wide, greedy))
    assert better_or_equal >= 0.95 * len(greedy)


# ---- sampling ----------------------------------------------------------------------------

def test_top_k_keeps_exactly_the_k_best():
    torch.manual_seed(5)
    lp = torch.log_softmax(torch.randn(4, 20), -1)
    out = filter_logits(lp, top_k=5)
    kept = torch.isfinite(out)
    assert kept.sum(1).tolist() == [5] * 4
    assert torch.equal(kept, torch.zeros_like(kept).scatter(1, lp.topk(5).indices, True))
    torch.testing.assert_close(out[kept], lp[kept])
    assert torch.isfinite(filter_logits(lp, top_k=50)).all()  # k > V keeps everything


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15], [0.9, 0.06, 0.03, 0.01]])
    lp = probs.log()
    for p, expected in [(0.45, [[1], [0]]), (0.6, [[1, 2], [0]]), (0.75, [[1, 2], [0]]),
                        (0.85, [[1, 2, 3], [0]]), (0.92, [[1, 2, 3], [0, 1]]),
                        (0.97, [[0, 1, 2, 3], [0, 1, 2]])]:
        kept = torch.isfinite(filter_logits(lp, top_p=p))
        assert [row.nonzero().squeeze(1).tolist() for row in kept] == expected, p
    assert torch.isfinite(filter_logits(lp, top_p=1.0)).all()
    # the most probable token always survives, however small p is
    assert torch.isfinite(filter_logits(lp, top_p=1e-6)).sum(1).tolist() == [1, 1]


def test_temperature_rescales_the_distribution():
    torch.manual_seed(6)
    lp = torch.log_softmax(torch.randn(3, 10), -1)
    for t in (0.5, 1.0, 2.0):
        torch.testing.assert_close(torch.softmax(filter_logits(lp, temperature=t), -1),
                                   torch.softmax(lp / t, -1))
    sharp = torch.softmax(filter_logits(lp, temperature=0.01), -1)
    assert torch.equal(sharp.argmax(-1), lp.argmax(-1))
    assert bool((sharp.max(-1).values > 0.99).all())
    flat = torch.softmax(filter_logits(lp, temperature=100.0), -1)
    assert float(flat.max() - flat.min()) < 0.01
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(lp, temperature=0.0)


FIRST_TOKEN: Script = {(): {A: 0.5, B: 0.3, C: 0.2}}


@pytest.mark.parametrize("kwargs, expected", [
    ({}, {A: 0.5, B: 0.3, C: 0.2}),
    ({"top_k": 2}, {A: 0.625, B: 0.375, C: 0.0}),
    ({"top_p": 0.5}, {A: 1.0, B: 0.0, C: 0.0}),
    ({"top_p": 0.7}, {A: 0.625, B: 0.375, C: 0.0}),
    ({"temperature": 2.0}, {t: p ** 0.5 / sum(q ** 0.5 for q in (0.5, 0.3, 0.2))
                            for t, p in ((A, 0.5), (B, 0.3), (C, 0.2))}),
])
def test_sampling_frequencies_follow_the_filtered_distribution(kwargs, expected):
    n = 4000
    model = ScriptedModel({13: FIRST_TOKEN})
    src = torch.tensor([[13, EOS]] * n)
    hyps = sample(model, src, torch.ones_like(src, dtype=torch.bool), BOS, EOS,
                  torch.full((n,), 5), generator=torch.Generator().manual_seed(7), **kwargs)
    for tok, p in expected.items():
        freq = sum(h.ids == [tok] for h in hyps) / n
        assert freq == pytest.approx(p, abs=0.035), (tok, freq, p)
    for h in hyps:  # the score is the model's log-probability, not the filtered one
        assert h.log_prob == pytest.approx(model.log_prob(13, h.ids))


def test_sampling_is_reproducible_with_a_seed_and_top_k_1_is_greedy():
    model = random_model(seed=8, rnn_type="gru", attention="bahdanau")
    b = collate(random_sources(seed=9, n=16), None, PAD, BOS, EOS)
    limit = max_lengths(b.src_mask, 1.5, 5)

    def draw(seed: int, **kw) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return [h.ids for h in sample(model, b.src_ids, b.src_mask, BOS, EOS, limit,
                                      generator=g, **kw)]

    assert draw(1, temperature=1.5) == draw(1, temperature=1.5)
    assert draw(1, temperature=1.5) != draw(2, temperature=1.5)
    greedy = greedy_search(model, b.src_ids, b.src_mask, BOS, EOS, limit)
    assert draw(3, top_k=1) == [h.ids for h in greedy]
    for ids, lim in zip(draw(4, temperature=3.0), limit.tolist()):
        assert len(ids) <= lim - 1 and EOS not in ids
