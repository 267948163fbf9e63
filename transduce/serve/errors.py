"""HTTP errors, and the two JSON shapes they are written in.

The native API (/v1/..., /health, /metrics, the page) answers
``{"error": {"code": "<machine-readable>", "message": "<one sentence>"}}``; the
LibreTranslate-compatible endpoints answer ``{"error": "<message>"}`` as LibreTranslate does.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

# Paths that speak LibreTranslate's dialect (its error shape included).
LIBRETRANSLATE_PATHS = frozenset({"/translate", "/languages", "/detect", "/frontend/settings"})


class ApiError(Exception):
    """A client-visible failure: HTTP status, a stable code and a human message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(path: str, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error for `path` in the dialect of the API it belongs to."""
    body: dict[str, object]
    if path in LIBRETRANSLATE_PATHS:
        body = {"error": message}
    else:
        body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


# Codes for the statuses the framework raises on its own (unknown route, wrong method, ...).
STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_error", 429: "too_many_requests", 500: "internal_error",
    503: "unavailable",
}
