"""`transduce demo`: a self-contained translation task that needs reordering, trained end to end.

The source language is English-like (subject-verb-object, adjectives before nouns,
prepositions). The target language is verb-final with adjectives after nouns, articles
after the noun phrase and postpositions, with its own made-up words. So
    "the big cat sees a red ball near the house"
becomes
    "kimo bora lo pelu rasa na dumo lo neva vidu"
and an attention heatmap shows the model learning where each word goes.
"""

from __future__ import annotations

import random
from pathlib import Path

NOUNS = ("cat dog bird horse child teacher farmer king queen doctor student fish ball book "
         "house tree car apple river garden table letter song door").split()
ADJECTIVES = "big small red old young happy green quiet fast strange".split()
VERBS = "sees likes finds follows paints carries watches helps draws hears".split()
PREPOSITIONS = "near behind under inside beside".split()
ARTICLES = ("the", "a")


def _lexicon() -> dict[str, str]:
    """A fixed made-up word for every source word (seeded, so every run agrees)."""
    rng = random.Random(7)
    onsets, vowels = "b d f g k l m n p r s t v z".split(), "a e i o u".split()
    words = list(NOUNS) + ADJECTIVES + VERBS + PREPOSITIONS + list(ARTICLES) + ["s"]
    out: dict[str, str] = {}
    used: set[str] = set()
    for w in words:
        while True:
            n = 1 if w in ARTICLES or w == "s" else rng.choice((2, 2, 3))
            cand = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(n))
            if cand not in used:
                break
        used.add(cand)
        out[w] = cand
    return out


LEXICON = _lexicon()


def _noun_phrase(rng: random.Random) -> tuple[list[str], list[str]]:
    article, noun = rng.choice(ARTICLES), rng.choice(NOUNS)
    adjs = rng.sample(ADJECTIVES, rng.choice((0, 0, 1, 1, 2)))
    plural = rng.random() < 0.3 and article == "the"
    src = [article] + adjs + [noun + ("s" if plural else "")]
    tgt = [LEXICON[noun]] + ([LEXICON["s"]] if plural else [])
    tgt += [LEXICON[a] for a in adjs] + [LEXICON[article]]
    return src, tgt


def make_pair(rng: random.Random) -> tuple[str, str]:
    """One (source, target) sentence pair."""
    subj_s, subj_t = _noun_phrase(rng)
    obj_s, obj_t = _noun_phrase(rng)
    verb = rng.choice(VERBS)
    src, tgt = subj_s + [verb] + obj_s, subj_t + obj_t
    if rng.random() < 0.5:
        prep = rng.choice(PREPOSITIONS)
        np_s, np_t = _noun_phrase(rng)
        src += [prep] + np_s
        tgt += np_t + [LEXICON[prep]]
    return " ".join(src), " ".join(tgt + [LEXICON[verb]])


def make_splits(n_train: int = 12000, n_valid: int = 300, n_test: int = 500,
                seed: int = 1) -> dict[str, list[tuple[str, str]]]:
    """Disjoint train/valid/test splits (no test sentence is seen in training)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n_train + n_valid + n_test:
        src, tgt = make_pair(rng)
        if src not in seen:
            seen.add(src)
            pairs.append((src, tgt))
    return {"test": pairs[:n_test], "valid": pairs[n_test:n_test + n_valid],
            "train": pairs[n_test + n_valid:]}


def write_splits(directory: Path, splits: dict[str, list[tuple[str, str]]]) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, pairs in splits.items():
        for side, lang in ((0, "src"), (1, "tgt")):
            path = directory / f"{name}.{lang}"
            path.write_text("\n".join(p[side] for p in pairs) + "\n", encoding="utf-8")
            paths[f"{name}_{lang}"] = path
    return paths


def demo_config(data: dict[str, Path], out_dir: Path, minutes: float, seed: int) -> dict:
    return {
        "data": {"train_src": str(data["train_src"]), "train_tgt": str(data["train_tgt"]),
                 "valid_src": str(data["valid_src"]), "valid_tgt": str(data["valid_tgt"]),
                 "src_lang": "en", "tgt_lang": "demo"},
        "tokenizer": {"kind": "word", "shared": False},
        "model": {"arch": "rnn", "emb_dim": 64, "hidden_size": 128, "encoder_layers": 1,
                  "decoder_layers": 1, "bidirectional": True, "attention": "luong_general",
                  "input_feeding": False, "dropout": 0.1, "tie_embeddings": True},
        "train": {"out_dir": str(out_dir), "seed": seed, "lr": 3e-3, "batch_tokens": 1500,
                  "label_smoothing": 0.0, "max_epochs": 30, "max_minutes": minutes,
                  "valid_every": 150, "num_samples": 0,
                  "early_stopping": {"metric": "bleu", "patience": 4},
                  "scheduler": {"kind": "plateau", "patience": 1, "factor": 0.5}},
        "decode": {"beam_size": 5, "batch_size": 100},
    }
