"""Encoder-decoder models. They see tensors and ints only: no vocabularies, no config files."""

from transduce.models.build import build_model, count_parameters, layer_table
from transduce.models.seq2seq import EncoderOutput, Seq2Seq

__all__ = ["EncoderOutput", "Seq2Seq", "build_model", "count_parameters", "layer_table"]
