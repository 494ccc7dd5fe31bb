"""``run --trace``: an interpreter observer that prints each op, more at each level.

Level 1 (-t):   a legend, a header row, then one line per op output in columns that fit 120
                characters: index, op, shape, dtype, scale and zero point, min/max, how many
                values sit on the low / high clamp (the dtype's or the fused activation's bounds:
                saturation is where quantization loses information) and the output tensor's name,
                shortened to its informative tail.
Level 2 (-tt):  + the full name and quantization, the clamp bounds, the op's prepared internals
                (multipliers, shifts, offsets) and the TFLite source it mirrors.
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

LINE_WIDTH = 120
# index, op, shape, dtype, scale, zp, min, max, clamp; the name takes the rest of the line
COLUMNS = ((">4", "op"), ("<15", "type"), ("<10", "shape"), ("<7", "dtype"), (">8", "scale"),
           (">4", "zp"), (">6", "min"), (">6", "max"), (">9", "clamp"))
LEGEND = ("clamp: values on the low/high bound (dtype or fused activation) as lo/hi; "
          "! a lint finding; -tt: full names")


def short_name(name: str, width: int) -> str:
    """The informative tail of a tensor name in at most `width` characters.

    The converter joins the names of the ops it fused with ';': the first is kept and ';+N'
    counts the others (-tt shows them all). Scopes nest left to right, so the last path
    segments say which layer and op this is."""
    parts = [part for part in name.split(";") if part] or [""]
    suffix = f";+{len(parts) - 1}" if len(parts) > 1 else ""
    head, width = escape_text(parts[0]), max(width - len(suffix), 8)
    if len(head) > width:
        segments = head.split("/")
        tail = segments[-1]
        for segment in reversed(segments[:-1]):
            if len(".../" + segment + "/" + tail) > width:
                break
            tail = segment + "/" + tail
        if width - 10 <= len(".../" + tail) <= width:
            head = ".../" + tail
        else:                                   # a whole segment would leave too much unsaid
            head = "..." + head[-(width - 3):]
    return head + suffix


def _row(cells) -> str:
    return " ".join(f"{cell:{spec}}" for (spec, _), cell in zip(COLUMNS, cells))


def header() -> str:
    return _row([title for _, title in COLUMNS]) + " output tensor"


def _number(value) -> str:
    return str(int(value)) if isinstance(value, (int, np.integer)) else f"{float(value):.4g}"


def _quant_columns(tensor) -> tuple[str, str]:
    q = tensor.quantization
    if q is None:
        return "", ""
    if len(q.scales) > 1:
        return f"pc[{len(q.scales)}]", "-" if q.zero_points.min() != q.zero_points.max() \
            else str(int(q.zero_points[0]))
    return f"{float(q.scales[0]):.4g}", str(int(q.zero_points[0]))


def _quant_text(tensor) -> str:
    q = tensor.quantization
    if q is None:
        return "float" if np.issubdtype(tensor.dtype, np.floating) else "-"
    if len(q.scales) > 1:
        return (f"per-channel[{len(q.scales)}] scale {q.scales.min():.3g}..{q.scales.max():.3g}"
                f" zp {int(q.zero_points.min())}..{int(q.zero_points.max())}")
    return f"scale {float(q.scales[0]):.9g} zp {int(q.zero_points[0])}"


def _clamp(step: PreparedOp, out: np.ndarray) -> tuple[int, int, int, int] | None:
    """(values at the low bound, at the high bound, low bound, high bound), or None where no
    clamp applies (float and int32 outputs)."""
    if not np.issubdtype(out.dtype, np.integer) or out.dtype == np.int32 or out.size == 0:
        return None
    lo, hi = dtype_limits(out.dtype)
    lo = step.params.get("activation_min", lo)
    hi = step.params.get("activation_max", hi)
    return int(np.count_nonzero(out <= lo)), int(np.count_nonzero(out >= hi)), int(lo), int(hi)


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

    One observer traces one run (the lint marker learns the graph's mask inputs as they go by);
    its first call writes the legend and the header row."""
    linter = Linter()
    linter.start_run()
    started = False

    def observe(step: PreparedOp, inputs: list, outputs: list) -> None:
        nonlocal started
        if not started:
            write(LEGEND)
            write(header())
            started = True
        op = step.ctx.op
        flags = linter.observe(step, inputs, outputs)
        marker = ("  ! " + "; ".join(dict.fromkeys(f.short for f in flags))) if flags else ""
        for tensor, out in zip(step.ctx.outputs, outputs):
            scale, zero_point = _quant_columns(tensor)
            clamp = _clamp(step, out)
            cells = [op.index, op.opcode, "x".join(map(str, out.shape)) or "scalar",
                     tensor.type_name.lower(), scale, zero_point,
                     _number(out.min()) if out.size else "", _number(out.max()) if out.size else "",
                     f"{clamp[0]}/{clamp[1]}" if clamp and (clamp[0] or clamp[1]) else ""]
            row = _row(cells)
            # the name takes what the columns leave of the line (at least 16 characters)
            name_width = max(16, LINE_WIDTH - len(row) - 1 - len(marker))
            write(f"{row} {short_name(tensor.name, name_width)}{marker}")
            if level >= 2:
                bounds = f"; clamp bounds {clamp[2]}..{clamp[3]}" if clamp else ""
                write(f"       tensor: {escape_text(tensor.name)}  {_quant_text(tensor)}{bounds}")
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
                write(f"       in{k} {kind} {escape_text(tensor.name)} {list(tensor.shape)} {tensor.type_name}"
                      f" {_quant_text(tensor)}: {_sample(value)}")
            for tensor, value in zip(step.ctx.outputs, outputs):
                write(f"       out {escape_text(tensor.name)}: {_sample(value)}")

    return observe
