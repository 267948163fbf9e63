"""Documents and long texts: sentence splitting that loses nothing, a long document through
the demo model with its layout kept, texts longer than the model's positions split, the
CLI's --document and --glossary."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from transduce import documents
from transduce.demo import LEXICON
from transduce.translator import Translator, split_tokens

DATA = Path(os.environ.get("TRANSDUCE_DATA", Path(__file__).resolve().parents[3] / "shared" /
                           "data"))


def make_document(sentences: list[str], chars: int, seed: int = 0) -> str:
    """Paragraphs of 1-5 sentences, some indented, separated by one or two blank lines,
    some lines ending in CRLF, until `chars` characters."""
    rng = random.Random(seed)
    paragraphs, size = [], 0
    while size < chars:
        lines = []
        for _ in range(rng.randint(1, 3)):
            line = " ".join(rng.choice(sentences) for _ in range(rng.randint(1, 5)))
            lines.append(rng.choice(["", "", "  ", "\t"]) + line + rng.choice(["", "\r", " "]))
        paragraphs.append("\n".join(lines))
        size += len(paragraphs[-1])
    return "\n\n".join(p + "\n" * rng.randint(0, 1) for p in paragraphs) + "\n"


def multi30k_sentences(n: int = 500) -> list[str]:
    with gzip.open(DATA / "multi30k" / "val.en.gz", "rt", encoding="utf-8") as f:
        lines = [line.strip() for _, line in zip(range(n), f)]
    return [s if s.endswith((".", "!", "?")) else s + "." for s in lines]


def test_a_50000_character_document_round_trips_exactly():
    doc = make_document(multi30k_sentences(), 50_000)
    assert len(doc) >= 50_000
    pieces = documents.split(doc, "en")
    sentences = documents.units(pieces)
    assert documents.join(pieces, sentences) == doc  # identity translation: the same text
    assert all(s == s.strip() and "\n" not in s for s in sentences)
    assert len(sentences) > doc.count("\n")  # several sentences on many lines
    upper = documents.join(pieces, (s.upper() for s in sentences))
    assert upper.split("\n") == [line.upper() for line in doc.split("\n")]


def test_sentences_are_split_at_their_ends_not_at_abbreviations():
    pieces = documents.split("Dr. Smith met Mr. Jones at 3.5 p.m. today. Was it late? Yes!",
                             "en")
    assert documents.units(pieces) == ["Dr. Smith met Mr. Jones at 3.5 p.m. today.",
                                       "Was it late?", "Yes!"]


def test_html_tags_and_entities_are_kept():
    doc = "<p class='a'>One thing &amp; another. Two.</p>\n<br/><b>Three</b>"
    pieces = documents.split(doc, "en", "html")
    assert documents.units(pieces) == ["One thing & another.", "Two.", "Three"]
    assert documents.join(pieces, ["A & B.", "C.", "D"], "html") == \
        "<p class='a'>A &amp; B. C.</p>\n<br/><b>D</b>"


@pytest.fixture(scope="module")
def demo_translator(demo_model_dir: Path) -> Translator:
    return Translator.load(demo_model_dir)


def test_a_long_document_through_the_demo_model_keeps_every_line(demo_translator, demo_splits):
    sentences = [s + "." for s, _ in demo_splits["valid"]]
    doc = make_document(sentences, 50_000, seed=1)
    out, results = documents.translate_document(demo_translator, doc, "en", beam_size=1)
    assert len(results) >= 1000
    src_lines, out_lines = doc.split("\n"), out.split("\n")
    assert len(out_lines) == len(src_lines)
    for s, o in zip(src_lines, out_lines):
        assert bool(s.strip()) == bool(o.strip()), (s, o)  # no empty line for a non-empty one
        assert s[: len(s) - len(s.lstrip())] == o[: len(o) - len(o.lstrip())]  # indentation
    some = sentences[:5]
    assert [r.text for r in demo_translator.translate(some, beam_size=1)] == \
        [r.text for r in documents.translate_document(
            demo_translator, " ".join(some), "en", beam_size=1)[1]]


def test_split_tokens_cuts_before_words_within_the_limit():
    tokens = "▁the ▁big ▁ca t ▁sees ▁a ▁red ▁ba ll".split()
    parts = split_tokens(tokens, 5)
    assert [t for p in parts for t in p] == tokens
    assert all(len(p) <= 4 and p[0].startswith("▁") for p in parts)
    assert split_tokens(tokens, None) == [tokens] == split_tokens(tokens, 10)
    assert split_tokens(list("abcdefg"), 4) == [list("abc"), list("def"), list("g")]


def test_a_text_longer_than_the_model_allows_is_split_not_truncated(demo_model_dir: Path):
    translator = Translator.load(demo_model_dir)
    translator.engine.max_positions = 40  # as a Transformer with 40 positions: 20 source tokens
    assert translator.source_limit() == 20
    text = " ".join(s for s, _ in [("the big cat sees a red ball near the house", 0),
                                   ("the old king paints a green door", 0),
                                   ("a small dog likes the blue car", 0)])
    tokens = translator.src.tokenize(text)
    assert len(tokens) >= 20
    (long,) = translator.translate([text], beam_size=1)
    parts = [" ".join(p) for p in split_tokens(tokens, 20)]
    assert len(parts) == 2
    assert long.text == " ".join(r.text for r in translator.translate(parts, beam_size=1))
    assert long.src_tokens == tokens and 0 < long.confidence <= 1


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transduce", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_cli_document_and_glossary(demo_model_dir: Path, tmp_path: Path, demo_translator):
    doc = "the big cat sees a red ball. the old king paints a green door.\n\n  a small dog " \
        "likes the blue car.\n"
    r = run_cli("translate", str(demo_model_dir), "--document", "--beam", "1", stdin=doc)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[2].startswith("  ") and lines[0]
    packed = tmp_path / "doc.txt.gz"  # gzip input, CRLF line endings kept
    packed.write_bytes(gzip.compress(doc.replace("\n", "\r\n").encode("utf-8")))
    out = tmp_path / "doc.out"
    r = run_cli("translate", str(demo_model_dir), "--document", "--beam", "1", "-i", str(packed),
                "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_bytes().decode("utf-8")
    assert text.count("\r\n") == 3 and text.replace("\r\n", "\n") == "\n".join(lines)
    terms = tmp_path / "terms.tsv"
    terms.write_text(f"# glossary\ncat\t{LEXICON['king']}\n", encoding="utf-8")
    r = run_cli("translate", str(demo_model_dir), "--glossary", str(terms),
                stdin="the big cat sees a red ball\na small dog likes the blue car\n")
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert LEXICON["king"] in first.split() and LEXICON["king"] not in second.split()
    terms.write_text("cat Katze\n", encoding="utf-8")
    r = run_cli("translate", str(demo_model_dir), "--glossary", str(terms), stdin="x\n")
    assert r.returncode != 0 and "terms.tsv:1: expected 'source term<TAB>target term'" in r.stderr
