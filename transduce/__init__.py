"""transduce: sequence-to-sequence learning and neural machine translation."""

from transduce.config import Config, ConfigError, load_config
from transduce.evaluate import Scores, score
from transduce.training.trainer import train
from transduce.translator import Translation, Translator

__version__ = "0.1.0"
__all__ = [
           "Config",
           "ConfigError",
           "Scores",
           "Translation",
           "Translator",
           "__version__",
           "load_config",
           "score",
           "train",
]
