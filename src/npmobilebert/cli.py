"""The command line: ``npmobilebert info | run | verify``.

Formatting lives here and in trace.py / verify.py; kernels never print. Every error the package
raises on bad input becomes one line on stderr and exit status 2 -- never a traceback.
"""

from __future__ import annotations

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
    """Texts from a TSV with a header holding a 'text' column, or from a plain file, one a line."""
    import csv

    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
            f.seek(0)
            if "\t" in first and "text" in first.rstrip("\n").split("\t"):
                texts = [row["text"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
            else:
                texts = [line.rstrip("\n") for line in f if line.strip()]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    return texts[:limit] if limit else texts


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
    from .fileio import save_npz
    from .inputs import InputMaker, model_metadata
    from .interpreter import Interpreter
    from .trace import make_tracer

    if (text is None) == (ids_text is None):
        raise InputError("give either TEXT or --ids")
    model = _load(model_path)
    maker = InputMaker(model)
    made = maker.from_ids(_parse_ids(ids_text)) if ids_text is not None else maker.from_text(text)
    if made.tokens:
        click.echo("tokens: " + " ".join(made.tokens))
    interp = Interpreter(model)
    observer = make_tracer(trace_level, click.echo) if trace_level else None
    values = interp.run_all(made.arrays, observer=observer)
    if save_path:
        arrays = {model.tensors[i].name: v for i, v in values.items()}
        save_npz(save_path, arrays)
        click.echo(f"saved {len(arrays)} tensors to {save_path}")
    labels = model_metadata(model).get("labels")
    for i in model.outputs:
        out = values[i]
        click.echo(f"output {model.tensors[i].name}: {np.array2string(out, precision=4)}")
        if labels and out.shape[-1] == len(labels) and np.issubdtype(out.dtype, np.floating):
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
def verify(model_path, against, n_random, texts, ids_list, texts_file, limit, seed, json_path):
    """Compare every tensor of the NumPy interpreter with LiteRT on the same inputs.

    Exit 0 when every tensor is identical (against 'ref'), or when every label agrees (against
    'builtin'/'default', whose arithmetic differs by design); 1 otherwise; 2 on bad input.
    """
    from .fileio import save_json
    from .inputs import InputMaker
    from .interpreter import Interpreter
    from .runtime import LiteRTRunner
    from .verify import format_report, verify as run_verify

    model = _load(model_path)
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
    interp = Interpreter(model)
    runner = LiteRTRunner(model.path, resolver=against)
    with click.progressbar(length=len(inputs), label="verifying", file=sys.stderr,
                           show_pos=True) as bar:
        report = run_verify(model, interp, runner, inputs, against,
                            progress=lambda k: bar.update(1))
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
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if e.exit_code == 2 else e.exit_code)
    except (NpMobileBertError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    entry()
