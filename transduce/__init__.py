"""transduce: sequence-to-sequence learning and neural machine translation."""

from transduce.config import Config, ConfigError, load_config
from transduce.evaluate import METRICS, Evaluation, Scores, evaluate, score
from transduce.fit import fit
from transduce.training.callbacks import Callback
from transduce.training.trainer import TrainResult, train
from transduce.translator import Translation, Translator

__version__ = "0.1.0"
__all__ = [
           "METRICS",
           "Callback",
           "Config",
           "ConfigError",
           "Evaluation",
           "Scores",
           "TrainResult",
           "Translation",
           "Translator",
           "__version__",
           "evaluate",
           "fit",
           "load_config",
           "score",
           "train",
]
