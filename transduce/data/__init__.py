"""Parallel corpora: reading with checks, Batch, token-budget bucketing."""

from transduce.data.batching import Batch, collate, make_batches
from transduce.data.corpus import CorpusError, read_lines, read_parallel

__all__ = ["Batch", "CorpusError", "collate", "make_batches", "read_lines", "read_parallel"]
