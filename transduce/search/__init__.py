"""Decoding strategies over the model contract (encode / start / step / select)."""

from transduce.search.beam import beam_search
from transduce.search.common import Hypothesis, max_lengths
from transduce.search.constraints import Constraints
from transduce.search.controls import NO_CONTROLS, Controls
from transduce.search.greedy import greedy_search
from transduce.search.sampling import sample

__all__ = ["NO_CONTROLS", "Constraints", "Controls", "Hypothesis", "beam_search",
           "greedy_search", "max_lengths", "sample"]
