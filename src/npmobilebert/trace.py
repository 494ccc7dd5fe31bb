"""``run --trace``: an interpreter observer that prints each op, more at each level.

Level 1 (-t):   one line per op: index, op, output tensor, shape, dtype, scale/zero point,
                min/max, and how many values sit on the clamp (the dtype's or the fused
                activation's bounds: saturation is where quantization loses information).
Level 2 (-tt):  + the op's prepared internals (multipliers, shifts, offsets) and the TFLite
                source it mirrors.
Level 3 (-ttt): + every input's quantization and value samples of inputs and outputs.

At every level an op that a lint check flags on this run (lint.py: saturation beyond the
intended clamps, a collapsed softmax, few levels, asymmetric weights, ...) ends its line with
``! <what>``; ``npmobilebert lint`` gives the numbers.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import escape_text
from .kernels import PreparedOp
from .kernels.base import dtype_limits
from .lint import Linter


def _quant_text(tensor) -> str:
    q = tensor.quantization
    if q is None:
        return "float" if np.issubdtype(tensor.dtype, np.floating) else "-"
    if len(q.scales) > 1:
        return (f"per-channel[{len(q.scales)}] scale {q.scales.min():.3g}..{q.scales.max():.3g}"
                f" zp {int(q.zero_points.min())}..{int(q.zero_points.max())}")
    return f"scale {float(q.scales[0]):.6g} zp {int(q.zero_points[0])}"


def _clamp_count(step: PreparedOp, out: np.ndarray) -> str:
    if not np.issubdtype(out.dtype, np.integer) or out.dtype == np.int32 or out.size == 0:
        return ""
    lo, hi = dtype_limits(out.dtype)
    lo = step.params.get("activation_min", lo)
    hi = step.params.get("activation_max", hi)
    n_lo, n_hi = int(np.count_nonzero(out <= lo)), int(np.count_nonzero(out >= hi))
    if n_lo == 0 and n_hi == 0:
        return ""
    return f" clamp {n_lo}@{lo} {n_hi}@{hi}"


def _sample(values: np.ndarray, n: int = 8) -> str:
    flat = values.ravel()
    head = np.array2string(flat[:n], separator=" ", max_line_width=10**6, threshold=10**6)
    return head + (" ..." if flat.size > n else "")


def _format_param(value) -> str:
    if isinstance(value, np.ndarray):
        if value.size > 6:
            return f"[{value.size} values {value.min():.6g}..{value.max():.6g}]"
        return np.array2string(value, separator=" ", precision=8)
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def make_tracer(level: int, write: Callable[[str], None]):
    """An observer for Interpreter.run that writes trace lines at the given level (1..3).

    One observer traces one run (the lint marker learns the graph's mask inputs as they go by)."""
    linter = Linter()
    linter.start_run()

    def observe(step: PreparedOp, inputs: list, outputs: list) -> None:
        op = step.ctx.op
        flags = linter.observe(step, inputs, outputs)
        marker = ("  ! " + "; ".join(dict.fromkeys(f.short for f in flags))) if flags else ""
        for tensor, out in zip(step.ctx.outputs, outputs):
            stats = f" min {out.min():.6g} max {out.max():.6g}" if out.size else ""
            write(f"{op.index:4d} {op.opcode:<16} {escape_text(tensor.name)[:60]:<60} "
                  f"{str(list(out.shape)):<16} {tensor.type_name:<8} {_quant_text(tensor)}"
                  f"{stats}{_clamp_count(step, out)}{marker}")
        if level >= 2:
            if step.params:
                write("       params: " + ", ".join(f"{k}={_format_param(v)}"
                                                  for k, v in step.params.items()))
            write(f"       mirrors: {step.rule}")
        if level >= 3:
            for k, (tensor, value) in enumerate(zip(step.ctx.inputs, inputs)):
                if tensor is None:
                    continue
                kind = "const" if tensor.data is not None else "input"
                write(f"       in{k} {kind} {escape_text(tensor.name)[:50]} {list(tensor.shape)} {tensor.type_name}"
                      f" {_quant_text(tensor)}: {_sample(value)}")
            for tensor, value in zip(step.ctx.outputs, outputs):
                write(f"       out {escape_text(tensor.name)[:50]}: {_sample(value)}")

    return observe
