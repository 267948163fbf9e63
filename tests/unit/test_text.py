"""Tokenizers and vocabularies: round trips, specials, frequency cut-offs, save/load."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from transduce.config import TokenizerConfig
from transduce.text import (
    BOS,
    EOS,
    PAD,
    UNK,
    CharTokenizer,
    SentencePieceTokenizer,
    Vocab,
    WordTokenizer,
    build_codecs,
    load_codecs,
    save_codecs,
)

SENTENCES = [
    "A man in an orange hat starring at something.",
    "Zwei junge Männer stehen im Freien.",
    "  extra   spaces\tand tabs  ",
    "ünïcödé — «quotes» and 3.14 digits",
    "x",
]


def normalized(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def multi30k_lines(data_dir: Path) -> list[str]:
    lines = []
    for lang in ("en", "de"):
        with gzip.open(data_dir / "multi30k" / f"train.{lang}.gz", "rt", encoding="utf-8") as f:
            lines += [next(f).rstrip("\n") for _ in range(1500)]
    return lines


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def spm_tokenizer(request, multi30k_lines) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.train(multi30k_lines, vocab_size=300, model_type=request.param)


# ---- tokenizers --------------------------------------------------------------------------

@pytest.mark.parametrize("tok", [CharTokenizer(), WordTokenizer()], ids=["char", "word"])
@pytest.mark.parametrize("text", SENTENCES)
def test_char_and_word_round_trip(tok, text):
    tokens = tok.tokenize(text)
    assert all(t and not t.isspace() for t in tokens)
    assert tok.detokenize(tokens) == normalized(text)


def test_char_tokens_are_characters_with_visible_spaces():
    assert CharTokenizer().tokenize("ab c") == ["a", "b", "\u2581", "c"]
    assert WordTokenizer().tokenize("ab  c") == ["ab", "c"]
    assert CharTokenizer().tokenize("   ") == []


def test_sentencepiece_round_trip(spm_tokenizer, multi30k_lines):
    for text in multi30k_lines[:200] + multi30k_lines[-200:]:
        pieces = spm_tokenizer.tokenize(text)
        assert spm_tokenizer.detokenize(pieces) == normalized(text)
    # Subwords: the vocabulary is small, so words are split into several pieces.
    assert len(spm_tokenizer.tokenize(multi30k_lines[0])) > len(multi30k_lines[0].split())


def test_sentencepiece_save_load_segments_identically(spm_tokenizer, multi30k_lines,
                                                      tmp_path: Path):
    spm_tokenizer.save(tmp_path, "side")
    again = SentencePieceTokenizer.load(tmp_path, "side")
    assert again.pieces() == spm_tokenizer.pieces()
    for text in multi30k_lines[:50]:
        assert again.tokenize(text) == spm_tokenizer.tokenize(text)


def test_sentencepiece_pieces_are_unique_and_exclude_specials(spm_tokenizer):
    pieces = spm_tokenizer.pieces()
    assert len(pieces) == len(set(pieces))
    assert not set(pieces) & {PAD, UNK, BOS, EOS, "<unk>"}


# ---- vocabulary ----------------------------------------------------------------------------

def test_specials_come_first_with_fixed_ids():
    v = Vocab(["b", "a", PAD, "c"])
    assert v.itos[:4] == [PAD, UNK, BOS, EOS]
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)
    assert [v.stoi[s] for s in (PAD, UNK, BOS, EOS)] == [0, 1, 2, 3]
    assert v.itos[4:] == ["b", "a", "c"]  # order kept, specials not duplicated
    with pytest.raises(ValueError, match="unique"):
        Vocab(["a", "a"])


def test_build_orders_by_frequency_then_alphabetically():
    v = Vocab.build([["b", "a", "c", "a"], ["c", "d"]])
    assert v.itos[4:] == ["a", "c", "b", "d"]
    assert Vocab.build([["b", "a"]]).itos == Vocab.build([["a", "b"]]).itos  # deterministic


def test_min_freq_and_max_size():
    lists = [["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]]
    assert Vocab.build(lists, min_freq=2).itos[4:] == ["a", "b", "c"]
    assert Vocab.build(lists, min_freq=3).itos[4:] == ["a", "b"]
    capped = Vocab.build(lists, max_size=6)
    assert len(capped) == 6 and capped.itos[4:] == ["a", "b"]  # max_size counts specials
    assert len(Vocab.build(lists, max_size=2)) == 4  # never fewer than the specials


def test_unknown_tokens_map_to_unk_and_decode_skips_specials():
    v = Vocab.build([["hello", "world"]])
    ids = v.encode(["hello", "mars", "world"])
    assert ids[1] == v.unk_id and v.decode(ids) == ["hello", UNK, "world"]
    # decode drops <s> and <pad>, stops at </s>
    assert v.decode([v.bos_id, ids[0], v.pad_id, ids[2], v.eos_id, ids[0]]) == ["hello", "world"]


def test_vocab_save_load_round_trip(tmp_path: Path):
    v = Vocab.build([["ä", "ß", "b", "ä"], ["\u2581", "日本"]])
    v.save(tmp_path / "v.json")
    again = Vocab.load(tmp_path / "v.json")
    assert again.itos == v.itos and again.stoi == v.stoi


def test_loading_a_non_vocabulary_names_the_file(tmp_path: Path):
    path = tmp_path / "not_vocab.json"
    path.write_text('["a", "b"]', encoding="utf-8")
    with pytest.raises(ValueError, match="not_vocab.json"):
        Vocab.load(path)


# ---- codecs: tokenizer + vocabulary, both sides --------------------------------------------

@pytest.mark.parametrize("cfg", [
    TokenizerConfig(kind="char", shared=True),
    TokenizerConfig(kind="word", shared=False),
    TokenizerConfig(kind="sentencepiece", model_type="unigram", vocab_size=250, shared=True),
    TokenizerConfig(kind="sentencepiece", model_type="bpe", vocab_size=250, shared=False),
], ids=["char-shared", "word-separate", "spm-unigram-shared", "spm-bpe-separate"])
def test_codecs_round_trip_and_save_load(cfg, multi30k_lines, tmp_path: Path):
    en, de = multi30k_lines[:1500], multi30k_lines[1500:]
    src, tgt = build_codecs(cfg, en, de)
    assert (src is tgt) == cfg.shared
    save_codecs(src, tgt, tmp_path)
    src2, tgt2 = load_codecs(tmp_path)
    assert (src2 is tgt2) == cfg.shared
    for codec, again, texts in ((src, src2, en), (tgt, tgt2, de)):
        assert again.vocab.itos == codec.vocab.itos
        for text in texts[:100]:
            ids = codec.encode(text)
            assert again.encode(text) == ids
            assert codec.vocab.unk_id not in ids  # every training token is in the vocabulary
            assert again.decode(ids) == normalized(text)


def test_lowercase_codec_lowercases_both_ways(multi30k_lines):
    src, _ = build_codecs(TokenizerConfig(kind="word"), multi30k_lines[:100],
                          multi30k_lines[1500:1600], lowercase=True)
    text = multi30k_lines[0]
    assert src.decode(src.encode(text)) == normalized(text.lower())
    assert src.encode(text.upper()) == src.encode(text)
