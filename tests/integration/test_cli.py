"""The command line as users run it (`python -m transduce ...` in a subprocess): train with
--set, translate, evaluate, summary, curves, attention, resume after SIGKILL, and bad inputs
that must end with exit code 2 and one clear line on stderr."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from transduce.cli import main
from transduce.evaluate import score
from transduce.models import count_parameters
from transduce.translator import Translator

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}




def cli(*args: str, cwd: Path, stdin: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transduce", *map(str, args)], cwd=cwd,
                          input=stdin, capture_output=True, text=True, env=ENV, timeout=timeout)


def assert_clean_error(result: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    """Exit code 2 and exactly one line on stderr, naming what is wrong; no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"transduce {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---- data and a config on a real slice -------------------------------------------------------

@pytest.fixture(scope="module")
def slice_dir(data_dir: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_data")
    for split, n, name in (("train", 300, "train"), ("val", 20, "valid")):
        for lang in ("en", "de"):
            with gzip.open(data_dir / "multi30k" / f"{split}.{lang}.gz", "rt",
                           encoding="utf-8") as f:
                lines = [next(f) for _ in range(n)]
            (root / f"{name}.{lang}").write_text("".join(lines), encoding="utf-8")
    return root


def write_config(path: Path, data: Path, out_dir: Path, **train) -> Path:
    raw = {
        "data": {"train_src": str(data / "train.en"), "train_tgt": str(data / "train.de"),
                 "valid_src": str(data / "valid.en"), "valid_tgt": str(data / "valid.de"),
                 "max_len": 80},
        "tokenizer": {"kind": "char", "shared": True},
        "model": {"emb_dim": 16, "hidden_size": 32, "encoder_layers": 1, "dropout": 0.1},
        "train": {"out_dir": str(out_dir), "batch_tokens": 1200, "valid_every": 10,
                  "max_steps": 10, "threads": 1, "progress": False, "num_samples": 0,
                  "early_stopping": {"patience": 0}, **train},
        "decode": {"beam_size": 2, "max_len_ratio": 1.0, "max_len_offset": 5},
    }
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_by_cli(slice_dir: Path, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`transduce train` with --set overrides: a GRU without attention, 12 steps."""
    root = tmp_path_factory.mktemp("cli_train")
    cfg = write_config(root / "tiny.yaml", slice_dir, root / "model")
    result = cli("train", cfg, "--set", "model.rnn_type=gru", "--set", "model.attention=none",
                 "--set", "train.max_steps=12", "--set", "train.valid_every=6", cwd=root)
    return root / "model", result


def test_train_applies_set_overrides_and_writes_a_model_directory(trained_by_cli):
    model_dir, result = trained_by_cli
    assert result.returncode == 0, result.stderr
    assert "training finished (max_steps reached) after 12 steps" in result.stdout
    saved = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved["model"]["rnn_type"] == "gru" and saved["model"]["attention"] == "none"
    assert saved["train"]["max_steps"] == 12 and saved["model"]["hidden_size"] == 32
    assert (model_dir / "model.safetensors").is_file()
    assert (model_dir / "checkpoints" / "latest").read_text().strip() == "step-00000012"
    records = [json.loads(x) for x in (model_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [6, 12]


# ---- translate -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_sources(demo_splits) -> list[str]:
    return [s for s, _ in demo_splits["test"][:6]]


@pytest.fixture(scope="module")
def translator(demo_model_dir: Path) -> Translator:
    return Translator.load(demo_model_dir)


def test_translate_stdin_to_stdout_keeps_lines_and_empty_lines(demo_model_dir, demo_sources,
                                                               translator, tmp_path):
    lines = [demo_sources[0], "", demo_sources[1], "   ", demo_sources[2]]
    result = cli("translate", demo_model_dir, cwd=tmp_path, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    assert out[1] == "" and out[3] == ""
    # the CLI is the library's Translator, with the model's own decoding defaults
    assert out[:-1] == [t.text for t in translator.translate(lines)]


def test_translate_with_int8_weights_is_the_library_int8_translator(demo_model_dir,
                                                                     demo_sources, tmp_path):
    result = cli("translate", demo_model_dir, "--quantize", "int8", "--beam", "3", cwd=tmp_path,
                 stdin="\n".join(demo_sources) + "\n")
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr  # torch's deprecation notice is not for our users
    int8 = Translator.load(demo_model_dir, quantize="int8")
    assert result.stdout.splitlines() == [t.text for t in int8.translate(demo_sources,
                                                                         beam_size=3)]


def test_translate_files_with_beam_and_n_best(demo_model_dir, demo_sources, translator,
                                              tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(demo_sources) + "\n", encoding="utf-8")
    greedy = cli("translate", demo_model_dir, "-i", src, "-o", tmp_path / "greedy.txt",
                 "--beam", "1", cwd=tmp_path)
    assert greedy.returncode == 0 and greedy.stdout == "", greedy.stderr
    written = (tmp_path / "greedy.txt").read_text(encoding="utf-8").splitlines()
    assert written == [t.text for t in translator.translate(demo_sources, beam_size=1)]

    # n-best lines always have n (text, score) columns, padded with empty text scored -inf
    # (an empty line has one alternative: the empty translation, score 0)
    with_empty = [*demo_sources, ""]
    src.write_text("\n".join(with_empty) + "\n", encoding="utf-8")
    nbest = cli("translate", demo_model_dir, "-i", src, "--beam", "4", "--n-best", "3",
                cwd=tmp_path)
    assert nbest.returncode == 0, nbest.stderr
    expected = translator.translate(with_empty, beam_size=4, n_best=3)
    for line, t in zip(nbest.stdout.splitlines(), expected, strict=True):
        fields = line.split("\t")
        assert len(fields) == 6
        texts, scores = fields[0::2], [float(x) for x in fields[1::2]]
        assert scores == sorted(scores, reverse=True)
        found = [a.text for a in t.alternatives]
        assert texts == found + [""] * (3 - len(found))
    assert nbest.stdout.splitlines()[-1].split("\t") == ["", "0.0000"] + ["", "-inf"] * 2


# ---- evaluate, summary, curves, attention ------------------------------------------------------

@pytest.fixture(scope="module")
def demo_test_files(demo_splits, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("demo_test")
    pairs = demo_splits["test"][:25]
    (root / "test.src").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (root / "test.ref").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return root / "test.src", root / "test.ref"


def test_evaluate_prints_metrics_with_signatures(demo_model_dir, demo_test_files, tmp_path):
    src, ref = demo_test_files
    metrics = ("--metrics", "bleu,chrf,ter,exact_match")
    result = cli("evaluate", demo_model_dir, "--src", src, "--ref", ref, "--beam", "2",
                 "--output", tmp_path / "hyp.txt", *metrics, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "25 sentences, beam 2" in out
    assert re.search(r"bleu \d+\.\d+\s+chrf \d+\.\d+\s+ter \d+\.\d+", out), out
    assert re.search(r"bleu: nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:", out)
    assert "chrf: nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:" in out
    assert "ter: nrefs:1|case:mixed|tok:tercom|norm:no|punct:yes|asian:no|version:" in out

    as_json = cli("evaluate", demo_model_dir, "--src", src, "--ref", ref, "--beam", "2",
                  "--json", *metrics, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["sentences"] == 25
    assert set(data["signatures"]) == {"bleu", "chrf", "ter", "exact_match"}
    hyps = (tmp_path / "hyp.txt").read_text(encoding="utf-8").splitlines()
    refs = ref.read_text(encoding="utf-8").splitlines()
    expected = score(hyps, refs)
    for key in ("bleu", "chrf", "ter", "exact_match"):
        assert data[key] == pytest.approx(getattr(expected, key)), key


def test_summary_of_a_model_directory_and_of_a_config(demo_model_dir, translator, slice_dir,
                                                      tmp_path):
    result = cli("summary", demo_model_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    total = int(re.search(r"total parameters: ([\d,]+)", result.stdout).group(1).replace(",", ""))
    assert total == count_parameters(translator.engine.model)
    assert "attention: luong_general" in result.stdout

    cfg = write_config(tmp_path / "c.yaml", slice_dir, tmp_path / "unused")
    result = cli("summary", cfg, "--set", "model.attention=bahdanau", "--vocab", "100",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "vocabulary size assumed 100" in result.stdout
    assert "attention: bahdanau" in result.stdout and "total parameters:" in result.stdout


def test_curves_and_attention_write_images(demo_model_dir, demo_sources, translator, tmp_path):
    curves = cli("curves", demo_model_dir, "-o", tmp_path / "curves.png", cwd=tmp_path)
    assert curves.returncode == 0, curves.stderr
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    att = cli("attention", demo_model_dir, demo_sources[0], "-o", tmp_path / "att.png",
              "--beam", "3", cwd=tmp_path)
    assert att.returncode == 0, att.stderr
    first, second = att.stdout.splitlines()
    assert first == translator.translate([demo_sources[0]], beam_size=3)[0].text
    assert second.endswith("att.png")
    assert (tmp_path / "att.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_on_a_model_without_attention_is_a_clean_error(trained_by_cli, tmp_path):
    model_dir, trained = trained_by_cli
    assert trained.returncode == 0, trained.stderr
    result = cli("attention", model_dir, "A dog runs.", "-o", tmp_path / "x.png", cwd=tmp_path)
    assert_clean_error(result, "attention", "no attention")
    assert not (tmp_path / "x.png").exists()


# ---- bad inputs: exit code 2, one line, no traceback ------------------------------------------

def test_misaligned_training_files(slice_dir, tmp_path):
    short = tmp_path / "short.de"
    short.write_text("".join((slice_dir / "train.de").read_text().splitlines(True)[:299]),
                     encoding="utf-8")
    cfg = write_config(tmp_path / "c.yaml", slice_dir, tmp_path / "m")
    result = cli("train", cfg, "--set", f"data.train_tgt={short}", cwd=tmp_path)
    assert_clean_error(result, "train", str(slice_dir / "train.en"), str(short), "300 lines",
                       "299 lines")


def test_non_utf8_line_in_training_data(slice_dir, tmp_path):
    lines = (slice_dir / "train.en").read_bytes().splitlines(True)
    bad = tmp_path / "bad.en"
    bad.write_bytes(b"".join(lines[:41]) + "Gr\u00fc\u00dfe aus K\u00f6ln\n".encode("latin-1")
                    + b"".join(lines[42:]))
    cfg = write_config(tmp_path / "c.yaml", slice_dir, tmp_path / "m")
    result = cli("train", cfg, "--set", f"data.train_src={bad}", cwd=tmp_path)
    assert_clean_error(result, "train", str(bad), "line 42", "UTF-8")


def test_prepare_then_train_reuses_the_cache_and_a_damaged_one_is_rebuilt(slice_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", slice_dir, tmp_path / "m", max_steps=2)
    cache = tmp_path / "cache"
    first = cli("prepare", cfg, "--set", f"data.cache_dir={cache}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "300 pairs read" in first.stdout and "prepared data:" in first.stdout
    [path] = list(cache.iterdir())
    trained = cli("train", cfg, "--set", f"data.cache_dir={cache}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert f"prepared data: {path} (reused" in trained.stdout
    assert "first update after" in trained.stdout
    (path / "index.npy").write_bytes((path / "index.npy").read_bytes()[:50])  # truncated
    again = cli("prepare", cfg, "--set", f"data.cache_dir={cache}", cwd=tmp_path)
    assert again.returncode == 0 and "damaged (index.npy has 50 bytes" in again.stdout


def test_jsonl_line_without_the_field(slice_dir, tmp_path):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text('{"src": "a", "tgt": "b"}\n{"source": "c", "tgt": "d"}\n', encoding="utf-8")
    cfg = write_config(tmp_path / "c.yaml", slice_dir, tmp_path / "m")
    result = cli("prepare", cfg, "--set", "data.train_src=null", "--set", "data.train_tgt=null",
                 "--set", f"data.train=[{{path: {jsonl}}}]", cwd=tmp_path)
    assert_clean_error(result, "prepare", f"{jsonl}, line 2", "no string field 'src'",
                       "data.on_bad_line")


def test_unknown_config_key_suggests_the_valid_one(slice_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", slice_dir, tmp_path / "m")
    result = cli("train", cfg, "--set", "train.lr_rate=0.1", cwd=tmp_path)
    assert_clean_error(result, "train", "'train.lr_rate'", "did you mean 'train.lr'")
    assert not (tmp_path / "m").exists()


def test_missing_files(slice_dir, demo_model_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", slice_dir, tmp_path / "m")
    missing = tmp_path / "nowhere" / "train.en.gz"
    result = cli("train", cfg, "--set", f"data.train_src={missing}", cwd=tmp_path)
    assert_clean_error(result, "train", str(missing))
    result = cli("translate", demo_model_dir, "-i", tmp_path / "nope.txt", cwd=tmp_path)
    assert_clean_error(result, "translate", "nope.txt")


def test_non_utf8_input_to_translate(demo_model_dir, tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"the cat sees a dog\n\xff\xfe broken\n")
    result = cli("translate", demo_model_dir, "-i", path, cwd=tmp_path)
    assert_clean_error(result, "translate", "in.txt", "line 2", "UTF-8")


@pytest.mark.parametrize("argv, needles", [
    (["train", "{tmp}/missing.yaml"], ["missing.yaml"]),
    (["translate", "{tmp}"], ["not a transduce model directory", "config.yaml"]),
    (["translate", "{model}", "--beam", "2", "--n-best", "3"], ["n_best"]),
    (["evaluate", "{model}", "--src", "{tmp}/a.txt", "--ref", "{tmp}/b.txt"],
     ["a.txt has 2 lines", "b.txt has 1 lines"]),
    (["evaluate", "{model}", "--src", "{tmp}/empty.txt", "--ref", "{tmp}/empty.txt"],
     ["nothing to score"]),
    (["translate", "{model}", "--device", "cuda", "--quantize", "int8"], ["CPU only"]),
    (["curves", "{tmp}"], ["no training log"]),
    (["average", "{tmp}"], ["no checkpoints"]),
])
def test_more_bad_inputs_in_process(argv, needles, demo_model_dir, tmp_path, capsys,
                                    monkeypatch):
    (tmp_path / "a.txt").write_text("x\ny\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("x\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"the cat sees a dog\n")))
    args = [a.format(tmp=tmp_path, model=demo_model_dir) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"transduce {argv[0]}: error: ")
    for needle in needles:
        assert needle in err[0], (needle, err[0])


def test_usage_errors_are_one_line(tmp_path):
    result = cli("translate", "--no-such-flag", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


# ---- resume after SIGKILL -----------------------------------------------------------------------

def train_until_first_checkpoint_then(sig: int, cfg: Path, latest: Path,
                                      cwd: Path) -> tuple[int, str]:
    """Start `transduce train`, send `sig` once a checkpoint exists; (exit code, stdout)."""
    # `transduce train` with Python's Ctrl-C handler in place even when this test runs as a
    # shell's background job, whose children start with SIGINT ignored.
    main = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from transduce.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", main, "train", str(cfg)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.time() + 240
        while not latest.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert latest.exists(), "no checkpoint appeared"
        assert proc.poll() is None, "training finished before the signal"
        os.kill(proc.pid, sig)
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stdout


@pytest.mark.slow
def test_resume_after_sigkill_continues_from_the_saved_step(slice_dir, tmp_path):
    out = tmp_path / "model"
    cfg = write_config(tmp_path / "c.yaml", slice_dir, out, max_steps=30, valid_every=5,
                       keep_last=2, valid_max_sentences=5)
    latest = out / "checkpoints" / "latest"
    code, _ = train_until_first_checkpoint_then(signal.SIGKILL, cfg, latest, tmp_path)
    assert code == -signal.SIGKILL
    saved = latest.read_text().strip()
    step = int(saved.split("-")[1])
    assert 5 <= step < 30 and step % 5 == 0

    result = cli("train", cfg, "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resumed from {out / 'checkpoints' / saved} (step {step}," in result.stdout
    assert "training finished (max_steps reached) after 30 steps" in result.stdout
    assert latest.read_text().strip() == "step-00000030"
    records = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 30
    assert {r["step"] for r in records} == set(range(5, 31, 5))
    state = json.loads((out / "checkpoints" / "step-00000030" / "state.json").read_text())
    assert state["progress"]["step"] == 30


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, message", [
    (signal.SIGTERM, 0, "stopped by SIGTERM; continue with --resume"),
    (signal.SIGINT, 130, "interrupted: saved a checkpoint at step"),
], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_save_a_checkpoint_first(sig, code, message, slice_dir, tmp_path):
    out = tmp_path / "model"
    cfg = write_config(tmp_path / "c.yaml", slice_dir, out, max_steps=400, valid_every=7,
                       valid_max_sentences=3)
    latest = out / "checkpoints" / "latest"
    returncode, stdout = train_until_first_checkpoint_then(sig, cfg, latest, tmp_path)
    assert returncode == code, stdout
    assert message in stdout
    name = latest.read_text().strip()
    step = int(name.split("-")[1])
    state = json.loads((out / "checkpoints" / name / "state.json").read_text())
    assert state["progress"]["step"] == step and 7 <= step < 400
    if sig == signal.SIGINT:  # the checkpoint is taken where it stopped, not at a validation
        assert f"saved a checkpoint at step {step};" in stdout
