"""Measure the scheme x runtime matrix: how far each runtime agrees with the NumPy interpreter.

For each model (one quantization scheme each) and each runtime/resolver the same random inputs
go through the NumPy interpreter and the runtime; every tensor is compared (compare.py: bit for
bit), and the final labels (argmax of the logits).  Every engine is also compared with every
other (runtime/version pairs).  Prints Markdown tables, writes JSON, and can replace the tables
in a Markdown file between ``<!-- scheme-matrix:begin -->`` and ``<!-- scheme-matrix:end -->``.

  python tools/scheme_matrix.py --json docs/schemes.json --update docs/schemes.md \\
      --tflite-runtime-python /path/to/venv-tfrt/bin/python \\
      --big /work/models_big            # also the full-size mobilebert_<scheme>.tflite there

Columns: LiteRT (ai-edge-litert, this Python) with the ``ref`` (BUILTIN_REF), ``builtin``
(optimized kernels, no delegate) and ``default`` (AUTO: XNNPACK) resolvers; tflite-runtime (e.g.
2.14.0, another Python: $NPMOBILEBERT_TFLITE_RUNTIME_PYTHON or --tflite-runtime-python) with
``ref`` and ``builtin`` (its ``default`` is ``builtin`` when every tensor is kept).  No TensorFlow.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SCHEMES = ("int8", "int8-per-tensor", "dynamic", "16x8", "float32", "float16")
TINY = [f"tiny_{s}.tflite" for s in SCHEMES] + [f"tiny_{s}_tf215.tflite" for s in ("int8", "dynamic", "16x8")]
# (column key, runtime, resolver)
COLUMNS = [("litert-ref", "litert", "ref"), ("litert-builtin", "litert", "builtin"),
           ("litert-default", "litert", "default"), ("tfrt-ref", "tflite-runtime", "ref"),
           ("tfrt-builtin", "tflite-runtime", "builtin")]
BEGIN, END = "<!-- scheme-matrix:begin -->", "<!-- scheme-matrix:end -->"


def _scheme_of(path: Path) -> str:
    stem = path.stem
    for prefix in ("tiny_", "mobilebert_"):
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
    return stem


def measure_model(path: Path, n_inputs: int, tfrt_python: str | None, seed: int = 0,
                  log=sys.stderr) -> dict:
    from npmobilebert.compare import compare_runs
    from npmobilebert.inputs import InputMaker
    from npmobilebert.interpreter import Interpreter
    from npmobilebert.model import load_model
    from npmobilebert.runtime import LiteRTRunner, SubprocessRunner

    model = load_model(str(path))
    interp, maker = Interpreter(model), InputMaker(model)
    produced = sorted({i for op in model.operators for i in op.outputs} | set(model.inputs))
    runners, cells = {}, {}
    for key, runtime, resolver in COLUMNS:
        try:
            if runtime == "litert":
                runners[key] = LiteRTRunner(str(path), resolver=resolver)
            elif tfrt_python:
                runners[key] = SubprocessRunner(tfrt_python, str(path), resolver=resolver)
            else:
                cells[key] = {"status": "not measured", "error": "no tflite-runtime Python given"}
                continue
            cells[key] = {"status": "ok", "runtime": runners[key].name, "inputs": 0,
                          "tensors_compared": 0, "tensors_identical": 0, "outputs_identical": 0,
                          "labels_agree": 0, "first_divergence": None, "max_diff_by_op": {}}
        except Exception as e:  # noqa: BLE001 - a runtime that cannot load the model is a finding
            cells[key] = {"status": "cannot load", "error": str(e)}
    engines = ["numpy"] + list(runners)
    pairs = {f"{a} | {b}": {"tensors_compared": 0, "tensors_identical": 0, "labels_agree": 0,
                             "outputs_identical": 0, "inputs": 0}
             for a, b in itertools.combinations(engines, 2)}
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for k in range(n_inputs):
        arrays = maker.random(rng).arrays
        values = {"numpy": interp.run_all(arrays)}
        for key, runner in runners.items():
            values[key] = runner.run_all(arrays)
        for key in runners:
            cmp = compare_runs(model, values["numpy"], values[key])
            cell = cells[key]
            cell["inputs"] += 1
            cell["tensors_compared"] += cmp.compared
            cell["tensors_identical"] += cmp.identical
            for op, d in cmp.max_diff_by_op.items():
                cell["max_diff_by_op"][op] = max(d, cell["max_diff_by_op"].get(op, 0))
            first = cmp.first_divergence
            if first is not None and cell["first_divergence"] is None:
                cell["first_divergence"] = {"input": k, "op_index": first.op_index,
                                            "op_type": first.op_type, "tensor": first.name,
                                            "mismatched": first.mismatched, "size": first.size,
                                            "max_diff": first.max_diff, "pattern": first.pattern}
        for a, b in itertools.combinations(engines, 2):
            pair = pairs[f"{a} | {b}"]
            pair["inputs"] += 1
            for i in produced:
                if i in values[a] and i in values[b]:
                    pair["tensors_compared"] += 1
                    pair["tensors_identical"] += int(np.array_equal(values[a][i], values[b][i]))
            outs = [(values[a][i], values[b][i]) for i in model.outputs]
            pair["outputs_identical"] += int(all(np.array_equal(x, y) for x, y in outs))
            pair["labels_agree"] += int(all(np.array_equal(np.argmax(x, -1), np.argmax(y, -1))
                                            for x, y in outs))
            if a == "numpy":
                cells[b]["outputs_identical"] = pair["outputs_identical"]
                cells[b]["labels_agree"] = pair["labels_agree"]
        del values
        print(f"  {path.name}: input {k + 1}/{n_inputs} ({time.perf_counter() - t0:.0f} s)", file=log)
    for runner in runners.values():
        if hasattr(runner, "close"):
            runner.close()
    shown = os.path.relpath(path, REPO) if Path(path).resolve().is_relative_to(REPO) else str(path)
    return {"model": shown, "scheme": _scheme_of(path), "inputs": n_inputs,
            "tensors": len(produced), "cells": cells, "pairs": pairs}


def _pct(identical: int, compared: int) -> str:
    if not compared:
        return "-"
    p = 100.0 * identical / compared
    return "100%" if identical == compared else f"{min(p, 99.9):.1f}%"


def format_cell(cell: dict) -> str:
    if cell["status"] == "cannot load":
        err = cell["error"]
        if "version '" in err:
            op = err.split("opcode '")[1].split("'")[0] if "opcode '" in err else "op"
            ver = err.split("version '")[1].split("'")[0]
            return f"cannot load ({op} v{ver})"
        return "cannot load"
    if cell["status"] != "ok":
        return "n/m"
    text = (f"{_pct(cell['tensors_identical'], cell['tensors_compared'])}, "
            f"labels {cell['labels_agree']}/{cell['inputs']}")
    first = cell["first_divergence"]
    if first is not None:
        text += f"; 1st: {first['op_type']} ({first['max_diff']})"
    return text


def markdown(results: list[dict], title: str) -> str:
    names = {"litert-ref": "LiteRT ref", "litert-builtin": "LiteRT builtin",
             "litert-default": "LiteRT default (XNNPACK)", "tfrt-ref": "tflite-runtime ref",
             "tfrt-builtin": "tflite-runtime builtin"}
    versions = {}
    for r in results:
        for key, cell in r["cells"].items():
            if cell.get("runtime"):
                versions[key] = cell["runtime"]
    head = [f"{names[k]}" + (f" ({versions[k].split(' ', 1)[1]})" if k in versions else "")
            for k, _, _ in COLUMNS]
    lines = [f"**{title}**", "",
             "| model | tensors x inputs | " + " | ".join(head) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for r in results:
        lines.append(f"| `{Path(r['model']).name}` | {r['tensors']} x {r['inputs']} | "
                     + " | ".join(format_cell(r["cells"][k]) for k, _, _ in COLUMNS) + " |")
    return "\n".join(lines)


# the runtime-against-runtime pairs the tables show (the JSON has every pair)
PAIRS = [("litert-ref", "tfrt-ref"), ("litert-builtin", "tfrt-builtin"), ("tfrt-ref", "tfrt-builtin"),
         ("litert-ref", "litert-builtin"), ("litert-builtin", "litert-default")]
SHORT = {"numpy": "NumPy", "litert-ref": "LiteRT ref", "litert-builtin": "LiteRT builtin",
         "litert-default": "LiteRT XNNPACK", "tfrt-ref": "TFRT ref", "tfrt-builtin": "TFRT builtin"}


def pairs_markdown(results: list[dict], title: str) -> str:
    """Which runtimes agree with which: tensors identical %, inputs whose labels agree."""
    lines = [f"**{title}**", "",
             "| model | " + " | ".join(f"{SHORT[a]} vs {SHORT[b]}" for a, b in PAIRS) + " |",
             "|---|" + "---|" * len(PAIRS)]
    for r in results:
        row = []
        for a, b in PAIRS:
            p = r["pairs"].get(f"{a} | {b}")
            row.append("-" if p is None else
                       f"{_pct(p['tensors_identical'], p['tensors_compared'])}, "
                       f"labels {p['labels_agree']}/{p['inputs']}")
        lines.append(f"| `{Path(r['model']).name}` | " + " | ".join(row) + " |")
    return "\n".join(lines)


def update_markdown(path: Path, block: str) -> None:
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + BEGIN + "\n" + block + "\n" + END + tail, encoding="utf-8")


def main(argv=None) -> int:
    from npmobilebert.errors import NpMobileBertError
    from npmobilebert.runtime import tflite_runtime_python

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--tiny-inputs", type=int, default=10, help="random inputs per tiny fixture")
    ap.add_argument("--big", help="a folder with the full-size mobilebert_<scheme>.tflite")
    ap.add_argument("--big-inputs", type=int, default=5, help="random inputs per full-size model")
    ap.add_argument("--tflite-runtime-python", help="a Python with tflite-runtime (numpy<2)")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--update", help="replace the tables between the scheme-matrix markers here")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    try:
        tfrt = tflite_runtime_python(a.tflite_runtime_python)
    except NpMobileBertError as e:
        print(f"tflite-runtime columns skipped: {e}", file=sys.stderr)
        tfrt = None
    tiny = [measure_model(FIXTURES / name, a.tiny_inputs, tfrt, a.seed) for name in TINY]
    blocks = [markdown(tiny, f"Tiny fixtures (tests/fixtures, 2 layers, seq 16), {a.tiny_inputs} random inputs each"),
              pairs_markdown(tiny, "Tiny fixtures: runtime against runtime")]
    big = []
    if a.big:
        for scheme in SCHEMES:
            path = Path(a.big) / f"mobilebert_{scheme}.tflite"
            if path.exists():
                big.append(measure_model(path, a.big_inputs, tfrt, a.seed))
        blocks += [markdown(big, f"Full-size models (24 layers, seq 128), {a.big_inputs} random inputs each"),
                   pairs_markdown(big, "Full-size models: runtime against runtime")]
    block = "\n\n".join(blocks)
    print(block)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"tiny": tiny, "big": big, "python": sys.version.split()[0],
                       "numpy": np.__version__}, f, indent=1)
            f.write("\n")
    if a.update:
        update_markdown(Path(a.update), block)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
