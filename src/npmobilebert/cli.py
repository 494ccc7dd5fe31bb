"""The command line: ``npmobilebert info | run | verify``.

Formatting lives here and in trace.py / verify.py; kernels never print. Every error the package
raises on bad input becomes one line on stderr and exit status 2 -- never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import numpy as np

from .errors import InputError, NpMobileBertError, escape_text
from .shipped import default_model_path

# What InputMaker.random (inputs.py) draws, for the help of the commands that take --random.
RANDOM_INPUTS_HELP = (
    "Random inputs are inputs the model accepts: BERT-style ids/mask/types a random token "
    "sequence; an integer input that indexes a table (GATHER, EMBEDDING_LOOKUP, GATHER_ND, also "
    "through RESHAPE, CAST, SQUEEZE, EXPAND_DIMS, TRANSPOSE or slices) inside that table, a "
    "quantized RSQRT input at or above its zero point; inputs "
    "named like a mask, and bools, in {0, 1}; other integers in [-128, 127] (within their type); "
    "floats standard normal.")


def _model_file(model_path: str | None) -> str | None:
    """The model file a command reads (for the check that no output replaces it)."""
    if model_path:
        return str(model_path)
    try:
        return str(default_model_path())
    except InputError:
        return None


def _progressbar(**kwargs):
    """click's progress bar on a terminal; nothing where stderr is a file or a pipe, whose reader
    expects at most the one line of an error there (click would still print the label)."""
    return click.progressbar(hidden=not sys.stderr.isatty(), **kwargs)


def _load(model_path: str | None):
    from .model import load_model
    return load_model(str(model_path) if model_path else str(default_model_path()))


def read_texts(path: str, limit: int | None = None) -> list[str]:
    """Texts from a TSV with a header holding a 'text' column, or from a plain file, one a line.

    Blank texts are skipped (in a TSV, with a warning: its rows are counted); a file without
    any text is an error, not an empty list the caller would quietly replace with random inputs.
    """
    import warnings

    from .classify import read_tsv

    header, records = read_tsv(path)
    if "text" in header and len(header) > 1:
        column = header.index("text")
        rows = [fields[column] if column < len(fields) else "" for _, fields in records]
        texts = [t for t in rows if t.strip()]
        if len(texts) < len(rows):
            warnings.warn(f"{path}: skipped {len(rows) - len(texts)} rows with an empty text")
    else:
        # one text a line: tabs and quotes are part of the text
        texts = [line for line in _plain_lines(path) if line.strip()]
    if not texts:
        raise InputError(f"{path}: no texts in the file")
    return texts[:limit] if limit else texts


def _plain_lines(path: str) -> list[str]:
    from .fileio import first_bad_byte

    try:
        with open(path, encoding="utf-8-sig") as f:
            return [line.rstrip("\n") for line in f]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text ({first_bad_byte(path)})") from None


def _one_input(model, text, ids_text, seed):
    """The one input of explain / diff-runtimes: the text, the ids, or seeded random ids."""
    from .inputs import InputMaker

    maker = InputMaker(model)
    if text is not None:
        return maker.from_text(text)
    if ids_text is not None:
        return maker.from_ids(_parse_ids(ids_text))
    click.echo(f"input: random (seed {seed})")
    return maker.random(np.random.default_rng(seed))


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(tok) for tok in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"--ids takes whole numbers separated by spaces or commas, got '{text}'") from None


model_option = click.option("-m", "--model", "model_path", type=click.Path(dir_okay=False),
                            default=None, help="A .tflite file (default: the shipped model).")


def numerics_option(default_help: str = "litert-ref"):
    """--numerics: whose arithmetic the NumPy interpreter computes (numerics.py)."""
    from .numerics import PROFILES
    return click.option("--numerics", type=click.Choice(list(PROFILES)), default=None,
                        help="Numerics profile: litert-ref (LiteRT's reference kernels), tflm "
                        "(TensorFlow Lite Micro), xnnpack (LiteRT's default resolver), "
                        "xnnpack-aarch64 (the same on aarch64), builtin-aarch64 (LiteRT's optimized "
                        "builtin kernels on aarch64)"
                        f" [default: {default_help}].")


def input_set_options(default_random: int, ids: bool = True):
    """The options that choose what a command runs on: texts, a file of texts, token ids and
    seeded random inputs (shared by verify, lint and layer-error)."""
    options = [
        click.option("--text", "texts", multiple=True, help="A text to run (repeatable)."),
        click.option("--file", "texts_file", type=click.Path(dir_okay=False),
                     help="Texts: a TSV with a 'text' column, or one text per line."),
        click.option("--limit", type=click.IntRange(1, None), default=None,
                     help="Use at most N texts of --file."),
        click.option("--random", "n_random", type=click.IntRange(0, 100000), default=None,
                     help=f"N seeded random inputs (default {default_random} when no text or ids are "
                     f"given). {RANDOM_INPUTS_HELP}"),
        click.option("--seed", type=int, default=0, show_default=True),
    ]
    if ids:
        options.append(click.option("--ids", "ids_list", multiple=True,
                                    help="Token ids to run, e.g. '101 7592 102' (repeatable)."))

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="npmobilebert")
def main():
    """A glass box for quantized TFLite transformers."""


@main.command()
@model_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(model_path, as_json):
    """What a model holds: ops, parameters, quantization scheme, inputs/outputs, packed files."""
    import json

    from .info import format_info, model_info
    data = model_info(_load(model_path))
    click.echo(json.dumps(data, indent=2) if as_json else format_info(data))


@main.command()
@model_option
@click.argument("text", required=False)
@click.option("--ids", "ids_text", help="Token ids instead of text, e.g. '101 7592 102'.")
@click.option("-t", "--trace", "trace_level", count=True,
              help="Print every op (-t); with internals (-tt); with inputs and value samples (-ttt).")
@click.option("--save", "save_path", type=click.Path(dir_okay=False),
              help="Save every intermediate tensor, by name, to this .npz.")
@numerics_option()
def run(model_path, text, ids_text, trace_level, save_path, numerics):
    """Run the NumPy interpreter on one tweet (or token ids) and print the result."""
    from .dump import unique_keys
    from .fileio import check_writable, save_npz
    from .inputs import InputMaker, model_labels
    from .interpreter import Interpreter
    from .trace import make_tracer

    if (text is None) == (ids_text is None):
        raise InputError("give either TEXT or --ids")
    if save_path:
        check_writable(save_path, [_model_file(model_path)])   # now, not after the run
    model = _load(model_path)
    interp = Interpreter(model, numerics=numerics)   # checks the graph and sizes before any input
    maker = InputMaker(model)
    made = maker.from_ids(_parse_ids(ids_text)) if ids_text is not None else maker.from_text(text)
    if made.tokens:
        click.echo("tokens: " + " ".join(made.tokens))
    observer = make_tracer(trace_level, click.echo) if trace_level else None
    values = interp.run_all(made.arrays, observer=observer)
    if save_path:
        keys = unique_keys(model, values)   # tensors may share a name: each is saved, as dump does
        arrays = {keys[i]: v for i, v in values.items()}
        save_npz(save_path, arrays)
        click.echo(f"saved {len(arrays)} tensors to {save_path}")
    labels = model_labels(model)
    answers = []
    for i in model.outputs:
        out = values[i]
        click.echo(f"output {escape_text(model.tensors[i].name)}: {np.array2string(out, precision=4)}")
        if labels and out.ndim and out.shape[-1] == len(labels) and np.issubdtype(out.dtype, np.floating):
            z = out.reshape(-1).astype(np.float64)
            probs = np.exp(z - z.max())
            probs /= probs.sum()
            answers.append(_answer_line(labels[int(np.argmax(probs))], dict(zip(labels, probs)), text or ""))
    for line in answers:        # last: what the user came for, as classify prints it
        click.echo(line)


def _answer_line(label: str, probabilities: dict, text: str) -> str:
    """One text's label, class probabilities and (the start of) the text: classify's line."""
    shown = " ".join(text.split())
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return (f"{escape_text(label):<9} (" + ", ".join(f"{escape_text(k)} {v:.3f}" for k, v in probabilities.items()) + ")"
            + (f"  {shown}" if shown else ""))


@main.command()
@model_option
@click.option("--against", type=str, default="ref", metavar="ref|builtin|default|tflm|RUN.npz",
              show_default=True, help="LiteRT resolver: reference kernels, optimized builtin, or XNNPACK; "
              "tflm: TensorFlow Lite Micro (the tflite-micro package); "
              "or a dump made by 'npmobilebert dump' (e.g. on a device) to recompute from its stored inputs.")
@numerics_option("the profile of the runtime checked: ref -> litert-ref, tflm -> tflm, default -> xnnpack "
                 "(on aarch64 and for a dump made there: default -> xnnpack-aarch64, builtin -> "
                 "builtin-aarch64)")
@input_set_options(default_random=5)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@click.option("--runtime", type=click.Choice(["litert", "tflite-runtime"]), default="litert",
              show_default=True, help="The runtime to check: LiteRT in this Python, or tflite-runtime "
              "(e.g. 2.14, which needs numpy<2) in --runtime-python.")
@click.option("--runtime-python", type=click.Path(dir_okay=False), default=None,
              help="A Python that can import tflite_runtime (default: $NPMOBILEBERT_TFLITE_RUNTIME_PYTHON, "
              "else this one).")
@click.option("--overlay", "overlay_path", type=click.Path(dir_okay=False),
              help="Also write the largest difference (0: identical; the first divergence dark red) per op as Model Explorer node data (see 'npmobilebert view').")
def verify(model_path, against, numerics, n_random, texts, ids_list, texts_file, limit, seed, json_path,
           runtime, runtime_python, overlay_path=None):
    """Compare every tensor of the NumPy interpreter with LiteRT (or tflite-runtime) on the same inputs.

    Exit 0 when every tensor is identical (against 'ref' with litert-ref numerics, 'tflm' with
    tflm numerics), or when every label agrees (other pairs, whose arithmetic differs by design),
    or when the graph has no operators (nothing to compute: its outputs are its inputs or
    constants); 1 otherwise; 2 on bad input.
    """
    from .fileio import check_writable, save_json
    from .inputs import InputMaker
    from .interpreter import Interpreter
    from .runtime import make_runner, tflite_runtime_python
    from .verify import format_report, verify as run_verify

    from .numerics import profile_for_runtime

    if against not in ("ref", "builtin", "default", "tflm"):
        _verify_dump(model_path, against, numerics, json_path,
                     given=[n_random is not None, texts, ids_list, texts_file, runtime != "litert",
                            runtime_python], overlay_path=overlay_path)
    if json_path:
        # now, not after the comparison
        check_writable(json_path, [_model_file(model_path), texts_file])
    if overlay_path:
        from .overlay import check_path
        check_path(overlay_path, model_path or str(default_model_path()), texts_file)
    if against == "tflm" and runtime != "litert":
        raise InputError("--against tflm runs TensorFlow Lite Micro: --runtime does not apply")
    model = _load(model_path)
    # checks the graph and its sizes before any input is made
    interp = Interpreter(model, numerics=numerics or profile_for_runtime(against))
    maker = InputMaker(model)
    inputs = [s.arrays for s in _input_sets(maker, texts, ids_list, texts_file, limit, n_random, seed,
                                            default_random=5)]
    if not inputs:
        raise InputError("nothing to compare: give --random N, --text or --ids")
    if runtime_python and runtime != "tflite-runtime":
        raise InputError("--runtime-python goes with --runtime tflite-runtime")
    python = tflite_runtime_python(runtime_python) if runtime == "tflite-runtime" else None
    runner = make_runner("tflm" if against == "tflm" else runtime, model.path, resolver=against,
                         python=python)
    try:
        with _progressbar(length=len(inputs), label="verifying", file=sys.stderr,
                               show_pos=True) as bar:
            report = run_verify(model, interp, runner, inputs, against,
                                progress=lambda k: bar.update(1))
    finally:
        if hasattr(runner, "close"):
            runner.close()          # the tflite-runtime worker process
    click.echo(format_report(report, model))
    if json_path:
        save_json(json_path, report.to_json(model))
    _write_verify_overlay(overlay_path, model, report)
    sys.exit(0 if report.ok else 1)


def _write_verify_overlay(overlay_path, model, report):
    if overlay_path:
        from .overlay import verify_overlay, write
        write(overlay_path, verify_overlay(model, report))
        click.echo(f"overlay: {overlay_path}")


def _verify_dump(model_path, dump_path, numerics, json_path, given, overlay_path=None):
    """verify --against RUN.npz: recompute a dump's runs with the NumPy interpreter (dump.py)."""
    from .dump import verify_dump
    from .fileio import check_writable, save_json
    from .verify import format_report

    if not dump_path.endswith(".npz") and not os.path.isfile(dump_path):
        raise InputError(f"--against takes ref, builtin, default, tflm or a dump (.npz), got '{dump_path}'")
    if not os.path.isfile(dump_path):
        raise InputError(f"--against {dump_path}: no such file")
    if any(given):
        raise InputError("--against RUN.npz recomputes the dump's own inputs: --random, --text, --ids, "
                         "--file and --runtime do not apply")
    if json_path:
        check_writable(json_path, [_model_file(model_path), dump_path])
    if overlay_path:
        from .overlay import check_path
        check_path(overlay_path, model_path or str(default_model_path()), dump_path)
    model = _load(model_path)
    report = verify_dump(model, dump_path, numerics=numerics)
    click.echo(format_report(report, model))
    if json_path:
        save_json(json_path, report.to_json(model))
    _write_verify_overlay(overlay_path, model, report)
    sys.exit(0 if report.ok else 1)


@main.command()
@model_option
@click.option("--text", "texts", multiple=True, help="A text to run (repeatable; needs tokenizers).")
@click.option("--ids", "ids_list", multiple=True, help="Token ids to run, e.g. '101 7592 102' (repeatable).")
@click.option("--random", "n_random", type=click.IntRange(0, 100000), default=None,
              help=f"N runs on random inputs (default 1 when no --text/--ids is given). {RANDOM_INPUTS_HELP}")
@click.option("--resolver", type=click.Choice(["ref", "builtin", "default", "tflm"]), default="ref",
              show_default=True, help="LiteRT resolver: reference kernels, optimized builtin, or XNNPACK; "
              "tflm: TensorFlow Lite Micro instead of LiteRT (the tflite-micro package).")
@click.option("--threads", type=click.IntRange(1, 1024), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="The .npz to write (every tensor by name, the inputs, metadata).")
@click.option("--device", "device_spec", default=None, metavar="ARCH[:CPU[:LITERT]]",
              help="Run the dump on an emulated device set up by 'npmobilebert device setup', e.g. "
              "aarch64:cortex-a76 (cortex-a72, cortex-a76, neoverse-n1; LiteRT: the host's version "
              "when set up, else the newest set up). Texts are tokenized here, the ids sent.")
def dump(model_path, texts, ids_list, n_random, resolver, threads, seed, out_path, device_spec):
    """Run LiteRT and save every tensor of each run to an .npz (for 'verify --against RUN.npz').

    Made for a device with only LiteRT (or tflite-runtime) and numpy: with --ids or --random no
    tokenizer is loaded. Several runs go into one file under run0/, run1/, ... (see dump.py).
    """
    from .dump import dump_runs, parse_ids_list
    from .fileio import check_writable
    from .inputs import InputMaker

    check_writable(out_path, [_model_file(model_path)])
    _warn_if_threads_exceed_cores([threads])
    model = _load(model_path)
    maker = InputMaker(model)
    if device_spec is not None:
        _dump_on_device(device_spec, model, maker, texts, ids_list, n_random, resolver, threads, seed,
                        out_path)
    inputs = [maker.from_text(t).arrays for t in texts]
    inputs += [maker.from_ids(ids).arrays for ids in parse_ids_list(ids_list)]
    if n_random is None:
        n_random = 0 if inputs else 1
    rng = np.random.default_rng(seed)
    inputs += [maker.random(rng).arrays for _ in range(n_random)]
    if not inputs:
        raise InputError("nothing to dump: give --random N, --text or --ids")
    with _progressbar(length=len(inputs), label="dumping", file=sys.stderr, show_pos=True) as bar:
        meta = dump_runs(model.path, inputs, out_path, resolver=resolver, threads=threads, seed=seed,
                         progress=lambda k: bar.update(1))
    click.echo(f"dumped {meta['runs']} run(s), {len(meta['tensors'])} tensors each, of "
               f"{meta['model_file']} (sha256 {meta['model_sha256'][:12]}...) with {meta['runtime']}, "
               f"'{resolver}' resolver, to {out_path}")
    if meta.get("not_readable"):
        click.echo(f"not readable in the runtime: {len(meta['not_readable'])} tensors", err=True)


def _dump_on_device(spec, model, maker, texts, ids_list, n_random, resolver, threads, seed, out_path):
    """dump --device: the same dump, run by device.py inside the emulator; exits with its status."""
    from . import device

    arch, core, version = device.parse_device(spec)
    if resolver == "tflm":
        raise InputError("--device runs LiteRT: --resolver tflm does not apply")
    # the device has no tokenizer (docs/device.md's minimal install): texts go as their ids
    ids = [" ".join(map(str, _ids_of(maker, maker.from_text(t)))) for t in texts] + list(ids_list)
    args = ["-m", os.path.abspath(model.path), "--resolver", resolver, "--threads", str(threads),
            "--seed", str(seed), "--out", os.path.abspath(out_path)]
    for one in ids:
        args += ["--ids", one]
    if n_random is not None:
        args += ["--random", str(n_random)]
    status, seconds, version = device.run_dump(arch, core, version, args)
    if status < 0:          # the emulated process died of a signal: LiteRT (or qemu) crashed
        import signal
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        click.echo(f"error: the emulated dump crashed ({name}) on {arch} "
                   f"{core}, LiteRT {version}", err=True)
        sys.exit(1)
    if status == 0:
        click.echo(f"on {arch} {core} (qemu), LiteRT {version}: {seconds:.1f} s", err=True)
    sys.exit(status)


@main.group()
def device():
    """An emulated device: LiteRT's aarch64 wheels under qemu-user (see docs/device.md)."""


@device.command("setup")
@click.option("--arch", type=click.Choice(["aarch64"]), default="aarch64", show_default=True)
@click.option("--cpu", "core", type=click.Choice(["cortex-a72", "cortex-a76", "neoverse-n1"]),
              default="cortex-a76", show_default=True,
              help="The emulated core (Raspberry Pi 4: cortex-a72, Pi 5: cortex-a76).")
@click.option("--litert", "version", default=None,
              help="The ai-edge-litert version to install (default: the host's).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where the device lives (default: $NPMOBILEBERT_DEVICE_CACHE, else "
              "~/.cache/npmobilebert/device).")
def device_setup(arch, core, version, cache_dir):
    """Build (once; later calls reuse it) the emulated device: Debian's qemu-user-static and
    mmdebstrap (apt-get when missing), an arm64 Debian root with Python, aarch64 wheels of numpy and
    ai-edge-litert, an Arm /proc/cpuinfo of the core."""
    from . import device as dev

    state = dev.setup(arch, core, version, base=cache_dir, log=lambda m: click.echo(m, err=True))
    directory = dev.cache_dir(arch, cache_dir)
    click.echo(f"{arch} device ready in {directory}: {state['debian']}, qemu {state['qemu']}, "
               f"python {state['python']}, LiteRT {', '.join(state['litert'])}, cores "
               f"{', '.join(state['cores'])}; {state['bytes'] / 1e6:.0f} MB, set up in "
               f"{state['this_run_seconds']:.1f} s")
    spec = f"{arch}:{core}" + (f":{version}" if version else "")
    click.echo(f"next: npmobilebert dump --device {spec} --random 2 --out run.npz")


@main.command()
@click.option("-m", "--model", "models", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="A .tflite file (repeatable; default: the shipped model).")
@click.option("--engine", "engines", multiple=True, metavar="ENGINE",
              help="litert (XNNPACK), litert-builtin, litert-ref, numpy, numpy-trace, tflite-runtime "
              "(repeatable; default: litert, litert-ref, numpy).")
@click.option("--threads", "threads", multiple=True, type=click.IntRange(1, 1024),
              help="Thread count (repeatable; default 1).")
@click.option("--seq", type=click.IntRange(2, None), default=None,
              help="Length of the padded input set (default: the model's sequence length).")
@click.option("--runs", type=click.IntRange(1, None), default=20, show_default=True,
              help="Timed runs per input set.")
@click.option("--rounds", type=click.IntRange(1, None), default=1, show_default=True,
              help="Measure the whole grid this many times and report each cell's median round "
              "(a shared host's speed drifts).")
@click.option("--warmup", type=click.IntRange(0, None), default=3, show_default=True)
@click.option("--file", "texts_file", type=click.Path(dir_okay=False, exists=True),
              help="Tweets for the real-length set: a TSV with a 'text' column, or one a line "
              "(default: random lengths).")
@click.option("--batch", type=click.IntRange(1, None), default=8, show_default=True,
              help="Batch size for throughput where the model's batch dimension is free.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--runtime-python", type=click.Path(dir_okay=False), default=None,
              help="A Python with tflite_runtime for --engine tflite-runtime "
              "(default: $NPMOBILEBERT_TFLITE_RUNTIME_PYTHON, else this one).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw a PNG chart (needs matplotlib: the [plot] extra).")
@click.option("--per-op", "per_op", is_flag=True,
              help="Time each op of the NumPy interpreter instead (median over --runs, in this process).")
@click.option("--overlay", "overlay_path", type=click.Path(dir_okay=False),
              help="With --per-op: also write each op's time as Model Explorer node data.")
def bench(models, engines, threads, seq, runs, rounds, warmup, texts_file, batch, seed, runtime_python,
          json_path, plot_path, per_op=False, overlay_path=None):
    """Latency (p50/p90/p99), throughput, open time and peak memory per model x engine x threads.

    Each measurement runs in a fresh process, one after the other, so that medians are taken side
    by side and memory peaks do not mix. See bench.py. --per-op: the time of each op instead.
    """
    from .bench import ENGINES, format_results, plot, run_bench
    from .fileio import check_writable, pyplot, save_json

    if per_op or overlay_path:
        _bench_per_op(models, engines, threads, seq, runs, rounds, warmup, texts_file, seed, json_path,
                      plot_path, per_op, overlay_path)
        return

    for path in (json_path, plot_path):
        if path:
            check_writable(path, [*(models or [_model_file(None)]), texts_file])
    if plot_path:
        pyplot()                        # before minutes of measuring, not after them
    engines = list(engines) or ["litert", "litert-ref", "numpy"]
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise InputError(f"unknown engine '{bad[0]}': choose from {', '.join(ENGINES)}")
    models = [str(m) for m in models] or [str(default_model_path())]
    threads = list(threads) or [1]
    _warn_if_threads_exceed_cores(threads)
    texts = read_texts(texts_file) if texts_file else None
    total = len(models) * len(engines) * len(threads) * rounds

    def measure(progress):
        return run_bench(models, engines, threads, runs=runs, warmup=warmup, seq=seq, texts=texts, rounds=rounds,
                         seed=seed, batch=batch, tflite_runtime_python=runtime_python, progress=progress)

    if sys.stderr.isatty():
        with click.progressbar(length=total, label="bench", file=sys.stderr, show_pos=True,
                               item_show_func=lambda r: r and f"{r['model']} {r['engine']} x{r['threads']}") as bar:
            data = measure(lambda row: bar.update(1, row))
    else:
        # no terminal (a log, CI): click's bar would print its label once and then nothing for
        # minutes, so one line per measured cell
        done = 0

        def report(row):
            nonlocal done
            done += 1
            click.echo(_bench_progress_line(done, total, row), err=True)
        data = measure(report)
    click.echo(format_results(data))
    if json_path:
        save_json(json_path, data)
    if plot_path:
        plot(data, plot_path)
        click.echo(f"chart: {plot_path}")


def _bench_progress_line(done: int, total: int, row: dict) -> str:
    what = f"bench {done}/{total}: {row['model']} {row['engine']} x{row['threads']}"
    if row.get("status") != "ok":
        return f"{what}: {row.get('status')}"
    return f"{what}: p50 {row['p50_ms']:.3g} ms"


def _warn_if_threads_exceed_cores(threads: list[int]) -> None:
    """One line on stderr when a --threads value exceeds the cores this process may run on:
    the threads then take turns on a core and each waits for the slowest (4 threads on 2 cores
    ran 180x slower than 1 on a shared 2-core host)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and max(threads) > cores:
        click.echo(f"warning: --threads {max(threads)} is more than the {cores} core(s) this process can use: "
                   "the threads will wait on each other (often many times slower)", err=True)


def _bench_per_op(models, engines, threads, seq, runs, rounds, warmup, texts_file, seed, json_path, plot_path,
                  per_op, overlay_path):
    """bench --per-op: the median time of each op of the NumPy interpreter (bench.per_op_times)."""
    from .bench import LITERT_PER_OP_NOTE, format_per_op, per_op_times
    from .fileio import check_writable, save_json
    from .inputs import InputMaker
    from .interpreter import Interpreter

    if not per_op:
        raise InputError("--overlay goes with --per-op")
    if len(models) > 1 or engines or threads or rounds != 1 or plot_path or seq:
        raise InputError("--per-op times one model in the NumPy interpreter: -m once; --engine, --threads, "
                         "--rounds, --seq and --plot do not apply")
    if json_path:
        check_writable(json_path)
    if overlay_path:
        from .overlay import check_path
        check_path(overlay_path, models[0] if models else str(default_model_path()), texts_file)
    model = _load(models[0] if models else None)
    interp = Interpreter(model)
    maker = InputMaker(model)
    rng = np.random.default_rng(seed)
    made = [maker.from_text(t) for t in read_texts(texts_file, runs)] if texts_file else \
        [maker.random(rng) for _ in range(min(runs, 16))]
    seconds = per_op_times(interp, [m.arrays for m in made], runs=runs, warmup=warmup)
    click.echo(f"{model.path}: {len(model.operators)} ops, {runs} runs after {warmup} warm-up,"
               f" {len(made)} inputs ({'texts' if texts_file else 'random'})")
    click.echo(format_per_op(model, seconds))
    if json_path:
        save_json(json_path, {"model": model.path, "runs": runs, "warmup": warmup, "engine": "numpy-trace",
                              "litert": LITERT_PER_OP_NOTE,
                              "ops": [{"op": i, "opcode": model.operators[i].opcode, "median_us": t * 1e6}
                                      for i, t in sorted(seconds.items())]})
    if overlay_path:
        from .overlay import timing_overlay, write
        write(overlay_path, timing_overlay(model, {i: t * 1e6 for i, t in seconds.items()},
                                           f"NumPy interpreter time per op (us, median of {runs} runs)"))
        click.echo(f"overlay: {overlay_path}")


# -- explain, lint, layer-error (teaching and diagnosis) ------------------------------------------

def _input_sets(maker, texts, ids_list, texts_file, limit, n_random, seed, default_random=0):
    """Input sets from texts (given and from --file), id lists and N seeded random inputs;
    ``default_random`` of them when nothing else is given."""
    texts = list(texts) + (read_texts(texts_file, limit) if texts_file else [])
    sets = [maker.from_text(t) for t in texts] + [maker.from_ids(_parse_ids(s)) for s in ids_list]
    if n_random is None:
        n_random = 0 if sets else default_random
    rng = np.random.default_rng(seed)
    return sets + [maker.random(rng) for _ in range(n_random)]


def _parse_index(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(tok) for tok in text.replace(",", " ").split())
    except ValueError:
        raise InputError(f"--index takes whole numbers separated by commas, got '{text}'") from None


@main.command()
@model_option
@click.option("--op", "op_index", type=int, required=True, help="The op's index (as `run -t` numbers them).")
@click.option("--index", "index_text", help="The output element, e.g. 0,3,17 (default: largest |value|).")
@click.option("--text", help="The input text (default: seeded random token ids).")
@click.option("--ids", "ids_text", help="Token ids instead of text.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random input.")
@numerics_option()
def explain(model_path, op_index, index_text, text, ids_text, seed, numerics):
    """One output element of one op, computed step by step with the actual numbers.

    Exit 0 when the explanation reproduces the interpreter's element, 1 when it does not.
    """
    from .explain import explain as explain_element
    from .interpreter import Interpreter

    if text is not None and ids_text is not None:
        raise InputError("give --text or --ids, not both")
    model = _load(model_path)
    interp = Interpreter(model, numerics=numerics)
    if not 0 <= op_index < len(interp.plan):
        raise InputError(f"op {op_index} does not exist: the model has ops 0 to {len(interp.plan) - 1}")
    made = _one_input(model, text, ids_text, seed)
    if made.tokens:
        click.echo("tokens: " + " ".join(made.tokens))
    values = interp.run_all(made.arrays)
    result = explain_element(interp, values, op_index, _parse_index(index_text) if index_text else None)
    click.echo(result.text())
    sys.exit(0 if result.matches else 1)


@main.command("diff-runtimes")
@model_option
@click.option("--text", help="The input text (default: seeded random token ids).")
@click.option("--ids", "ids_text", help="Token ids instead of text.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random input.")
@click.option("--runtimes", "runtimes", default="litert-ref,tflm,xnnpack", show_default=True,
              help="Numerics profiles, comma-separated: the first is compared with each other one.")
def diff_runtimes_command(model_path, text, ids_text, seed, runtimes):
    """Where runtimes first diverge on this model and input, which rounding or lookup rule is
    responsible, and how the difference propagates to the output (numerics profiles)."""
    from .diff_runtimes import diff_runtimes, format_diff
    from .inputs import model_labels
    from .numerics import get_profile

    names = [n.strip() for n in runtimes.split(",") if n.strip()]
    for n in names:
        get_profile(n)                       # an unknown name is one line, exit 2
    if len(names) < 2:
        raise InputError("--runtimes needs at least two profiles, e.g. litert-ref,tflm")
    if text is not None and ids_text is not None:
        raise InputError("give --text or --ids, not both")
    model = _load(model_path)
    made = _one_input(model, text, ids_text, seed)
    labels = model_labels(model)
    for other in names[1:]:
        click.echo(format_diff(diff_runtimes(model, made.arrays, names[0], other), model, labels))


@main.command()
@model_option
@input_set_options(default_random=10)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@numerics_option()
@click.option("--overlay", "overlay_path", type=click.Path(dir_okay=False),
              help="Also write the findings (by severity) per op as Model Explorer node data (see 'npmobilebert view').")
def lint(model_path, texts, ids_list, texts_file, limit, n_random, seed, json_path, numerics, overlay_path=None):
    """Quantization health checks: saturation, collapsed softmax, few levels, weight zero points,
    per-channel scale spread, accumulator headroom. Exit 0 when clean, 1 on findings."""
    from .fileio import check_writable, save_json
    from .inputs import InputMaker
    from .interpreter import Interpreter
    from .lint import format_lint, lint_json, lint_model

    if json_path:
        check_writable(json_path, [_model_file(model_path), texts_file])
    if overlay_path:
        from .overlay import check_path
        check_path(overlay_path, model_path or str(default_model_path()), texts_file)
    model = _load(model_path)
    interp = Interpreter(model, numerics=numerics)
    sets = _input_sets(InputMaker(model), texts, ids_list, texts_file, limit, n_random, seed,
                       default_random=10)
    linter = lint_model(model, interp, [s.arrays for s in sets])
    click.echo(format_lint(model, linter, len(sets)))
    report = lint_json(model, linter, len(sets))
    if json_path:
        save_json(json_path, report)
    if overlay_path:
        from .overlay import lint_overlay, write
        write(overlay_path, lint_overlay(model, linter.findings() if linter.stats
                                         else [f for v in linter.static.values() for f in v]))
        click.echo(f"overlay: {overlay_path}")
    sys.exit(1 if report["findings"] else 0)


@main.command("layer-error")
@click.option("-m", "--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="The quantized .tflite (default: the shipped model).")
@click.option("--float", "float_path", type=click.Path(dir_okay=False), required=True,
              help="A float .tflite of the same network.")
@input_set_options(default_random=5, ids=False)
@click.option("--all", "all_tensors", is_flag=True, help="Also list shape ops (their error is their input's).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Also draw SQNR and cosine per op to this PNG (needs the [plot] extra: matplotlib).")
@numerics_option()
@click.option("--overlay", "overlay_path", type=click.Path(dir_okay=False),
              help="Also write the SQNR (dB) per op as Model Explorer node data (see 'npmobilebert view').")
@click.option("--overlay-cosine", "overlay_cosine_path", type=click.Path(dir_okay=False),
              help="Also write the cosine similarity per op as Model Explorer node data.")
def layer_error_command(model_path, float_path, texts, texts_file, limit, n_random, seed, all_tensors,
                        json_path, plot_path, numerics, overlay_path=None, overlay_cosine_path=None):
    """Per-layer error of a quantized model against a float model of the same network: SQNR,
    cosine similarity, max and mean |error| per matched tensor."""
    from .fileio import check_writable, pyplot, save_json
    from .inputs import InputMaker
    from .interpreter import Interpreter
    from .layer_error import check_same_network, format_report, layer_error, plot_report
    from .model import load_model

    for path in (json_path, plot_path):
        if path:
            check_writable(path, [_model_file(model_path), float_path, texts_file])
    for path in (overlay_path, overlay_cosine_path):
        if path:
            from .overlay import check_path
            check_path(path, model_path or str(default_model_path()), float_path, texts_file)
    if overlay_path and overlay_cosine_path and os.path.abspath(overlay_path) == os.path.abspath(overlay_cosine_path):
        raise InputError("--overlay and --overlay-cosine name the same file")
    if plot_path:
        pyplot()
    quant, floating = _load(model_path), load_model(float_path)
    check_same_network(quant, floating)
    q_interp, f_interp = Interpreter(quant, numerics=numerics), Interpreter(floating)
    q_maker, f_maker = InputMaker(quant), InputMaker(floating)
    q_sets = _input_sets(q_maker, texts, [], texts_file, limit, n_random, seed, default_random=5)
    if not q_sets:
        raise InputError("nothing to compare: give --random N, --text or --file")
    # the float model gets the same token ids (random ones included)
    f_sets = [f_maker.from_ids(_ids_of(q_maker, s)) if q_maker.is_bert else s for s in q_sets]
    with _progressbar(length=len(q_sets), label="running both models", file=sys.stderr,
                           show_pos=True) as bar:
        report = layer_error(quant, floating, q_interp, f_interp, [s.arrays for s in q_sets],
                             [s.arrays for s in f_sets], progress=lambda k: bar.update(1))
    click.echo(format_report(report, all_tensors))
    if json_path:
        save_json(json_path, report.to_json())
    if plot_path:
        plot_report(report, plot_path)
        click.echo(f"plot: {plot_path}")
    if overlay_path or overlay_cosine_path:
        from .overlay import layer_error_overlays, write
        for path, data in zip((overlay_path, overlay_cosine_path), layer_error_overlays(quant, report)):
            if path:
                write(path, data)
                click.echo(f"overlay: {path}")


# -- view: Model Explorer --------------------------------------------------------------------------

@main.command()
@model_option
@click.option("--overlay", "overlays", multiple=True, type=click.Path(dir_okay=False),
              help="A node-data file written by --overlay of verify, layer-error, lint or bench (repeatable).")
@click.option("--host", default="localhost", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port of the server (8080: the first free one from 8080 on, as Model Explorer does).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser: print the URL to open.")
def view(model_path, overlays, host, port, no_browser):
    """Open the model in Google's Model Explorer with these overlays (the [view] extra).

    The server runs until Ctrl+C. Without --no-browser, a browser opens where there is a display;
    otherwise the URL to open is printed.
    """
    from .overlay import validate

    try:
        import model_explorer
    except ImportError:
        raise InputError("Model Explorer is not installed: pip install 'npmobilebert[view]'"
                         " (or pip install ai-edge-model-explorer)") from None
    path = str(model_path) if model_path else str(default_model_path())
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such model file")
    _load(path)                                  # a bad model is one line here, not in the web app
    for f in overlays:
        validate(f)
    if port != 8080:                             # 8080: Model Explorer looks for a free port itself
        import socket
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                raise InputError(f"port {port} on {host} is in use: choose another --port")
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                          or os.environ.get("WAYLAND_DISPLAY"))
    if no_browser or headless:
        click.echo("open the URL printed below in a browser (or on another machine: ssh -L PORT:localhost:PORT)")
    config = model_explorer.config().add_model_from_path(path)
    for f in overlays:
        config.add_node_data_from_path(f)
    model_explorer.visualize_from_config(config, host=host, port=port,
                                         no_open_in_browser=no_browser or headless)


# -- eval, classify (the tweet polarity application) ----------------------------------------------

engine_option = click.option("--engine", type=click.Choice(["litert", "litert-ref", "numpy"]), default="litert",
                             show_default=True,
                             help="litert: LiteRT with XNNPACK; litert-ref: LiteRT's reference kernels; numpy: "
                             "our interpreter. Each runs a worker process per core on large inputs.")


@main.command("eval")
@click.option("-m", "--model", "models", multiple=True, type=click.Path(dir_okay=False),
              help="A .tflite file (repeatable: models side by side; default: the shipped model).")
@click.argument("data", type=click.Path(dir_okay=False))
@engine_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the metrics as JSON (one object per model; a list when several).")
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Use the first N rows only.")
@click.option("--processes", type=click.IntRange(1, 1024), default=None,
              help="Worker processes, any engine (default: one per core on large files).")
def eval_command(models, data, engine, json_path, limit, processes):
    """Accuracy, macro-F1, per-class precision/recall/F1 and confusion matrix on a labelled TSV.

    DATA: a TSV whose header names at least 'label' and 'text' (other columns are ignored);
    labels are matched to the model's own (negative / neutral / positive) ignoring case.
    """
    from .classify import check_model_labels, evaluate, read_labelled_tsv
    from .fileio import check_writable, save_json
    from .metrics import format_reports

    if json_path:
        check_writable(json_path, [*(models or [_model_file(None)]), data])
    if not os.path.isfile(data):
        raise InputError(f"{data}: no such file")
    for m in models:
        if not os.path.exists(m):       # anything else that is not a model: load_model says what
            raise InputError(f"{m}: no such model file")
    rows = read_labelled_tsv(data, limit)
    paths = [str(m) for m in models] or [str(default_model_path())]
    for path in paths:
        check_model_labels(path, rows, data)    # every model, before the first run
    reports = []
    for path in paths:
        with _progressbar(length=len(rows), label=f"eval {Path(path).name}", file=sys.stderr,
                               show_pos=True) as bar:
            reports.append(evaluate(path, rows, data, engine, processes, progress=bar.update))
    names = [Path(p).name for p in paths]
    if len(set(names)) < len(names):
        names = paths
    click.echo(f"{data}: {len(rows):,} rows, engine {engine}")
    click.echo(format_reports(reports, names))
    for r, name in zip(reports, names):
        note = f", {r['truncated']} texts truncated to the sequence length" if r["truncated"] else ""
        click.echo(f"{name}: {r['seconds']:.1f} s ({r['n'] / max(r['seconds'], 1e-9):.0f} texts/s, "
                   f"{r['processes']} process(es){note})")
    if json_path:
        save_json(json_path, reports[0] if len(reports) == 1 else reports)


@main.command()
@model_option
@click.argument("texts", nargs=-1)
@click.option("--file", "texts_file", type=click.Path(dir_okay=False),
              help="Texts: a TSV with a 'text' column, or one text per line.")
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Use at most N texts of --file.")
@engine_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per text) instead of text.")
def classify(model_path, texts, texts_file, limit, engine, as_json):
    """The label and class probabilities (softmax of the logits) of each text.

    A text the model is unlikely to read well gets a warning line under its answer (a "warning"
    field in --json, null otherwise): more than half of its word pieces are [UNK] (emoji or symbols
    the vocabulary lacks), more than half of its letters are not Latin, or more than half of its
    lower-case words (3 or more; names and hashtags aside) are not words of the vocabulary: it looks
    like another language, and the model reads English only. A cheap check: Latin-script languages whose words the vocabulary
    has (Spanish, French) often pass it. The label is the model's answer either way.
    """
    import json

    from .classify import check_classifier, predict, reading_warnings

    if texts and texts_file:
        raise InputError("give TEXT... or --file, not both")
    texts = list(texts) if texts else (read_texts(texts_file, limit) if texts_file else [])
    if not texts:
        raise InputError("nothing to classify: give TEXT... or --file F")
    for k, t in enumerate(texts):
        if not t.strip():
            raise InputError(f"text {k + 1} is empty")
    path = str(model_path) if model_path else str(default_model_path())
    if not os.path.exists(path):        # anything else that is not a model: load_model says what
        raise InputError(f"{path}: no such model file")
    check_classifier(path)
    with _progressbar(length=len(texts), label="classifying", file=sys.stderr, show_pos=True) as bar:
        preds = predict(path, texts, engine, progress=bar.update)
    probs = preds.probabilities
    warnings_ = reading_warnings(path, texts)
    results = [{"text": t, "label": label, "probabilities": dict(zip(preds.labels, map(float, p))),
                "logits": [float(v) for v in z], "warning": w}
               for t, label, p, z, w in zip(texts, preds.predicted, probs, preds.logits, warnings_)]
    if as_json:
        click.echo(json.dumps(results if len(results) > 1 or texts_file else results[0], indent=2,
                              ensure_ascii=False))
        return
    for r in results:
        click.echo(_answer_line(r["label"], r["probabilities"], r["text"]))
        if r["warning"]:
            click.echo(f"  warning: {r['warning']}")
    if preds.truncated:
        click.echo(f"warning: {preds.truncated} text(s) truncated to the model's sequence length", err=True)


def _ids_of(maker, made) -> list[int]:
    ids = made.arrays[maker.roles.index("ids")]
    return ids.reshape(-1, maker.seq_len)[0, :made.length].tolist()


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {escape_text(message)}", err=True)


def entry():
    """Console entry point: package errors are one line and exit 2."""
    import warnings

    warnings.showwarning = _one_line_warning
    try:
        main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        # one line like any other bad input (click's own is three: usage, a hint, the error)
        if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
            e.show()                    # `npmobilebert` alone: the help
        else:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            click.echo(f"error: {escape_text(e.format_message())}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"Error: {escape_text(e.format_message())}", err=True)
        sys.exit(2 if e.exit_code == 2 else e.exit_code)
    except (NpMobileBertError, OSError) as e:
        # escape_text: the last-resort guard; an OSError quotes a file name, which may hold anything
        click.echo(f"error: {escape_text(e)}", err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - the last resort: a bug, still one line
        # Bad input is reported above; anything else is a bug in npmobilebert.  It is one line
        # too (with exit status 3, to tell it apart); NPMOBILEBERT_TRACEBACK=1 shows the traceback.
        if os.environ.get("NPMOBILEBERT_TRACEBACK"):
            raise
        detail = escape_text(" ".join(str(e).split()))
        click.echo(f"error: internal error, please report it: {type(e).__name__}: {detail}", err=True)
        sys.exit(3)


if __name__ == "__main__":
    entry()
