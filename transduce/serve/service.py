"""The served models, their loading, limits and the batcher: what both HTTP APIs call into.

Requests never name files: a model is chosen by its name (e.g. "en-de") among the model
directories given on the command line, which are resolved once at start-up.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transduce.config import load_config
from transduce.search import Controls
from transduce.serve.batching import Batcher, QueueFull, ShuttingDown
from transduce.serve.errors import ApiError
from transduce.serve.metrics import Metrics
from transduce.text.glossary import Glossary
from transduce.translator import Translation, Translator

log = logging.getLogger("transduce.serve")

_NAME = re.compile(r"^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*$")


@dataclass
class Settings:
    """Server knobs; the defaults are the CLI's."""

    api_keys: tuple[str, ...] = ()  # empty: no key needed
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    max_batch_tokens: int = 4096  # source tokens x beam per decoding batch
    max_wait_ms: float = 5.0  # how long the oldest request may wait for batch-mates
    max_queue: int = 256  # requests waiting; beyond this, 503 + Retry-After
    batching: bool = True  # False: every request decoded alone
    max_body_bytes: int = 1 << 20
    max_texts: int = 64  # texts per request
    max_chars: int = 10000  # characters per text (split into sentences: see documents.py)
    max_beam: int = 16
    retry_after_s: int = 1


@dataclass(frozen=True)
class ModelSpec:
    """One served model: its public name, language pair and directory."""

    name: str
    source: str
    target: str
    path: Path


def resolve_models(entries: Sequence[str]) -> list[ModelSpec]:
    """Parse "DIR" or "NAME=DIR" entries; the pair comes from NAME "src-tgt" or config.yaml.

    Raises ValueError naming the entry for a missing directory, a bad name or a duplicate.
    """
    specs: list[ModelSpec] = []
    for entry in entries:
        name, sep, directory = entry.partition("=")
        if not sep or "/" in name or not name:
            name, directory = "", entry
        path = Path(directory)
        if not (path / "config.yaml").is_file():
            raise ValueError(f"{entry}: {path} is not a transduce model directory "
                             f"(no config.yaml); train one with 'transduce train'")
        data = load_config(path / "config.yaml").data
        source, target = data.src_lang, data.tgt_lang
        if name:
            if not _NAME.match(name) or len(name) > 64:
                raise ValueError(f"{entry}: model name {name!r} may only use letters, digits, "
                                 f"'.', '_' and '-' (e.g. en-de)")
            parts = name.split("-")
            if len(parts) == 2:
                source, target = parts
        else:
            name = f"{source}-{target}"
        for other in specs:
            if other.name == name or (other.source, other.target) == (source, target):
                raise ValueError(f"{entry}: {other.path} already serves {name} "
                                 f"({source}->{target}); name one of them NAME=DIR")
        specs.append(ModelSpec(name, source, target, path))
    if not specs:
        raise ValueError("no model directory given")
    return specs


def read_api_keys(path: str | Path) -> tuple[str, ...]:
    """One key per line; blank lines and lines starting with '#' are ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    keys = tuple(k.strip() for k in lines if k.strip() and not k.strip().startswith("#"))
    if not keys:
        raise ValueError(f"{path}: no API keys in the file (one per line)")
    return keys


@dataclass(frozen=True)
class DecodeKey:
    """Decoding options; requests with equal keys are decoded in one call."""

    model: str
    beam_size: int
    n_best: int
    return_attention: bool
    controls: Controls | None = None  # None: the model's decode config
    coverage_penalty: float | None = None
    glossary: Glossary | None = None
    max_len: int | None = None


class Service:
    """Loads the models in the background and translates through the batcher.

    `load(model_dir)` builds a Translator (tests pass a cached one); `on_load_error` is told
    when loading fails (the CLI uses it to stop the server).
    """

    def __init__(self, specs: list[ModelSpec], settings: Settings,
                 load: Callable[[Path], Translator] = Translator.load,
                 on_load_error: Callable[[BaseException], None] | None = None):
        self.specs, self.settings = specs, settings
        self.load, self.on_load_error = load, on_load_error
        self.translators: dict[str, Translator] = {}
        self.state = "loading"  # loading | ready | failed
        self.error: str | None = None
        self.metrics = Metrics(queue_depth=lambda: self.batcher.depth(),
                               models_ready=lambda: float(self.state == "ready"))
        s = self.settings
        self.batcher: Batcher[DecodeKey, Translation] = Batcher(
            self._decode, s.max_batch_tokens, s.max_wait_ms / 1000.0, s.max_queue,
            enabled=s.batching, on_batch=self.metrics.observe_batch)
        self._loading: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.batcher.start()
        self._loading = asyncio.create_task(self._load_all(), name="transduce-load")

    async def stop(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        await self.batcher.stop()

    async def _load_all(self) -> None:
        try:
            for spec in self.specs:
                log.info("loading %s from %s", spec.name, spec.path)
                self.translators[spec.name] = await asyncio.to_thread(self.load, spec.path)
        except Exception as e:
            self.state, self.error = "failed", f"{type(e).__name__}: {e}"
            log.error("could not load the models: %s", self.error)
            if self.on_load_error is not None:
                self.on_load_error(e)
            return
        self.state = "ready"
        log.info("ready: %s", ", ".join(s.name for s in self.specs))

    # ---- lookups --------------------------------------------------------------------------

    def check_key(self, key: str | None) -> bool:
        """True if keys are off or `key` is one of them (constant time in the key's content)."""
        if not self.settings.api_keys:
            return True
        given = (key or "").encode("utf-8", "surrogatepass")
        ok = False
        for accepted in self.settings.api_keys:  # no early exit: timing does not tell which
            ok |= hmac.compare_digest(given, accepted.encode("utf-8"))
        return ok and bool(key)

    def spec(self, name: str) -> ModelSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise ApiError(404, "unknown_model", f"no model named {name!r}; available: "
                       f"{', '.join(s.name for s in self.specs)} (see GET /v1/models)")

    def translator(self, name: str) -> Translator:
        if self.state != "ready":
            message = ("the models are still loading" if self.state == "loading"
                       else f"the models failed to load ({self.error})")
            raise ApiError(503, "not_ready", message,
                           {"Retry-After": str(self.settings.retry_after_s)})
        return self.translators[name]

    # ---- translation ----------------------------------------------------------------------

    def check_limits(self, texts: list[str]) -> None:
        """The native API's per-request limits: 413 with a message naming the limit."""
        s = self.settings
        if len(texts) > s.max_texts:
            raise ApiError(413, "too_many_texts",
                           f"{len(texts)} texts in one request; the limit is {s.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > s.max_chars:
                raise ApiError(413, "text_too_long", f"text {i} has {len(text)} characters; "
                               f"the limit is {s.max_chars}")

    async def translate(self, model: str, texts: list[str], beam_size: int | None = None,
                        n_best: int | None = None, return_attention: bool = False,
                        controls: Controls | None = None,
                        coverage_penalty: float | None = None,
                        glossary: Glossary | None = None,
                        max_len: int | None = None) -> list[Translation]:
        """Translate through the batcher; results in input order."""
        translator = self.translator(self.spec(model).name)
        if bad := invalid_unicode(texts):
            raise ApiError(422, "invalid_text", bad)
        beam = beam_size if beam_size is not None else translator.decode.beam_size
        nbest = n_best if n_best is not None else min(translator.decode.n_best, beam)
        if not 1 <= beam <= self.settings.max_beam:
            raise ApiError(422, "validation_error",
                           f"beam_size must be between 1 and {self.settings.max_beam}, got {beam}")
        if not 1 <= nbest <= beam:
            raise ApiError(422, "validation_error",
                           f"n_best must be between 1 and beam_size ({beam}), got {nbest}")
        tokens = sum(len(translator.src.tokenize(t)) + 1 for t in texts)
        key = DecodeKey(model, beam, nbest, return_attention, controls, coverage_penalty,
                        glossary, max_len)
        try:
            results = await self.batcher.submit(key, texts, tokens * beam)
        except QueueFull as e:
            self.metrics.overloaded.inc()
            raise ApiError(503, "overloaded", f"the server is busy ({e}); retry shortly",
                           {"Retry-After": str(self.settings.retry_after_s)}) from None
        except ShuttingDown as e:
            raise ApiError(503, "shutting_down", str(e),
                           {"Retry-After": str(self.settings.retry_after_s)}) from None
        self.metrics.texts.inc(len(texts), model=model)
        return results

    def _decode(self, key: DecodeKey, texts: list[str]) -> list[Translation]:
        """On the batcher's worker thread: one call, one padded batch."""
        return self.translators[key.model].translate(
            texts, beam_size=key.beam_size, n_best=key.n_best,
            return_attention=key.return_attention, batch_size=max(1, len(texts)),
            controls=key.controls, coverage_penalty=key.coverage_penalty,
            glossary=key.glossary, max_len=key.max_len)


def invalid_unicode(texts: Sequence[str]) -> str | None:
    """A message if some text holds a lone surrogate (JSON allows "\\ud800"; UTF-8 does not)."""
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return f"text {i} is not valid Unicode (it contains a lone surrogate)"
    return None
