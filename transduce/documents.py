"""Texts of any length: split into sentences, translate them in batches, rebuild the text.

Sentences are found by sentencex (Wikimedia's rule-based segmenter): about 300 languages
with their abbreviation lists and a fallback chain for the rest, nothing to download, about
1 MB of text in 40 ms on one core, and its segments keep their whitespace, so the pieces
put together give back the input exactly. (pysbd is about a hundred times slower; NLTK's
punkt needs a model download; spaCy and stanza, which LibreTranslate uses, are large.)

Line breaks are kept: every line is split on its own, and blank lines, indentation and the
spaces between sentences are copied to the output as they are. In HTML, tags are copied
and the text between them is translated (entities decoded, then escaped again).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sentencex import segment

if TYPE_CHECKING:
    from transduce.translator import Translation, Translator

_TAG = re.compile(r"(<[^>]*>)")


@dataclass(frozen=True)
class Piece:
    text: str
    translate: bool  # a sentence to translate, or markup/whitespace to copy


def split(text: str, lang: str, fmt: str = "text", sentences: bool = True) -> list[Piece]:
    """`text` as pieces to translate and pieces to copy, in order; with fmt "html", tags
    are copied. `sentences`: split lines into sentences (else a line is one piece)."""
    if fmt not in ("text", "html"):
        raise ValueError(f"format must be 'text' or 'html', got {fmt!r}")
    out: list[Piece] = []
    for part in (_TAG.split(text) if fmt == "html" else [text]):
        if fmt == "html" and _TAG.fullmatch(part):
            out.append(Piece(part, False))
            continue
        for k, line in enumerate(part.split("\n")):
            if k:
                out.append(Piece("\n", False))
            for sentence in (segment(lang, line) if sentences and line.strip() else [line]):
                out += _trimmed(sentence, fmt)
    return [p for p in out if p.text]


def _trimmed(sentence: str, fmt: str) -> list[Piece]:
    core = sentence.strip()
    if not core:
        return [Piece(sentence, False)]
    lead = sentence[: len(sentence) - len(sentence.lstrip())]
    trail = sentence[len(sentence.rstrip()):]
    return [Piece(lead, False), Piece(html.unescape(core) if fmt == "html" else core, True),
            Piece(trail, False)]


def units(pieces: list[Piece]) -> list[str]:
    """The pieces to translate."""
    return [p.text for p in pieces if p.translate]


def join(pieces: list[Piece], translations: Iterable[str], fmt: str = "text") -> str:
    """The text again, each piece to translate replaced by the next translation."""
    it = iter(translations)
    out = []
    for p in pieces:
        if not p.translate:
            out.append(p.text)
        else:
            t = next(it)
            out.append(html.escape(t, quote=False) if fmt == "html" else t)
    return "".join(out)


def translate_document(translator: Translator, text: str, lang: str, fmt: str = "text",
                       **options: Any) -> tuple[str, list[Translation]]:
    """The translation of `text` (any length) and of each of its sentences; `options` go
    to `Translator.translate` (beam_size, glossary, controls...)."""
    pieces = split(text, lang, fmt)
    results = translator.translate(units(pieces), **options)
    return join(pieces, (r.text for r in results), fmt), results
