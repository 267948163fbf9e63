"""The FastAPI application: routes, the web page, limits, errors, CORS, and `run_server`.

Every failure a client can cause is answered with a 4xx JSON error in the dialect of the
endpoint (see errors.py); an unexpected exception is a 500 JSON error, never a dropped
connection. The page at / is three static files served from this package, with a strict
Content-Security-Policy: no external script, style, font or image.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from transduce.serve import libretranslate, native
from transduce.serve.errors import STATUS_CODES, ApiError, error_response
from transduce.serve.metrics import HttpMetricsMiddleware
from transduce.serve.service import ModelSpec, Service, Settings, read_api_keys, resolve_models
from transduce.translator import Translator

log = logging.getLogger("transduce.serve")

STATIC = {  # URL path -> (file in transduce/serve/static, media type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
ENDPOINTS = frozenset({*STATIC, "/v1/translate", "/v1/models", "/health", "/metrics",
                       "/translate", "/languages", "/detect", "/frontend/settings"})


class BodyLimitMiddleware:
    """ASGI middleware: refuse bodies over `max_bytes` with 413, whether or not they say
    their length up front (a chunked body is counted as it streams in)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0 or length > self.max_bytes:
                status, code = (413, "payload_too_large") if length > 0 else (400, "bad_request")
                await error_response(scope["path"], status, code, self._message(length))(
                    scope, receive, send)
                return
        seen = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # raised inside the route: its handlers answer
                    raise ApiError(413, "payload_too_large", self._message(seen))
            return message

        await self.app(scope, counting_receive, send)

    def _message(self, length: int) -> str:
        if length < 0:
            return "invalid Content-Length header"
        return f"request body of {length} bytes is over the limit of {self.max_bytes} bytes"


class NoSniffMiddleware:
    """ASGI middleware: ``X-Content-Type-Options: nosniff`` on every response."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def send_with_header(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_header if scope["type"] == "http" else send)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(request.url.path, exc.status, exc.code, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = STATUS_CODES.get(exc.status_code, "error")
        return error_response(request.url.path, exc.status_code, code, str(exc.detail),
                              dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> Response:
        return error_response(request.url.path, 422, "validation_error", str(exc))

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path, exc_info=exc)
        return error_response(request.url.path, 500, "internal_error",
                              "internal error; the server log has the details")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)


def _static_routes(app: FastAPI) -> None:
    files = resources.files("transduce.serve") / "static"
    pages = {path: (files.joinpath(name).read_bytes(), kind)
             for path, (name, kind) in STATIC.items()}

    def serve(path: str) -> Callable[[], Awaitable[Response]]:
        body, kind = pages[path]

        async def page() -> Response:
            return Response(body, media_type=kind, headers={
                "Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})
        return page

    for path in STATIC:
        app.add_api_route(path, serve(path), methods=["GET"], include_in_schema=False)


def create_app(specs: list[ModelSpec], settings: Settings,
               load: Callable[[Path], Translator] = Translator.load,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app for `specs`. Models load in the background when the app starts (its lifespan);
    /health answers 503 until they are in memory."""
    service = Service(specs, settings, load, on_load_error)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="transduce", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    app.include_router(native.router)
    app.include_router(libretranslate.router)
    _static_routes(app)
    _install_error_handlers(app)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(NoSniffMiddleware)
    app.add_middleware(HttpMetricsMiddleware, metrics=service.metrics, endpoints=ENDPOINTS)
    return app


def settings_from_args(args: argparse.Namespace) -> Settings:
    for name in ("max_batch_tokens", "max_queue"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_wait_ms < 0:
        raise ValueError("--max-wait-ms must not be negative")
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads must be at least 1")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    keys = read_api_keys(args.api_key_file) if args.api_key_file else ()
    return Settings(api_keys=keys, cors_origins=tuple(args.cors_origin),
                    max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms,
                    max_queue=args.max_queue, batching=not args.no_batching)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(args: argparse.Namespace) -> int:
    """`transduce serve`: resolve the model directories, then serve until SIGINT/SIGTERM.

    On SIGTERM the server stops accepting connections, finishes the requests in flight
    (up to 30 s), then exits by the signal (status 143), as uvicorn does; Ctrl+C returns 130.
    Returns 1 if the models failed to load.
    """
    import uvicorn

    specs = resolve_models(args.model_dirs)
    settings = settings_from_args(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)  # process-wide: the decode thread inherits it
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    if not settings.api_keys and not _is_loopback(args.host):
        log.warning("listening on %s without API keys: anyone who can reach this port can "
                    "use the models (see --api-key-file)", args.host)
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop_on_load_error(error: BaseException) -> None:
        failed.append(error)
        if server is not None:
            server.should_exit = True

    app = create_app(specs, settings, on_load_error=stop_on_load_error,
                     load=lambda path: Translator.load(path, quantize=args.quantize))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info",
                            timeout_graceful_shutdown=30, server_header=False,
                            access_log=not args.no_access_log)
    server = uvicorn.Server(config)
    log.info("serving %s on http://%s:%d/ (batching %s)",
             ", ".join(f"{s.name} [{s.path}]" for s in specs), args.host, args.port,
             "on" if settings.batching else "off")
    try:
        server.run()  # re-raises SIGTERM/SIGINT once the requests in flight are answered
    except KeyboardInterrupt:
        return 130
    return 1 if failed else 0
