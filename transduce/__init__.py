"""transduce: sequence-to-sequence learning and neural machine translation."""

from transduce.config import Config, ConfigError, load_config
from transduce.evaluate import METRICS, Evaluation, Scores, evaluate, score
from transduce.training.trainer import train
from transduce.translator import Translation, Translator

__version__ = "0.1.0"
__all__ = [
           "METRICS",
           "Config",
           "ConfigError",
           "Evaluation",
           "Scores",
           "Translation",
           "Translator",
           "__version__",
           "evaluate",
           "load_config",
           "score",
           "train",
]
