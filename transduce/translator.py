"""The one inference path: text in, text out. CLI translate, evaluation, validation during
training and the server all go through `Translator.translate`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transduce.config import DecodeConfig
from transduce.ct2 import CTranslate2Engine, is_export
from transduce.engine import Engine, TorchEngine
from transduce.model_dir import load_model
from transduce.models import Seq2Seq
from transduce.models.ensemble import Ensemble
from transduce.search import Constraints, Controls, Hypothesis
from transduce.search.options import SearchOptions
from transduce.text import Codec
from transduce.text.glossary import Glossary
from transduce.training.checkpoint import MODEL_FILE

__all__ = ["Alternative", "SearchOptions", "Translation", "Translator", "decode_controls",
           "load_model"]


@dataclass
class Alternative:
    text: str
    score: float


@dataclass
class Translation:
    source: str
    text: str
    score: float
    alternatives: list[Alternative] = field(default_factory=list)  # n-best, best first
    src_tokens: list[str] = field(default_factory=list)
    tgt_tokens: list[str] = field(default_factory=list)
    attention: list[list[float]] | None = None  # (len(tgt_tokens) + 1, len(src_tokens) + 1)
    # exp(log P(y|x) / (|y| + 1)): the geometric mean of the output tokens' probabilities,
    # </s> included, in (0, 1]; 1.0 for an empty input
    confidence: float = 1.0
    # (source token, output token) index pairs: each output token's most attended source
    # token (Pharaoh "i-j" order); with return_attention only
    alignment: list[tuple[int, int]] | None = None
    # glossary target terms this translation should use but does not (with a glossary)
    missing_terms: list[str] = field(default_factory=list)


class Translator:
    """Tokenizers, decoding defaults and an engine (engine.py) that runs the search:
    `Translator.load` picks PyTorch for a model directory and CTranslate2 for an export."""

    def __init__(self, src: Codec, tgt: Codec, engine: Engine):
        self.src, self.tgt, self.engine = src, tgt, engine

    @property
    def decode(self) -> DecodeConfig:
        """The decoding defaults: the engine's, so that both read one record."""
        return self.engine.decode

    @decode.setter
    def decode(self, value: DecodeConfig) -> None:
        self.engine.decode = value

    @classmethod
    def from_model(cls, model: Seq2Seq | Ensemble, src: Codec, tgt: Codec,
                   decode: DecodeConfig | None = None, device: str | torch.device = "cpu",
                   quantize: str | None = None) -> Translator:
        """A PyTorch model in memory (training's validation, tests, notebooks)."""
        decode = decode or DecodeConfig()
        return cls(src, tgt, TorchEngine(model, src.vocab, tgt.vocab, decode, device, quantize))

    @property
    def quantize(self) -> str:
        return self.engine.quantize

    @property
    def max_positions(self) -> int | None:
        return self.engine.max_positions

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu", weights: str = MODEL_FILE,
             quantize: str | None = None) -> Translator:
        """Load a model directory written by training (config.yaml, tokenizer, safetensors),
        or a CTranslate2 export of one (`transduce export`: decoded by CTranslate2).
        `quantize` overrides the model's decode.quantize."""
        if is_export(model_dir):
            engine, cfg, src, tgt = CTranslate2Engine.from_export(model_dir, device, quantize)
            return cls(src, tgt, engine)
        cfg, model, src, tgt = load_model(model_dir, weights)
        return cls.from_model(model, src, tgt, cfg.decode, device, quantize)

    @classmethod
    def load_ensemble(cls, model_dirs: Sequence[str | Path], device: str = "cpu",
                      weights: str = MODEL_FILE, quantize: str | None = None) -> Translator:
        """Decode with several model directories at once (models/ensemble.py); they must
        have the same tokenizers and vocabularies. Decoding settings are the first's."""
        from transduce.data.prepare import tokenizer_files_hash

        if len(model_dirs) < 2:
            raise ValueError("an ensemble needs at least two model directories")
        for d in model_dirs:
            if is_export(d):
                raise ValueError(f"{d} is a CTranslate2 export; ensembles decode model "
                                 "directories with PyTorch")
        loaded = [load_model(d, weights) for d in model_dirs]
        first = tokenizer_files_hash(model_dirs[0])
        for d, (_, _, src, tgt) in zip(model_dirs[1:], loaded[1:]):
            if tokenizer_files_hash(d) != first:
                raise ValueError(
                    f"{d} has another tokenizer or vocabulary than {model_dirs[0]} (source "
                    f"{len(src.vocab):,} vs {len(loaded[0][2].vocab):,} entries, target "
                    f"{len(tgt.vocab):,} vs {len(loaded[0][3].vocab):,}): ensemble members "
                    "must share them (train them from the same prepared data)")
        cfg, _, src, tgt = loaded[0]
        return cls.from_model(Ensemble([m for _, m, _, _ in loaded]), src, tgt, cfg.decode,
                              device, quantize)

    def translate(self, texts: Sequence[str], beam_size: int | None = None,
                  n_best: int | None = None, return_attention: bool = False,
                  sampling: bool = False, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, seed: int | None = None,
                  batch_size: int | None = None, controls: Controls | None = None,
                  coverage_penalty: float | None = None, replace_unk: bool = False,
                  glossary: Glossary | None = None, max_len: int | None = None
                  ) -> list[Translation]:
        """Translate `texts`; the result is in input order. Empty inputs give empty outputs.
        `controls` (min length, no repeated n-grams, repetition penalty), `coverage_penalty`
        and `max_len` (output tokens at most) default to the decode config's. `replace_unk`:
        an output <unk> becomes the source token it attends to most (word and char
        vocabularies; this needs the attention, which the results then carry). `glossary`:
        the target term of every entry whose source term occurs in a text must appear in
        its translation (constrained beam search: text/glossary.py,
        search/constraints.py); terms that do not are listed in `missing_terms`."""
        options = self._options(beam_size, n_best, return_attention or replace_unk, sampling,
                                temperature, top_k, top_p, seed, controls, coverage_penalty,
                                max_len)
        if glossary is not None and sampling:
            raise ValueError("a glossary needs beam search: sampling cannot guarantee its terms")
        results: list[Translation | None] = [None] * len(texts)
        terms: dict[int, list[tuple[str, str]]] = {}
        encoded = []  # (text index, part, tokens, ids, constraints)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} must be a string, got {type(text).__name__}")
            tokens = self.src.tokenize(text) if text.strip() else []
            if not tokens:
                results[i] = Translation(text, "", 0.0, [Alternative("", 0.0)])
                continue
            terms[i] = glossary.matches(text) if glossary is not None else []
            pieces = split_tokens(tokens, self.source_limit())
            for k, piece in enumerate(pieces):
                own = terms[i] if len(pieces) == 1 or glossary is None else \
                    glossary.matches(self.src.tokenizer.detokenize(piece))
                encoded.append((i, k, piece, self.src.vocab.encode(piece),
                                self._constraints(own)))
        parts = self._decode(encoded, options, batch_size or self.decode.batch_size)
        for i, done in parts.items():
            if len(done) == 1:
                r = self._translation(texts[i], *done[0], replace_unk)
            else:
                r = self._joined(texts[i], [done[k] for k in range(len(done))])
            r.missing_terms = [target for _, target in terms[i] if target not in r.text]
            results[i] = r
        return [r for r in results if r is not None]

    def _options(self, beam_size: int | None, n_best: int | None, return_attention: bool,
                 sampling: bool, temperature: float, top_k: int, top_p: float,
                 seed: int | None, controls: Controls | None, coverage_penalty: float | None,
                 max_len: int | None) -> SearchOptions:
        """One call's SearchOptions, defaults from the decode config; ValueError for values
        out of range."""
        d = self.decode
        beam = beam_size if beam_size is not None else d.beam_size
        nbest = n_best if n_best is not None else d.n_best
        if beam < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam}")
        if not 1 <= nbest <= max(beam, 1):
            raise ValueError(f"n_best must be between 1 and beam_size ({beam}), got {nbest}")
        max_len = d.max_len if max_len is None else max_len
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        return SearchOptions(
            beam, nbest, return_attention, sampling, temperature, top_k, top_p,
            torch.Generator().manual_seed(seed) if seed is not None else None,
            controls or decode_controls(d),
            d.coverage_penalty if coverage_penalty is None else coverage_penalty, max_len)

    def _decode(self, encoded: list[tuple[int, int, list[str], list[int], Constraints]],
                options: SearchOptions, size: int
                ) -> dict[int, dict[int, tuple[list[str], list[Hypothesis]]]]:
        """Sorted by length into batches of `size` (those with constraints apart: the
        others keep the plain search), decoded by the engine; text index -> part ->
        (tokens, hypotheses)."""
        encoded = sorted(encoded, key=lambda e: len(e[3]))  # similar lengths: less padding
        groups = ([e for e in encoded if not e[4].phrases], [e for e in encoded if e[4].phrases])
        chunks = [g[start:start + size] for g in groups for start in range(0, len(g), size)]
        decoded = self.engine.decode_batches([[e[3] for e in chunk] for chunk in chunks],
                                             options, [[e[4] for e in chunk] for chunk in chunks])
        parts: dict[int, dict[int, tuple[list[str], list[Hypothesis]]]] = {}
        for chunk, hyps in zip(chunks, decoded):
            for (i, k, tokens, _, _), nb in zip(chunk, hyps):
                parts.setdefault(i, {})[k] = (tokens, nb)
        return parts

    def source_limit(self) -> int | None:
        """The most source tokens (</s> included) one search takes: within the model's
        positions, with room for the longest output the length limit allows; None for
        models without a position limit."""
        if not self.max_positions:
            return None
        d = self.decode
        room = int((self.max_positions - d.max_len_offset) / max(d.max_len_ratio, 1e-6))
        return max(2, min(self.max_positions, room))

    def _joined(self, source: str, done: list[tuple[list[str], list[Hypothesis]]]
                ) -> Translation:
        """One translation from the best hypotheses of the parts of a text longer than
        `source_limit` (split_tokens); no attention, alternatives or alignment."""
        ids = [t for _, nb in done for t in nb[0].ids]
        score = sum(nb[0].score for _, nb in done)
        log_prob = sum(nb[0].log_prob for _, nb in done)
        text = self.tgt.decode(ids)
        return Translation(source, text, score, [Alternative(text, score)],
                           [t for tokens, _ in done for t in tokens], self.tgt.tokens(ids),
                           confidence=math.exp(log_prob / (len(ids) + len(done))))

    def _constraints(self, terms: list[tuple[str, str]]) -> Constraints:
        """The target terms as token ids (a term with a token outside the vocabulary cannot
        be produced: it is left out, and reported as missing)."""
        phrases = []
        for _, target in terms:
            ids = self.tgt.vocab.encode(self.tgt.tokenize(target))
            if ids and self.tgt.vocab.unk_id not in ids:
                phrases.append(tuple(ids))
        return Constraints(tuple(phrases))

    def _translation(self, source: str, src_tokens: list[str], nbest: list[Hypothesis],
                     replace_unk: bool = False) -> Translation:
        best = nbest[0]
        alts = [Alternative(self.tgt.decode(h.ids), h.score) for h in nbest]
        tgt_tokens = self.tgt.tokens(best.ids)
        attention = alignment = None
        if best.attention is not None:
            # One row per shown token (+ </s>): drop rows of <pad>/<s> that decoding skips.
            v = self.tgt.vocab
            skip = {v.pad_id, v.bos_id, v.start_id}
            rows = [i for i, t in enumerate(best.ids) if t not in skip]
            att = best.attention[rows + [len(best.ids)], : len(src_tokens) + 1]
            attention = att.tolist()
            alignment = hard_alignment(att[:-1, : len(src_tokens)])
            unk = self.tgt.vocab.itos[self.tgt.vocab.unk_id]
            if replace_unk and unk in tgt_tokens:
                tgt_tokens = [src_tokens[i] if tgt_tokens[j] == unk else tgt_tokens[j]
                              for i, j in alignment]
                alts[0] = Alternative(self.tgt.tokenizer.detokenize(tgt_tokens), best.score)
        confidence = math.exp(best.log_prob / (len(best.ids) + 1))
        return Translation(source, alts[0].text, best.score, alts, src_tokens, tgt_tokens,
                           attention, confidence, alignment)


def decode_controls(decode: DecodeConfig, min_len: int | None = None,
                    no_repeat_ngram_size: int | None = None,
                    repetition_penalty: float | None = None) -> Controls:
    """The decode config's controls, each replaced where a value is given (a command-line
    flag, a request field); ValueError for values out of range."""
    return Controls(decode.min_len if min_len is None else min_len,
                    decode.no_repeat_ngram_size if no_repeat_ngram_size is None
                    else no_repeat_ngram_size,
                    decode.repetition_penalty if repetition_penalty is None
                    else repetition_penalty)


def split_tokens(tokens: list[str], limit: int | None) -> list[list[str]]:
    """`tokens` in parts of at most `limit` - 1 tokens (the search adds </s>), each cut
    before a word where the tokens mark word starts (SentencePiece's U+2581)."""
    if limit is None or len(tokens) < limit:
        return [tokens]
    marked = any(t.startswith("\u2581") for t in tokens)
    out, start = [], 0
    while len(tokens) - start >= limit:
        end = start + limit - 1
        if marked:
            starts = [j for j in range(start + 1, end + 1) if tokens[j].startswith("\u2581")]
            end = starts[-1] if starts else end
        out.append(tokens[start:end])
        start = end
    return out + [tokens[start:]]


def hard_alignment(attention: torch.Tensor) -> list[tuple[int, int]]:
    """(T, S) attention over real source tokens -> (source, output) index pairs: each
    output token aligned to its most attended source token."""
    if attention.numel() == 0:
        return []
    return [(int(i), j) for j, i in enumerate(attention.argmax(1).tolist())]
