"""Which numerics rule makes LiteRT's default resolver change labels, over a whole dataset?

`diff-runtimes` explains one input. This runs every text of a TSV (a `text` column; other columns
ignored) through the NumPy interpreter under the `litert-ref` profile (bit-identical to LiteRT's
reference kernels), the `xnnpack` profile (bit-identical to LiteRT's default resolver, see
docs/numerics.md) and, for every rule step, two mixed profiles:

  ref+STEP   the reference with only STEP switched to XNNPACK's rule: the flips that rule alone causes
  xnn-STEP   XNNPACK with only STEP switched back: the flips left if XNNPACK did STEP as the reference

and prints, for each, how many labels differ from the reference's and how many logit vectors are
identical. Labels are the argmax of the raw outputs (what `classify` reports).

With ``--elements N`` it also runs the first N texts through the reference once more and, at
every op, the XNNPACK rule on the very same inputs: the output elements each op type computes
differently by itself (what a label flip starts from), not inherited from earlier ops.

    python tools/split_replab.py --out-dir /tmp/replab          # the dev split, outside the repo
    python tools/agreement_by_rule.py models/mobilebert_int8.tflite /tmp/replab/dev.tsv \\
        --json docs/agreement_by_rule.json --elements 100

One worker process per core, one profile each: ~30 s per profile for 3,682 tweets on the shipped
model (6 layers, seq 64).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from npmobilebert.classify import SINGLE_THREADED_BLAS, _Engine, environment  # noqa: E402
from npmobilebert.errors import InputError  # noqa: E402
from npmobilebert.fileio import check_writable, save_json  # noqa: E402
from npmobilebert.interpreter import Interpreter  # noqa: E402
from npmobilebert.numerics import LITERT_REF, XNNPACK, Profile  # noqa: E402


def profiles() -> dict[str, Profile]:
    """ref, xnnpack, and per rule step ref+STEP / xnn-STEP."""
    out = {"ref": LITERT_REF, "xnnpack": XNNPACK}
    for step in LITERT_REF.choices:
        out[f"ref+{step}"] = Profile(f"ref+{step}", "reference, XNNPACK's " + step,
                                     {**LITERT_REF.choices, step: XNNPACK.choices[step]})
        out[f"xnn-{step}"] = Profile(f"xnn-{step}", "XNNPACK, the reference's " + step,
                                     {**XNNPACK.choices, step: LITERT_REF.choices[step]})
    return out


def outputs(model_path: str, inputs: list[list[np.ndarray]], profile: Profile) -> np.ndarray:
    """[n_texts, n_outputs] raw model outputs under one profile."""
    engine = _Engine(model_path, "numpy")
    interp = Interpreter(engine.model, numerics=profile)
    batch = interp.batch_size(32)                   # the texts run in batches (run_batch)
    return np.array([outs[engine.pos].reshape(-1) for start in range(0, len(inputs), batch)
                     for outs in interp.run_batch(inputs[start:start + batch])])


def _outputs_task(task: tuple[str, list[list[np.ndarray]], Profile]) -> np.ndarray:
    return outputs(*task)


def attribute(model_path: str, texts: list[str], processes: int = 1) -> dict:
    """Every profile's label flips and identical logit vectors against the reference."""
    named = profiles()
    engine = _Engine(model_path, "numpy")
    inputs = [engine.arrays(t) for t in texts]              # tokenized once, for every profile
    tasks = [(model_path, inputs, p) for p in named.values()]
    if processes > 1:
        with environment(SINGLE_THREADED_BLAS):
            pool = multiprocessing.get_context("spawn").Pool(processes)
        with pool:
            results = pool.map(_outputs_task, tasks)
    else:
        results = [_outputs_task(t) for t in tasks]
    by_name = dict(zip(named, results))
    ref = by_name["ref"]
    rows = {name: {"label_flips": int((out.argmax(1) != ref.argmax(1)).sum()),
                   "identical_outputs": int(np.all(out == ref, axis=1).sum()),
                   "rules": named[name].choices}
            for name, out in by_name.items()}
    return {"model": os.path.basename(model_path), "n": len(texts), "profiles": rows,
            "labels": {name: out.argmax(1).tolist() for name, out in by_name.items()},
            "outputs": by_name}


def op_kind(model, op) -> str:
    """The op's type; a MUL says whether one operand is a per-channel constant (NoNorm's gamma)."""
    if op.opcode != "MUL":
        return op.opcode
    per_channel = any(i >= 0 and model.tensors[i].is_constant and model.tensors[i].size > 1 for i in op.inputs)
    return "MUL per-channel" if per_channel else "MUL scalar"


def element_mismatches(model_path: str, inputs: list[list[np.ndarray]]) -> dict[int, list[int]]:
    """Per op: [output elements, elements XNNPACK's rule computes differently from the
    reference's] when both get the reference's inputs (the op's own share of the divergence,
    not what it inherits from earlier ops), summed over the inputs."""
    engine = _Engine(model_path, "numpy")
    ref = Interpreter(engine.model, numerics=LITERT_REF)
    xnn = Interpreter(engine.model, numerics=XNNPACK)
    counts = {i: [0, 0] for i in range(len(ref.plan))}
    position = {id(step): i for i, step in enumerate(ref.plan)}

    def observe(step, args, outs):
        i = position[id(step)]
        theirs = xnn.plan[i].run(args)
        counts[i][0] += sum(o.size for o in outs)
        counts[i][1] += sum(int(np.count_nonzero(a != b)) for a, b in zip(outs, theirs))
    for arrays in inputs:
        ref.run_all(arrays, observe)
    return counts


def mismatches_by_kind(model_path: str, counts: dict[int, list[int]]) -> dict[str, dict]:
    model = _Engine(model_path, "numpy").model
    kinds: dict[str, list[int]] = {}
    for i, (total, differ) in counts.items():
        row = kinds.setdefault(op_kind(model, model.operators[i]), [0, 0])
        row[0] += total
        row[1] += differ
    return {kind: {"elements": total, "differ": differ} for kind, (total, differ) in sorted(kinds.items())}


def read_texts(path: str, limit: int | None) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if "text" not in (reader.fieldnames or []):
            raise InputError(f"{path}: no 'text' column in the header")
        texts = [row["text"] for row in reader]
    return texts[:limit] if limit else texts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("data", help="TSV with a header holding a `text` column")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", default=None, help="write the counts (not the per-text results) here")
    ap.add_argument("--elements", type=int, default=0, metavar="N",
                    help="also count, on the first N texts, the output elements each op type computes "
                         "differently under XNNPACK's rule given the reference's inputs")
    args = ap.parse_args(argv)
    try:
        if args.json:
            check_writable(args.json)
        texts = read_texts(args.data, args.limit)
        report = attribute(args.model, texts, args.processes)
    except (InputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = report["n"]
    print(f"{report['model']}: {n} texts, label flips against the reference kernels")
    for name, row in report["profiles"].items():
        print(f"  {name:<30} {row['label_flips']:5d} flips ({100 * (1 - row['label_flips'] / n):6.2f}% agree), "
              f"{row['identical_outputs']:5d} identical outputs")
    if args.elements:
        engine = _Engine(args.model, "numpy")
        counts = element_mismatches(args.model, [engine.arrays(t) for t in texts[: args.elements]])
        report["element_mismatches"] = {"texts": min(args.elements, n),
                                        "by_op_type": mismatches_by_kind(args.model, counts)}
        print(f"output elements computed differently, reference inputs, first {args.elements} texts:")
        for kind, row in report["element_mismatches"]["by_op_type"].items():
            print(f"  {kind:<30} {row['differ']:9d} of {row['elements']:11d} "
                  f"({100 * row['differ'] / max(row['elements'], 1):.4f}%)")
    if args.json:
        save_json(args.json, {k: v for k, v in report.items() if k not in ("labels", "outputs")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
