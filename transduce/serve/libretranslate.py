"""LibreTranslate-compatible endpoints, so that its clients work against transduce unchanged.

Mirrors LibreTranslate's own app (libretranslate/app.py): ``POST /translate`` takes form or
JSON fields ``q`` (string or list), ``source`` (a code, or "auto"), ``target``, ``format``
("text" or "html"), ``alternatives`` and ``api_key``, and answers ``{"translatedText": ...}``
(plus ``alternatives`` and ``detectedLanguage`` when asked). Errors are ``{"error": message}``
with LibreTranslate's status codes: 400 for missing or invalid parameters, a missing API key
and text limits; 403 for an invalid API key. Two differences, both deliberate: a full queue
answers 503 with Retry-After (LibreTranslate's rate limiter answers 429), and a body over the
size limit answers 413. Text is split into sentences (documents.py) and put back together
with its line breaks; ``glossary`` (a list of [source term, target term] pairs) is
transduce's extension, and ``confidence`` in the answer is the least confident sentence's.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from transduce import documents
from transduce.serve.errors import ApiError
from transduce.serve.service import ModelSpec, Service, invalid_unicode
from transduce.text.glossary import Glossary

router = APIRouter()

# English names for common codes; anything else is shown as its code.
LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "fi": "Finnish", "fr": "French", "he": "Hebrew",
    "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese",
    "zh": "Chinese", "cmn": "Chinese", "zh-Hans": "Chinese", "zh-Hant": "Chinese (traditional)",
}


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def read_fields(request: Request) -> dict[str, Any]:
    """JSON body if declared JSON, else form fields (urlencoded or multipart) and the query."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):
            raise bad_request("Invalid JSON format") from None
        if not isinstance(data, dict):
            raise bad_request("Invalid JSON format")
        return data
    fields: dict[str, Any] = dict(request.query_params)
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        async with request.form(max_files=0, max_fields=32) as form:
            for name, value in form.multi_items():
                if not isinstance(value, str):
                    raise bad_request(f"Invalid request: {name} must not be a file")
                fields[name] = value
        if isinstance(fields.get("q"), str):  # as LibreTranslate: one line ending for forms
            fields["q"] = "\n".join(fields["q"].splitlines())
    return fields


def check_key(service: Service, fields: dict[str, Any]) -> None:
    if not service.settings.api_keys:
        return
    key = fields.get("api_key")
    if not key:
        raise bad_request("Please contact the server operator to get an API key")
    if not isinstance(key, str) or not service.check_key(key):
        raise ApiError(403, "forbidden", "Invalid API key")


def _texts(fields: dict[str, Any], service: Service) -> list[str]:
    q = fields.get("q")
    if not q:
        raise bad_request("Invalid request: missing q parameter")
    texts = q if isinstance(q, list) else [q]
    if not all(isinstance(t, str) for t in texts):
        raise bad_request("Invalid request: q must be a string or a list of strings")
    s = service.settings
    if isinstance(q, list) and len(q) > s.max_texts:
        raise bad_request(f"Invalid request: request ({len(q)}) exceeds text limit "
                          f"({s.max_texts})")
    for t in texts:
        if len(t) > s.max_chars:
            raise bad_request(f"Invalid request: request ({len(t)}) exceeds text limit "
                              f"({s.max_chars})")
    if bad := invalid_unicode(texts):
        raise bad_request(f"Invalid request: {bad}")
    return texts


def _alternatives(fields: dict[str, Any], service: Service) -> int:
    raw = fields.get("alternatives", 0)
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise bad_request("Invalid request: alternatives parameter is not a number")
    try:
        count = max(0, int(raw))
    except ValueError:
        raise bad_request("Invalid request: alternatives parameter is not a number") from None
    limit = service.settings.max_beam - 1
    if count > limit:
        raise bad_request(f"Invalid request: alternatives parameter must be <= {limit}")
    return count


def _pair(service: Service, source: str, target: str) -> ModelSpec:
    """The model for source -> target; "auto" works when one source language fits."""
    if source == "auto":
        sources = sorted({s.source for s in service.specs if s.target == target})
        if len(sources) != 1:
            raise bad_request("auto is not supported: this server cannot detect the language; "
                              "pass source explicitly")
        source = sources[0]
    if not any(source in (s.source, s.target) for s in service.specs):
        raise bad_request(f"{source} is not supported")
    if not any(target in (s.source, s.target) for s in service.specs):
        raise bad_request(f"{target} is not supported")
    for spec in service.specs:
        if (spec.source, spec.target) == (source, target):
            return spec
    raise bad_request(f"{language_name(target)} ({target}) is not available as a target "
                      f"language from {language_name(source)} ({source})")


def _glossary(fields: dict[str, Any]) -> Glossary | None:
    """transduce's extension: ``glossary``, a list of [source term, target term] pairs (in a
    form, the same as a JSON string)."""
    raw = fields.get("glossary")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise bad_request("Invalid request: glossary must be a JSON list of "
                              "[source term, target term] pairs") from None
    if not isinstance(raw, list):
        raise bad_request("Invalid request: glossary must be a list of "
                          "[source term, target term] pairs")
    try:
        return Glossary.from_pairs(raw)
    except ValueError as e:
        raise bad_request(f"Invalid request: {e}") from None


@router.post("/translate")
async def translate(request: Request) -> JSONResponse:
    service = _service(request)
    fields = await read_fields(request)
    check_key(service, fields)
    texts = _texts(fields, service)
    source, target = fields.get("source"), fields.get("target")
    for name, value in (("source", source), ("target", target)):
        if not value:
            raise bad_request(f"Invalid request: missing {name} parameter")
        if not isinstance(value, str):
            raise bad_request(f"Invalid request: {name} must be a language code")
    n_alt = _alternatives(fields, service)
    fmt = fields.get("format") or "text"
    if fmt not in ("text", "html"):
        raise bad_request(f"{fmt} format is not supported")
    spec = _pair(service, str(source), str(target))
    translator = service.translator(spec.name)

    glossary = _glossary(fields)
    pieces = [documents.split(t, spec.source, fmt) for t in texts]
    n_best = n_alt + 1 if fmt == "text" else 1
    beam = max(translator.decode.beam_size, n_best)
    results = iter(await service.translate(
        spec.name, [u for p in pieces for u in documents.units(p)], beam, n_best,
        glossary=glossary))

    translated, alternatives, confidence = [], [], []
    for p in pieces:
        done = [next(results) for _ in documents.units(p)]
        text = documents.join(p, (r.text for r in done), fmt)
        translated.append(text)
        # the least confident sentence's
        confidence.append(round(min((r.confidence for r in done), default=1.0), 4))
        # Alternatives exist for a single sentence (LibreTranslate's are whole-text too).
        alternatives.append(_unique([a.text for a in done[0].alternatives[1:]], text)
                            if len(done) == 1 else [])

    batch = isinstance(fields["q"], list)
    body: dict[str, Any] = {"translatedText": translated if batch else translated[0],
                            "confidence": confidence if batch else confidence[0]}
    if n_alt > 0:
        body["alternatives"] = alternatives if batch else alternatives[0]
    if source == "auto":
        detected = {"confidence": 100.0, "language": spec.source}
        body["detectedLanguage"] = [detected] * len(texts) if batch else detected
    return JSONResponse(body)


def _unique(texts: list[str], best: str) -> list[str]:
    seen = {best, ""}
    return [t for t in texts if not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]


@router.get("/languages")
async def languages(request: Request) -> JSONResponse:
    """Every language the server reads or writes, with the targets it can translate into."""
    targets: dict[str, list[str]] = {}
    for spec in _service(request).specs:
        targets.setdefault(spec.source, []).append(spec.target)
        targets.setdefault(spec.target, [])
    return JSONResponse([{"code": code, "name": language_name(code), "targets": sorted(t)}
                         for code, t in targets.items()])


@router.post("/detect")
async def detect(request: Request) -> JSONResponse:
    """No real detection: answers only when the server reads a single source language."""
    service = _service(request)
    fields = await read_fields(request)
    check_key(service, fields)
    q = fields.get("q")
    if not q:
        raise bad_request("Invalid request: missing q parameter")
    sources = sorted({s.source for s in service.specs})
    if len(sources) != 1:
        raise bad_request("language detection is not supported by this server")
    return JSONResponse([{"confidence": 100.0, "language": sources[0]}])


@router.get("/frontend/settings")
async def frontend_settings(request: Request) -> JSONResponse:
    service = _service(request)
    first = service.specs[0]
    return JSONResponse({
        "apiKeys": bool(service.settings.api_keys), "keyRequired": bool(service.settings.api_keys),
        "charLimit": service.settings.max_chars, "frontendTimeout": 500, "suggestions": False,
        "filesTranslation": False, "supportedFilesFormat": [],
        "language": {"source": {"code": first.source, "name": language_name(first.source)},
                     "target": {"code": first.target, "name": language_name(first.target)}},
    })
