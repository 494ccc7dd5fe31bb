"""Tensor-by-tensor comparison of two runs of the same model (LSB for integers, ULP for floats)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .model import Model


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between float arrays (0 for equal, incl. +0/-0)."""
    if a.dtype == np.float16:
        a, b = a.astype(np.float32), b.astype(np.float32)
    bits = np.int32 if a.dtype == np.float32 else np.int64
    ia = a.view(bits).astype(np.int64)
    ib = b.astype(a.dtype).view(bits).astype(np.int64)
    # map the sign-magnitude float order onto a monotonic integer line
    sign_bit = np.int64(1) << (np.dtype(bits).itemsize * 8 - 1)
    ia = np.where(ia < 0, -(ia & ~sign_bit), ia)
    ib = np.where(ib < 0, -(ib & ~sign_bit), ib)
    return np.abs(ia - ib)


def tensor_difference(a: np.ndarray, b: np.ndarray, step: float | None = None) -> tuple[int, int]:
    """(how many elements are not bit-identical, the largest difference in LSB or ULP).

    Integers differ in LSB, floats in ULP. ``step``: for a float tensor that holds dequantized
    integers (a DEQUANTIZE output), the difference is counted in steps of the quantized input --
    a ULP distance there (e.g. across zero) would mean nothing.
    """
    if a.shape != b.shape:
        return a.size, -1
    if np.issubdtype(a.dtype, np.floating):
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if step:
            d = np.rint(np.abs(a.astype(np.float64) - b.astype(np.float64)) / step)
        else:
            d = np.where(same, 0, ulp_distance(a, b))
    else:
        d = np.abs(a.astype(np.int64) - b.astype(np.int64))
        same = d == 0
    return int(np.count_nonzero(~same)), int(d.max()) if d.size else 0


def difference_pattern(ours: np.ndarray, theirs: np.ndarray) -> tuple[str, int]:
    """Where two same-shape tensors differ, in words: the first differing element and, when the
    other run's tensor is 0 from some element on while ours is not, that it computed only a prefix
    (e.g. a kernel that took the wrong dimension as its batch count).  Returns (words, the length
    of that prefix or -1)."""
    if ours.shape != theirs.shape:
        return f"shapes differ: ours {list(ours.shape)}, theirs {list(theirs.shape)}", -1
    a, b = ours.reshape(-1), theirs.reshape(-1)
    differ = ~((a == b) | (np.isnan(a) & np.isnan(b)) if np.issubdtype(a.dtype, np.floating)
               else a == b)
    where = np.flatnonzero(differ)
    if where.size == 0:
        return "", -1
    k = int(where[0])
    first = [int(i) for i in np.unravel_index(k, ours.shape)] if ours.ndim else []
    text = f"first at element {first} (flat {k}): ours {a[k]}, theirs {b[k]}"
    nonzero = np.flatnonzero(b != 0)
    end = int(nonzero[-1]) + 1 if nonzero.size else 0
    if end == 0 and np.any(a != 0):
        return text + "; theirs is all 0: the runtime did not write this tensor", -1
    if end < b.size and np.any(a[end:] != 0) and not np.any(differ[:end]):
        text += (f"; theirs is 0 from flat element {end} on, its first {end} of {b.size} values"
                 f" equal ours: it computed only that prefix")
        return text, end
    return text, -1


@dataclass
class TensorDiff:
    index: int
    name: str
    op_index: int          # the op that writes it (-1 for graph inputs)
    op_type: str
    dtype: str
    mismatched: int
    size: int
    max_diff: int          # LSB (integers) or ULP (floats); -1 for a shape mismatch
    pattern: str = ""      # where the values differ (see ``difference_pattern``)
    computed_prefix: int = -1  # theirs equals ours on this many leading elements and is 0 after


@dataclass
class Comparison:
    compared: int = 0
    identical: int = 0
    diffs: list[TensorDiff] = field(default_factory=list)       # differing tensors, in run order
    max_diff_by_op: dict = field(default_factory=dict)         # op type -> largest LSB/ULP seen
    missing: list[str] = field(default_factory=list)           # tensors the other run lacked

    @property
    def first_divergence(self) -> TensorDiff | None:
        return self.diffs[0] if self.diffs else None

    def merge(self, other: "Comparison") -> None:
        self.compared += other.compared
        self.identical += other.identical
        self.diffs.extend(other.diffs)
        for op, d in other.max_diff_by_op.items():
            self.max_diff_by_op[op] = max(d, self.max_diff_by_op.get(op, 0))
        self.missing.extend(m for m in other.missing if m not in self.missing)


def _dequantize_step(model: Model, op) -> float | None:
    if op is None or op.opcode != "DEQUANTIZE":
        return None
    q = model.tensors[op.inputs[0]].quantization
    return float(q.scales.min()) if q is not None else None


def compare_runs(model: Model, ours: dict[int, np.ndarray], theirs: dict[int, np.ndarray]) -> Comparison:
    """Compare every tensor our run produced with the other run's value, in execution order."""
    writer = {}
    for op in model.operators:
        for i in op.outputs:
            writer[i] = op
    order = list(model.inputs) + [i for op in model.operators for i in op.outputs]
    result = Comparison()
    per_op: dict[str, int] = defaultdict(int)
    for index in order:
        if index not in ours:
            continue
        t = model.tensors[index]
        op = writer.get(index)
        op_type = op.opcode if op is not None else "INPUT"
        if index not in theirs:
            result.missing.append(t.name)
            continue
        mismatched, max_diff = tensor_difference(ours[index], np.asarray(theirs[index]),
                                                 _dequantize_step(model, op))
        result.compared += 1
        per_op[op_type] = max(per_op[op_type], max_diff if max_diff >= 0 else 2**31)
        if mismatched == 0:
            result.identical += 1
        else:
            pattern, prefix = (("", -1) if result.diffs
                               else difference_pattern(ours[index], np.asarray(theirs[index])))
            result.diffs.append(TensorDiff(index, t.name, op.index if op else -1, op_type,
                                           t.type_name, mismatched, ours[index].size, max_diff,
                                           pattern, prefix))
    result.max_diff_by_op = dict(per_op)
    return result
