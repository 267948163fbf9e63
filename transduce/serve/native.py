"""The native API: POST /v1/translate, GET /v1/models, GET /health, GET /metrics."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import JSONResponse, Response

from transduce import documents
from transduce.search import Controls
from transduce.serve.errors import ApiError
from transduce.serve.metrics import CONTENT_TYPE
from transduce.serve.service import Service
from transduce.text.glossary import Glossary
from transduce.translator import Translation, decode_controls

router = APIRouter()


class TranslateRequest(BaseModel):
    """Body of POST /v1/translate. Unknown fields are rejected, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    texts: list[str]
    model: str | None = None  # a served model's name; optional when only one is served
    beam_size: int | None = None  # default: the model's decode.beam_size
    n_best: int | None = None  # alternatives per text, best first
    return_attention: bool = False
    alignments: bool = False  # (source, output) token index pairs from attention
    # decoding controls; null: the model's decode config
    min_len: int | None = None
    no_repeat_ngram_size: int | None = None
    repetition_penalty: float | None = None
    coverage_penalty: float | None = None
    max_len: int | None = None  # output tokens at most
    # [[source term, target term], ...]: where a source term occurs, its target term is used
    glossary: list[list[str]] | None = None
    # each text is a document: split into sentences, translated, put back together; the
    # answer gives text, confidence, sentences and missing_terms only
    document: bool = False


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def require_key(request: Request) -> None:
    """Native auth: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; 401 otherwise."""
    service = service_of(request)
    if not service.settings.api_keys:
        return
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header[:7].lower() == "bearer " else None
    key = key or request.headers.get("x-api-key")
    if not service.check_key(key):
        message = "invalid API key" if key else "an API key is required (Authorization: Bearer KEY)"
        raise ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


async def read_json(request: Request) -> Any:
    """The body as JSON; 415 unless it is declared JSON, 400 if it does not parse."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not (kind.startswith("application/") and
                                           kind.endswith("+json")):
        raise ApiError(415, "unsupported_media_type",
                       "send the body as JSON with 'Content-Type: application/json'")
    body = await request.body()
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "invalid_json", f"the body is not valid JSON ({e})") from None


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def _number(x: float, digits: int = 4) -> float | None:
    return round(x, digits) if math.isfinite(x) else None  # JSON has no inf/nan


def translation_json(t: Translation, attention: bool, alignments: bool = False,
                     glossary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "text": t.text, "score": _number(t.score), "confidence": _number(t.confidence),
        "alternatives": [{"text": a.text, "score": _number(a.score)} for a in t.alternatives],
        "src_tokens": t.src_tokens, "tgt_tokens": t.tgt_tokens,
    }
    if attention:
        out["attention"] = (None if t.attention is None else
                            [[round(w, 4) for w in row] for row in t.attention])
    if alignments:
        out["alignment"] = None if t.alignment is None else [list(p) for p in t.alignment]
    if glossary:
        out["missing_terms"] = t.missing_terms
    return out


def _glossary(pairs: list[list[str]] | None) -> Glossary | None:
    try:
        return Glossary.from_pairs(pairs) if pairs else None
    except ValueError as e:
        raise ApiError(422, "validation_error", str(e)) from None


async def _documents(service: Service, req: TranslateRequest, controls: Controls,
                     glossary: Glossary | None) -> list[dict[str, Any]]:
    """`document: true`: every text split into sentences (documents.py), all sentences
    translated in one call, each text put back together."""
    if (req.n_best or 1) > 1 or req.return_attention or req.alignments:
        raise ApiError(422, "validation_error", "document: true answers with the text only; "
                       "drop n_best, return_attention and alignments")
    assert req.model is not None
    lang = service.spec(req.model).source
    pieces = [documents.split(t, lang) for t in req.texts]
    results = iter(await service.translate(
        req.model, [u for p in pieces for u in documents.units(p)], req.beam_size, 1, False,
        controls, req.coverage_penalty, glossary, req.max_len))
    out = []
    for p in pieces:
        done = [next(results) for _ in documents.units(p)]
        out.append({"text": documents.join(p, (r.text for r in done)),
                    "confidence": _number(min((r.confidence for r in done), default=1.0)),
                    "sentences": len(done),
                    "missing_terms": [m for r in done for m in r.missing_terms]})
    return out


@router.post("/v1/translate")
async def translate(request: Request) -> JSONResponse:
    """Translate `texts`; the answer lists one translation per text, in input order."""
    service = service_of(request)
    require_key(request)
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error",
                       'the body must be a JSON object like {"texts": ["..."]}')
    try:
        req = TranslateRequest.model_validate(data)
    except ValidationError as e:
        raise ApiError(422, "validation_error", _validation_message(e)) from None
    if req.model is None:
        if len(service.specs) > 1:
            raise ApiError(422, "validation_error", "several models are served; name one in "
                           f"'model' ({', '.join(s.name for s in service.specs)})")
        req.model = service.specs[0].name
    service.check_limits(req.texts)
    if req.coverage_penalty is not None and req.coverage_penalty < 0:
        raise ApiError(422, "validation_error", "coverage_penalty must be >= 0")
    if req.max_len is not None and req.max_len < 1:
        raise ApiError(422, "validation_error", "max_len must be >= 1")
    try:
        decode = service.translator(service.spec(req.model).name).decode
        controls = decode_controls(decode, req.min_len, req.no_repeat_ngram_size,
                                   req.repetition_penalty)
    except ValueError as e:
        raise ApiError(422, "validation_error", str(e)) from None
    glossary = _glossary(req.glossary)
    if req.document:
        return JSONResponse({"model": req.model,
                             "translations": await _documents(service, req, controls, glossary)})
    results = await service.translate(req.model, req.texts, req.beam_size, req.n_best,
                                      req.return_attention or req.alignments, controls,
                                      req.coverage_penalty, glossary, req.max_len)
    return JSONResponse({"model": req.model, "translations": [
        translation_json(t, req.return_attention, req.alignments, glossary is not None)
        for t in results]})


@router.get("/v1/models")
async def models(request: Request) -> JSONResponse:
    """The served models with their language pairs and decoding defaults (no key needed)."""
    service = service_of(request)
    out = []
    for spec in service.specs:
        entry: dict[str, Any] = {"name": spec.name, "source": spec.source,
                                 "target": spec.target, "ready": spec.name in service.translators}
        translator = service.translators.get(spec.name)
        if translator is not None:
            d = translator.decode
            entry["decode"] = {"beam_size": d.beam_size, "n_best": d.n_best,
                               "length_penalty": d.length_penalty,
                               "quantize": translator.quantize}
        out.append(entry)
    s = service.settings
    return JSONResponse({"models": out, "api_key_required": bool(s.api_keys),
                         "limits": {"max_texts": s.max_texts, "max_chars": s.max_chars,
                                    "max_beam": s.max_beam, "max_body_bytes": s.max_body_bytes}})


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 once every model is loaded; 503 while loading or after a failed load."""
    service = service_of(request)
    body: dict[str, Any] = {"status": "ok" if service.state == "ready" else service.state,
                            "models": sorted(service.translators)}
    if service.error:
        body["error"] = service.error
    return JSONResponse(body, status_code=200 if service.state == "ready" else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(service_of(request).metrics.render(), media_type=CONTENT_TYPE)
