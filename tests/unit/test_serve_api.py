"""HTTP contract of `transduce serve`, through FastAPI's TestClient (in process, no sockets).

Every endpoint, every error the issue lists, the LibreTranslate shapes, API keys, CORS,
limits, metrics, readiness and backpressure. The model is the trained demo model (en->demo).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from transduce.demo import LEXICON
from transduce.serve import Settings, create_app, resolve_models
from transduce.text.glossary import Glossary
from transduce.translator import Translator

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SENTENCES = ["the big cat sees a red ball near the house", "the old king paints a green door",
             "a small dog likes the blue car"]


@pytest.fixture(scope="module")
def translator(demo_model_dir: Path) -> Translator:
    return Translator.load(demo_model_dir)


def wait_healthy(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health").json()
        time.sleep(0.02)


@pytest.fixture
def make_client(demo_model_dir: Path, translator: Translator):
    """make_client(settings, load=...) -> a started TestClient whose models are loaded."""
    opened: list[TestClient] = []

    def make(settings: Settings | None = None, load=None, wait: bool = True,
             entries: list[str] | None = None) -> TestClient:
        specs = resolve_models(entries or [str(demo_model_dir)])
        app = create_app(specs, settings or Settings(), load or (lambda _: translator))
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        if wait:
            wait_healthy(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def native_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def lt_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return str(body["error"])


# ---- native API: success ----------------------------------------------------------------

def test_health_models_and_page(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "models": ["en-demo"]}
    models = client.get("/v1/models").json()
    assert models["api_key_required"] is False
    (m,) = models["models"]
    assert (m["name"], m["source"], m["target"], m["ready"]) == ("en-demo", "en", "demo", True)
    assert m["decode"]["beam_size"] == 5 and m["decode"]["quantize"] == "none"
    assert "path" not in m  # the server does not reveal where models live
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # no external asset


def test_translate_matches_offline_translator_in_input_order(client: TestClient,
                                                             translator: Translator) -> None:
    texts = [SENTENCES[1], "", SENTENCES[0], "   ", SENTENCES[2]]
    r = client.post("/v1/translate", json={"texts": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "en-demo"
    offline = translator.translate(texts)
    assert [t["text"] for t in body["translations"]] == [o.text for o in offline]
    assert body["translations"][1]["text"] == "" and body["translations"][3]["text"] == ""
    for got, want in zip(body["translations"], offline):
        assert got["score"] == pytest.approx(want.score, abs=1e-3)
        assert got["src_tokens"] == want.src_tokens and got["tgt_tokens"] == want.tgt_tokens
        assert "attention" not in got
    assert client.post("/v1/translate", json={"texts": []}).json()["translations"] == []


def test_n_best_and_attention(client: TestClient, translator: Translator) -> None:
    r = client.post("/v1/translate", json={"texts": [SENTENCES[0]], "beam_size": 4, "n_best": 3,
                                          "return_attention": True, "model": "en-demo"})
    (t,) = r.json()["translations"]
    want = translator.translate([SENTENCES[0]], beam_size=4, n_best=3)[0]
    assert [a["text"] for a in t["alternatives"]] == [a.text for a in want.alternatives]
    assert t["alternatives"][0]["text"] == t["text"]
    scores = [a["score"] for a in t["alternatives"]]
    assert scores == sorted(scores, reverse=True)
    att = t["attention"]
    assert len(att) == len(t["tgt_tokens"]) + 1
    assert all(len(row) == len(t["src_tokens"]) + 1 for row in att)
    assert all(abs(sum(row) - 1) < 0.01 for row in att)  # a distribution over the source


def test_controls_confidence_and_alignments(client: TestClient, translator: Translator) -> None:
    from transduce.search import Controls

    body = {"texts": SENTENCES, "beam_size": 3, "no_repeat_ngram_size": 1, "min_len": 2,
            "alignments": True}
    got = client.post("/v1/translate", json=body).json()["translations"]
    offline = translator.translate(SENTENCES, beam_size=3, return_attention=True,
                                   controls=Controls(min_len=2, no_repeat_ngram_size=1))
    assert [t["text"] for t in got] == [t.text for t in offline]
    for t, o in zip(got, offline):
        assert len(set(t["tgt_tokens"])) == len(t["tgt_tokens"]) >= 2  # no token twice
        assert t["confidence"] == pytest.approx(o.confidence, abs=1e-4)
        assert t["alignment"] == [list(p) for p in o.alignment or []]
        assert "attention" not in t  # alignments alone do not send the matrix
    capped = client.post("/v1/translate", json={"texts": SENTENCES, "max_len": 2}).json()
    assert [t["text"] for t in capped["translations"]] == \
        [t.text for t in translator.translate(SENTENCES, max_len=2)]
    assert all(len(t["tgt_tokens"]) <= 2 for t in capped["translations"])


def test_greedy_equals_offline_greedy(client: TestClient, translator: Translator) -> None:
    r = client.post("/v1/translate", json={"texts": SENTENCES, "beam_size": 1})
    assert [t["text"] for t in r.json()["translations"]] == [
        o.text for o in translator.translate(SENTENCES, beam_size=1)]


# ---- native API: errors -----------------------------------------------------------------

@pytest.mark.parametrize("body, code", [
    ({"texts": "not a list"}, "validation_error"),
    ({"texts": [1, 2]}, "validation_error"),
    ({"texts": ["x"], "beam_size": "5"}, "validation_error"),
    ({"texts": ["x"], "beam_size": True}, "validation_error"),
    ({"texts": ["x"], "beam_size": 2.5}, "validation_error"),
    ({"texts": ["x"], "beam_size": 0}, "validation_error"),
    ({"texts": ["x"], "beam_size": 1000}, "validation_error"),
    ({"texts": ["x"], "beam_size": 2, "n_best": 3}, "validation_error"),
    ({"texts": ["x"], "return_attention": "yes"}, "validation_error"),
    ({"texts": ["x"], "no_repeat_ngram_size": -1}, "validation_error"),
    ({"texts": ["x"], "repetition_penalty": 0.0}, "validation_error"),
    ({"texts": ["x"], "repetition_penalty": "high"}, "validation_error"),
    ({"texts": ["x"], "min_len": 2.5}, "validation_error"),
    ({"texts": ["x"], "coverage_penalty": -0.2}, "validation_error"),
    ({"texts": ["x"], "max_len": 0}, "validation_error"),
    ({"texts": ["x"], "max_len": "5"}, "validation_error"),
    ({"texts": ["x"], "alignments": 1}, "validation_error"),
    ({"texts": ["x"], "glossary": [["a"]]}, "validation_error"),  # not a pair
    ({"texts": ["x"], "glossary": [["a", ""]]}, "validation_error"),
    ({"texts": ["x"], "glossary": "cat=Katze"}, "validation_error"),
    ({"texts": ["x"], "glossary": {"cat": "Katze"}}, "validation_error"),
    ({"texts": ["x"], "document": "yes"}, "validation_error"),
    ({"texts": ["x"], "document": True, "n_best": 2, "beam_size": 2}, "validation_error"),
    ({"texts": ["x"], "split": True}, "validation_error"),  # an unknown option
    ({"texts": ["x"], "model_dir": "/etc"}, "validation_error"),  # no field names a path
    ({"texts": ["x"], "model": "../../etc/passwd"}, "unknown_model"),
    ({"texts": ["x"], "model": "de-en"}, "unknown_model"),
    ({}, "validation_error"),
    (["x"], "validation_error"),
    ({"texts": ["\ud800 lone surrogate"]}, "invalid_text"),
])
def test_invalid_requests_get_json_errors(client: TestClient, body: object, code: str) -> None:
    r = client.post("/v1/translate", content=json.dumps(body),  # escapes lone surrogates
                    headers={"Content-Type": "application/json"})
    native_error(r, 404 if code == "unknown_model" else 422, code)


@pytest.mark.parametrize("content, status, code", [
    (b"{not json", 400, "invalid_json"),
    (b"\xff\xfe\x00garbage", 400, "invalid_json"),
    (b"[" * 100_000, 400, "invalid_json"),  # nesting deeper than the parser's recursion
    (b"", 400, "invalid_json"),
])
def test_malformed_bodies(client: TestClient, content: bytes, status: int, code: str) -> None:
    r = client.post("/v1/translate", content=content,
                    headers={"Content-Type": "application/json"})
    native_error(r, status, code)


def test_json_must_be_declared(client: TestClient) -> None:
    r = client.post("/v1/translate", content=b'{"texts": ["x"]}',
                    headers={"Content-Type": "text/plain"})
    native_error(r, 415, "unsupported_media_type")


def test_unknown_routes_and_methods(client: TestClient) -> None:
    native_error(client.get("/v2/nothing"), 404, "not_found")
    native_error(client.get("/static/../../config.yaml"), 404, "not_found")
    native_error(client.get("/v1/translate"), 405, "method_not_allowed")
    native_error(client.get("/docs"), 404, "not_found")  # no Swagger UI (it needs a CDN)


def test_limits(make_client) -> None:
    c = make_client(Settings(max_texts=3, max_chars=50, max_body_bytes=2000))
    assert "limit is 3" in native_error(
        c.post("/v1/translate", json={"texts": ["a"] * 4}), 413, "too_many_texts")
    assert "limit is 50" in native_error(
        c.post("/v1/translate", json={"texts": ["a" * 51]}), 413, "text_too_long")
    native_error(c.post("/v1/translate", json={"texts": ["a " * 1500]}), 413,
                 "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"texts": ["'
        for _ in range(10):
            yield b"a " * 200
        yield b'"]}'

    r = c.post("/v1/translate", content=chunks(), headers={"Content-Type": "application/json"})
    native_error(r, 413, "payload_too_large")
    lt = c.post("/translate", data={"q": "a " * 1500, "source": "en", "target": "demo"})
    lt_error(lt, 413)


# ---- API keys and CORS ------------------------------------------------------------------

def test_api_keys(make_client) -> None:
    c = make_client(Settings(api_keys=("s3cret", "other-key")))
    body = {"texts": [SENTENCES[0]]}
    r = c.post("/v1/translate", json=body)
    native_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    native_error(c.post("/v1/translate", json=body, headers={"Authorization": "Bearer nope"}),
                 401, "unauthorized")
    native_error(c.post("/v1/translate", json=body, headers={"Authorization": "Bearer "}),
                 401, "unauthorized")
    ok = c.post("/v1/translate", json=body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert c.post("/v1/translate", json=body, headers={"X-API-Key": "other-key"}).status_code == 200
    assert c.get("/health").status_code == 200  # probes need no key
    assert c.get("/v1/models").json()["api_key_required"] is True
    # LibreTranslate's own codes: missing key 400, invalid key 403
    lt = {"q": "the big cat", "source": "en", "target": "demo"}
    assert "API key" in lt_error(c.post("/translate", json=lt), 400)
    assert lt_error(c.post("/translate", json={**lt, "api_key": "bad"}), 403) == "Invalid API key"
    assert c.post("/translate", data={**lt, "api_key": "s3cret"}).status_code == 200
    assert c.post("/translate", json={**lt, "api_key": "s3cret"}).status_code == 200


def test_cors_is_off_unless_configured(make_client) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    c = make_client()
    assert "access-control-allow-origin" not in c.get(
        "/v1/models", headers={"Origin": "https://example.org"}).headers
    assert "access-control-allow-origin" not in c.options("/v1/translate",
                                                          headers=preflight).headers
    c = make_client(Settings(cors_origins=("https://example.org",)))
    r = c.options("/v1/translate", headers=preflight)
    assert r.headers["access-control-allow-origin"] == "https://example.org"
    r = c.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# ---- readiness and backpressure -----------------------------------------------------------

def test_health_is_503_until_the_model_is_loaded(make_client, translator: Translator) -> None:
    gate = threading.Event()

    def slow_load(_: Path) -> Translator:
        assert gate.wait(20)
        return translator

    c = make_client(load=slow_load, wait=False)
    try:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = c.post("/v1/translate", json={"texts": ["x"]})
        native_error(r, 503, "not_ready")
        assert r.headers["retry-after"] == "1"
        assert c.get("/v1/models").json()["models"][0]["ready"] is False
    finally:
        gate.set()
    wait_healthy(c)
    assert c.post("/v1/translate", json={"texts": [SENTENCES[0]]}).status_code == 200


def test_failed_load_is_reported(make_client) -> None:
    def broken(_: Path) -> Translator:
        raise ValueError("weights do not match")

    c = make_client(load=broken, wait=False)
    deadline = time.monotonic() + 10
    while c.get("/health").json()["status"] == "loading" and time.monotonic() < deadline:
        time.sleep(0.02)
    r = c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "failed"
    assert "weights do not match" in r.json()["error"]
    native_error(c.post("/v1/translate", json={"texts": ["x"]}), 503, "not_ready")


def test_full_queue_answers_503_with_retry_after(make_client, demo_model_dir: Path) -> None:
    blocking = Translator.load(demo_model_dir)
    gate, entered = threading.Event(), threading.Event()
    real = blocking.translate

    def held(*a, **kw):
        entered.set()
        assert gate.wait(20)
        return real(*a, **kw)

    blocking.translate = held  # type: ignore[method-assign]
    c = make_client(Settings(batching=False, max_queue=1), load=lambda _: blocking)
    service = c.app.state.service  # type: ignore[attr-defined]
    results: dict[str, int] = {}

    def post(name: str) -> None:
        results[name] = c.post("/v1/translate", json={"texts": [SENTENCES[0]]}).status_code

    threads = [threading.Thread(target=post, args=("running",))]
    threads[0].start()
    try:
        assert entered.wait(10)
        threads.append(threading.Thread(target=post, args=("queued",)))
        threads[1].start()
        deadline = time.monotonic() + 10
        while service.batcher.depth() < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = c.post("/v1/translate", json={"texts": [SENTENCES[1]]})
        native_error(r, 503, "overloaded")
        assert r.headers["retry-after"] == "1"
        lt = c.post("/translate", json={"q": "x", "source": "en", "target": "demo"})
        assert lt_error(lt, 503)
    finally:
        gate.set()
        for t in threads:
            t.join(20)
    assert results == {"running": 200, "queued": 200}
    assert "transduce_queue_rejections_total 2" in c.get("/metrics").text


def test_metrics(client: TestClient) -> None:
    client.post("/v1/translate", json={"texts": SENTENCES})
    client.post("/v1/translate", json={"texts": "bad"})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'transduce_http_requests_total{endpoint="/v1/translate",method="POST",status="200"} 1' \
        in text
    assert 'transduce_http_errors_total{endpoint="/v1/translate",status="422"} 1' in text
    assert 'transduce_http_request_duration_seconds_bucket{endpoint="/v1/translate",le="+Inf"}' \
        in text
    assert "transduce_batch_texts_count 1" in text
    assert "transduce_batch_texts_sum 3" in text
    assert "transduce_queue_depth 0" in text
    assert "transduce_models_ready 1" in text
    assert 'transduce_translated_texts_total{model="en-demo"} 3' in text
    client.get("/random/scanner/path")
    assert 'endpoint="other"' in client.get("/metrics").text  # unknown paths share one label


# ---- LibreTranslate-compatible API ------------------------------------------------------

def test_languages(client: TestClient) -> None:
    assert client.get("/languages").json() == [
        {"code": "en", "name": "English", "targets": ["demo"]},
        {"code": "demo", "name": "demo", "targets": []},
    ]


def test_lt_translate_json_form_and_multipart(client: TestClient, translator: Translator) -> None:
    offline = translator.translate([SENTENCES[0]])[0]
    # LibreTranslate's answer, plus transduce's confidence (clients ignore extra fields)
    want = {"translatedText": offline.text, "confidence": round(offline.confidence, 4)}
    fields = {"q": SENTENCES[0], "source": "en", "target": "demo"}
    assert client.post("/translate", json=fields).json() == want
    assert client.post("/translate", data=fields).json() == want
    multipart = client.post("/translate", data=fields, files={"unused": (None, "x")})
    assert multipart.json() == want


def test_lt_batch_alternatives_auto_and_lines(client: TestClient, translator: Translator) -> None:
    results = translator.translate(SENTENCES)
    offline = [t.text for t in results]
    r = client.post("/translate", json={"q": SENTENCES, "source": "en", "target": "demo"})
    assert r.json() == {"translatedText": offline,
                        "confidence": [round(t.confidence, 4) for t in results]}

    r = client.post("/translate", json={"q": SENTENCES[0], "source": "en", "target": "demo",
                                        "alternatives": 3})
    body = r.json()
    assert body["translatedText"] == offline[0]
    assert 1 <= len(body["alternatives"]) <= 3 and offline[0] not in body["alternatives"]
    assert all(isinstance(a, str) for a in body["alternatives"])

    r = client.post("/translate", data={"q": SENTENCES[0], "source": "auto", "target": "demo"})
    assert r.json() == {"translatedText": offline[0],
                        "confidence": round(results[0].confidence, 4),
                        "detectedLanguage": {"confidence": 100.0, "language": "en"}}

    r = client.post("/translate", data={"q": f"{SENTENCES[0]}\r\n{SENTENCES[1]}",
                                        "source": "en", "target": "demo"})
    assert r.json()["translatedText"] == f"{offline[0]}\n{offline[1]}"
    # a text of several lines is as confident as its least confident line
    assert r.json()["confidence"] == round(min(t.confidence for t in results[:2]), 4)


def test_lt_html_keeps_tags(client: TestClient, translator: Translator) -> None:
    want = translator.translate([SENTENCES[1]])[0].text
    r = client.post("/translate", json={"q": f"<p class='x'>{SENTENCES[1]}</p><br>",
                                        "source": "en", "target": "demo", "format": "html"})
    assert r.json()["translatedText"] == f"<p class='x'>{want}</p><br>"


def test_glossaries_in_both_apis(client: TestClient, translator: Translator) -> None:
    """'cat' forced to the word for 'king': both APIs use it, as the offline translator does."""
    king = LEXICON["king"]
    glossary = Glossary.from_pairs([("cat", king)])
    want = translator.translate([SENTENCES[0]], glossary=glossary)[0]
    assert king in want.text.split()
    r = client.post("/v1/translate", json={"texts": [SENTENCES[0], SENTENCES[2]],
                                           "glossary": [["cat", king]]})
    first, second = r.json()["translations"]
    assert first["text"] == want.text and first["missing_terms"] == []
    assert king not in second["text"].split()  # no 'cat' in it: no constraint
    fields = {"q": SENTENCES[0], "source": "en", "target": "demo"}
    lt = client.post("/translate", json={**fields, "glossary": [["cat", king]]})
    assert lt.json()["translatedText"] == want.text
    form = client.post("/translate", data={**fields, "glossary": json.dumps([["cat", king]])})
    assert form.json()["translatedText"] == want.text
    for bad in ([["cat"]], "cat=king", [["cat", 3]], {"cat": king}):
        message = lt_error(client.post("/translate", json={**fields, "glossary": bad}), 400)
        assert "glossary" in message


def test_documents_keep_their_lines_in_both_apis(client: TestClient,
                                                 translator: Translator) -> None:
    """Several sentences on a line, blank lines and indentation: each sentence translated
    alone, the layout copied."""
    s0, s1, s2 = (s + "." for s in SENTENCES)
    doc = f"{s0} {s1}\n\n  {s2}\n"
    t0, t1, t2 = (t.text for t in translator.translate([s0, s1, s2]))
    want = f"{t0} {t1}\n\n  {t2}\n"
    r = client.post("/v1/translate", json={"texts": [doc], "document": True})
    (out,) = r.json()["translations"]
    assert out["text"] == want and out["sentences"] == 3 and 0 < out["confidence"] <= 1
    lt = client.post("/translate", json={"q": doc, "source": "en", "target": "demo"})
    assert lt.json()["translatedText"] == want


@pytest.mark.parametrize("fields, message", [
    ({"source": "en", "target": "demo"}, "Invalid request: missing q parameter"),
    ({"q": "", "source": "en", "target": "demo"}, "Invalid request: missing q parameter"),
    ({"q": "x", "target": "demo"}, "Invalid request: missing source parameter"),
    ({"q": "x", "source": "en"}, "Invalid request: missing target parameter"),
    ({"q": "x", "source": "xx", "target": "demo"}, "xx is not supported"),
    ({"q": "x", "source": "en", "target": "de"}, "de is not supported"),
    ({"q": "x", "source": "demo", "target": "en"},
     "English (en) is not available as a target language from demo (demo)"),
    ({"q": "x", "source": "en", "target": "demo", "format": "pdf"},
     "pdf format is not supported"),
    ({"q": "x", "source": "en", "target": "demo", "alternatives": "many"},
     "Invalid request: alternatives parameter is not a number"),
    ({"q": "x", "source": "en", "target": "demo", "alternatives": 99},
     "Invalid request: alternatives parameter must be <= 15"),
    ({"q": ["x", 3], "source": "en", "target": "demo"},
     "Invalid request: q must be a string or a list of strings"),
    ({"q": {"file": "/etc/passwd"}, "source": "en", "target": "demo"},
     "Invalid request: q must be a string or a list of strings"),
    ({"q": "x", "source": ["en"], "target": "demo"},
     "Invalid request: source must be a language code"),
])
def test_lt_errors(client: TestClient, fields: dict, message: str) -> None:
    assert lt_error(client.post("/translate", json=fields), 400) == message


def test_lt_malformed_and_limits(make_client) -> None:
    c = make_client(Settings(max_texts=2, max_chars=20))
    bad = c.post("/translate", content=b"{oops", headers={"Content-Type": "application/json"})
    assert lt_error(bad, 400) == "Invalid JSON format"
    assert lt_error(c.post("/translate", json=["q"]), 400) == "Invalid JSON format"
    fields = {"source": "en", "target": "demo"}
    assert "exceeds text limit (20)" in lt_error(
        c.post("/translate", json={**fields, "q": "a" * 21}), 400)
    assert "exceeds text limit (2)" in lt_error(
        c.post("/translate", json={**fields, "q": ["a", "b", "c"]}), 400)
    upload = c.post("/translate", data=fields, files={"q": ("secret.txt", b"x")})
    lt_error(upload, 400)
    surrogate = c.post("/translate", content=json.dumps({**fields, "q": "\ud800"}),
                       headers={"Content-Type": "application/json"})
    assert "lone surrogate" in lt_error(surrogate, 400)


def test_lt_detect_and_frontend_settings(client: TestClient) -> None:
    assert client.post("/detect", data={"q": "hello"}).json() == [
        {"confidence": 100.0, "language": "en"}]
    lt_error(client.post("/detect", data={}), 400)
    settings = client.get("/frontend/settings").json()
    assert settings["language"]["source"]["code"] == "en"
    assert settings["keyRequired"] is False


# ---- several models ---------------------------------------------------------------------

def test_two_models_named_on_the_command_line(make_client, demo_model_dir: Path,
                                              translator: Translator) -> None:
    c = make_client(entries=[str(demo_model_dir), f"demo-en={demo_model_dir}"])
    names = [m["name"] for m in c.get("/v1/models").json()["models"]]
    assert names == ["en-demo", "demo-en"]
    msg = native_error(c.post("/v1/translate", json={"texts": ["x"]}), 422, "validation_error")
    assert "several models" in msg
    r = c.post("/v1/translate", json={"texts": [SENTENCES[0]], "model": "demo-en"})
    assert r.json()["model"] == "demo-en"
    assert {"code": "demo", "name": "demo", "targets": ["en"]} in c.get("/languages").json()
    r = c.post("/translate", json={"q": SENTENCES[0], "source": "auto", "target": "demo"})
    assert r.json()["detectedLanguage"]["language"] == "en"


def test_resolve_models_errors(tmp_path: Path, demo_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="not a transduce model directory"):
        resolve_models([str(tmp_path)])
    with pytest.raises(ValueError, match="already serves"):
        resolve_models([str(demo_model_dir), str(demo_model_dir)])
    with pytest.raises(ValueError, match="may only use"):
        resolve_models([f"bad name={demo_model_dir}"])
    (spec,) = resolve_models([f"en-xx={demo_model_dir}"])
    assert (spec.name, spec.source, spec.target) == ("en-xx", "en", "xx")
