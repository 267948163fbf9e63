"""The one inference path: text in, text out. CLI translate, evaluation, validation during
training and the server all go through `Translator.translate`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transduce.config import Config, DecodeConfig, load_config
from transduce.data.batching import collate
from transduce.models import Seq2Seq, build_model
from transduce.models.quantize import quantize_int8
from transduce.search import Hypothesis, beam_search, greedy_search, max_lengths, sample
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


class Translator:
    """A model with its tokenizers and decoding defaults.

    `quantize` ("none" or "int8", default: decode.quantize) decodes with a copy of the model
    whose linear layers are int8 (CPU only); the model passed in is left as it is.
    """

    def __init__(self, model: Seq2Seq, src: Codec, tgt: Codec, decode: DecodeConfig | None = None,
                 device: str | torch.device = "cpu", quantize: str | None = None):
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

    def translate(self, texts: Sequence[str], beam_size: int | None = None,
                  n_best: int | None = None, return_attention: bool = False,
                  sampling: bool = False, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, seed: int | None = None,
                  batch_size: int | None = None) -> list[Translation]:
        """Translate `texts`; the result is in input order. Empty inputs give empty outputs."""
        beam = beam_size if beam_size is not None else self.decode.beam_size
        nbest = n_best if n_best is not None else self.decode.n_best
        if beam < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam}")
        if not 1 <= nbest <= max(beam, 1):
            raise ValueError(f"n_best must be between 1 and beam_size ({beam}), got {nbest}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
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
        decoded = self._decode_batches([[e[2] for e in chunk] for chunk in chunks], beam, nbest,
                                       return_attention, sampling, temperature, top_k, top_p,
                                       generator)
        for chunk, hyps in zip(chunks, decoded):
            for (i, tokens, _), nb in zip(chunk, hyps):
                results[i] = self._translation(texts[i], tokens, nb)
        return [r for r in results if r is not None]

    def _decode_batches(self, batches: list[list[list[int]]], beam: int, nbest: int,
                        return_attention: bool, sampling: bool, temperature: float, top_k: int,
                        top_p: float, generator: torch.Generator | None
                        ) -> Iterator[list[list[Hypothesis]]]:
        """`_decode` of each batch in turn (an engine may run them concurrently)."""
        for src_ids in batches:
            yield self._decode(src_ids, beam, nbest, return_attention, sampling, temperature,
                               top_k, top_p, generator)

    @torch.no_grad()
    def _decode(self, src_ids: list[list[int]], beam: int, nbest: int, return_attention: bool,
                sampling: bool, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator | None) -> list[list[Hypothesis]]:
        v = self.src.vocab
        batch = collate(src_ids, None, v.pad_id, v.bos_id, v.eos_id).to(self.device)
        limit = max_lengths(batch.src_mask, self.decode.max_len_ratio, self.decode.max_len_offset,
                            getattr(self.model, "max_positions", None))
        bos, eos = self.tgt.vocab.bos_id, self.tgt.vocab.eos_id
        args = (self.model, batch.src_ids, batch.src_mask, bos, eos, limit)
        if sampling:
            return [[h] for h in sample(*args, temperature, top_k, top_p, generator)]
        if beam == 1 and nbest == 1:
            return [[h] for h in greedy_search(*args, return_attention=return_attention)]
        return beam_search(*args, beam_size=beam, n_best=nbest,
                           alpha=self.decode.length_penalty, return_attention=return_attention)

    def _translation(self, source: str, src_tokens: list[str],
                     nbest: list[Hypothesis]) -> Translation:
        best = nbest[0]
        alts = [Alternative(self.tgt.decode(h.ids), h.score) for h in nbest]
        attention = None
        if best.attention is not None:
            # One row per shown token (+ </s>): drop rows of <pad>/<s> that decoding skips.
            v = self.tgt.vocab
            rows = [i for i, t in enumerate(best.ids) if t not in (v.pad_id, v.bos_id)]
            attention = best.attention[rows + [len(best.ids)], : len(src_tokens) + 1].tolist()
        return Translation(source, alts[0].text, best.score, alts, src_tokens,
                           self.tgt.tokens(best.ids), attention)


def load_model(model_dir: str | Path,
               weights: str = MODEL_FILE) -> tuple[Config, Seq2Seq, Codec, Codec]:
    """The config, model (weights loaded) and tokenizers of a model directory."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{model_dir} is not a transduce model directory "
                                f"(no config.yaml); train one with 'transduce train'")
    cfg: Config = load_config(model_dir / "config.yaml")
    src, tgt = load_codecs(model_dir)
    model = build_model(cfg.model, len(src.vocab), len(tgt.vocab), src.vocab.pad_id)
    load_weights(model, model_dir / weights)
    return cfg, model, src, tgt
