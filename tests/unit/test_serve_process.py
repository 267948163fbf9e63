"""`transduce serve` as a real process on 127.0.0.1: concurrency, a real LibreTranslate client,
graceful shutdown on SIGTERM, and the command line's errors and exit codes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving import free_port, start, stop  # tests/serving.py

from transduce.cli import main
from transduce.translator import Translator

# After a graceful shutdown uvicorn re-raises SIGTERM, so the exit status says "terminated"
# (143 in a shell), as for any well-behaved Unix server.
GRACEFUL = (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def server(demo_model_dir: Path) -> Iterator[str]:
    proc, url = start(demo_model_dir, "--max-wait-ms", "50")
    yield url
    assert stop(proc) in GRACEFUL


@pytest.fixture(scope="module")
def translator(demo_model_dir: Path) -> Translator:
    return Translator.load(demo_model_dir)


def test_concurrent_requests_each_get_their_own_translation(
        server: str, translator: Translator, demo_splits: dict) -> None:
    sources = [s for s, _ in demo_splits["test"][:32]]
    expected = [t.text for t in translator.translate(sources)]
    barrier = threading.Barrier(len(sources))
    got: dict[int, object] = {}

    def client(i: int) -> None:
        with httpx.Client(timeout=60) as http:
            barrier.wait(30)
            # every other request is a pair, to mix request shapes inside a batch
            texts = [sources[i]] if i % 2 else [sources[i], sources[(i + 1) % len(sources)]]
            r = http.post(server + "/v1/translate", json={"texts": texts})
            got[i] = r.json()["translations"] if r.status_code == 200 else r.text

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(len(sources)):
        translations = got[i]
        assert isinstance(translations, list), translations
        assert translations[0]["text"] == expected[i]
        if i % 2 == 0:
            assert translations[1]["text"] == expected[(i + 1) % len(sources)]
    metrics = httpx.get(server + "/metrics").text
    batches = next(line for line in metrics.splitlines()
                   if line.startswith("transduce_batch_requests_count"))
    assert float(batches.split()[1]) < len(sources)  # requests really were decoded together


def test_serve_with_int8_weights_answers_as_the_int8_translator(demo_model_dir: Path,
                                                                demo_splits: dict) -> None:
    sources = [s for s, _ in demo_splits["test"][:8]]
    expected = [t.text for t in Translator.load(demo_model_dir, quantize="int8")
                .translate(sources)]
    proc, url = start(demo_model_dir, "--quantize", "int8")
    try:
        r = httpx.post(url + "/v1/translate", json={"texts": sources}, timeout=60)
        assert r.status_code == 200, r.text
        assert [t["text"] for t in r.json()["translations"]] == expected
        [model] = httpx.get(url + "/v1/models", timeout=10).json()["models"]
        assert model["decode"]["quantize"] == "int8"
    finally:
        assert stop(proc) in GRACEFUL


def test_a_real_libretranslate_client_works_unchanged(server: str, translator: Translator) -> None:
    lt = pytest.importorskip("libretranslatepy", reason="pip install libretranslatepy")
    api = lt.LibreTranslateAPI(server)
    sentence = "the big cat sees a red ball near the house"
    assert api.translate(sentence, "en", "demo") == translator.translate([sentence])[0].text
    codes = [lang["code"] for lang in api.languages()]
    assert codes == ["en", "demo"]
    assert api.detect(sentence) == [{"confidence": 100.0, "language": "en"}]


def test_sigterm_finishes_requests_in_flight(demo_model_dir: Path, translator: Translator) -> None:
    # A long batching wait keeps the request in flight while the signal arrives.
    proc, url = start(demo_model_dir, "--max-wait-ms", "1500")
    sentence = "the old king paints a green door"
    outcome: dict[str, object] = {}

    def client() -> None:
        try:
            r = httpx.post(url + "/v1/translate", json={"texts": [sentence]}, timeout=30)
            outcome["status"], outcome["text"] = r.status_code, r.json()["translations"][0]["text"]
        except Exception as e:
            outcome["error"] = repr(e)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    thread.join(30)
    assert outcome == {"status": 200, "text": translator.translate([sentence])[0].text}
    assert proc.wait(30) in GRACEFUL
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)


def test_a_model_that_fails_to_load_stops_the_server(demo_model_dir: Path,
                                                     tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(demo_model_dir, broken, ignore=shutil.ignore_patterns("checkpoints"))
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    proc = subprocess.run(
        [sys.executable, "-m", "transduce", "serve", str(broken), "--port", str(free_port())],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "could not load the models" in proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["serve", "/no/such/model"], "is not a transduce model directory"),
    (["serve", "MODEL", "--max-queue", "0"], "--max-queue must be at least 1"),
    (["serve", "MODEL", "--max-wait-ms", "-1"], "--max-wait-ms must not be negative"),
    (["serve", "MODEL", "--api-key-file", "/no/such/keys"], "No such file"),
])
def test_command_line_errors_exit_2(argv: list[str], message: str, demo_model_dir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(demo_model_dir) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_empty_api_key_file_is_refused(tmp_path: Path, demo_model_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# no keys yet\n\n", encoding="utf-8")
    assert main(["serve", str(demo_model_dir), "--api-key-file", str(keys)]) == 2
    assert "no API keys" in capsys.readouterr().err
