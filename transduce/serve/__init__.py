"""HTTP serving: a native JSON API, a LibreTranslate-compatible API and a web page, all
delegating to `Translator.translate` through a dynamic batcher. Needs the `serve` extra
(fastapi, uvicorn, python-multipart)."""

from transduce.serve.app import create_app, run_server
from transduce.serve.service import ModelSpec, Settings, resolve_models

__all__ = ["ModelSpec", "Settings", "create_app", "resolve_models", "run_server"]
