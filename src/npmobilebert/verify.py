"""Cross-check the NumPy interpreter against LiteRT on the same inputs, tensor by tensor."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .compare import Comparison, compare_runs
from .errors import escape_text
from .interpreter import Interpreter
from .model import Model


@dataclass
class VerifyReport:
    model_path: str
    against: str
    runtime: str
    inputs: int = 0
    comparison: Comparison = field(default_factory=Comparison)
    outputs_identical: int = 0       # inputs whose final outputs were identical
    labels_agree: int = 0            # inputs whose output argmax agreed
    first_input: int | None = None   # which input showed the first divergence
    note: str = ""                   # what the runtime says about itself (e.g. a resolver fallback)
    numerics: str = "litert-ref"     # the interpreter's numerics profile (numerics.py)
    operators: int = 0               # operators of the graph checked: none, nothing is computed

    @property
    def nothing_computed(self) -> bool:
        """A graph without operators returns its inputs or constants as they are: there is no
        arithmetic to check, which is not a mismatch."""
        return self.operators == 0

    @property
    def exact(self) -> bool:
        """Whether this profile reproduces this runtime bit for bit (then every tensor must agree)."""
        from .numerics import EXACT_PAIRS
        return (self.against, self.numerics) in EXACT_PAIRS

    @property
    def ok(self) -> bool:
        """verify's verdict: every tensor identical where the profile is exact, else every label;
        with no operators, every output (an input or a constant) identical."""
        if self.nothing_computed:
            return self.outputs_identical == self.inputs
        return self.identical if self.exact else self.labels_agree == self.inputs

    @property
    def identical(self) -> bool:
        return self.comparison.compared > 0 and self.comparison.identical == self.comparison.compared

    def to_json(self, model: Model) -> dict:
        c = self.comparison
        first = c.first_divergence
        return {
            "model": self.model_path, "against": self.against, "runtime": self.runtime,
            "numerics": self.numerics,
            "inputs": self.inputs, "operators": self.operators, "tensors_compared": c.compared, "tensors_identical": c.identical,
            "identical": self.identical, "outputs_identical": self.outputs_identical,
            "labels_agree": self.labels_agree, "max_diff_by_op": c.max_diff_by_op,
            "note": self.note or None,
            "first_divergence": None if first is None else {
                "input": self.first_input, "tensor": first.name, "tensor_index": first.index,
                "op_index": first.op_index, "op_type": first.op_type, "mismatched": first.mismatched,
                "size": first.size, "max_diff": first.max_diff, "pattern": first.pattern,
                "known_issue": known_issue(model, first) or None,
                "op_options": _op_options(model, first.op_index),
                "op_inputs": describe_op_inputs(model, first.op_index)},
            "missing_in_runtime": c.missing,
        }


def known_issue(model: Model, first) -> str:
    """A known runtime bug that explains a first divergence, in one line ("" when none fits)."""
    if first is None or first.op_index < 0 or first.op_type != "FULLY_CONNECTED":
        return ""
    op = model.operators[first.op_index]
    weights = model.tensors[op.inputs[1]]
    out = model.tensors[op.outputs[0]]
    q = weights.quantization
    if (q is not None and len(q.scales) > 1 and len(out.shape) > 2
            and first.computed_prefix == int(out.shape[0]) * int(out.shape[1])):
        # reference_integer_ops::FullyConnectedPerChannel of older TFLite only DCHECKs a 2-D
        # output, then takes batches = Dims(0), depth = Dims(1).  Measured in tflite-runtime
        # 2.14.0: its ref resolver (int8 and int16 activations) and its builtin resolver (int16).
        return ("a bug of older TFLite's per-channel FULLY_CONNECTED reference code (tflite-runtime "
                "2.14.0 has it): it assumes a 2-D output and takes dims 0 and 1 as batches x "
                f"depth, so for this {len(out.shape)}-D output {list(out.shape)} (keep_num_dims) it "
                f"computes only the first {first.computed_prefix} values; the per-channel scales "
                "it does apply")
    return ""


def _op_options(model: Model, op_index: int) -> dict:
    if op_index < 0:
        return {}
    options = getattr(model.operators[op_index], "options", None)
    return dict(options) if isinstance(options, dict) else {}


def _scales(q) -> object:
    scales = q.scales
    if len(scales) <= 4:
        return scales.tolist()
    axis = getattr(q, "quantized_dimension", None)
    return (f"{len(scales)} per-channel scales" + (f" on axis {axis}" if axis is not None else "")
            + f" in [{float(scales.min()):.6g}, {float(scales.max()):.6g}]")


def describe_op_inputs(model: Model, op_index: int) -> list[dict]:
    if op_index < 0:
        return []
    out = []
    for i in model.operators[op_index].inputs:
        if i < 0:
            continue
        t = model.tensors[i]
        q = t.quantization
        zps = None if q is None else q.zero_points
        out.append({"tensor": t.name, "dtype": t.type_name, "shape": list(t.shape),
                    "constant": t.data is not None,
                    "per_channel": q is not None and len(q.scales) > 1,
                    "scale": None if q is None else _scales(q),
                    "zero_point": None if q is None else (
                        zps.tolist() if len(zps) <= 4 else
                        f"{len(zps)} values" + (", all 0" if not zps.any() else
                                                f" in [{int(zps.min())}, {int(zps.max())}]"))})
    return out


def verify(model: Model, interpreter: Interpreter, runner, inputs_list, against: str,
           progress=None) -> VerifyReport:
    """Run both engines on every input set and fold the comparisons into one report."""
    from .runtime import runtime_name

    name = getattr(runner, "name", None) or runtime_name()
    report = VerifyReport(model.path or "<bytes>", against, name, note=getattr(runner, "note", "") or "",
                          numerics=interpreter.numerics.name, operators=len(interpreter.graph.operators))
    inputs_list = list(inputs_list)
    batch = interpreter.batch_size(len(inputs_list))
    for k, arrays in enumerate(inputs_list):
        if k % batch == 0:          # ours for the next inputs, run together (every tensor kept)
            ours_batch = interpreter.run_batch_all(inputs_list[k:k + batch])
        ours = ours_batch[k % batch]
        theirs = runner.run_all(arrays)
        cmp = compare_runs(model, ours, theirs)
        if cmp.diffs and report.first_input is None:
            report.first_input = k
        report.comparison.merge(cmp)
        report.inputs += 1
        pairs = [(ours[i], theirs[i]) for i in model.outputs if i in theirs]
        report.outputs_identical += int(all(np.array_equal(a, b) for a, b in pairs))
        report.labels_agree += int(all(_same_label(a, b) for a, b in pairs))
        if progress is not None:
            progress(k + 1)
    return report


def _same_label(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Whether two outputs pick the same class on their last axis; an output with no classes
    (zero-size, or a scalar) has no label to pick, so it agrees when the values do."""
    if ours.ndim == 0 or ours.shape[-1] == 0 or ours.shape != theirs.shape:
        return np.array_equal(ours, theirs)
    return np.array_equal(np.argmax(ours, axis=-1), np.argmax(theirs, axis=-1))


def format_report(report: VerifyReport, model: Model) -> str:
    c = report.comparison
    resolver = f", '{report.against}' resolver" if report.against in ("ref", "builtin", "default") else ""
    lines = [f"verify {report.model_path} against {report.runtime}{resolver}",
             f"numerics profile: {report.numerics}"]
    if report.note:
        lines.append(f"note: {report.note}")
    lines += [f"inputs: {report.inputs}",
             f"tensors compared: {c.compared}, identical: {c.identical}"
             f" ({100.0 * c.identical / max(c.compared, 1):.2f}%)",
             f"final outputs identical: {report.outputs_identical}/{report.inputs}, "
             f"labels agree: {report.labels_agree}/{report.inputs}"]
    if c.missing:
        lines.append(f"tensors the runtime did not expose: {len(c.missing)}")
    lines.append("largest difference per op type (LSB for integer tensors and DEQUANTIZE outputs, ULP for float):")
    for op_type, d in sorted(c.max_diff_by_op.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {op_type:<20} {d}")
    first = c.first_divergence
    if report.nothing_computed:
        lines.append("nothing to compare: the graph has no operators, it returns its inputs or "
                     "constants as they are" + ("" if report.ok else ", and those differ"))
    elif first is None:
        lines.append("every tensor is identical" if report.identical else "nothing was compared")
    else:
        lines.append(f"first divergence (input {report.first_input}): op {first.op_index} {first.op_type}"
                     f" -> tensor {first.index} '{escape_text(first.name)}' ({first.dtype}):"
                     f" {first.mismatched}/{first.size} values differ, max {first.max_diff}")
        if first.pattern:
            lines.append(f"    where: {first.pattern}")
        hint = known_issue(model, first)
        if hint:
            lines.append(f"    known issue: {hint}")
        options = _op_options(model, first.op_index)
        if options:
            lines.append("    options: " + ", ".join(f"{k}={v}" for k, v in options.items()))
        for d in describe_op_inputs(model, first.op_index):
            kind = "const" if d["constant"] else "act"
            lines.append(f"    input {d['tensor']} {d['dtype']} {d['shape']} {kind}"
                         f" scale {d['scale']} zero_point {d['zero_point']}")
    return "\n".join(lines)
