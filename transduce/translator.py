"""The one inference path: text in, text out. CLI translate, evaluation, validation during
training and the server all go through `Translator.translate`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transduce.config import Config, DecodeConfig, load_config
from transduce.data.batching import collate
from transduce.models import Seq2Seq, build_model
from transduce.models.ensemble import Ensemble
from transduce.models.quantize import quantize_int8
from transduce.search import (
    NO_CONTROLS,
    Controls,
    Hypothesis,
    beam_search,
    greedy_search,
    max_lengths,
    sample,
)
from transduce.text import Codec, load_codecs
from transduce.training.checkpoint import MODEL_FILE, load_weights


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


@dataclass(frozen=True)
class SearchOptions:
    """How to search, for one `translate` call."""

    beam: int = 5
    nbest: int = 1
    return_attention: bool = False
    sampling: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    generator: torch.Generator | None = None
    controls: Controls = NO_CONTROLS
    coverage_penalty: float = 0.0  # beta of GNMT's coverage penalty (beam search)


class Translator:
    """A model with its tokenizers and decoding defaults.

    `quantize` ("none" or "int8", default: decode.quantize) decodes with a copy of the model
    whose linear layers are int8 (CPU only); the model passed in is left as it is.
    """

    def __init__(self, model: Seq2Seq | Ensemble, src: Codec, tgt: Codec,
                 decode: DecodeConfig | None = None, device: str | torch.device = "cpu",
                 quantize: str | None = None):
        self.decode = decode or DecodeConfig()
        self.device = torch.device(device)
        self.quantize = quantize if quantize is not None else self.decode.quantize
        if self.quantize not in ("none", "int8"):
            raise ValueError(f"quantize must be 'none' or 'int8', got {self.quantize!r}")
        if self.quantize == "int8" and self.device.type != "cpu":
            raise ValueError(f"int8 decoding runs on CPU only, not on {self.device}; "
                             f"use --device cpu or quantize: none")
        self.model = model.to(device).eval()
        if self.quantize == "int8":
            self.model = quantize_int8(self.model)
        self.src, self.tgt = src, tgt

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu", weights: str = MODEL_FILE,
             quantize: str | None = None) -> Translator:
        """Load a model directory written by training (config.yaml, tokenizer, safetensors),
        or a CTranslate2 export of one (`transduce export`: decoded by CTranslate2).
        `quantize` overrides the model's decode.quantize."""
        from transduce.ct2 import CTranslate2Translator, is_export

        if is_export(model_dir):
            return CTranslate2Translator.from_export(model_dir, device, quantize)
        cfg, model, src, tgt = load_model(model_dir, weights)
        return cls(model, src, tgt, cfg.decode, device, quantize)

    @classmethod
    def load_ensemble(cls, model_dirs: Sequence[str | Path], device: str = "cpu",
                      weights: str = MODEL_FILE, quantize: str | None = None) -> Translator:
        """Decode with several model directories at once (models/ensemble.py); they must
        have the same tokenizers and vocabularies. Decoding settings are the first's."""
        from transduce.ct2 import is_export
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
        return cls(Ensemble([m for _, m, _, _ in loaded]), src, tgt, cfg.decode, device,
                   quantize)

    def translate(self, texts: Sequence[str], beam_size: int | None = None,
                  n_best: int | None = None, return_attention: bool = False,
                  sampling: bool = False, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, seed: int | None = None,
                  batch_size: int | None = None, controls: Controls | None = None,
                  coverage_penalty: float | None = None,
                  replace_unk: bool = False) -> list[Translation]:
        """Translate `texts`; the result is in input order. Empty inputs give empty outputs.
        `controls` (min length, no repeated n-grams, repetition penalty) and
        `coverage_penalty` default to the decode config's. `replace_unk`: an output <unk>
        becomes the source token it attends to most (word and char vocabularies; this
        needs the attention, which the results then carry)."""
        beam = beam_size if beam_size is not None else self.decode.beam_size
        nbest = n_best if n_best is not None else self.decode.n_best
        if beam < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam}")
        if not 1 <= nbest <= max(beam, 1):
            raise ValueError(f"n_best must be between 1 and beam_size ({beam}), got {nbest}")
        d = self.decode
        options = SearchOptions(
            beam, nbest, return_attention or replace_unk, sampling, temperature, top_k, top_p,
            torch.Generator().manual_seed(seed) if seed is not None else None,
            controls or decode_controls(d),
            d.coverage_penalty if coverage_penalty is None else coverage_penalty)
        results: list[Translation | None] = [None] * len(texts)
        encoded = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} must be a string, got {type(text).__name__}")
            tokens = self.src.tokenize(text) if text.strip() else []
            if not tokens:
                results[i] = Translation(text, "", 0.0, [Alternative("", 0.0)])
            else:
                encoded.append((i, tokens, self.src.vocab.encode(tokens)))
        encoded.sort(key=lambda e: len(e[2]))  # similar lengths together: less padding
        size = batch_size or self.decode.batch_size
        chunks = [encoded[start:start + size] for start in range(0, len(encoded), size)]
        decoded = self._decode_batches([[e[2] for e in chunk] for chunk in chunks], options)
        for chunk, hyps in zip(chunks, decoded):
            for (i, tokens, _), nb in zip(chunk, hyps):
                results[i] = self._translation(texts[i], tokens, nb, replace_unk)
        return [r for r in results if r is not None]

    def _decode_batches(self, batches: list[list[list[int]]], options: SearchOptions
                        ) -> Iterator[list[list[Hypothesis]]]:
        """`_decode` of each batch in turn (an engine may run them concurrently)."""
        for src_ids in batches:
            yield self._decode(src_ids, options)

    @torch.no_grad()
    def _decode(self, src_ids: list[list[int]], o: SearchOptions) -> list[list[Hypothesis]]:
        v = self.src.vocab
        batch = collate(src_ids, None, v.pad_id, v.start_id, v.eos_id).to(self.device)
        limit = max_lengths(batch.src_mask, self.decode.max_len_ratio, self.decode.max_len_offset,
                            getattr(self.model, "max_positions", None))
        bos, eos = self.tgt.vocab.start_id, self.tgt.vocab.eos_id
        args = (self.model, batch.src_ids, batch.src_mask, bos, eos, limit)
        if o.sampling:
            return [[h] for h in sample(*args, o.temperature, o.top_k, o.top_p, o.generator,
                                        o.controls)]
        if o.beam == 1 and o.nbest == 1:
            return [[h] for h in greedy_search(*args, return_attention=o.return_attention,
                                               controls=o.controls)]
        return beam_search(*args, beam_size=o.beam, n_best=o.nbest,
                           alpha=self.decode.length_penalty, return_attention=o.return_attention,
                           controls=o.controls, beta=o.coverage_penalty)

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


def hard_alignment(attention: torch.Tensor) -> list[tuple[int, int]]:
    """(T, S) attention over real source tokens -> (source, output) index pairs: each
    output token aligned to its most attended source token."""
    if attention.numel() == 0:
        return []
    return [(int(i), j) for j, i in enumerate(attention.argmax(1).tolist())]


def load_model(model_dir: str | Path,
               weights: str = MODEL_FILE) -> tuple[Config, Seq2Seq, Codec, Codec]:
    """The config, model (weights loaded) and tokenizers of a model directory."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{model_dir} is not a transduce model directory "
                                f"(no config.yaml); train one with 'transduce train'")
    cfg: Config = load_config(model_dir / "config.yaml")
    src, tgt = load_codecs(model_dir)
    model = build_model(cfg.model, len(src.vocab), len(tgt.vocab), src.vocab.pad_id,
                        tgt.vocab.pad_id)
    load_weights(model, model_dir / weights)
    return cfg, model, src, tgt
