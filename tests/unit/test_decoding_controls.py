"""Decoding controls (minimum length, no repeated n-grams, repetition penalty, coverage
penalty), ensembles, confidence and alignments: on scripted models where the answer can be
worked out by hand, and on the trained demo model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from test_search import BOS, EOS, A, B, C, ScriptedModel, V, run_search

from transduce.models.ensemble import Ensemble
from transduce.search import Controls
from transduce.search.common import coverage_penalty
from transduce.search.controls import ban_repeated_ngrams
from transduce.translator import Translator

# Script 20: 'a' is always the most probable next token (0.6), 'b' next (0.3), </s> 0.1.
REPEATS = {20: {}}
REPEAT_DEFAULT = {A: 0.6, B: 0.3, EOS: 0.1}


def repeats() -> ScriptedModel:
    return ScriptedModel(REPEATS, default=REPEAT_DEFAULT)


def ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


@pytest.mark.parametrize("beam", [None, 1, 3])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_output_repeats_an_ngram_of_the_configured_size(beam, n: int):
    hyps = run_search(repeats(), [20, 20], beam, limit=12,
                      controls=Controls(no_repeat_ngram_size=n))
    for h in (hyps if beam is None else [nb[0] for nb in hyps]):
        grams = ngrams(h.ids, n)
        assert len(grams) == len(set(grams)), h.ids
    [plain] = run_search(repeats(), [20], None, limit=12)
    assert len(ngrams(plain.ids, n)) > len(set(ngrams(plain.ids, n)))  # it would repeat


def test_ngram_ban_blocks_exactly_the_completions_seen_before():
    history = torch.tensor([[A, B, A, C, A]])  # last token a: bigrams seen after a: b, c
    banned = ban_repeated_ngrams(torch.zeros(1, V), history, 2)
    assert torch.isinf(banned[0]).nonzero().flatten().tolist() == [B, C]
    assert not torch.isinf(ban_repeated_ngrams(torch.zeros(1, V), history[:, :1], 2)).any()


@pytest.mark.parametrize("beam", [None, 2])
def test_minimum_length_holds_back_the_end(beam):
    short = ScriptedModel({11: {(): {EOS: 0.9, A: 0.1}}}, default={EOS: 0.9, B: 0.1})
    out = run_search(short, [11], beam, controls=Controls(min_len=3))
    h = out[0] if beam is None else out[0][0]
    assert len(h.ids) == 3 and h.ids[0] == A
    out = run_search(short, [11], beam)
    assert (out[0] if beam is None else out[0][0]).ids == []


def test_repetition_penalty_makes_seen_tokens_less_likely():
    log_probs = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    history = torch.tensor([[0]])
    out = Controls(repetition_penalty=2.0).apply(log_probs, history, eos_id=2)
    assert out.exp().sum().item() == pytest.approx(1.0)
    assert out[0, 0] < log_probs[0, 0] and out[0, 1] > log_probs[0, 1]  # renormalized
    [[h]] = run_search(repeats(), [20], 3, controls=Controls(repetition_penalty=3.0))
    [[plain]] = run_search(repeats(), [20], 3)
    assert h.ids.count(A) < plain.ids.count(A) or len(h.ids) < len(plain.ids)


def test_controls_refuse_values_out_of_range():
    for bad in ({"min_len": -1}, {"no_repeat_ngram_size": -2}, {"repetition_penalty": 0.0}):
        with pytest.raises(ValueError):
            Controls(**bad)


def test_coverage_penalty_is_zero_for_full_coverage_and_negative_otherwise():
    full = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])  # two real source positions
    assert coverage_penalty(full, 2, 0.2) == 0.0
    half = torch.tensor([[0.5, 0.0, 0.5], [0.5, 0.0, 0.5]])
    assert coverage_penalty(half, 2, 0.2) == pytest.approx(0.2 * math.log(1e-6))
    assert coverage_penalty(half, 2, 0.0) == 0.0


def test_the_coverage_penalty_enters_beam_scores():
    [[plain]] = run_search(repeats(), [20], 2, limit=4, alpha=0.0)
    [[covered]] = run_search(repeats(), [20], 2, limit=4, alpha=0.0, beta=1.0)
    # uniform attention over 2 source tokens: coverage min(T/2, 1) per position
    expected = 2 * math.log(min((len(covered.ids) + 1) / 2, 1.0))
    assert covered.score == pytest.approx(covered.log_prob + expected)
    assert plain.score == pytest.approx(plain.log_prob)


# ---- ensembles --------------------------------------------------------------------------

class Scaled(ScriptedModel):
    """A scripted model whose distribution is sharpened to the power `power`."""

    def __init__(self, power: float):
        super().__init__(REPEATS, default=REPEAT_DEFAULT)
        self.power = power

    def step(self, prev_ids, state, enc, attention=True):
        log_probs, state, attn = super().step(prev_ids, state, enc, attention)
        return torch.log_softmax(log_probs * self.power, -1), state, attn


def test_an_ensemble_averages_log_probabilities_and_renormalizes():
    ens = Ensemble.__new__(Ensemble)  # scripted members are not nn.Modules
    torch.nn.Module.__init__(ens)
    ens.__dict__["_members"] = [Scaled(1.0), Scaled(3.0)]
    ens.max_positions = None
    src = torch.tensor([[20, EOS]])
    enc = ens.encode(src, torch.ones_like(src, dtype=torch.bool))
    log_probs, _, attn = ens.step(torch.tensor([BOS]), ens.start(enc), enc)
    p = torch.tensor([0.6, 0.3, 0.1])
    expected = torch.log_softmax((p.log() + torch.log_softmax(3 * p.log(), -1)) / 2, -1)
    assert log_probs[0, [A, B, EOS]] == pytest.approx(expected.tolist(), abs=1e-5)
    assert attn is not None and attn.shape == (1, 2)


def test_two_copies_of_a_model_translate_as_the_model_alone(demo_model_dir: Path,
                                                            demo_splits, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(demo_model_dir, copy)
    srcs = [s for s, _ in demo_splits["test"][:40]]
    alone = Translator.load(demo_model_dir)
    pair = Translator.load_ensemble([demo_model_dir, copy])
    for beam in (1, 4):
        one = alone.translate(srcs, beam_size=beam)
        two = pair.translate(srcs, beam_size=beam)
        assert [t.text for t in two] == [t.text for t in one]
        assert [t.score for t in two] == pytest.approx([t.score for t in one], abs=1e-4)
    nb_one = alone.translate(srcs[:5], beam_size=4, n_best=3)
    nb_two = pair.translate(srcs[:5], beam_size=4, n_best=3)
    assert [[a.text for a in t.alternatives] for t in nb_two] == \
        [[a.text for a in t.alternatives] for t in nb_one]


def test_an_ensemble_of_different_vocabularies_is_refused(demo_model_dir: Path,
                                                          tmp_path: Path):
    other = tmp_path / "other"
    shutil.copytree(demo_model_dir, other)
    vocab = other / "tgt.vocab.json"
    itos = json.loads(vocab.read_text())
    itos[4] += "_renamed"  # same size, so the weights still load
    vocab.write_text(json.dumps(itos))
    with pytest.raises(ValueError, match="another tokenizer or vocabulary"):
        Translator.load_ensemble([demo_model_dir, other])
    with pytest.raises(ValueError, match="at least two"):
        Translator.load_ensemble([demo_model_dir])


# ---- confidence and alignments ----------------------------------------------------------

def test_confidence_is_the_geometric_mean_token_probability(demo_model_dir: Path,
                                                            demo_splits):
    translator = Translator.load(demo_model_dir)
    srcs = [s for s, _ in demo_splits["test"][:30]]
    results = translator.translate(srcs, beam_size=1)
    for r in results:
        n = len(r.tgt_tokens) + 1  # </s> included
        assert 0.0 < r.confidence <= 1.0
        assert r.confidence == pytest.approx(math.exp(r.score / n), rel=1e-6)
    # monotone in the log-probability at a fixed length
    same_length = {}
    for r in results:
        same_length.setdefault(len(r.tgt_tokens), []).append(r)
    for group in same_length.values():
        ranked = sorted(group, key=lambda r: r.score)
        assert [r.confidence for r in ranked] == sorted(r.confidence for r in ranked)
    assert translator.translate([""])[0].confidence == 1.0


def test_alignments_point_each_output_token_at_its_most_attended_source_token(
        demo_model_dir: Path, demo_splits):
    translator = Translator.load(demo_model_dir)
    [r] = translator.translate([demo_splits["test"][0][0]], beam_size=3,
                               return_attention=True)
    assert r.alignment is not None and r.attention is not None
    assert [j for _, j in r.alignment] == list(range(len(r.tgt_tokens)))
    for i, j in r.alignment:
        row = r.attention[j][: len(r.src_tokens)]
        assert 0 <= i < len(r.src_tokens) and row[i] == max(row)
    assert translator.translate([demo_splits["test"][0][0]])[0].alignment is None


def test_cli_translate_with_scores_alignments_controls_and_an_ensemble(
        demo_model_dir: Path, demo_splits, tmp_path: Path, capsys):
    from transduce.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(demo_model_dir, copy)
    srcs = [s for s, _ in demo_splits["test"][:6]]
    (tmp_path / "in.txt").write_text("\n".join(srcs) + "\n")
    assert main(["translate", str(demo_model_dir), "--ensemble", str(copy), "-i",
                 str(tmp_path / "in.txt"), "--beam", "3", "--scores", "--alignments",
                 "--no-repeat-ngram-size", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    offline = Translator.load(demo_model_dir).translate(
        srcs, beam_size=3, return_attention=True, controls=Controls(no_repeat_ngram_size=2))
    assert len(lines) == len(srcs)
    for line, o in zip(lines, offline):
        text, confidence, alignment = line.split("\t")
        assert text == o.text and float(confidence) == pytest.approx(o.confidence, abs=1e-4)
        assert alignment == " ".join(f"{i}-{j}" for i, j in o.alignment or [])
        grams = ngrams(o.tgt_tokens, 2)
        assert len(grams) == len(set(grams))


class Pointing(ScriptedModel):
    """A scripted model whose attention at output step t rests on source position
    (t + 1) mod (S - 1), S counting the appended </s>: step 0 looks at word 1, step 1 at 0."""

    def to(self, device):
        return self

    def eval(self):
        return self

    def step(self, prev_ids, state, enc, attention=True):
        log_probs, new_state, attn = super().step(prev_ids, state, enc, attention)
        t = state.prefix.size(1) + (1 if state.started else 0)
        pointed = torch.zeros_like(attn)
        pointed[:, (t + 1) % (attn.size(1) - 1)] = 1.0
        return log_probs, new_state, pointed


def test_replace_unk_copies_the_attended_source_token():
    from transduce.text import Codec
    from transduce.text.tokenizers import WordTokenizer
    from transduce.text.vocab import Vocab

    src = Codec(WordTokenizer(), Vocab([f"w{i}" for i in range(4, 30)]))  # w20 has id 20
    tgt = Codec(WordTokenizer(), Vocab(["a", "b", "c", "d"]))
    model = Pointing({20: {(): {1: 1.0}, (1,): {A: 1.0}}})  # <unk> a </s>
    translator = Translator.from_model(model, src, tgt)  # type: ignore[arg-type]
    for beam in (1, 2):
        [plain] = translator.translate(["w20 Zürich"], beam_size=beam)
        [fixed] = translator.translate(["w20 Zürich"], beam_size=beam, replace_unk=True)
        assert plain.text == "<unk> a" and plain.alignment is None
        assert fixed.text == "Zürich a" and fixed.tgt_tokens == ["Zürich", "a"]
        assert fixed.alignment == [(1, 0), (0, 1)]


@pytest.mark.parametrize("beam", [1, 4])
def test_max_len_caps_every_output(demo_model_dir: Path, beam: int):
    translator = Translator.load(demo_model_dir)
    sources = ["the big cat sees a red ball near the house", "the old king paints a green door"]
    full = translator.translate(sources, beam_size=beam)
    assert all(len(t.tgt_tokens) > 3 for t in full)
    capped = translator.translate(sources, beam_size=beam, max_len=3)
    assert all(1 <= len(t.tgt_tokens) <= 3 for t in capped)
    if beam == 1:  # greedy: the same tokens, cut at the cap
        assert [t.tgt_tokens for t in capped] == [t.tgt_tokens[:3] for t in full]
    with pytest.raises(ValueError, match="max_len"):
        translator.translate(sources, max_len=0)
