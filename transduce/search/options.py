"""How to search, for one `Translator.translate` call: the record every engine takes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transduce.search.controls import NO_CONTROLS, Controls


@dataclass(frozen=True)
class SearchOptions:
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
    max_len: int | None = None  # at most this many output tokens before </s> (None: no cap)
