"""A Codec is one side's tokenizer plus vocabulary: text <-> ids, both ways."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from transduce.config import TokenizerConfig
from transduce.text.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
)
from transduce.text.vocab import Vocab


@dataclass
class Codec:
    tokenizer: Tokenizer
    vocab: Vocab
    lowercase: bool = False

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(text.lower() if self.lowercase else text)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.tokenize(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.detokenize(self.vocab.decode(ids))

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return self.vocab.decode(ids)

    def encode_many(self, texts: Sequence[str], threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Ids of many texts at once: (all ids concatenated (int32), each text's length).

        Equal to `encode` text by text. SentencePiece encodes on `threads` threads and its
        ids are mapped to ours through a table, without token strings in between.
        """
        return self.flatten(self.encode_lists(texts, threads))

    def encode_lists(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        """The first half of `encode_many`, the tokenizer's work (the GIL released for
        SentencePiece): ids in the tokenizer's own numbering, which `flatten` maps to ours."""
        if self.lowercase:
            texts = [t.lower() for t in texts]
        tok = self.tokenizer
        if isinstance(tok, SentencePieceTokenizer):
            return tok.sp.encode(list(texts), out_type=int, num_threads=threads)
        return [self.vocab.encode(tok.tokenize(t)) for t in texts]

    def flatten(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The second half of `encode_many`: `encode_lists`'s ids as one array and lengths."""
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
        if isinstance(self.tokenizer, SentencePieceTokenizer):
            flat = self._piece_table()[flat]
        return flat, lengths

    def _piece_table(self) -> np.ndarray:
        """SentencePiece id -> our vocabulary id (pieces we lack map to <unk>)."""
        table = getattr(self, "_table", None)
        if table is None:
            sp, stoi, unk = self.tokenizer.sp, self.vocab.stoi, self.vocab.unk_id  # type: ignore[attr-defined]
            table = np.array([stoi.get(sp.id_to_piece(i), unk) for i in range(sp.get_piece_size())],
                             dtype=np.int32)
            self._table = table
        return table


def _train_tokenizer(cfg: TokenizerConfig, kind: str, texts: list[str]) -> Tokenizer:
    if kind == "char":
        return CharTokenizer()
    if kind == "word":
        return WordTokenizer()
    return SentencePieceTokenizer.train(texts, cfg.vocab_size, cfg.model_type,
                                        cfg.character_coverage)


def _build_one(cfg: TokenizerConfig, kind: str, texts: list[str], lowercase: bool) -> Codec:
    if lowercase:
        texts = [t.lower() for t in texts]
    tok = _train_tokenizer(cfg, kind, texts)
    if isinstance(tok, SentencePieceTokenizer):
        vocab = Vocab(tok.pieces())
    else:
        vocab = Vocab.build((tok.tokenize(t) for t in texts), cfg.min_freq, cfg.max_size)
    return Codec(tok, vocab, lowercase)


def build_codecs(cfg: TokenizerConfig, src_texts: list[str], tgt_texts: list[str],
                 lowercase: bool = False) -> tuple[Codec, Codec]:
    """Train tokenizers and build vocabularies on training text; shared or one per side."""
    if cfg.shared:
        codec = _build_one(cfg, cfg.kind, src_texts + tgt_texts, lowercase)
        return codec, codec
    return (_build_one(cfg, cfg.kind, src_texts, lowercase),
            _build_one(cfg, cfg.tgt_kind or cfg.kind, tgt_texts, lowercase))


def save_codecs(src: Codec, tgt: Codec, directory: str | Path) -> None:
    """Tokenizer files: one codec for both sides (shared.*), one per side (src.*, tgt.*),
    or one vocabulary with a tokenizer per side (shared.vocab.json, src.spm.model,
    tgt.spm.model: MarianMT's source.spm and target.spm)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shared = src is tgt
    one_vocab = not shared and src.vocab is tgt.vocab
    sides = [("shared", src)] if shared else [("src", src), ("tgt", tgt)]
    for prefix, codec in sides:
        codec.tokenizer.save(directory, prefix)
        if not one_vocab:
            codec.vocab.save(directory / f"{prefix}.vocab.json")
    if one_vocab:
        src.vocab.save(directory / "shared.vocab.json")
    meta = {"kind": src.tokenizer.kind, "tgt_kind": tgt.tokenizer.kind, "shared": shared,
            "lowercase": src.lowercase}
    if one_vocab:
        meta["shared_vocab"] = True
    (directory / "tokenizer.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_codecs(directory: str | Path) -> tuple[Codec, Codec]:
    directory = Path(directory)
    meta = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))

    def load(prefix: str, kind: str, vocab: Vocab | None = None) -> Codec:
        tok: Tokenizer
        if kind == "sentencepiece":
            tok = SentencePieceTokenizer.load(directory, prefix)
        elif kind == "char":
            tok = CharTokenizer()
        else:
            tok = WordTokenizer()
        if vocab is None:
            vocab = Vocab.load(directory / f"{prefix}.vocab.json")
        return Codec(tok, vocab, meta["lowercase"])

    if meta["shared"]:
        codec = load("shared", meta["kind"])
        return codec, codec
    tgt_kind = meta.get("tgt_kind", meta["kind"])
    if meta.get("shared_vocab"):
        vocab = Vocab.load(directory / "shared.vocab.json")
        return load("src", meta["kind"], vocab), load("tgt", tgt_kind, vocab)
    return load("src", meta["kind"]), load("tgt", tgt_kind)
