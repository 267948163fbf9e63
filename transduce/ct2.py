"""CTranslate2 (github.com/OpenNMT/CTranslate2), a C++ inference engine for Transformers:
export a transduce Transformer to its format, and translate with the export.

    transduce export MODEL_DIR OUT_DIR [--quantize int8]
    transduce translate OUT_DIR < input.txt      # any command that takes a model directory

The export directory holds CTranslate2's files (model.bin: its own tensor format, no
pickle; config.json; the vocabularies) beside a copy of the model's config.yaml and
tokenizer files, so text goes through the same tokenizer, the same vocabulary and the same
sorting into batches as with the PyTorch model; only the search runs in CTranslate2.
Needs the `ctranslate2` extra (pip install "transduce[ctranslate2]").

What differs from the PyTorch search: beam scores are normalised by |Y| ** alpha
(CTranslate2's length penalty) instead of GNMT's ((5 + |Y|) / 6) ** alpha, which can pick
a different hypothesis among close ones; and the attention returned is the
model.attention_layer's cross-attention averaged over all heads (or head 0 when
model.attention_head is 0; other single heads are not selectable in CTranslate2).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transduce.config import Config, DecodeConfig, load_config
from transduce.model_dir import load_model
from transduce.search import Constraints, Hypothesis
from transduce.search.common import length_penalty
from transduce.search.options import SearchOptions
from transduce.text import Codec, Vocab, load_codecs
from transduce.text.vocab import EOS
from transduce.training.checkpoint import MODEL_FILE

ENGINE_FILE = "model.bin"  # CTranslate2's weights: marks an export directory
COPIED = ("config.yaml", "tokenizer.json", "*.vocab.json", "*.spm.model")


def is_export(model_dir: str | Path) -> bool:
    return (Path(model_dir) / ENGINE_FILE).is_file()


def _ctranslate2() -> Any:
    try:
        import ctranslate2  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError("CTranslate2 export and decoding need the ctranslate2 package: "
                          "pip install 'transduce[ctranslate2]'") from None
    return ctranslate2


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _linear(spec: Any, *layers: nn.Linear) -> None:
    """One CTranslate2 linear from one or more torch ones, stacked on the output side."""
    spec.weight = _array(torch.cat([layer.weight for layer in layers]))
    if layers[0].bias is not None:
        spec.bias = _array(torch.cat([layer.bias for layer in layers]))


def _norm(spec: Any, norm: nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _positions(spec: Any, positions: Any) -> None:
    """The position table as a tensor (CTranslate2's built-in sinusoids put all sines
    before all cosines; transduce interleaves them as in Vaswani et al.)."""
    table = positions.table if positions.learned is None else positions.learned.weight
    spec.encodings = _array(table)


def model_spec(cfg: Config, model: Any, src: Codec, tgt: Codec) -> Any:
    """A ctranslate2 TransformerSpec holding the weights of a transduce Transformer."""
    ct2 = _ctranslate2()
    m = cfg.model
    if m.arch != "transformer":
        raise ValueError(f"CTranslate2 export supports model.arch: transformer only; "
                         f"this model is arch: {m.arch}")
    heads = 1 if m.attention_head == 0 else m.heads
    activation = {"relu": ct2.specs.Activation.RELU, "gelu": ct2.specs.Activation.GELU,
                  "swish": ct2.specs.Activation.SWISH}[m.activation]
    spec = ct2.specs.TransformerSpec.from_config(
        (m.encoder_layers, m.decoder_layers), m.heads, pre_norm=m.pre_norm,
        activation=activation, alignment_layer=m.attention_layer, alignment_heads=heads)
    enc, dec = spec.encoder, spec.decoder
    enc.scale_embeddings = dec.scale_embeddings = m.scale_embeddings
    enc.embeddings[0].weight = _array(model.src_embed.weight)
    dec.embeddings.weight = _array(model.tgt_embed.weight)
    _positions(enc.position_encodings, model.encoder.positions)
    _positions(dec.position_encodings, model.decoder.positions)
    for layer_spec, layer in zip(enc.layer, model.encoder.layers):
        attn = layer_spec.self_attention
        _linear(attn.linear[0], layer.attn.query, layer.attn.key_value)
        _linear(attn.linear[1], layer.attn.out)
        _norm(attn.layer_norm, layer.res_attn.norm)
        _linear(layer_spec.ffn.linear_0, layer.ff.inner)
        _linear(layer_spec.ffn.linear_1, layer.ff.outer)
        _norm(layer_spec.ffn.layer_norm, layer.res_ff.norm)
    for layer_spec, layer in zip(dec.layer, model.decoder.layers):
        own, cross = layer_spec.self_attention, layer_spec.attention
        _linear(own.linear[0], layer.self_attn.query, layer.self_attn.key_value)
        _linear(own.linear[1], layer.self_attn.out)
        _norm(own.layer_norm, layer.res_self.norm)
        _linear(cross.linear[0], layer.cross_attn.query)
        _linear(cross.linear[1], layer.cross_attn.key_value)
        _linear(cross.linear[2], layer.cross_attn.out)
        _norm(cross.layer_norm, layer.res_cross.norm)
        _linear(layer_spec.ffn.linear_0, layer.ff.inner)
        _linear(layer_spec.ffn.linear_1, layer.ff.outer)
        _norm(layer_spec.ffn.layer_norm, layer.res_ff.norm)
    if m.pre_norm:
        _norm(enc.layer_norm, model.encoder.final_norm)
        _norm(dec.layer_norm, model.decoder.final_norm)
    dec.projection.weight = _array(model.output_weight)
    if model.final_logits_bias is not None:
        dec.projection.bias = _array(model.final_logits_bias)
    spec.config.layer_norm_epsilon = model.encoder.layers[0].res_attn.norm.eps
    v = tgt.vocab
    spec.config.unk_token, spec.config.eos_token = v.itos[v.unk_id], v.itos[v.eos_id]
    if v.bos_id is not None:
        spec.config.bos_token = v.itos[v.bos_id]
    spec.config.decoder_start_token = v.itos[v.start_id]
    spec.config.add_source_eos = True  # as transduce's batches: source tokens + </s>
    spec.register_source_vocabulary(list(src.vocab.itos))
    spec.register_target_vocabulary(list(tgt.vocab.itos))
    return spec


def export(model_dir: str | Path, out_dir: str | Path, quantize: str = "none",
           force: bool = False, weights: str = MODEL_FILE) -> Path:
    """Write a CTranslate2 export of a trained Transformer; returns `out_dir`.
    `quantize` "int8" stores int8 weights (smaller; decoded in int8 by default)."""
    ct2 = _ctranslate2()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if quantize not in ("none", "int8"):
        raise ValueError(f"quantize must be 'none' or 'int8', got {quantize!r}")
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir} already exists; pass --force to overwrite it")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_export(out_dir):
        raise FileExistsError(f"{out_dir} is not empty and not a CTranslate2 export; "
                              f"not overwriting it, even with --force")
    if out_dir.resolve() == model_dir.resolve():
        raise ValueError("the export directory must differ from the model directory")
    cfg, model, src, tgt = load_model(model_dir, weights)
    spec = model_spec(cfg, model, src, tgt)

    converter: Any = ct2.converters.Converter

    class _Converter(converter):
        def _load(self) -> Any:
            return spec

    _Converter().convert(str(out_dir), quantization=None if quantize == "none" else quantize,
                         force=True)
    for pattern in COPIED:
        for path in model_dir.glob(pattern):
            shutil.copy2(path, out_dir / path.name)
    return out_dir


class CTranslate2Engine:
    """The engine (engine.py) of a CTranslate2 export: the `Translator` tokenizes, batches
    and reads results as for PyTorch; the search runs in CTranslate2. `quantize` None
    decodes as exported, "int8" in int8 and "none" in float32. Uses torch's thread count
    (torch.set_num_threads): on CPU as that many workers of one thread each, which decode
    the batches of a `translate` call in parallel.
    Seeded sampling loads the model again for each batch (see `decode_batches`)."""

    def __init__(self, model_dir: str | Path, src_vocab: Vocab, tgt_vocab: Vocab,
                 decode: DecodeConfig | None = None, device: str | torch.device = "cpu",
                 quantize: str | None = None, max_positions: int | None = None):
        self.decode = decode or DecodeConfig()
        self.device = torch.device(device)
        if quantize not in (None, "none", "int8"):
            raise ValueError(f"quantize must be 'none' or 'int8', got {quantize!r}")
        compute = {None: "default", "none": "float32", "int8": "int8"}[quantize]
        # On CPU one worker per thread, each decoding its own batch with one thread: the
        # many small operations of decoding parallelise poorly inside a batch (on 2 cores,
        # 2 workers x 1 thread decoded ~2x as fast as 1 worker x 2 threads with beam 5,
        # ~4x greedy).
        threads = torch.get_num_threads()
        self._engine_args = {"model_path": str(model_dir), "device": self.device.type,
                             "compute_type": compute,
                             "inter_threads": threads if self.device.type == "cpu" else 1,
                             "intra_threads": 1 if self.device.type == "cpu" else threads}
        self.translator = self._new_translator()  # the ctranslate2.Translator
        self.quantize = "int8" if self.translator.compute_type.startswith("int8") else "none"
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.max_positions = max_positions

    def _new_translator(self, **override: Any) -> Any:
        """A CTranslate2 translator. Creating one sets the calling thread's OpenMP thread
        count (omp_set_num_threads), which torch shares: with one thread per worker, PyTorch
        in this process would drop to one thread. Torch's count is set back."""
        threads = torch.get_num_threads()
        try:
            return _ctranslate2().Translator(**{**self._engine_args, **override})
        finally:
            torch.set_num_threads(threads)

    @classmethod
    def from_export(cls, model_dir: str | Path, device: str = "cpu", quantize: str | None = None
                    ) -> tuple[CTranslate2Engine, Config, Codec, Codec]:
        """The engine of an export directory, with the config and tokenizers copied there."""
        model_dir = Path(model_dir)
        cfg: Config = load_config(model_dir / "config.yaml")
        src, tgt = load_codecs(model_dir)
        engine = cls(model_dir, src.vocab, tgt.vocab, cfg.decode, device, quantize,
                     cfg.model.max_positions)
        return engine, cfg, src, tgt

    def decode_batches(self, batches: list[list[list[int]]], o: SearchOptions,
                       constraints: list[list[Constraints]]
                       ) -> Iterator[list[list[Hypothesis]]]:
        """All batches are submitted at once, so that the engine's workers (one per thread
        on CPU) decode several batches in parallel; results come back in batch order.
        Fewer batches than workers (a short input, a server's batch) are split so that every
        worker gets a share. CTranslate2 has no lexically constrained search: glossary
        terms need the PyTorch model directory."""
        if any(c.phrases for cons in constraints for c in cons):
            raise ValueError("glossaries need transduce's own search: translate with the "
                             "model directory, not its CTranslate2 export")
        alpha = self.decode.length_penalty
        # CTranslate2 ranks finished beams by log P / |Y| ** alpha; all of them come back
        # and are ranked here as transduce's beam search ranks them (GNMT penalty). Its
        # repetition penalty scales logits, transduce's log-probabilities.
        c = o.controls
        options: dict[str, Any] = {
            "beam_size": o.beam, "num_hypotheses": max(o.beam, o.nbest), "length_penalty": alpha,
            "max_input_length": self.max_positions or 0, "return_scores": True,
            "return_attention": o.return_attention, "return_end_token": True,
            "min_decoding_length": c.min_len, "no_repeat_ngram_size": c.no_repeat_ngram_size,
            "repetition_penalty": c.repetition_penalty, "coverage_penalty": o.coverage_penalty}
        if o.sampling:
            options.update(beam_size=1, num_hypotheses=1, sampling_topk=o.top_k,
                           sampling_topp=o.top_p, sampling_temperature=o.temperature)
        if o.sampling and o.generator is not None:
            # CTranslate2 seeds a worker's generator when the worker starts, not at
            # set_random_seed (OpenNMT/CTranslate2#1757): each seeded batch gets a new engine,
            # one batch at a time, on one worker.
            ct2 = _ctranslate2()
            for src_ids in batches:
                ct2.set_random_seed(int(torch.randint(2 ** 31, (1,), generator=o.generator)))
                engine = self._new_translator(inter_threads=1)
                results = engine.translate_batch(self._tokens(src_ids),
                                                 max_decoding_length=self._limit(src_ids,
                                                                                 o.max_len),
                                                 **options)
                yield self._hypotheses(results, options["beam_size"], alpha, o.nbest,
                                       o.return_attention)
            return
        workers = self.translator.num_translators
        pending = [self.translator.translate_batch(
            self._tokens(src_ids), asynchronous=True,
            max_decoding_length=self._limit(src_ids, o.max_len),
            max_batch_size=-(-len(src_ids) // workers) if len(batches) < workers else 0,
            **options) for src_ids in batches]
        for batch in pending:
            yield self._hypotheses([r.result() for r in batch], options["beam_size"], alpha,
                                   o.nbest, o.return_attention)

    def _tokens(self, src_ids: list[list[int]]) -> list[list[str]]:
        itos = self.src_vocab.itos
        return [[itos[i] for i in ids] for ids in src_ids]

    def _limit(self, src_ids: list[list[int]], max_len: int | None = None) -> int:
        """transduce's length limit for the batch's longest sentence, as CTranslate2's
        max_decoding_length: transduce's limit counts the </s>, CTranslate2's does not."""
        longest = max(len(ids) for ids in src_ids) + 1
        limit = int(longest * self.decode.max_len_ratio) + self.decode.max_len_offset
        limit = (limit if self.max_positions is None else min(limit, self.max_positions)) - 1
        return limit if max_len is None else min(limit, max_len)

    def _hypotheses(self, results: list[Any], beam: int, alpha: float, nbest: int,
                    return_attention: bool) -> list[list[Hypothesis]]:
        out = []
        for result in results:
            hyps = []
            for k, (toks, score) in enumerate(zip(result.hypotheses, result.scores)):
                length = len(toks)  # </s> included
                ids = self.tgt_vocab.encode(toks[:-1] if toks and toks[-1] == EOS else toks)
                log_prob = score * length ** alpha
                search_score = log_prob if beam == 1 \
                    else log_prob / float(length_penalty(torch.tensor(length), alpha))
                hyps.append(Hypothesis(ids, search_score, log_prob,
                                       _attention(result.attention[k], len(ids) + 1)
                                       if return_attention else None))
            hyps.sort(key=lambda h: -h.score)
            out.append(hyps[:nbest])
        return out


def _attention(rows: list[list[float]], length: int) -> torch.Tensor:
    """CTranslate2's attention (one row per output token incl. </s>, one column per source
    token without the </s> it appended) -> (length, S + 1), the </s> column holding what the
    row leaves over."""
    att = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), -1)[:length]
    return torch.cat([att, (1 - att.sum(1, keepdim=True)).clamp(min=0)], 1)
