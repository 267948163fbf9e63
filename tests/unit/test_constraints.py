"""Lexically constrained beam search (dynamic beam allocation) and glossaries: on scripted
models where the unconstrained best output avoids the term, and on the trained demo model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from test_search import EOS, SCRIPTS, A, B, C, D, ScriptedModel, run_search

from transduce.demo import LEXICON
from transduce.search.constraints import START, Constraints, bank_sizes
from transduce.text.glossary import Glossary
from transduce.translator import Translator

# Script 30: the best output is 'a </s>' (0.6 * 0.9); 'd' is improbable everywhere, so the
# search must place it deliberately. Later prefixes end with </s> most of the time.
AVOIDS_D = {30: {(): {A: 0.6, B: 0.3, D: 0.1}, (A,): {EOS: 0.9, D: 0.05, C: 0.05}}}
LATER = {EOS: 0.5, A: 0.2, B: 0.1, C: 0.1, D: 0.1}


def avoids_d() -> ScriptedModel:
    return ScriptedModel(AVOIDS_D, default=LATER)


def contains(ids: list[int], phrase: tuple[int, ...]) -> bool:
    n = len(phrase)
    return any(tuple(ids[i:i + n]) == phrase for i in range(len(ids) - n + 1))


def best_with(model: ScriptedModel, script: int, phrases: list[tuple[int, ...]],
              max_tokens: int) -> tuple[list[int], float]:
    """Exhaustive search: the most probable output (raw log-probability) containing every
    phrase, over outputs of up to max_tokens tokens."""
    best: tuple[list[int], float] = ([], -math.inf)
    for n in range(max_tokens + 1):
        for ids in itertools.product([A, B, C, D], repeat=n):
            if all(contains(list(ids), p) for p in phrases):
                lp = model.log_prob(script, list(ids))
                if lp > best[1]:
                    best = (list(ids), lp)
    return best


def test_the_unconstrained_best_avoids_the_term():
    (hyp,) = run_search(avoids_d(), [30], beam=4, alpha=0.0)[0]
    assert hyp.ids == [A] and D not in hyp.ids


@pytest.mark.parametrize("phrases", [[(D,)], [(D, C)], [(D,), (B,)], [(C, D), (B,)]])
def test_every_constraint_appears_and_the_search_finds_the_best_such_output(phrases):
    model = avoids_d()
    (hyp,) = run_search(model, [30], beam=6, limit=8, alpha=0.0,
                        constraints=[Constraints(tuple(phrases))])[0]
    for p in phrases:
        assert contains(hyp.ids, p), (hyp.ids, p)
    ids, lp = best_with(model, 30, phrases, max_tokens=5)
    assert hyp.ids == ids
    assert hyp.log_prob == pytest.approx(lp)


def test_a_sentence_without_constraints_is_searched_as_by_plain_beam_search():
    model = ScriptedModel({**SCRIPTS, **AVOIDS_D}, default=LATER)
    plain = run_search(model, [10, 11, 30], beam=3, n_best=2)
    mixed = run_search(model, [10, 11, 30], beam=3, n_best=2,
                       constraints=[Constraints(), Constraints(), Constraints(((D,),))])
    for p, m in zip(plain[:2], mixed[:2]):
        assert [h.ids for h in p] == [h.ids for h in m]
        assert [h.score for h in p] == pytest.approx([h.score for h in m])
    assert all(D in h.ids for h in mixed[2])


def test_constraints_that_cannot_fit_end_at_the_limit_instead_of_looping():
    model = avoids_d()
    phrase = (D, C, B, A, D, C)  # six tokens; the limit allows three before </s>
    (hyp,) = run_search(model, [30], beam=4, limit=4, constraints=[Constraints((phrase,))])[0]
    assert len(hyp.ids) <= 3 and not contains(hyp.ids, phrase)
    assert len(model.batch_sizes) == 4  # one step per position up to the limit, no more


def test_progress_through_a_phrase_restarts_when_it_is_broken():
    cons = Constraints(((C, D), (B,)))
    p = cons.advance(START, C)
    assert cons.met_tokens(p) == 1 and cons.next_tokens(p) == [D]
    assert cons.met_tokens(cons.advance(p, A)) == 0  # broken: back to nothing met
    p = cons.advance(cons.advance(p, D), B)
    assert cons.complete(p) and cons.met_tokens(p) == 3 and cons.next_tokens(p) == []


@pytest.mark.parametrize("counts, k, expected", [
    ([9, 9, 9], 6, [2, 2, 2]),
    ([9, 9, 9], 5, [1, 2, 2]),  # the remainder goes to the banks with most met
    ([9, 1, 0], 6, [5, 1, 0]),  # slots a bank cannot fill go to the others
    ([1, 9, 9], 4, [1, 1, 2]),
    ([0, 0, 3], 5, [0, 0, 3]),
])
def test_bank_sizes_share_the_beam(counts, k, expected):
    sizes = bank_sizes(counts, k)
    assert sizes == expected
    assert sum(sizes) == min(k, sum(counts))


def test_glossary_matches_whole_words_longest_first_case_insensitively():
    g = Glossary.from_pairs([("dog", "Hund"), ("hot dog", "Hotdog"), ("man", "Mann"),
                             ("猫", "Katze")])
    assert g.matches("A Man eats a hot dog; his DOG waits. 我的猫. Mandate, dogma.") == [
        ("Man", "Mann"), ("hot dog", "Hotdog"), ("DOG", "Hund"), ("猫", "Katze")]
    assert g.matches("nothing here") == []


@pytest.mark.parametrize("pairs", [[["dog"]], [["dog", ""]], ["dog\tHund"], [[1, 2]],
                                   [["a", "b", "c"]]])
def test_a_glossary_entry_that_is_not_a_pair_of_strings_is_refused(pairs):
    with pytest.raises(ValueError, match="glossary entry 0"):
        Glossary.from_pairs(pairs)


def test_a_malformed_glossary_file_names_the_line(tmp_path: Path):
    path = tmp_path / "terms.tsv"
    path.write_text("# terms\ndog\tHund\ncat Katze\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"terms.tsv:3: expected 'source term<TAB>target"):
        Glossary.read(path)


@pytest.fixture(scope="module")
def demo_translator(demo_model_dir: Path) -> Translator:
    return Translator.load(demo_model_dir)


def test_the_demo_model_uses_glossary_terms(demo_translator: Translator, demo_splits):
    """'cat' forced to the made-up word for 'king': it appears wherever 'cat' occurs, though
    the unconstrained translations never write it; other sentences are unchanged."""
    king = LEXICON["king"]
    srcs = [s for s, _ in demo_splits["test"] if "king" not in s][:40]
    assert any(" cat " in f" {s} " for s in srcs)
    plain = demo_translator.translate(srcs, beam_size=4)
    assert not any(king in p.text.split() for p in plain)
    glossary = Glossary.from_pairs([("cat", king)])
    out = demo_translator.translate(srcs, beam_size=4, glossary=glossary)
    for s, p, o in zip(srcs, plain, out):
        if glossary.matches(s):
            assert king in o.text.split() and o.missing_terms == []
        else:
            assert o.text == p.text and o.score == pytest.approx(p.score)
    with pytest.raises(ValueError, match="sampling"):
        demo_translator.translate(srcs[:1], sampling=True, glossary=glossary)


def test_a_term_outside_the_target_vocabulary_is_reported_missing(demo_translator: Translator):
    glossary = Glossary.from_pairs([("cat", "\u2603")])  # a snowman: no such target word
    (out,) = demo_translator.translate(["the cat sees a dog"], glossary=glossary)
    assert out.missing_terms == ["\u2603"] and out.text


def test_constraints_leave_empty_rows_out_of_the_beam():
    """A beam wider than the candidates: padding rows score -inf and never finish."""
    model = ScriptedModel({31: {(): {A: 1.0}, (A,): {EOS: 1.0}}}, default={EOS: 1.0})
    hyps = run_search(model, [31], beam=5, n_best=1, constraints=[Constraints(((A,),))])[0]
    assert [h.ids for h in hyps] == [[A]] and torch.isfinite(torch.tensor(hyps[0].score))
