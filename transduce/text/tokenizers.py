"""Tokenizers split text into token strings and join them back (symmetric pre/post-processing)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import sentencepiece as spm

SPACE = "\u2581"  # '▁', marks a space in char-level and SentencePiece tokens


class Tokenizer(Protocol):
    kind: str

    def tokenize(self, text: str) -> list[str]: ...

    def detokenize(self, tokens: list[str]) -> str: ...

    def save(self, directory: Path, prefix: str) -> None: ...


class CharTokenizer:
    """Every character is a token; spaces become '▁' so they survive the round trip."""

    kind = "char"

    def tokenize(self, text: str) -> list[str]:
        return [SPACE if c == " " else c for c in " ".join(text.split())]

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens).replace(SPACE, " ").strip()

    def save(self, directory: Path, prefix: str) -> None:
        pass


class WordTokenizer:
    """Whitespace-separated words."""

    kind = "word"

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def detokenize(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save(self, directory: Path, prefix: str) -> None:
        pass


class SentencePieceTokenizer:
    """A SentencePiece model (unigram or BPE), trained by transduce on the training text."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(cls, sentences: Iterable[str], vocab_size: int, model_type: str = "unigram",
              character_coverage: float = 1.0,
              seed_sentences: int = 2_000_000) -> SentencePieceTokenizer:
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(s for s in sentences if s.strip()),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=seed_sentences,
            shuffle_input_sentence=True,
            # ids are ours (Vocab); SentencePiece only segments
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
            hard_vocab_limit=False,
            num_threads=2,
            minloglevel=2,
        )
        return cls(buf.getvalue())

    def pieces(self) -> list[str]:
        """All pieces except <unk>, in SentencePiece's order."""
        return [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())
                if not (self.sp.is_unknown(i) or self.sp.is_control(i))]

    def tokenize(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def detokenize(self, tokens: list[str]) -> str:
        # A piece this model lacks (a vocabulary shared with another side's model, as
        # MarianMT's) comes back as it is: its '▁' is a space, as MarianTokenizer has it.
        return self.sp.decode_pieces(tokens).replace(SPACE, " ").strip()

    def save(self, directory: Path, prefix: str) -> None:
        (directory / f"{prefix}.spm.model").write_bytes(self.model_proto)

    @classmethod
    def load(cls, directory: Path, prefix: str) -> SentencePieceTokenizer:
        return cls((directory / f"{prefix}.spm.model").read_bytes())
