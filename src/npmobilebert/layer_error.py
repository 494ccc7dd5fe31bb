"""``layer-error``: how far each layer of a quantized model is from the float model of the same
network, on the same inputs -- where quantization damage enters and how it accumulates.

Any two .tflite files, no TensorFlow: both run in the NumPy interpreter. Tensors are matched

1. by name (the converter keeps the graph's names in every scheme),
2. by a normalised name -- the first ``;``-separated part of a fused name, without the ``1``
   the converter appends to make names unique (the int8 logits ``...:01`` before their
   DEQUANTIZE ``...:0``) -- where that is unique in both models,
3. by position: the k-th remaining op of a kind and output shape in one model with the k-th
   in the other,

A float tensor may stand for several quantized ones (an op's int8 output and its DEQUANTIZE).

always with equal shapes. Quantized tensors are dequantized (``scale * (q - zero_point)``); then,
over all inputs together, per matched tensor: SQNR = 10 log10(sum f^2 / sum (q - f)^2) in dB,
the cosine similarity, the largest and the mean absolute error.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import escape_text
from .interpreter import BATCH_ACTIVATION_BYTES

SHAPE_OPS = frozenset({"RESHAPE", "EXPAND_DIMS", "SQUEEZE", "TRANSPOSE", "STRIDED_SLICE", "SLICE",
                       "GATHER", "PAD", "PADV2", "CONCATENATION", "CAST"})


@dataclass
class Match:
    quant_op: int
    float_op: int
    opcode: str
    name: str
    how: str                     # "name", "normalised name", "position"
    signal: float = 0.0          # sum f^2
    noise: float = 0.0           # sum (q - f)^2
    dot: float = 0.0             # sum q f
    quant_power: float = 0.0     # sum q^2
    abs_sum: float = 0.0
    max_abs: float = 0.0
    count: int = 0
    lsb: float | None = None     # the quantized tensor's scale: errors in steps

    def add(self, q: np.ndarray, f: np.ndarray) -> None:
        q, f = q.astype(np.float64).ravel(), f.astype(np.float64).ravel()
        d = q - f
        self.signal += float(f @ f)
        self.noise += float(d @ d)
        self.dot += float(q @ f)
        self.quant_power += float(q @ q)
        self.abs_sum += float(np.abs(d).sum())
        self.max_abs = max(self.max_abs, float(np.abs(d).max(initial=0)))
        self.count += d.size

    @property
    def sqnr_db(self) -> float:
        if self.noise == 0:
            return math.inf
        if self.signal == 0:
            return -math.inf
        return 10 * math.log10(self.signal / self.noise)

    @property
    def cosine(self) -> float:
        denominator = math.sqrt(self.signal * self.quant_power)
        return self.dot / denominator if denominator else (1.0 if self.noise == 0 else 0.0)

    def to_json(self) -> dict:
        sqnr = self.sqnr_db
        return {"quant_op": self.quant_op, "float_op": self.float_op, "opcode": self.opcode,
                "tensor": self.name, "matched_by": self.how,
                "sqnr_db": None if math.isinf(sqnr) else round(sqnr, 3), "cosine": round(self.cosine, 6),
                "max_abs_error": self.max_abs, "mean_abs_error": self.abs_sum / self.count if self.count else 0.0,
                "values": self.count, "lsb": self.lsb}


def normalise_name(name: str) -> str:
    """The first ';' part of a fused name, without the trailing '1' the converter adds for
    uniqueness (``.../BiasAdd1`` -> ``.../BiasAdd``) and a trailing ';'."""
    head = name.split(";")[0]
    return head[:-1] if head.endswith("1") else head


def _op_outputs(model) -> list[tuple[int, str, object]]:
    return [(op.index, op.opcode, model.tensors[op.outputs[0]]) for op in model.operators if op.outputs]


def match_tensors(quant, float_model) -> list[Match]:
    """Pair each op output of ``quant`` with one of ``float_model`` (names, then positions)."""
    q_ops, f_ops = _op_outputs(quant), _op_outputs(float_model)
    f_by_name = {t.name: (i, op, t) for i, op, t in f_ops}
    used_f: set[int] = set()
    matches: dict[int, Match] = {}

    def pair(qi, qop, qt, entry, how):
        fi, fop, ft = entry
        if tuple(qt.shape) != tuple(ft.shape):
            return
        used_f.add(fi)
        matches[qi] = Match(qi, fi, qop, qt.name, how)

    for qi, qop, qt in q_ops:                                   # 1. exact names
        if qt.name in f_by_name:
            pair(qi, qop, qt, f_by_name[qt.name], "name")
    q_norm = _unique_by(((qi, qop, qt) for qi, qop, qt in q_ops if qi not in matches),
                        lambda e: normalise_name(e[2].name))
    f_norm = _unique_by(f_ops, lambda e: normalise_name(e[2].name))
    for key, (qi, qop, qt) in q_norm.items():                   # 2. normalised names, if unique
        if key in f_norm:
            pair(qi, qop, qt, f_norm[key], "normalised name")
    queues: dict[tuple, list] = {}                              # 3. k-th of a kind and shape
    for fi, fop, ft in f_ops:
        if fi not in used_f:
            queues.setdefault((fop, tuple(ft.shape)), []).append((fi, fop, ft))
    for qi, qop, qt in q_ops:
        if qi in matches:
            continue
        queue = queues.get((qop, tuple(qt.shape)))
        if queue:                                               # only float ops not yet matched
            pair(qi, qop, qt, queue.pop(0), "position")
    return [matches[k] for k in sorted(matches)]


def check_same_network(quant, float_model) -> None:
    """InputError unless ``float_model`` is a float model of ``quant``'s network: at least half
    of the quantized op outputs have a counterpart, and the inputs have the same shapes.

    A quantized model adds only QUANTIZE / DEQUANTIZE ops to its float graph (one or two
    unmatched of 89 on every scheme of the tiny fixtures); another network matches almost
    nothing (2 of 217: the shipped model against the tiny float fixture)."""
    from .errors import InputError

    total = sum(1 for op in quant.operators if op.outputs)
    missing = total - len(match_tensors(quant, float_model))
    if total and missing > total / 2:
        raise InputError(f"the float model does not match: {missing} of {total} tensors have no counterpart "
                         "(give a float model of the same network)")
    q_shapes = [list(quant.tensors[i].shape) for i in quant.inputs]
    f_shapes = [list(float_model.tensors[i].shape) for i in float_model.inputs]
    if q_shapes != f_shapes:
        raise InputError(f"the float model does not match: its inputs are {f_shapes}, the quantized "
                         f"model's {q_shapes}")


def _unique_by(entries, key) -> dict:
    seen: dict = {}
    dup: set = set()
    for e in entries:
        k = key(e)
        if k in seen:
            dup.add(k)
        seen[k] = e
    return {k: v for k, v in seen.items() if k not in dup}


def dequantized(tensor, value: np.ndarray) -> np.ndarray:
    q = tensor.quantization
    if q is None or not np.issubdtype(value.dtype, np.integer) or value.dtype == np.int32:
        return value.astype(np.float64)
    if q.per_channel:
        shape = [1] * value.ndim
        shape[q.quantized_dimension] = q.scales.size
        return q.scales.astype(np.float64).reshape(shape) * (value.astype(np.float64) - q.zero_points.reshape(shape))
    return q.scale * (value.astype(np.float64) - q.zero_point)


@dataclass
class LayerErrorReport:
    quant_path: str
    float_path: str
    inputs: int
    matches: list[Match]
    unmatched: list[tuple[int, str, str]] = field(default_factory=list)
    labels_agree: int = 0        # inputs whose first output has the same argmax in both models

    def compute_matches(self) -> list[Match]:
        return [m for m in self.matches if m.opcode not in SHAPE_OPS]

    def to_json(self) -> dict:
        return {"quant_model": self.quant_path, "float_model": self.float_path, "inputs": self.inputs,
                "labels_agree": self.labels_agree,
                "matched": len(self.matches), "unmatched_quant_ops": [
                    {"op": i, "opcode": op, "tensor": name} for i, op, name in self.unmatched],
                "tensors": [m.to_json() for m in self.matches]}


def layer_error(quant_model, float_model, quant_interp, float_interp, quant_inputs: list,
                float_inputs: list, progress=None) -> LayerErrorReport:
    """Run both models on the same inputs and accumulate the per-tensor errors."""
    matches = match_tensors(quant_model, float_model)
    agree = 0
    quant_inputs, float_inputs = list(quant_inputs), list(float_inputs)
    # each model's inputs run together (every tensor kept), the two batches in half the bound each
    half = BATCH_ACTIVATION_BYTES // 2
    batch = min(quant_interp.batch_size(len(quant_inputs), half),
                float_interp.batch_size(len(float_inputs), half))
    for k, (qa, fa) in enumerate(zip(quant_inputs, float_inputs)):
        if k % batch == 0:
            q_batch = quant_interp.run_batch_all(quant_inputs[k:k + batch])
            f_batch = float_interp.run_batch_all(float_inputs[k:k + batch])
        qv, fv = q_batch[k % batch], f_batch[k % batch]
        q_out = qv.get(quant_model.outputs[0]) if quant_model.outputs else None
        f_out = fv.get(float_model.outputs[0]) if float_model.outputs else None
        if q_out is not None and f_out is not None and q_out.size == f_out.size > 0:
            agree += int(np.argmax(q_out) == np.argmax(f_out))
        for m in matches:
            qt = quant_model.tensors[quant_model.operators[m.quant_op].outputs[0]]
            ft = float_model.tensors[float_model.operators[m.float_op].outputs[0]]
            m.add(dequantized(qt, qv[qt.index]), dequantized(ft, fv[ft.index]))
            if qt.quantization is not None and np.issubdtype(qt.dtype, np.integer):
                m.lsb = qt.quantization.scale
        if progress:
            progress(k)
    matched = {m.quant_op for m in matches}
    unmatched = [(op.index, op.opcode, quant_model.tensors[op.outputs[0]].name)
                 for op in quant_model.operators if op.index not in matched]
    return LayerErrorReport(quant_model.path, float_model.path, len(quant_inputs), matches, unmatched, agree)


def _short(name: str, width: int = 58) -> str:
    head = name.split(";")[0]
    return head if len(head) <= width else "..." + head[-(width - 3):]


def format_report(report: LayerErrorReport, all_tensors: bool = False) -> str:
    rows = report.matches if all_tensors else report.compute_matches()
    lines = [f"quantized: {report.quant_path}", f"float:     {report.float_path}",
             f"{report.inputs} inputs; {len(report.matches)} op outputs matched"
             f" ({sum(m.how == 'name' for m in report.matches)} by name,"
             f" {sum(m.how == 'normalised name' for m in report.matches)} by normalised name,"
             f" {sum(m.how == 'position' for m in report.matches)} by position);"
             f" {len(report.unmatched)} unmatched"
             + (f" ({', '.join(f'{i} {op}' for i, op, _ in report.unmatched)})" if report.unmatched else ""),
             f"first output's argmax (label) agrees on {report.labels_agree} of {report.inputs} inputs", ""]
    lines.append(f"{'op':>4} {'opcode':<16} {'tensor':<58} {'SQNR dB':>8} {'cosine':>9} {'max|err|':>9}"
                 f" {'mean|err|':>9} {'LSB':>8}")
    for m in rows:
        j = m.to_json()
        sqnr = "inf" if j["sqnr_db"] is None and m.noise == 0 else f"{m.sqnr_db:.1f}"
        lsb = f"{m.lsb:.3g}" if m.lsb else "-"
        lines.append(f"{m.quant_op:>4} {m.opcode:<16} {_short(escape_text(m.name)):<58} {sqnr:>8} {m.cosine:>9.5f}"
                     f" {m.max_abs:>9.3g} {j['mean_abs_error']:>9.3g} {lsb:>8}")
    return "\n".join(lines)


def plot_report(report: LayerErrorReport, path: str, title: str | None = None) -> None:
    """SQNR and cosine similarity per op, in graph order, one colour per op type."""
    from .fileio import atomic_path, pyplot

    plt = pyplot()

    rows = [m for m in report.compute_matches() if not math.isinf(m.sqnr_db)]
    kinds = sorted({m.opcode for m in rows})
    colours = dict(zip(kinds, plt.get_cmap("tab10").colors))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 2]})
    for kind in kinds:
        sel = [m for m in rows if m.opcode == kind]
        ax1.scatter([m.quant_op for m in sel], [m.sqnr_db for m in sel], s=18, label=kind,
                    color=colours[kind])
        ax2.scatter([m.quant_op for m in sel], [1 - m.cosine for m in sel], s=18, color=colours[kind])
    ax1.plot([m.quant_op for m in rows], [m.sqnr_db for m in rows], color="0.75", lw=0.8, zorder=0)
    ax1.set_ylabel("SQNR vs float model (dB)")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower left", fontsize=8, ncol=min(4, len(kinds)))
    ax2.set_yscale("log")
    ax2.set_ylabel("1 - cosine similarity")
    ax2.set_xlabel("op index in the quantized model (graph order)")
    ax2.grid(alpha=0.3, which="both")
    _mark_layers(report, ax1)
    ax1.set_title(title or f"Error of each op's output against the float model (cumulative, not per op):"
                  f" {os.path.basename(report.quant_path or '')} vs {os.path.basename(report.float_path or '')},"
                  f" {report.inputs} inputs", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)     # a PNG whatever the name ends with, as bench's
    plt.close(fig)


def _mark_layers(report: LayerErrorReport, ax) -> None:
    """Vertical lines where a new transformer layer starts (names with layer_<n>_)."""
    seen = set()
    for m in report.matches:
        found = re.search(r"layer_(\d+)_", m.name.split(";")[0])
        if found and found.group(1) not in seen:
            seen.add(found.group(1))
            ax.axvline(m.quant_op - 0.5, color="0.5", ls=":", lw=0.8)
            ax.text(m.quant_op, ax.get_ylim()[1], f" layer {found.group(1)}", va="top", fontsize=8, color="0.35")
