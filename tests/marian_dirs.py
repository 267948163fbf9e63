"""Random MarianMT model directories built locally (no download), as Hugging Face writes
them: a MarianMTModel from a MarianConfig, SentencePiece models trained here standing in
for OPUS-MT's source.spm and target.spm, and vocabularies in Marian's order (</s> = 0,
<unk> = 1, the pieces, <pad> last). Used by tests/ (on sys.path through its conftest.py)
and benchmarks/marian.py. Needs `transformers` (a test requirement)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import sentencepiece as spm
import torch

MARIAN_FIRST = ("</s>", "<unk>")  # Marian's first two ids


def read_lines(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [next(f).strip() for _ in range(n)]


def train_spm(lines: list[str], vocab_size: int) -> bytes:
    """A unigram SentencePiece model as Marian trains them (<unk> 0, <s> 1, </s> 2)."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf,
                                   vocab_size=vocab_size, hard_vocab_limit=False,
                                   num_threads=1, minloglevel=2)
    return buf.getvalue()


def marian_vocab(*model_protos: bytes) -> dict[str, int]:
    """</s>, <unk>, the pieces of the SentencePiece models in order (each piece once), then
    <pad> (Hugging Face adds it)."""
    pieces: dict[str, None] = {}
    for proto in model_protos:
        sp = spm.SentencePieceProcessor(model_proto=proto)
        pieces.update((sp.id_to_piece(i), None) for i in range(sp.get_piece_size())
                      if not (sp.is_control(i) or sp.is_unknown(i)))
    tokens = [*MARIAN_FIRST, *pieces, "<pad>"]
    return {t: i for i, t in enumerate(tokens)}


def make_marian_dir(out: Path, src_lines: list[str], tgt_lines: list[str], *,
                    separate: bool = False, vocab_size: int = 250,
                    tgt_vocab_size: int | None = None, d_model: int = 32,
                    layers: int = 2, heads: int = 4, ff: int = 64, activation: str = "swish",
                    scale_embedding: bool = True, tie: bool = True, seed: int = 0,
                    init_std: float = 0.15, eos_bias: float = 4.0,
                    weights: str = "safetensors") -> Path:
    """A random MarianMT directory. Weights are drawn with a large `init_std` so that the
    model's choices are clear (no near ties), and the logits bias favours </s> a little
    and disfavours <pad> and <unk>, so that outputs end at various lengths.
    `tgt_vocab_size`: the target SentencePiece model's size (default `vocab_size`)."""
    from transformers import MarianConfig, MarianMTModel

    src_proto = train_spm(src_lines, vocab_size)
    tgt_proto = train_spm(tgt_lines, tgt_vocab_size or vocab_size)
    if separate:
        vocab, tgt_vocab = marian_vocab(src_proto), marian_vocab(tgt_proto)
    else:  # OPUS-MT: one vocabulary over both SentencePiece models
        vocab = tgt_vocab = marian_vocab(src_proto, tgt_proto)
    pad = tgt_vocab["<pad>"]
    config = MarianConfig(
        vocab_size=len(vocab), decoder_vocab_size=len(tgt_vocab), d_model=d_model,
        encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=ff, decoder_ffn_dim=ff,
        activation_function=activation, scale_embedding=scale_embedding, pad_token_id=pad,
        eos_token_id=0, forced_eos_token_id=0, decoder_start_token_id=pad,
        max_position_embeddings=512, share_encoder_decoder_embeddings=not separate,
        tie_word_embeddings=tie, init_std=init_std, dropout=0.1)
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        bias = model.final_logits_bias
        bias.normal_(0.0, 0.5)
        bias[0, 0] += eos_bias  # </s>
        bias[0, 1] -= 10.0  # <unk>
        bias[0, pad] -= 10.0
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=weights == "safetensors")
    if weights != "safetensors":
        (out / "model.safetensors").unlink(missing_ok=True)
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    (out / "source.spm").write_bytes(src_proto)
    (out / "target.spm").write_bytes(tgt_proto)
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    if separate:
        (out / "target_vocab.json").write_text(json.dumps(tgt_vocab), encoding="utf-8")
    tok = {"separate_vocabs": separate, "source_lang": "en", "target_lang": "de",
           "unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>",
           "model_max_length": 512, "tokenizer_class": "MarianTokenizer"}
    (out / "tokenizer_config.json").write_text(json.dumps(tok), encoding="utf-8")
    return out
