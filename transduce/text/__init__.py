"""Text <-> token ids: tokenizers (char, word, SentencePiece) and vocabularies."""

from transduce.text.codec import Codec, build_codecs, load_codecs, save_codecs
from transduce.text.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
)
from transduce.text.vocab import BOS, EOS, PAD, UNK, Vocab

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "CharTokenizer",
    "Codec",
    "SentencePieceTokenizer",
    "Tokenizer",
    "Vocab",
    "WordTokenizer",
    "build_codecs",
    "load_codecs",
    "save_codecs",
]
