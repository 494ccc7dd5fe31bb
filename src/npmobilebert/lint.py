"""``lint``: quantization health checks, with the numbers behind each finding.

Static checks (the file alone):

- **weight zero points**: FULLY_CONNECTED / BATCH_MATMUL weights should be symmetric. A non-zero
  per-tensor zero point costs an extra term in every dot product; on per-channel weights the
  kernels ignore it, so the weights that run are not the weights in the file.
- **per-channel scale spread**: channel scales spanning more than ``SCALE_SPREAD`` (max/min) mean
  the small channels were quantized with a handful of levels -- usually a dead or exploding unit.
- **accumulator headroom**: the worst-case |int32 accumulator| of an integer FULLY_CONNECTED or
  BATCH_MATMUL (depth x largest |input - zp| x largest |weight - zp| + largest |bias|) against
  2^31; int16 activations accumulate in int64 and are checked against 2^63.

Checks on actual values (over the inputs given):

- **saturation**: the share of an op's output values stuck at the dtype's bounds, where the clamp
  threw information away (flagged above ``SATURATION_RATE`` with at least ``MIN_SATURATED``
  values). Not counted: bounds that are the *function's* range (SOFTMAX, TANH,
  LOGISTIC outputs), the floor of a fused ReLU (exact zeros), tensors computed from the attention
  mask alone (0/1 by design), and -- in an op that adds the mask -- the masked positions, which are
  meant to be driven to the minimum.
- **collapsed levels**: a SOFTMAX input whose *unmasked* part of a row uses at most
  ``COLLAPSED_LEVELS`` distinct values: the input scale is so coarse (typically because a -10000
  mask constant stretched the calibrated range) that attention is uniform. And any computed int8
  / int16 tensor that uses at most that many levels over all inputs (mask tensors excepted).

``Linter.observe`` is an interpreter observer; it accumulates over runs (``lint``) and also says
which ops one run flags (``run --trace`` marks them with ``!``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import escape_text
from .inputs import input_role
from .kernels import PreparedOp
from .kernels.base import dtype_limits

SATURATION_RATE = 0.01       # > 1% of an op's output at the dtype's bounds ...
MIN_SATURATED = 5            # ... and at least this many values: one clamped logit of 30 is an anecdote
COLLAPSED_LEVELS = 4         # <= 4 distinct levels in a softmax row's real part
MIN_REAL_COLUMNS = 8         # rows shorter than this say little about levels
MIN_LEVEL_VALUES = 64        # the few-levels check needs at least this many values
SCALE_SPREAD = 1e3           # per-channel max/min scale
HEADROOM_FRACTION = 0.5      # worst-case accumulator above half the accumulator range

SHAPE_OPS = frozenset({"RESHAPE", "EXPAND_DIMS", "SQUEEZE", "TRANSPOSE", "STRIDED_SLICE", "SLICE",
                       "GATHER", "PAD", "PADV2", "CONCATENATION"})
BOUNDED_FUNCTIONS = frozenset({"SOFTMAX", "TANH", "LOGISTIC"})


@dataclass
class Finding:
    check: str          # weight-zero-point, scale-spread, accumulator, saturation, collapsed-softmax, few-levels
    op_index: int
    opcode: str
    tensor: str
    message: str        # one line with the numbers
    short: str          # a few words for the trace's "!" marker
    numbers: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"check": self.check, "op": self.op_index, "opcode": self.opcode, "tensor": self.tensor,
                "message": self.message, **{k: _jsonable(v) for k, v in self.numbers.items()}}


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


# ----------------------------------------------------------------------------------------------
# Static checks
# ----------------------------------------------------------------------------------------------

def static_findings(step: PreparedOp) -> list[Finding]:
    """What the op's constants and quantization parameters alone reveal."""
    op, ctx = step.ctx.op, step.ctx
    found: list[Finding] = []
    name = ctx.outputs[0].name
    if op.opcode in ("FULLY_CONNECTED", "BATCH_MATMUL") and len(ctx.inputs) > 1:
        w = ctx.inputs[1]
        if w is not None and w.data is not None and w.quantization is not None:
            found += _weight_zero_points(op, w, name)
        found += _accumulator_bound(step, name)
    for t in ctx.inputs:
        if t is not None and t.data is not None and t.quantization is not None and t.quantization.per_channel:
            found += _scale_spread(op, t, name)
    return found


def _weight_zero_points(op, w, name) -> list[Finding]:
    zps = w.quantization.zero_points
    nonzero = int(np.count_nonzero(zps))
    if not nonzero:
        return []
    if w.quantization.per_channel:
        msg = (f"per-channel weights '{escape_text(w.name)}' have {nonzero} non-zero zero points (e.g. {int(zps[zps != 0][0])}):"
               f" the kernel ignores them, so the weights that run differ from the file's")
    else:
        msg = (f"weights '{escape_text(w.name)}' have zero point {int(zps[0])}: asymmetric weights add a"
               f" zero-point term to every dot product (symmetric int8 weights are the spec)")
    return [Finding("weight-zero-point", op.index, op.opcode, name, msg, f"weight zp {int(zps[zps != 0][0])}",
                    {"nonzero_zero_points": nonzero})]


def _scale_spread(op, t, name) -> list[Finding]:
    scales = t.quantization.scales.astype(np.float64)
    positive = scales[scales > 0]
    if positive.size < scales.size:
        ratio = float("inf")
    else:
        ratio = float(positive.max() / positive.min())
    if ratio <= SCALE_SPREAD:
        return []
    msg = (f"per-channel scales of '{escape_text(t.name)}' span {ratio:.3g}x ({positive.min():.3g}..{positive.max():.3g}"
           f"{', some zero' if positive.size < scales.size else ''}): the small channels hold few levels")
    return [Finding("scale-spread", op.index, op.opcode, name, msg, f"scales span {ratio:.0e}x",
                    {"scale_ratio": ratio})]


def accumulator_bound(step: PreparedOp) -> tuple[int, int] | None:
    """(worst-case |accumulator|, accumulator bits) of an integer FC / BATCH_MATMUL, else None."""
    ctx = step.ctx
    x, w = ctx.inputs[0], ctx.inputs[1]
    if x is None or w is None or x.dtype not in (np.int8, np.int16) or w.dtype not in (np.int8, np.int16):
        return None
    x_zp = int(x.quantization.zero_points[0]) if x.quantization is not None else 0
    x_lo, x_hi = dtype_limits(x.dtype)
    x_max = max(abs(x_lo - x_zp), abs(x_hi - x_zp))
    if w.data is not None:
        wq = w.data.astype(np.int64)
        w_zp = 0 if w.quantization is None or w.quantization.per_channel else int(w.quantization.zero_points[0])
        w_max = int(np.abs(wq - w_zp).max(initial=0))
    else:
        w_zp = int(w.quantization.zero_points[0]) if w.quantization is not None else 0
        lo, hi = dtype_limits(w.dtype)
        w_max = max(abs(lo - w_zp), abs(hi - w_zp))
    if ctx.op.opcode == "FULLY_CONNECTED":
        depth = w.shape[-1]
    else:
        depth = x.shape[-2] if ctx.options.get("adj_x") else x.shape[-1]
    bias = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    b_max = int(np.abs(bias.data.astype(np.int64)).max(initial=0)) if bias is not None and bias.data is not None else 0
    bits = 64 if x.dtype == np.int16 else 32
    return int(depth) * x_max * w_max + b_max, bits


def _accumulator_bound(step: PreparedOp, name) -> list[Finding]:
    found = accumulator_bound(step)
    if found is None:
        return []
    bound, bits = found
    limit = 2 ** (bits - 1)
    if bound <= HEADROOM_FRACTION * limit:
        return []
    op = step.ctx.op
    msg = (f"worst-case |int{bits} accumulator| {bound} is {bound / limit:.2f} of 2^{bits - 1}:"
           f" inputs at the range ends could overflow")
    return [Finding("accumulator", op.index, op.opcode, name, msg, "acc near overflow",
                    {"bound": bound, "limit": limit})]


# ----------------------------------------------------------------------------------------------
# Checks on values
# ----------------------------------------------------------------------------------------------

@dataclass
class OpStats:
    """What the runs so far showed of one op's output."""

    values: int = 0
    saturated_low: int = 0
    saturated_high: int = 0
    levels: np.ndarray | None = None       # bool [2^bits]: which integer levels occurred
    elements: int = 0                       # how many values the levels were counted over
    softmax_rows: list = field(default_factory=list)   # distinct levels of each qualifying row
    softmax_columns: list = field(default_factory=list)


class Linter:
    """An interpreter observer: accumulates the value checks over runs; ``observe`` returns the
    findings of that one run for the op (for the trace's marker)."""

    def __init__(self):
        self.stats: dict[int, OpStats] = {}
        self.steps: dict[int, PreparedOp] = {}
        self.static: dict[int, list[Finding]] = {}
        self.runs = 0
        self._reset_run()

    def _reset_run(self):
        self.produced: set[int] = set()
        self.mask_derived: set[int] = set()
        self.mask: np.ndarray | None = None      # the current run's attention mask row (bool)

    def start_run(self) -> None:
        """Call before each run: graph inputs and the mask are per run."""
        self.runs += 1
        self._reset_run()

    # -- graph facts, learnt as the ops go by ------------------------------------------------------

    def _mask_inputs(self, step: PreparedOp, inputs: list) -> list[bool]:
        """Which of the op's inputs are computed from the attention mask alone (or are it)."""
        flags = []
        for t, value in zip(step.ctx.inputs, inputs):
            if t is None or t.data is not None:
                flags.append(False)
                continue
            if t.index not in self.produced:            # a graph input
                is_mask = input_role(t) == "mask"
                if is_mask and value is not None and value.ndim:
                    self.mask = value.reshape(-1, value.shape[-1])[0] != 0
                if is_mask:
                    self.mask_derived.add(t.index)
            flags.append(t.index in self.mask_derived)
        return flags

    def observe(self, step: PreparedOp, inputs: list, outputs: list) -> list[Finding]:
        op = step.ctx.op
        if op.index not in self.static:
            self.static[op.index] = static_findings(step)
            self.steps[op.index] = step
        from_mask = self._mask_inputs(step, inputs)
        variable = [f for f, t in zip(from_mask, step.ctx.inputs) if t is not None and t.data is None]
        mask_only = bool(variable) and all(variable)
        self.produced.update(op.outputs)
        if mask_only:
            self.mask_derived.update(op.outputs)
        run_stats = OpStats()
        out_t, out = step.ctx.outputs[0], outputs[0]
        if out_t.quantization is not None and out.dtype in (np.int8, np.int16) and not mask_only:
            if op.opcode not in SHAPE_OPS:
                self._saturation(step, inputs, out, from_mask, run_stats)
            _levels(out, run_stats)
        if op.opcode == "SOFTMAX" and inputs[0].dtype in (np.int8, np.int16):
            self._softmax_rows(inputs[0], run_stats)
        total = self.stats.setdefault(op.index, OpStats())
        _merge(total, run_stats)
        return list(self.static[op.index]) + value_findings(step, run_stats)

    def _saturation(self, step, inputs, out, from_mask, stats: OpStats) -> None:
        op = step.ctx.op
        if op.opcode in BOUNDED_FUNCTIONS:
            return
        lo, hi = dtype_limits(out.dtype)
        at_lo, at_hi = out == lo, out == hi
        # a fused ReLU's floor is an exact zero, not a saturation
        act = op.options.get("fused_activation_function")
        if act in ("RELU", "RELU6", "RELU_N1_TO_1") and step.params.get("activation_min", lo) == lo:
            at_lo = np.zeros_like(at_lo)
        if act in ("RELU6", "RELU_N1_TO_1") and step.params.get("activation_max", hi) == hi:
            at_hi = np.zeros_like(at_hi)
        # where an input from the mask is not at its real zero, the op is masking: pushing those
        # positions to the minimum is the point
        real = np.ones(out.shape, dtype=bool)
        for flag, t, value in zip(from_mask, step.ctx.inputs, inputs):
            if flag and t.quantization is not None:
                zero = int(t.quantization.zero_points[0])
                real &= np.broadcast_to(value == zero, out.shape)
        stats.values += out.size
        stats.saturated_low += int(np.count_nonzero(at_lo & real))
        stats.saturated_high += int(np.count_nonzero(at_hi & real))

    def _softmax_rows(self, x: np.ndarray, stats: OpStats) -> None:
        """Distinct levels in the unmasked part of each row (rows of real query positions)."""
        cols = x.shape[-1]
        real_cols = np.ones(cols, dtype=bool)
        if self.mask is not None and self.mask.size == cols:
            real_cols = self.mask
        n_real = int(real_cols.sum())
        if n_real < MIN_REAL_COLUMNS:
            return
        rows = x[..., real_cols]
        if x.ndim >= 2 and x.shape[-2] == cols:
            rows = rows[..., real_cols, :]                # query rows of real tokens only
        rows = rows.reshape(-1, n_real)
        ordered = np.sort(rows, axis=-1)
        distinct = 1 + np.count_nonzero(np.diff(ordered, axis=-1), axis=-1)
        stats.softmax_rows.extend(int(d) for d in distinct)
        stats.softmax_columns.append(n_real)

    # -- results -----------------------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        found = []
        for index in sorted(self.stats):
            found += self.static[index] + value_findings(self.steps[index], self.stats[index])
        return found

    def summary(self) -> list[dict]:
        """Per op: the numbers the checks looked at (for the JSON report)."""
        rows = []
        for index in sorted(self.stats):
            step, s = self.steps[index], self.stats[index]
            row = {"op": index, "opcode": step.ctx.op.opcode, "tensor": step.ctx.outputs[0].name}
            if s.values:
                row["saturation_rate"] = (s.saturated_low + s.saturated_high) / s.values
                row["saturated_low"], row["saturated_high"] = s.saturated_low, s.saturated_high
            if s.levels is not None:
                row["levels_used"] = int(s.levels.sum())
            if s.softmax_rows:
                row["softmax_row_levels_median"] = float(np.median(s.softmax_rows))
            bound = accumulator_bound(step) if step.ctx.op.opcode in ("FULLY_CONNECTED", "BATCH_MATMUL") \
                and len(step.ctx.inputs) > 1 else None
            if bound is not None:
                row["accumulator_bound"], row["accumulator_bits"] = bound
            rows.append(row)
        return rows


def _levels(out: np.ndarray, stats: OpStats) -> None:
    lo, hi = dtype_limits(out.dtype)
    seen = np.zeros(hi - lo + 1, dtype=bool)
    seen[np.unique(out).astype(np.int64) - lo] = True
    stats.levels = seen
    stats.elements = out.size


def _merge(total: OpStats, run: OpStats) -> None:
    total.values += run.values
    total.saturated_low += run.saturated_low
    total.saturated_high += run.saturated_high
    total.elements += run.elements
    if run.levels is not None:
        total.levels = run.levels.copy() if total.levels is None else total.levels | run.levels
    total.softmax_rows.extend(run.softmax_rows)
    total.softmax_columns.extend(run.softmax_columns)


def value_findings(step: PreparedOp, s: OpStats) -> list[Finding]:
    """The value checks' verdict on one op's accumulated statistics."""
    op = step.ctx.op
    out_t = step.ctx.outputs[0]
    found = []
    if s.values:
        rate = (s.saturated_low + s.saturated_high) / s.values
        if rate > SATURATION_RATE and s.saturated_low + s.saturated_high >= MIN_SATURATED:
            lo, hi = dtype_limits(out_t.dtype)
            found.append(Finding(
                "saturation", op.index, op.opcode, out_t.name,
                f"{rate:.1%} of {s.values} output values saturate ({s.saturated_low} at {lo},"
                f" {s.saturated_high} at {hi}); scale {float(out_t.quantization.scales[0]):.4g}"
                f" covers only [{_real_bound(out_t, lo):.4g}, {_real_bound(out_t, hi):.4g}]",
                f"sat {rate:.1%}", {"rate": rate, "low": s.saturated_low, "high": s.saturated_high}))
    if s.softmax_rows:
        median = float(np.median(s.softmax_rows))
        if median <= COLLAPSED_LEVELS:
            x_t = step.ctx.inputs[0]
            scale = float(x_t.quantization.scales[0])
            found.append(Finding(
                "collapsed-softmax", op.index, op.opcode, out_t.name,
                f"attention collapsed: the unmasked part of a softmax row uses a median of {median:g}"
                f" distinct input levels (max {max(s.softmax_rows)}) over {len(s.softmax_rows)} rows of"
                f" {min(s.softmax_columns)}..{max(s.softmax_columns)} real columns; input step"
                f" {scale:.4g} (range [{_real_bound(x_t, -128):.4g}, {_real_bound(x_t, 127):.4g}]) is too"
                f" coarse for the scores -- a large mask constant (e.g. -10000) stretched the calibrated range",
                f"softmax collapsed ({median:g} levels)",
                {"median_levels": median, "rows": len(s.softmax_rows), "input_scale": scale}))
    # a handful of values (logits) use a handful of levels: only judge tensors with many values
    if s.levels is not None and op.opcode not in SHAPE_OPS and s.elements >= MIN_LEVEL_VALUES:
        used = int(s.levels.sum())
        if used <= COLLAPSED_LEVELS and out_t.dtype in (np.int8, np.int16):
            found.append(Finding(
                "few-levels", op.index, op.opcode, out_t.name,
                f"output uses only {used} of {s.levels.size} levels over all inputs"
                f" (scale {float(out_t.quantization.scales[0]):.4g}): nearly constant",
                f"{used} levels", {"levels_used": used}))
    return found


def _real_bound(t, q: int) -> float:
    return float(t.quantization.scales[0]) * (q - int(t.quantization.zero_points[0]))


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------

def lint_model(model, interp, input_sets: list) -> Linter:
    """Run every input set through the interpreter with a Linter observing."""
    linter = Linter()
    input_sets = list(input_sets)
    batch = interp.batch_size(len(input_sets)) if input_sets else 1
    for start in range(0, len(input_sets), batch):
        # the inputs run together; the linter then sees each run on its own, op by op, with
        # exactly the values run_all(arrays, observer) would show it
        for values in interp.run_batch_all(input_sets[start:start + batch]):
            linter.start_run()
            for step in interp.plan:
                op = step.ctx.op
                args = [None if i < 0 else values[i] if i in values else interp.tensors[i].data
                        for i in op.inputs]
                linter.observe(step, args, [values[i] for i in op.outputs])
    if not input_sets:       # static checks still apply
        for step in interp.plan:
            linter.static[step.ctx.op.index] = static_findings(step)
    return linter


def format_lint(model, linter: Linter, n_inputs: int) -> str:
    findings = linter.findings() if linter.stats else [f for v in linter.static.values() for f in v]
    lines = [f"lint {model.path or '<bytes>'}: {len(model.operators)} ops, {n_inputs} inputs"]
    sat = [r for r in linter.summary() if "saturation_rate" in r]
    if sat:
        worst = max(sat, key=lambda r: r["saturation_rate"])
        n = worst["saturated_low"] + worst["saturated_high"]
        lines.append(f"  saturation: worst op {worst['op']} {worst['opcode']} {worst['saturation_rate']:.2%}"
                     f" ({n} of {round(n / worst['saturation_rate']) if n else 0} values; flagged above"
                     f" {SATURATION_RATE:.0%} and {MIN_SATURATED} values; function ranges, ReLU floors"
                     f" and masking excluded)")
    sm = [r for r in linter.summary() if "softmax_row_levels_median" in r]
    if sm:
        lines.append("  softmax rows (unmasked part): median distinct input levels "
                     + ", ".join(f"op {r['op']}: {r['softmax_row_levels_median']:g}" for r in sm)
                     + f" (collapsed at <= {COLLAPSED_LEVELS})")
    acc = [r for r in linter.summary() if "accumulator_bound" in r]
    if acc:
        worst = max(acc, key=lambda r: r["accumulator_bound"] / 2 ** (r["accumulator_bits"] - 1))
        lines.append(f"  accumulators: worst case op {worst['op']} {worst['opcode']} |acc| <= {worst['accumulator_bound']}"
                     f" = {worst['accumulator_bound'] / 2 ** (worst['accumulator_bits'] - 1):.2%} of"
                     f" 2^{worst['accumulator_bits'] - 1}")
    if not findings:
        lines.append("no warnings")
    else:
        lines.append(f"{len(findings)} warning{'s' if len(findings) != 1 else ''}:")
        for f in findings:
            lines.append(f"  ! op {f.op_index} {f.opcode} [{f.check}] {f.message}")
            lines.append(f"      tensor '{f.tensor[:100]}'")
    return "\n".join(lines)


def lint_json(model, linter: Linter, n_inputs: int) -> dict:
    findings = linter.findings() if linter.stats else [f for v in linter.static.values() for f in v]
    return {"model": model.path, "inputs": n_inputs,
            "thresholds": {"saturation_rate": SATURATION_RATE, "min_saturated": MIN_SATURATED,
                           "collapsed_levels": COLLAPSED_LEVELS,
                           "scale_spread": SCALE_SPREAD, "accumulator_fraction": HEADROOM_FRACTION},
            "findings": [f.to_json() for f in findings], "ops": linter.summary()}
