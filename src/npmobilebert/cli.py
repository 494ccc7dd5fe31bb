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

from .errors import InputError, NpMobileBertError

DEFAULT_MODEL_NAME = "mobilebert_int8.tflite"


def default_model_path() -> Path:
    """The shipped default model: models/ of a source checkout (the README's main job)."""
    candidates = [Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME,
                  Path.cwd() / "models" / DEFAULT_MODEL_NAME]
    for path in candidates:
        if path.exists():
            return path
    raise InputError(f"no default model found (looked for models/{DEFAULT_MODEL_NAME}); pass -m MODEL")


def _load(model_path: str | None):
    from .model import load_model
    return load_model(str(model_path) if model_path else str(default_model_path()))


def read_texts(path: str, limit: int | None = None) -> list[str]:
    """Texts from a TSV with a header holding a 'text' column, or from a plain file, one a line.

    Blank texts are skipped (in a TSV, with a warning: its rows are counted).
    """
    import csv
    import warnings

    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
            f.seek(0)
            if "\t" in first and "text" in first.rstrip("\n").split("\t"):
                rows = [row["text"] or "" for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
                texts = [t for t in rows if t.strip()]
                if len(texts) < len(rows):
                    warnings.warn(f"{path}: skipped {len(rows) - len(texts)} rows with an empty text")
            else:
                texts = [line.rstrip("\n") for line in f if line.strip()]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text ({_first_bad_byte(path)})") from None
    except csv.Error as e:
        raise InputError(f"{path}: not a readable TSV ({e})") from None
    return texts[:limit] if limit else texts


def _first_bad_byte(path: str) -> str:
    """Where a file stops being UTF-8 (the decoder's own offsets are relative to a read block)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return f"byte 0x{raw[e.start]:02x} on line {line}"
    return "undecodable bytes"


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(tok) for tok in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"--ids takes whole numbers separated by spaces or commas, got '{text}'") from None


model_option = click.option("-m", "--model", "model_path", type=click.Path(dir_okay=False),
                            default=None, help="A .tflite file (default: the shipped model).")


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
def run(model_path, text, ids_text, trace_level, save_path):
    """Run the NumPy interpreter on one tweet (or token ids) and print the result."""
    from .fileio import check_writable, save_npz
    from .inputs import InputMaker, model_labels
    from .interpreter import Interpreter
    from .trace import make_tracer

    if (text is None) == (ids_text is None):
        raise InputError("give either TEXT or --ids")
    if save_path:
        check_writable(save_path)   # now, not after the run
    model = _load(model_path)
    interp = Interpreter(model)     # checks the graph and its sizes before any input is made
    maker = InputMaker(model)
    made = maker.from_ids(_parse_ids(ids_text)) if ids_text is not None else maker.from_text(text)
    if made.tokens:
        click.echo("tokens: " + " ".join(made.tokens))
    observer = make_tracer(trace_level, click.echo) if trace_level else None
    values = interp.run_all(made.arrays, observer=observer)
    if save_path:
        arrays = {model.tensors[i].name: v for i, v in values.items()}
        save_npz(save_path, arrays)
        click.echo(f"saved {len(arrays)} tensors to {save_path}")
    labels = model_labels(model)
    for i in model.outputs:
        out = values[i]
        click.echo(f"output {model.tensors[i].name}: {np.array2string(out, precision=4)}")
        if labels and out.ndim and out.shape[-1] == len(labels) and np.issubdtype(out.dtype, np.floating):
            z = out.reshape(-1).astype(np.float64)
            probs = np.exp(z - z.max())
            probs /= probs.sum()
            click.echo("label: " + labels[int(np.argmax(probs))] + "  (" + ", ".join(
                f"{name} {p:.3f}" for name, p in zip(labels, probs)) + ")")


@main.command()
@model_option
@click.option("--against", type=click.Choice(["ref", "builtin", "default"]), default="ref",
              show_default=True, help="LiteRT resolver: reference kernels, optimized builtin, or XNNPACK.")
@click.option("--random", "n_random", type=click.IntRange(0, 100000), default=None,
              help="Compare on N random inputs (default 5 when no --text/--ids is given).")
@click.option("--text", "texts", multiple=True, help="A text to compare on (repeatable).")
@click.option("--ids", "ids_list", multiple=True, help="Token ids to compare on (repeatable).")
@click.option("--file", "texts_file", type=click.Path(dir_okay=False),
              help="Texts to compare on: a TSV with a 'text' column, or one text per line.")
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Use at most N texts of --file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@click.option("--runtime", type=click.Choice(["litert", "tflite-runtime"]), default="litert",
              show_default=True, help="The runtime to check: LiteRT in this Python, or tflite-runtime "
              "(e.g. 2.14, which needs numpy<2) in --runtime-python.")
@click.option("--runtime-python", type=click.Path(dir_okay=False), default=None,
              help="A Python that can import tflite_runtime (default: $NPMOBILEBERT_TFLITE_RUNTIME_PYTHON, "
              "else this one).")
def verify(model_path, against, n_random, texts, ids_list, texts_file, limit, seed, json_path,
           runtime, runtime_python):
    """Compare every tensor of the NumPy interpreter with LiteRT (or tflite-runtime) on the same inputs.

    Exit 0 when every tensor is identical (against 'ref'), or when every label agrees (against
    'builtin'/'default', whose arithmetic differs by design); 1 otherwise; 2 on bad input.
    """
    from .fileio import check_writable, save_json
    from .inputs import InputMaker
    from .interpreter import Interpreter
    from .runtime import make_runner, tflite_runtime_python
    from .verify import format_report, verify as run_verify

    if json_path:
        check_writable(json_path)   # now, not after the comparison
    model = _load(model_path)
    interp = Interpreter(model)     # checks the graph and its sizes before any input is made
    maker = InputMaker(model)
    texts = list(texts) + (read_texts(texts_file, limit) if texts_file else [])
    inputs = [maker.from_text(t).arrays for t in texts]
    inputs += [maker.from_ids(_parse_ids(s)).arrays for s in ids_list]
    if n_random is None:
        n_random = 0 if inputs else 5
    rng = np.random.default_rng(seed)
    inputs += [maker.random(rng).arrays for _ in range(n_random)]
    if not inputs:
        raise InputError("nothing to compare: give --random N, --text or --ids")
    if runtime_python and runtime != "tflite-runtime":
        raise InputError("--runtime-python goes with --runtime tflite-runtime")
    python = tflite_runtime_python(runtime_python) if runtime == "tflite-runtime" else None
    runner = make_runner(runtime, model.path, resolver=against, python=python)
    try:
        with click.progressbar(length=len(inputs), label="verifying", file=sys.stderr,
                               show_pos=True) as bar:
            report = run_verify(model, interp, runner, inputs, against,
                                progress=lambda k: bar.update(1))
    finally:
        if hasattr(runner, "close"):
            runner.close()          # the tflite-runtime worker process
    click.echo(format_report(report, model))
    if json_path:
        save_json(json_path, report.to_json(model))
    ok = report.identical if against == "ref" else report.labels_agree == report.inputs
    sys.exit(0 if ok else 1)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


def entry():
    """Console entry point: package errors are one line and exit 2."""
    import warnings

    warnings.showwarning = _one_line_warning
    try:
        main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if e.exit_code == 2 else e.exit_code)
    except (NpMobileBertError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - the last resort: a bug, still one line
        # Bad input is reported above; anything else is a bug in npmobilebert.  It is one line
        # too (with exit status 3, to tell it apart); NPMOBILEBERT_TRACEBACK=1 shows the traceback.
        if os.environ.get("NPMOBILEBERT_TRACEBACK"):
            raise
        detail = " ".join(str(e).split())
        click.echo(f"error: internal error, please report it: {type(e).__name__}: {detail}", err=True)
        sys.exit(3)


if __name__ == "__main__":
    entry()
