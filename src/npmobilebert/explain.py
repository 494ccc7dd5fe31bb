"""``explain``: one output element of one op, computed again step by step with the actual numbers.

For someone who never read TFLite's source: which input values (and zero points) went in, the
int32 accumulator, the real multiplier and its fixed-point (M0, shift) form, every rounding step,
the clamp, the dequantized result -- and, next to it, the float computation the integers
approximate, with the error.

One small *explainer* per op family, in a registry (``EXPLAINERS``). Each re-derives the element
from the op's inputs and its prepared parameters (``PreparedOp.params``) with the functions of
fixedpoint.py -- never with arithmetic of its own -- and returns the value it arrived at.
``explain`` then checks that value against the interpreter's output element: an explanation that
does not reproduce the number it explains says so loudly (``Explanation.matches``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import fixedpoint as fp
from .errors import InputError, escape_text
from .numerics import rule_of_source
from .kernels import PreparedOp
from .kernels.base import float32_of_exact, float_activation, sequential_float_matmul

N_TERMS = 4          # products of a dot product shown one by one
TAG_SHIFT = 40       # shape ops: input k's element at flat position p is tagged (k+1) << 40 | p


# ----------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------

@dataclass
class Explanation:
    op_index: int
    opcode: str
    tensor: str
    index: tuple[int, ...]
    lines: list[str]
    value: object          # what the explainer computed (None: the fallback computed nothing)
    expected: object       # the interpreter's output element
    source: str            # the TFLite source the kernel mirrors
    explained: bool = True # False: no step-by-step explainer for this op yet

    @property
    def matches(self) -> bool:
        if not self.explained:
            return True
        a, b = np.asarray(self.value), np.asarray(self.expected)
        return bool(a.dtype.kind == b.dtype.kind or (a.dtype.kind in "iu" and b.dtype.kind in "iu")) \
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Site:
    """What an explainer sees: the prepared op, the arrays it ran on, the element asked about."""

    step: PreparedOp
    inputs: list            # the arrays passed to the kernel (constants included; None = absent)
    output: np.ndarray
    index: tuple[int, ...]
    lines: list[str] = field(default_factory=list)

    @property
    def op(self):
        return self.step.ctx.op

    @property
    def params(self) -> dict:
        return self.step.params

    def tensor(self, k: int):
        return self.step.ctx.inputs[k]

    @property
    def out_t(self):
        return self.step.ctx.outputs[0]

    def say(self, text: str = "") -> None:
        self.lines.append(text)


Explainer = Callable[[Site], object]
EXPLAINERS: dict[str, Explainer] = {}


def explains(*opcodes: str):
    """Decorator: ``@explains("ADD", "SUB")`` registers an explainer. An explainer returns the
    value it derived, or ``NotImplemented`` for a dtype it does not cover (-> the fallback)."""
    def add(func: Explainer) -> Explainer:
        for name in opcodes:
            EXPLAINERS[name] = func
        return func
    return add


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------

def default_index(out: np.ndarray, tensor) -> tuple[int, ...]:
    """The element with the largest |real value| (first of ties), or the first element."""
    if out.size == 0:
        raise InputError("the op's output is empty: there is no element to explain")
    values = out.astype(np.float64)
    if tensor.quantization is not None and np.issubdtype(out.dtype, np.integer):
        values = values - tensor.quantization.zero_point
    magnitude = np.where(np.isnan(values), -1, np.abs(values))
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(magnitude)), out.shape))


def explain_step(step: PreparedOp, inputs: list, outputs: list,
                 index: tuple[int, ...] | None = None) -> Explanation:
    """Explain element ``index`` of the op's first output, given the arrays it ran on."""
    out_t, out = step.ctx.outputs[0], outputs[0]
    index = default_index(out, out_t) if index is None else _checked_index(index, out.shape)
    site = Site(step, list(inputs), out, index)
    op = step.ctx.op
    site.say(f"op {op.index} {op.opcode} (v{op.version}): output '{escape_text(out_t.name)}' {list(out.shape)} "
             f"{out_t.type_name} {_quant_words(out_t)}")
    site.say(f"element {list(index)}")
    site.say()
    explainer = EXPLAINERS.get(op.opcode)
    value = explainer(site) if explainer is not None else NotImplemented
    explained = value is not NotImplemented
    if not explained:
        site.lines[3:] = []
        value = _fallback(site)
    expected = out[index]
    result = Explanation(op.index, op.opcode, out_t.name, index, site.lines, value, expected,
                         step.rule, explained)
    site.say()
    if not explained:
        site.say("(no step-by-step explainer for this op yet: inputs and output at this element only)")
    elif result.matches:
        site.say(f"= {_fmt(value)}, the interpreter's output element: identical.")
    else:
        site.say(f"!!! MISMATCH: this explanation arrives at {_fmt(value)}, but the interpreter "
                 f"computed {_fmt(expected)}. The explanation is wrong -- please report it. !!!")
    site.say(f"TFLite source: {step.rule}")
    return result


def explain(interp, values: dict, op_index: int, index: tuple[int, ...] | None = None) -> Explanation:
    """Explain an element of op ``op_index``'s output after ``interp.run_all`` gave ``values``."""
    if not 0 <= op_index < len(interp.plan):
        raise InputError(f"op {op_index} does not exist: the model has ops 0 to {len(interp.plan) - 1}")
    step = interp.plan[op_index]
    args = [None if i < 0 else values[i] if i in values else interp.tensors[i].data
            for i in step.ctx.op.inputs]
    outs = [values[i] for i in step.ctx.op.outputs]
    return explain_step(step, args, outs, index)


def _checked_index(index, shape) -> tuple[int, ...]:
    index = tuple(int(i) for i in index)
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        raise InputError(f"index {list(index)} is not an element of the output, whose shape is {list(shape)}")
    return index


# ----------------------------------------------------------------------------------------------
# Formatting and shared steps
# ----------------------------------------------------------------------------------------------

def _fmt(v) -> str:
    v = np.asarray(v)
    if v.dtype.kind == "f":
        return f"{float(v):.9g} ({v.dtype})"
    return str(int(v))


def _quant_words(t) -> str:
    q = t.quantization
    if q is None:
        return ""
    if q.per_channel:
        return (f"(per-channel along dim {q.quantized_dimension}: {q.scales.size} scales "
                f"{q.scales.min():.4g}..{q.scales.max():.4g})")
    return f"(scale {q.scale:.6g}, zero point {q.zero_point})"


def _scale(t, channel: int = 0) -> float:
    """The tensor's float32 scale (of ``channel`` when per-channel), as a Python float."""
    q = t.quantization
    return float(np.float32(q.scales[channel if q.per_channel else 0]))


def _zp(t, channel: int = 0) -> int:
    q = t.quantization
    return 0 if q is None else int(q.zero_points[channel if q.per_channel else 0])


def _real(q: int, t, channel: int = 0) -> float:
    return _scale(t, channel) * (int(q) - _zp(t, channel))


def _ints(values, n: int = 8) -> str:
    v = [int(x) for x in np.asarray(values).ravel()[:n]]
    return "[" + " ".join(map(str, v)) + (" ..." if np.asarray(values).size > n else "") + "]"


def _floats(values, n: int = 6) -> str:
    v = np.asarray(values).ravel()
    return "[" + " ".join(f"{float(x):.5g}" for x in v[:n]) + (" ..." if v.size > n else "") + "]"


def _broadcast_element(a: np.ndarray, shape, index) -> object:
    """The element of ``a`` that NumPy/TFLite broadcasting puts at ``index`` of ``shape``."""
    return np.broadcast_to(a, shape)[index]


def _requantize_steps(site: Site, x: int, multiplier: int, shift: int, indent: str = "  ") -> int:
    """MultiplyByQuantizedMultiplier(x, M0, shift), one rounding step per line (double rounding,
    as LiteRT's CPU kernels are built): x << left, SaturatingRoundingDoublingHighMul, RoundingDivideByPOT."""
    multiplier, shift = int(multiplier), int(shift)
    left, right = max(shift, 0), max(-shift, 0)
    real = multiplier / 2.0**31 * 2.0**shift
    site.say(f"{indent}multiplier {real:.10g} = M0 / 2^31 * 2^shift with M0 = {multiplier}, shift = {shift}")
    shifted = int(fp.wrap_int32(np.int64(x) << left))
    if left:
        site.say(f"{indent}{x} << {left} (left part of the shift) = {shifted}")
    high = int(fp.saturating_rounding_doubling_high_mul(shifted, multiplier))
    site.say(f"{indent}SaturatingRoundingDoublingHighMul({shifted}, {multiplier}) = round({shifted} * {multiplier} / 2^31)"
             f" = round({shifted * multiplier / 2.0**31:.4f}) = {high}")
    out = int(fp.rounding_divide_by_pot(high, right))
    if right:
        site.say(f"{indent}RoundingDivideByPOT({high}, {right}) = round({high} / 2^{right})"
                 f" = round({high / 2.0**right:.4f}) = {out}   (ties away from zero)")
    check = int(fp.multiply_by_quantized_multiplier(x, multiplier, shift))
    if check != out:
        site.say(f"{indent}!!! the steps give {out}, MultiplyByQuantizedMultiplier gives {check} !!!")
    return out


def _fp32_requantize_steps(site: Site, x: int, scale: np.float32, what: str, indent: str = "  ") -> int:
    """XNNPACK's fp32 requantization (fixedpoint.requantize_fp32), one step per line: the int32
    value to float32, times the float32 scale, rounded to nearest, ties to even."""
    as_float = np.float32(x)
    product = np.float32(as_float * np.float32(scale))
    out = int(fp.requantize_fp32(np.array([x], dtype=np.int64), scale)[0])
    site.say(f"{indent}XNNPACK fp32 requantization: scale = {what} = {float(scale):.9g} (float32)")
    rounded = "" if int(as_float) == x else f" (|{x}| > 2^24: rounded to {int(as_float)})"
    site.say(f"{indent}(float) {x}{rounded} * {float(scale):.9g} = {float(product):.9g} (float32);"
             f" rounded to nearest, ties to even = {out}")
    return out


def _rule_name(site: Site) -> str | None:
    """The name of the numerics rule the op's kernel used (numerics.py), None for kernels that
    no profile varies."""
    rule = rule_of_source(site.step.rule)
    return None if rule is None else rule.name


def _clamp(site: Site, value: int, lo: int, hi: int, what: str = "") -> int:
    clamped = int(np.clip(value, lo, hi))
    why = f" ({what})" if what else ""
    relu = site.op.options.get("fused_activation_function") in ("RELU", "RELU6", "RELU_N1_TO_1")
    if clamped != value and relu and value < lo:
        site.say(f"  clamp to [{lo}, {hi}]{why}: {value} -> {clamped}   (the ReLU at work: a negative"
                 f" result becomes the real floor, nothing is lost)")
    elif clamped != value:
        site.say(f"  clamp to [{lo}, {hi}]{why}: {value} -> {clamped}   (saturated: information lost here)")
    else:
        site.say(f"  clamp to [{lo}, {hi}]{why}: {value} is inside")
    return clamped


def _activation_words(site: Site, lo: int, hi: int) -> str:
    act = site.op.options.get("fused_activation_function")
    if act in ("RELU", "RELU6", "RELU_N1_TO_1"):
        return f"the fused {act}: quantized bounds of its real range"
    return f"the {site.out_t.type_name} range"


def _float_comparison(site: Site, q: int, approx: float, what: str) -> None:
    """The dequantized result next to the float computation it approximates, and the error."""
    t = site.out_t
    if t.quantization is None:
        return
    real = _real(q, t)
    err = real - approx
    site.say(f"  dequantized: {_scale(t):.6g} * ({q} - {_zp(t)}) = {real:.6g}")
    site.say(f"  float computation it approximates ({what}): {approx:.6g}")
    site.say(f"  error: {err:+.4g} = {err / _scale(t):+.3f} output steps (LSB)")


def _batch_row(site: Site, depth: int) -> tuple[int, int]:
    """FULLY_CONNECTED: the output element's (input row, unit): rows are the flattened leading dims."""
    units = site.output.shape[-1]
    flat = int(np.ravel_multi_index(site.index, site.output.shape))
    return flat // units, flat % units


# ----------------------------------------------------------------------------------------------
# FULLY_CONNECTED
# ----------------------------------------------------------------------------------------------

@explains("FULLY_CONNECTED")
def explain_fully_connected(site: Site):
    x_t, w_t = site.tensor(0), site.tensor(1)
    if x_t.dtype in (np.int8, np.int16) and w_t.dtype == np.int8:
        return _fc_integer(site)
    if x_t.dtype == np.float32 and w_t.dtype == np.float32:
        return _fc_float(site)
    if x_t.dtype == np.float32 and w_t.dtype == np.int8:
        return _fc_hybrid(site)
    return NotImplemented


def _dot_terms(site: Site, x: np.ndarray, w: np.ndarray, x_off: int, w_off: int) -> int:
    """The int32 accumulator sum((x + x_off) * (w + w_off)), its first terms, the offset folding."""
    terms = (x + x_off) * (w + w_off)
    acc = int(terms.sum())
    shown = " + ".join(f"({int(a)}{x_off:+d})*({int(b)}{w_off:+d})" if w_off else f"({int(a)}{x_off:+d})*{int(b)}"
                       for a, b in zip(x[:N_TERMS], w[:N_TERMS]))
    site.say(f"  dot product over depth {x.size}: acc = sum((x - x_zp) * (w - w_zp))")
    site.say(f"    = {shown} + ... = {' + '.join(str(int(t)) for t in terms[:N_TERMS])} + ... = {acc}")
    site.say(f"    (terms range {int(terms.min())}..{int(terms.max())}; |acc| = {abs(acc)} vs int32 limit 2^31 = {2**31})")
    raw = int((x * (w + w_off)).sum())
    wsum = int((w + w_off).sum())
    if x_off:
        site.say(f"  offset folding (done once, at prepare time): acc = sum(x*w) + ({x_off})*sum(w)"
                 f" = {raw} + ({x_off})*{wsum} = {raw + x_off * wsum}")
    return acc


def _fc_integer(site: Site):
    x_t, w_t, p = site.tensor(0), site.tensor(1), site.params
    bias_t = site.tensor(2) if len(site.inputs) > 2 else None
    units, depth = w_t.shape[0], w_t.shape[-1]
    row, unit = _batch_row(site, depth)
    x = site.inputs[0].reshape(-1, depth)[row].astype(np.int64)
    w = site.inputs[1].reshape(units, depth)[unit].astype(np.int64)
    x_off, w_off, out_zp = p["input_offset"], p["weights_offset"], p["output_offset"]
    site.say(f"input row {row} of '{escape_text(x_t.name)}' {_quant_words(x_t)}: {_ints(x)}")
    w_words = (f"scale {_scale(w_t, unit):.6g} (channel {unit}; per-channel weights are symmetric: "
               f"zero point ignored)" if p["per_channel"] else f"scale {_scale(w_t):.6g}, zero point {-w_off}")
    site.say(f"weights row {unit} of '{escape_text(w_t.name)}', {w_words}: {_ints(w)}")
    site.say()
    site.say("1. integer accumulation (int32)")
    acc = _dot_terms(site, x, w, x_off, w_off)
    bias = 0
    if bias_t is not None and site.inputs[2] is not None:
        bias = int(site.inputs[2].reshape(-1)[unit])
        site.say(f"  + bias[{unit}] = {bias} (int32, scale in_scale*w_scale = {_scale(x_t) * _scale(w_t, unit):.6g})"
                 f" -> {acc + bias}")
    total = acc + bias
    rounded = _fc_requantize(site, total, unit)
    lo, hi = p["activation_min"], p["activation_max"]
    site.say(f"  + output zero point {out_zp}: {rounded + out_zp}")
    q = _clamp(site, rounded + out_zp, lo, hi, _activation_words(site, lo, hi))
    site.say()
    site.say("3. what it approximates")
    xf = _scale(x_t) * (x + x_off)
    wf = _scale(w_t, unit) * (w + w_off)
    bf = bias * _scale(x_t) * _scale(w_t, unit)
    approx = float(float_activation(np.float64(xf @ wf + bf), site.op.options.get("fused_activation_function")))
    site.say(f"  dequantized inputs {_floats(xf)}, weights {_floats(wf)}, bias {bf:.6g}")
    _float_comparison(site, q, approx, "dot(x, w) + b with dequantized values, fused activation, in double")
    return q


def _fc_requantize(site: Site, total: int, unit: int) -> int:
    """Step 2 of FULLY_CONNECTED: the requantization the profile uses (numerics.py), then the
    other rule for comparison -- the two differ by one LSB where the extra rounding matters."""
    x_t, w_t, out_t, p = site.tensor(0), site.tensor(1), site.out_t, site.params
    channel = unit if p["per_channel"] else 0
    eff = _scale(x_t) * _scale(w_t, unit) / _scale(out_t)
    site.say()
    site.say(f"2. requantization to the output scale ({site.step.ctx.numerics.name} numerics)")
    site.say(f"  real multiplier = in_scale * w_scale / out_scale = {_scale(x_t):.6g} * {_scale(w_t, unit):.6g}"
             f" / {_scale(out_t):.6g} = {eff:.10g} (in double)")
    double = int(fp.round_half_away(np.float64(total) * np.float64(eff)))
    double_words = (f"(int32) round((double) {total} * {eff:.10g}) = round({total * eff:.6f}) = {double}"
                    f"   (C round: ties away from zero)")
    if "scale" in p:                                      # the fp32 rule (XNNPACK)
        scale = np.float32(np.asarray(p["scale"]).reshape(-1)[channel])
        used = _fp32_requantize_steps(site, total, scale, "float32(in_scale * w_scale / out_scale)")
        site.say(f"  [LiteRT's reference kernel (since 2025) rounds in double instead: {double_words}]")
        other = double
    elif "output_multiplier" not in p:                    # the double rule
        site.say(f"  reference kernel (since 2025): {double_words}")
        m0, shift = fp.quantize_multiplier(eff)
        site.say(f"  [TFLite Micro and the optimized kernels use the fixed-point form instead:"
                 f" QuantizeMultiplier({eff:.10g}) = (M0 {m0}, shift {shift})]")
        other = _requantize_steps(site, total, m0, shift, indent="    ")
        used = double
    else:                                                 # the fixed-point rule
        m0 = int(np.asarray(p["output_multiplier"]).reshape(-1)[channel])
        shift = int(np.asarray(p["output_shift"]).reshape(-1)[channel])
        if p.get("int64_accumulator"):
            used = int(fp.multiply_by_quantized_multiplier_int64(total, m0, shift))
            site.say(f"  MultiplyByQuantizedMultiplier(int64 {total}, M0 {m0}, shift {shift}): the multiplier"
                     f" rounded to 16 bits, one rounding shift = {used}")
        else:
            product = ("double(in_scale) * double(w_scale) / double(out_scale)"
                       if _rule_name(site) == "fixed-point" else "in_scale * w_scale / out_scale")
            site.say(f"  fixed point: QuantizeMultiplier({product}) = (M0 {m0}, shift {shift})")
            used = _requantize_steps(site, total, m0, shift, indent="    ")
        site.say(f"  [LiteRT's reference kernel (since 2025) rounds once instead: {double_words}]")
        other = double
    site.say(f"    -> {other}" + ("  (same here)" if other == used else
                                  f"  (differs by {other - used}: the two rules round differently)"))
    return used


def _fc_float(site: Site):
    w_t = site.tensor(1)
    units, depth = w_t.shape[0], w_t.shape[-1]
    row, unit = _batch_row(site, depth)
    x = site.inputs[0].reshape(-1, depth)[row]
    w = site.inputs[1].reshape(units, depth)[unit]
    site.say(f"float32 input row {row}: {_floats(x)}; weights row {unit}: {_floats(w)}")
    products = (x * w).astype(np.float32)
    site.say(f"products x*w in float32: {_floats(products, N_TERMS)}; summed one at a time in depth order"
             f" ({depth} terms), each sum rounded to float32 (no FMA, no pairwise sums)")
    total = sequential_float_matmul(x[None, :], w[:, None])[0, 0]
    site.say(f"sum = {float(total):.9g}; in double it would be {float(x.astype(np.float64) @ w):.9g}")
    out = total
    if len(site.inputs) > 2 and site.inputs[2] is not None:
        out = np.float32(total + site.inputs[2].reshape(-1)[unit])
        site.say(f"+ bias {float(site.inputs[2].reshape(-1)[unit]):.9g} = {float(out):.9g}")
    act = site.op.options.get("fused_activation_function")
    out = float_activation(np.float32(out), act)
    if act not in (None, "NONE"):
        site.say(f"fused {act}: {float(out):.9g}")
    return np.float32(out)


def _fc_hybrid(site: Site):
    w_t, p = site.tensor(1), site.params
    units, depth = w_t.shape[0], w_t.shape[-1]
    row, unit = _batch_row(site, depth)
    x_all = site.inputs[0].reshape(-1, depth)
    x = x_all[row]
    w = site.inputs[1].reshape(units, depth)[unit].astype(np.int64)
    bias = np.float32(site.inputs[2].reshape(-1)[unit]) if len(site.inputs) > 2 and site.inputs[2] is not None \
        else np.float32(0)
    act = site.op.options.get("fused_activation_function")
    site.say(f"hybrid (dynamic-range) FULLY_CONNECTED: float32 input, int8 weights {_quant_words(w_t)}")
    site.say(f"float32 input row {row}: {_floats(x)}")
    if not np.any(x_all != 0):
        site.say("the whole input is zero: the kernel skips the product (IsZeroVector); output = bias")
        return np.float32(float_activation(bias, act))
    asymmetric = bool(p["asymmetric_quantize_inputs"])
    site.say()
    site.say("1. the input row is quantized on the fly, with its own scale")
    if asymmetric:
        q, factor, offset = fp.asymmetric_quantize_floats(x[None, :])
        q, factor, offset = q[0].astype(np.int64), np.float32(factor[0]), int(offset[0])
        site.say(f"  asymmetric: scale = (max(0, max x) - min(0, min x)) / 255 = {float(factor):.6g},"
                 f" zero point {offset}")
    else:
        q, factor = fp.symmetric_quantize_floats(x[None, :])
        q, factor, offset = q[0].astype(np.int64), np.float32(factor[0]), 0
        site.say(f"  symmetric: scale = max|x| / 127 = {float(np.abs(x).max()):.6g} / 127 = {float(factor):.6g}")
    site.say(f"  q = round(x / scale) (Neon rounding in the 8-wide loop, C round in the tail): {_ints(q)}")
    site.say()
    site.say("2. int32 dot product with the int8 weights")
    dot = int((q * w).sum())
    site.say(f"  sum(q*w) over depth {depth}: " + " + ".join(str(int(t)) for t in (q * w)[:N_TERMS])
             + f" + ... = {dot}")
    if offset:
        row_sum = int(np.asarray(p["row_sums"])[unit])
        site.say(f"  - weight row sum {row_sum} * input zero point {offset} = {dot - row_sum * offset}")
        dot -= row_sum * offset
    w_scale = np.float32(np.asarray(p["weights_scale"]).reshape(-1)[unit if p["per_channel"] else 0])
    scale = np.float32(factor * w_scale)
    site.say()
    site.say("3. back to float32")
    site.say(f"  scale = input scale {float(factor):.6g} * weight scale {float(w_scale):.6g} = {float(scale):.6g} (float32)")
    out = np.float32(bias + np.float32(np.float32(dot) * scale))
    site.say(f"  bias {float(bias):.9g} + {dot} * {float(scale):.6g} = {float(out):.9g}")
    out = np.float32(float_activation(out, act))
    if act not in (None, "NONE"):
        site.say(f"  fused {act}: {float(out):.9g}")
    exact = float(x.astype(np.float64) @ (w * float(w_scale))) + float(bias)
    exact = float(float_activation(np.float64(exact), act))
    site.say(f"  with the float input unquantized (weights as stored): {exact:.9g}; error from quantizing "
             f"the input: {float(out) - exact:+.4g}")
    return out


# ----------------------------------------------------------------------------------------------
# BATCH_MATMUL
# ----------------------------------------------------------------------------------------------

def _matmul_operands(site: Site) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The lhs row and rhs column behind an output element (adj_x/adj_y, broadcast batch dims)."""
    lhs, rhs = site.inputs[0], site.inputs[1]
    if site.op.options.get("adj_x"):
        lhs = np.swapaxes(lhs, -1, -2)
    if site.op.options.get("adj_y"):
        rhs = np.swapaxes(rhs, -1, -2)
    batch = np.broadcast_shapes(lhs.shape[:-2], rhs.shape[:-2])
    shape = batch + (lhs.shape[-2], rhs.shape[-1])
    where = np.unravel_index(int(np.ravel_multi_index(site.index, site.output.shape)), shape)
    b, r, c = tuple(int(i) for i in where[:-2]), int(where[-2]), int(where[-1])
    lhs_row = np.broadcast_to(lhs, batch + lhs.shape[-2:])[b + (r,)]
    rhs_col = np.broadcast_to(rhs, batch + rhs.shape[-2:])[b + (slice(None), c)]
    return lhs_row, rhs_col, r, c


@explains("BATCH_MATMUL")
def explain_batch_matmul(site: Site):
    l_t, r_t, out_t = site.tensor(0), site.tensor(1), site.out_t
    if l_t.dtype == np.float32 and r_t.dtype == np.float32:
        lhs, rhs, r, c = _matmul_operands(site)
        site.say(f"float32 lhs row {r}: {_floats(lhs)}; rhs column {c}: {_floats(rhs)}")
        total = sequential_float_matmul(lhs[None, :], rhs[:, None])[0, 0]
        site.say(f"sum of {lhs.size} products, one at a time in float32 = {float(total):.9g}"
                 f" (in double: {float(lhs.astype(np.float64) @ rhs):.9g})")
        return np.float32(total)
    if l_t.dtype == np.float32 and r_t.dtype == np.int8:
        return _batch_matmul_hybrid(site)
    if l_t.dtype not in (np.int8, np.int16) or r_t.dtype != l_t.dtype:
        return NotImplemented
    p = site.params
    lhs, rhs, r, c = _matmul_operands(site)
    lhs, rhs = lhs.astype(np.int64), rhs.astype(np.int64)
    site.say(f"lhs row {r} of '{escape_text(l_t.name)}' {_quant_words(l_t)}: {_ints(lhs)}")
    site.say(f"rhs column {c} of '{escape_text(r_t.name)}' {_quant_words(r_t)}: {_ints(rhs)}")
    site.say()
    wide = "int64" if l_t.dtype == np.int16 else "int32"
    site.say(f"1. integer accumulation ({wide})")
    acc = _dot_terms(site, lhs, rhs, p["lhs_offset"], p["rhs_offset"])
    site.say()
    if "scale" in p:                                      # XNNPACK fp32
        site.say("2. requantization")
        scaled = _fp32_requantize_steps(site, acc, np.float32(p["scale"]),
                                        "float32(float32(lhs_scale * rhs_scale) / out_scale)")
    else:
        how = ("double(lhs_scale) * double(rhs_scale) / double(out_scale)"
               if _rule_name(site) == "fixed-point-f64" else "float32(lhs_scale * rhs_scale) / out_scale")
        site.say("2. requantization: fixed-point multiplier (no double path in BATCH_MATMUL)")
        site.say(f"  real multiplier = {how} = {p['real_multiplier']:.10g}")
        scaled = _batch_matmul_fixed_point(site, acc, l_t.dtype == np.int16)
    lo, hi = int(np.iinfo(out_t.dtype).min), int(np.iinfo(out_t.dtype).max)
    site.say(f"  + output zero point {p['output_offset']}: {scaled + p['output_offset']}")
    q = _clamp(site, scaled + p["output_offset"], lo, hi, f"the {out_t.type_name} range")
    site.say()
    site.say("3. what it approximates")
    lf = _scale(l_t) * (lhs + p["lhs_offset"])
    rf = _scale(r_t) * (rhs + p["rhs_offset"])
    site.say(f"  dequantized lhs {_floats(lf)}, rhs {_floats(rf)}")
    _float_comparison(site, q, float(lf @ rf), "dot(lhs, rhs) with dequantized values, in double")
    return q


def _batch_matmul_hybrid(site: Site):
    """float32 x constant int8 (batch_matmul.cc EvalHybrid): each lhs row quantized on the fly,
    an exact int32 dot product with a weight row, scaled back to float32. The scaling factor is
    read at the kernel's own batch offset (batch_matmul._hybrid_batch_index), which is not the
    row's own where several batch dims are broadcast."""
    from .kernels.batch_matmul import _compressed_shapes, _extend5, _hybrid_batch_index
    from .kernels.fully_connected import quantize_rows
    l_t, r_t, p = site.tensor(0), site.tensor(1), site.params
    adj_x, adj_y = bool(site.op.options.get("adj_x")), bool(site.op.options.get("adj_y"))
    asymmetric = bool(p["asymmetric_quantize_inputs"])
    lhs_shape, rhs_shape = _compressed_shapes(l_t.shape, r_t.shape, adj_x)
    weights = site.inputs[1].reshape(rhs_shape).astype(np.int64)
    if not adj_y:
        weights = np.swapaxes(weights, -1, -2)                       # [..., cols, depth]
    cols, depth = weights.shape[-2], weights.shape[-1]
    w_ext = _extend5(weights.shape)
    lhs = site.inputs[0].reshape(lhs_shape)
    if adj_x:
        lhs = np.swapaxes(lhs, -1, -2)
    rows, l_ext = lhs.shape[-2], _extend5(lhs.shape)
    out_batch = tuple(max(a, b) for a, b in zip(l_ext[:3], w_ext[:3]))
    flat = int(np.ravel_multi_index(site.index, site.output.shape))
    *batch, r, c = (int(i) for i in np.unravel_index(flat, out_batch + (rows, cols)))
    l_batch = tuple(0 if n == 1 else i for n, i in zip(l_ext[:3], batch))
    w_batch = tuple(0 if n == 1 else i for n, i in zip(w_ext[:3], batch))
    x = lhs.reshape(l_ext)[l_batch + (r,)]
    w = weights.reshape(w_ext)[w_batch + (c,)]
    site.say(f"hybrid BATCH_MATMUL: float32 lhs, constant int8 rhs {_quant_words(r_t)}")
    site.say(f"float32 lhs row {r} of batch {list(batch)}: {_floats(x)}")
    site.say(f"int8 weights (rhs column {c}): {_ints(w)}")
    site.say()
    q_all, factors, offsets = quantize_rows(lhs.reshape(-1, depth), asymmetric)
    q = q_all.reshape(l_ext)[l_batch + (r,)].astype(np.int64)
    row_words = "asymmetric: (max - min) / 255 and a zero point" if asymmetric else "symmetric: max|x| / 127"
    site.say(f"1. every lhs row quantized on the fly with its own scale ({row_words}): {_ints(q)}")
    dot = int((q * w).sum())
    site.say(f"2. int32 dot product with the weights: " + " + ".join(str(int(t)) for t in (q * w)[:N_TERMS])
             + f" + ... = {dot}")
    if not p["per_channel"]:
        factors = (factors * np.float32(p["weights_scale"])).astype(np.float32)
    at = int(_hybrid_batch_index(l_ext[:3], out_batch, rows)[tuple(batch)]) + r
    correction = np.float32(0)
    if asymmetric:
        col = int(_hybrid_batch_index(w_ext[:3], out_batch, cols)[tuple(batch)]) + c
        row_sum, offset = int(np.asarray(p["row_sums"])[col]), np.float32(offsets[at])
        correction = np.float32(np.float32(row_sum) * offset)
        site.say(f"  - weight row sum {row_sum} * input zero point {float(offset):g} (float32) = {float(correction):.9g}")
    total = int(np.trunc(np.float32(np.float32(dot) - correction)))
    if asymmetric:
        site.say(f"  truncated back to int32: {total}")
    own_row = int(np.ravel_multi_index(l_batch + (r,), l_ext[:4]))
    site.say(f"3. scaling factor of row {at} (the kernel's batch offset{'' if at == own_row else ', not this row'}):"
             f" {float(factors[at]):.9g}" + ("" if p["per_channel"] else " (input scale * weight scale, float32)"))
    scale = np.float32(factors[at])
    if p["per_channel"]:
        scale = np.float32(scale * np.float32(np.asarray(p["weights_scale"])[c]))
        site.say(f"  * channel {c}'s weight scale = {float(scale):.9g} (float32)")
    out = np.float32(np.float32(0) + np.float32(scale * np.float32(total)))
    site.say(f"  {total} * {float(scale):.9g} = {float(out):.9g} (float32)")
    w_scale = float(np.asarray(p["weights_scale"]).reshape(-1)[c if p["per_channel"] else 0])
    site.say(f"  with the lhs unquantized (weights as stored): {float(x.astype(np.float64) @ (w * w_scale)):.9g}")
    return out


def _batch_matmul_fixed_point(site: Site, acc: int, wide: bool) -> int:
    """MultiplyByQuantizedMultiplier of the accumulator: the int64 overload for int16 inputs."""
    p = site.params
    if _rule_name(site) == "single-round":
        # LiteRT 1.x's optimized BATCH_MATMUL (the kernel's "single-round" rule): one rounding
        m, shift = int(p["multiplier"]), int(p["shift"])
        scaled = int(fp.multiply_by_quantized_multiplier_single_round(acc, m, shift))
        site.say(f"  one rounding: (acc * M0 + 2^{30 - shift}) >> {31 - shift}"
                 f" = ({acc} * {m} + 2^{30 - shift}) >> {31 - shift} = {scaled}")
        return scaled
    if not wide:
        return _requantize_steps(site, acc, p["multiplier"], p["shift"])
    m = int(p["multiplier"])
    reduced = (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF
    site.say(f"  int64 accumulator: MultiplyByQuantizedMultiplier(int64) first rounds M0 {m} to 16 bits:"
             f" {reduced}; then (acc * {reduced} + 2^{14 - p['shift']}) >> {15 - p['shift']}")
    scaled = int(fp.multiply_by_quantized_multiplier_int64(acc, m, p["shift"]))
    site.say(f"  = ({acc} * {reduced} + rounding) >> {15 - p['shift']} = {scaled}")
    return scaled


# ----------------------------------------------------------------------------------------------
# SOFTMAX
# ----------------------------------------------------------------------------------------------

@explains("SOFTMAX")
def explain_softmax(site: Site):
    x_t, out_t = site.tensor(0), site.out_t
    row = site.inputs[0][site.index[:-1]]
    j = site.index[-1]
    beta = float(np.float32(site.op.options.get("beta", 1.0)))
    if x_t.dtype == np.float32:
        return _softmax_float(site, row, j, beta)
    if x_t.dtype == np.int8 and out_t.dtype == np.int8 and "table" in site.params:
        return _softmax_int8_table(site, row.astype(np.int64), j, beta)
    if x_t.dtype == np.int8 and out_t.dtype in (np.int8, np.int16):
        return _softmax_int8(site, row.astype(np.int64), j, beta)
    if x_t.dtype == np.int16 and out_t.dtype == np.int16:
        return _softmax_int16(site, row.astype(np.int64), j, beta)
    return NotImplemented


def _softmax_reference(site: Site, row: np.ndarray, j: int, beta: float) -> float:
    real = np.array([_real(v, site.tensor(0)) for v in row]) * beta
    e = np.exp(real - real.max())
    return float(e[j] / e.sum())


def _softmax_int8(site: Site, row: np.ndarray, j: int, beta: float):
    x_t, out_t, p = site.tensor(0), site.out_t, site.params
    mult, left, diff_min = int(p["input_multiplier"]), int(p["input_left_shift"]), int(p["diff_min"])
    out_min, out_max = int(np.iinfo(out_t.dtype).min), int(np.iinfo(out_t.dtype).max)
    out_bits = np.dtype(out_t.dtype).itemsize * 8
    site.say(f"row of {row.size} int8 inputs {_quant_words(x_t)}: {_ints(row, 12)}")
    site.say(f"levels used in this row: {np.unique(row).size} distinct values")
    mx = int(row.max())
    diffs = row - mx
    site.say()
    site.say(f"1. row maximum {mx}; this element {int(row[j])}: diff = {int(row[j])} - {mx} = {int(diffs[j])}"
             f" (softmax only depends on differences)")
    site.say(f"2. rescale the diff to Q5.26 (5 integer bits, 26 fraction bits): beta * in_scale * 2^26"
             f" = {beta:g} * {_scale(x_t):.6g} * 2^26 = M0 {mult} * 2^{left} / 2^31 (PreprocessSoftmaxScaling)")
    shifted = fp.wrap_int32(diffs << left)
    scaled = fp.saturating_rounding_doubling_high_mul(shifted, mult)
    site.say(f"  SaturatingRoundingDoublingHighMul({int(diffs[j])} << {left} = {int(shifted[j])}, {mult})"
             f" = {int(scaled[j])} = {int(scaled[j]) / 2**26:.6f} (exact {beta * _scale(x_t) * int(diffs[j]):.6f})")
    in_range = diffs >= diff_min
    site.say(f"  diffs below diff_min = {diff_min} (CalculateInputRadius) count as exp = 0:"
             f" {int((~in_range).sum())} in this row")
    exps = fp.exp_on_negative_values(scaled, 5)
    site.say(f"3. exp_on_negative_values (gemmlowp: exp on [-1/4, 0) by a Taylor series, times exp(-2^k)"
             f" for each set bit): raw Q0.31 {int(exps[j])} = {int(exps[j]) / 2**31:.8f}"
             f" (exact exp {np.exp(int(scaled[j]) / 2**26):.8f})")
    parts = np.where(in_range, fp.rescale(exps, 0, 12), 0)
    total = int(fp.wrap_int32(parts.sum()))
    site.say(f"4. sum of the row's exps in Q12.19 (each Rescale'd from Q0.31: >> 12, rounded): "
             f"{_ints(parts, 6)} -> {total} = {total / 2**19:.6f}")
    scale, bits = fp.get_reciprocal(np.int64(total), 12)
    scale, bits = int(scale), int(bits)
    site.say(f"5. GetReciprocal: normalise the sum to [1, 2), 1/(1+x) by Newton-Raphson (3 rounds): "
             f"shifted_scale {scale} = {scale / 2**31:.8f}, num_bits_over_unit {bits}"
             f" -> 1/sum = {scale / 2**31 * 2.0**-bits:.8f} (exact {2**19 / total:.8f})")
    exponent = bits + 31 - out_bits
    prod = int(fp.fixed_mul(scale, int(exps[j])))
    unsat = int(fp.rounding_divide_by_pot(prod, exponent))
    site.say(f"6. probability = exp * (1/sum): SaturatingRoundingDoublingHighMul({scale}, {int(exps[j])}) = {prod};"
             f" RoundingDivideByPOT(.., {exponent} = bits {bits} + 31 - {out_bits}) = {unsat}"
             f" (= {unsat} / 2^{out_bits} = {unsat / 2**out_bits:.6f})")
    if in_range[j]:
        out = unsat + out_min
        site.say(f"  + {out_min} (the output's zero point: probability 0 is {out_min}) = {out}")
    else:
        out = out_min
        site.say(f"  this diff is below diff_min: output {out_min} (probability 0)")
    q = _clamp(site, out, out_min, out_max, f"the {out_t.type_name} range")
    site.say()
    site.say("7. what it approximates")
    _float_comparison(site, q, _softmax_reference(site, row, j, beta),
                      "softmax(beta * dequantized row)[j], in double")
    return q


def _softmax_int8_table(site: Site, row: np.ndarray, j: int, beta: float):
    """LiteRT's optimized int8 SOFTMAX: a table of exp over the 256 possible differences, as the
    kernel (kernels/softmax.py) builds it -- float32 values (float-lut, x86) or uint16 ones
    (uint16-lut, aarch64)."""
    x_t, out_t, table = site.tensor(0), site.out_t, site.params["table"]
    out_scale, out_zp = np.float32(_scale(out_t)), _zp(out_t)
    site.say(f"row of {row.size} int8 inputs {_quant_words(x_t)}: {_ints(row, 12)}")
    mx = int(row.max())
    d = mx - row
    site.say()
    site.say(f"1. row maximum {mx}; this element {int(row[j])}: d = {mx} - {int(row[j])} = {int(d[j])}")
    if np.issubdtype(table.dtype, np.floating):
        exps = table[d]
        site.say(f"2. float table expf(-in_scale * beta * d): table[{int(d[j])}] = {float(exps[j]):.8g}")
        total = np.add.accumulate(exps, dtype=np.float32)[-1]
        inv = np.float32(np.float32(1) / np.float32(total * out_scale))
        site.say(f"3. float32 sum of the row's table values {float(total):.8g}; 1 / (sum * out_scale "
                 f"{float(out_scale):.6g}) = {float(inv):.8g}")
        prob = np.float32(exps[j] * inv)
        out = int(fp.round_half_away(prob)) + out_zp
        site.say(f"4. round(table value * that) = round({float(prob):.6f}) + zero point {out_zp} = {out}")
    else:
        values = table[d]
        site.say(f"2. uint16 table (int)(expf(-in_scale * beta * d) * 65535 + 0.5): table[{int(d[j])}]"
                 f" = {int(values[j])} (= {int(values[j]) / 65535:.6f})")
        total = int(values.sum())
        inv = np.float32(np.float32(1) / np.float32(np.float32(total) * out_scale))
        mult, shift = fp.quantize_multiplier(float(inv))
        site.say(f"3. int32 sum of the row's table values {total}; 1.0f / (sum * out_scale "
                 f"{float(out_scale):.6g}) = {float(inv):.8g} = M0 {mult} * 2^{shift} / 2^31 (QuantizeMultiplier)")
        scaled = int(fp.multiply_by_quantized_multiplier(np.int64(values[j]), mult, shift))
        out = scaled + out_zp
        site.say(f"4. MultiplyByQuantizedMultiplier({int(values[j])}, {mult}, {shift}) = {scaled};"
                 f" + zero point {out_zp} = {out}")
    q = _clamp(site, out, -128, 127, f"the {out_t.type_name} range")
    site.say()
    site.say("5. what it approximates")
    _float_comparison(site, q, _softmax_reference(site, row, j, beta),
                      "softmax(beta * dequantized row)[j], in double")
    return q


def _softmax_int16(site: Site, row: np.ndarray, j: int, beta: float):
    x_t, p = site.tensor(0), site.params
    exp_lut, recip_lut = p["exp_lut"], p["one_over_one_plus_x_lut"]
    site.say(f"row of {row.size} int16 inputs {_quant_words(x_t)}: {_ints(row, 10)}")
    mx = int(row.max())
    diffs = row - mx
    site.say(f"1. row maximum {mx}; diff = {int(row[j])} - {mx} = {int(diffs[j])}")
    site.say("2. rescale the diffs onto [-65535, 0] = [-10, 0] (in_scale * beta / (10/65535))")
    scaled = fp.multiply_by_quantized_multiplier(diffs, p["input_multiplier"], p["input_left_shift"])
    _requantize_steps(site, int(diffs[j]), p["input_multiplier"], p["input_left_shift"])
    index = np.clip(scaled + 32767, -32768, 32767)
    exps = fp.lut_lookup_int16(index, exp_lut)
    site.say(f"3. exp LUT (513 entries on [-10, 0], linear interpolation on the low 7 bits): "
             f"input {int(index[j])} -> {int(exps[j])} = {int(exps[j]) / 2**15:.6f} (Q0.15)")
    total = int(exps.sum())
    headroom = int(fp.count_leading_zeros_u32(total))
    site.say(f"4. sum of exps {total} (Q16.15 = {total / 2**15:.5f}); leading zeros {headroom}")
    shifted_sum = ((total << (headroom - 1)) + (1 << 13)) >> 14
    sym = int(np.clip(shifted_sum - ((1 << 15) + (1 << 16)), -32768, 32767))
    recip = int(fp.lut_lookup_int16(np.int64(sym), recip_lut))
    site.say(f"5. the sum normalised to [1, 2) and recentred: {sym}; 1/(1+x) LUT -> {recip} = {recip / 2**15:.6f}")
    right = 31 - headroom
    out = (int(exps[j]) * recip + (1 << (right - 1))) >> right
    site.say(f"6. (exp * reciprocal + 2^{right - 1}) >> {right} = {out}")
    q = _clamp(site, out, 0, 32767, "probabilities are non-negative")
    site.say()
    _float_comparison(site, q, _softmax_reference(site, row, j, beta),
                      "softmax(beta * dequantized row)[j], in double")
    return q


def _softmax_float(site: Site, row: np.ndarray, j: int, beta: float):
    site.say(f"float32 row of {row.size}: {_floats(row)}; beta {beta:g}")
    e = float32_of_exact(np.exp, (row - row.max()) * np.float32(beta))
    total = np.add.accumulate(e, dtype=np.float32)[-1]
    site.say(f"max {float(row.max()):.9g}; expf((x - max) * beta) = {float(e[j]):.9g}; running float32 sum {float(total):.9g}")
    out = np.float32(e[j] / total)
    site.say(f"{float(e[j]):.9g} / {float(total):.9g} = {float(out):.9g}")
    return out


# ----------------------------------------------------------------------------------------------
# TANH, LOGISTIC
# ----------------------------------------------------------------------------------------------

@explains("TANH", "LOGISTIC")
def explain_sigmoid_family(site: Site):
    from .kernels import activations
    x_t, out_t = site.tensor(0), site.out_t
    x = site.inputs[0][site.index]
    name = site.op.opcode
    func = activations._FLOAT_FUNCS[name]      # the float function the kernel's tables sample
    exact = {"TANH": np.tanh, "LOGISTIC": lambda v: 1 / (1 + np.exp(-v))}[name]
    if x_t.dtype == np.float32:
        out = np.float32(func(np.array([x], dtype=np.float32))[0])
        site.say(f"{name.lower()}({float(x):.9g}) = {float(out):.9g} (libm, float32)")
        return out
    if x_t.dtype == np.int8:
        lut = site.params["lut"]
        site.say(f"int8 input {int(x)} {_quant_words(x_t)}: a 256-entry table (LUTPopulateInt8) holds every result")
        deq = np.float32(_scale(x_t)) * np.float32(int(x) - _zp(x_t))
        y = np.float32(func(np.array([deq], dtype=np.float32))[0])
        raw = int(fp.round_half_away(np.float32(y * (np.float32(1) / np.float32(_scale(out_t))))))
        site.say(f"  entry {int(x) + 128}: x = {_scale(x_t):.6g} * ({int(x)} - {_zp(x_t)}) = {float(deq):.6g};"
                 f" {name.lower()}(x) = {float(y):.6g}; round(y / {_scale(out_t):.6g}) = {raw}; + zp {_zp(out_t)}")
        q = _clamp(site, raw + _zp(out_t), -128, 127, "int8")
        if q != int(lut[int(x) + 128]):
            site.say(f"  !!! the table holds {int(lut[int(x) + 128])} !!!")
        _float_comparison(site, q, float(exact(float(deq))), f"{name.lower()} of the dequantized input")
        return q
    if x_t.dtype == np.int16:
        return _sigmoid_int16(site, int(x), name == "TANH", exact)
    return NotImplemented


def _sigmoid_int16(site: Site, x: int, is_tanh: bool, exact):
    from .kernels.activations import int16_sigmoid_family
    p = site.params
    m, left = int(p["input_multiplier"]), int(p["input_left_shift"])
    site.say(f"int16 input {x} {_quant_words(site.tensor(0))}")
    if m == 0:
        site.say(f"  power-of-two input scale: multiplier 3 << {left}")
        m, left = 3 << left, 0
    rounding = (1 << (left - 1)) if left > 0 else 0
    value = (x * m + rounding) >> left
    site.say(f"1. rescale to 1/(3*4096) steps: ({x} * {m} + {rounding}) >> {left} = {value}")
    frac_bits = 8 if is_tanh else 9
    mag = abs(value)
    uh = mag >> frac_bits
    site.say(f"2. |value| {mag}: table index {uh} (top bits), interpolation weight {mag & ((1 << frac_bits) - 1)}"
             f"/{1 << frac_bits} between sigmoid_table_uint16[{uh}] and [{uh + 1}]"
             + (" (tanh(x) = 2*sigmoid(2x) - 1)" if is_tanh else ""))
    if uh < 255:
        site.say(f"   entries {int(fp.SIGMOID_TABLE_UINT16[uh])}, {int(fp.SIGMOID_TABLE_UINT16[uh + 1])}")
    q = int(int16_sigmoid_family(np.array([x], dtype=np.int16), int(p["input_multiplier"]),
                                 int(p["input_left_shift"]), is_tanh)[0])
    site.say(f"3. interpolated, mirrored for negative inputs, shifted to int16: {q}")
    real = _real(x, site.tensor(0))
    _float_comparison(site, q, float(exact(real)), "the function of the dequantized input")
    return q


# ----------------------------------------------------------------------------------------------
# RELU, RELU6
# ----------------------------------------------------------------------------------------------

@explains("RELU", "RELU6")
def explain_relu(site: Site):
    x_t, out_t = site.tensor(0), site.out_t
    x = site.inputs[0][site.index]
    name = site.op.opcode
    if x_t.dtype == np.float32:
        out = np.maximum(x, np.float32(0))
        words = f"max({float(x):.9g}, 0) = {float(out):.9g}"
        if name == "RELU6":
            out = np.minimum(out, np.float32(6))
            words = f"min(max({float(x):.9g}, 0), 6) = {float(out):.9g}"
        site.say(f"float32: {words}")
        return np.float32(out)
    if x_t.dtype != np.int8:
        return NotImplemented
    p = site.params
    site.say(f"int8 input {int(x)} {_quant_words(x_t)} = real {_real(int(x), x_t):.6g}")
    site.say(f"1. requantize to the output scale (ReluX): in_scale / out_scale, minus the input zero point"
             f" {p['input_zero_point']}: {int(x)} - {p['input_zero_point']} = {int(x) - p['input_zero_point']}")
    v = _requantize_steps(site, int(x) - p["input_zero_point"], p["multiplier"], p["shift"])
    site.say(f"  + output zero point {p['output_zero_point']}: {v + p['output_zero_point']}")
    lo, hi = p["activation_min"], p["activation_max"]
    site.say(f"2. the {name} itself is the clamp to the quantized bounds of its real range"
             f" [0, {'inf' if name == 'RELU' else 6}]")
    q = _clamp(site, v + p["output_zero_point"], lo, hi, name)
    approx = max(_real(int(x), x_t), 0.0)
    _float_comparison(site, q, min(approx, 6.0) if name == "RELU6" else approx, f"{name.lower()} of the input's real value")
    return q


# ----------------------------------------------------------------------------------------------
# RSQRT
# ----------------------------------------------------------------------------------------------

@explains("RSQRT")
def explain_rsqrt(site: Site):
    from .kernels.elementwise import RSQRT_KEEP_SHIFT
    x_t, out_t, p = site.tensor(0), site.out_t, site.params
    x = site.inputs[0][site.index]
    if x_t.dtype == np.float32:
        root = np.sqrt(np.float32(x))
        out = np.float32(np.float32(1) / root)
        site.say(f"float32: 1.f / sqrtf({float(x):.9g}) = 1 / {float(root):.9g} = {float(out):.9g}"
                 f" (each step correctly rounded)")
        return out
    if x_t.dtype == np.int16:
        lut = p["lut"]
        v = int(x)
        index, offset = 256 + (v >> 7), v & 0x7F
        site.say(f"int16 input {v} {_quant_words(x_t)}: a 513-entry table of 1/sqrt (LUTPopulate<int16>, float),"
                 f" built once over the input range (non-positive inputs: the largest output)")
        site.say(f"  LUTLookup: entry {index} (top 9 bits of {v} + 32768) = {int(lut[index])}, next {int(lut[index + 1])};"
                 f" interpolated by the low 7 bits {offset}/128")
        q = int(fp.lut_lookup_int16(np.int64(v), lut))
        site.say(f"  = {q}")
        real = _real(v, x_t)
        if real > 0:
            _float_comparison(site, q, 1 / np.sqrt(real), "1/sqrt of the input's real value, in double")
        return q
    if x_t.dtype != np.int8:
        return NotImplemented
    in_zp, out_zp = p["input_zero_point"], p["output_zero_point"]
    value = int(x) - in_zp
    site.say(f"int8 input {int(x)} {_quant_words(x_t)}: {int(x)} - zero point {in_zp} = {value}")
    if value == 0:
        site.say("  0: RsqrtEvalQuantizedInt8 writes the largest output, 127")
        q = 127
    else:
        inv_m, inv_s = fp.inv_sqrt_quantized_multiplier_exp(np.int64(value))
        inv_m, inv_s = int(inv_m), int(inv_s)
        site.say(f"1. GetInvSqrtQuantizedMultiplierExp({value}): 1/sqrt by Newton-Raphson in Q3.28 ->"
                 f" (M0 {inv_m}, shift {inv_s}) = {inv_m / 2**31 * 2.0**inv_s:.8g} (exact {1 / np.sqrt(value):.8g})")
        data = int(fp.multiply_by_quantized_multiplier(1, inv_m, inv_s + RSQRT_KEEP_SHIFT))
        site.say(f"2. to an integer with {RSQRT_KEEP_SHIFT} fraction bits: MultiplyByQuantizedMultiplier(1, M0,"
                 f" shift + {RSQRT_KEEP_SHIFT}) = {data}")
        site.say(f"3. times 1 / (sqrt(in_scale) * out_scale) (the product in float32), back by 2^{RSQRT_KEEP_SHIFT}")
        out = _requantize_steps(site, data, p["multiplier"], p["shift"] - RSQRT_KEEP_SHIFT)
        site.say(f"  + output zero point {out_zp}: {out + out_zp}")
        q = _clamp(site, out + out_zp, -128, 127, "int8")
    if q != int(p["table"][int(x) + 128]):
        site.say(f"  !!! the kernel's table holds {int(p['table'][int(x) + 128])} !!!")
    real = _real(int(x), x_t)
    if real > 0:
        _float_comparison(site, q, 1 / np.sqrt(real), "1/sqrt of the input's real value, in double")
    return q


# ----------------------------------------------------------------------------------------------
# SQUARED_DIFFERENCE
# ----------------------------------------------------------------------------------------------

@explains("SQUARED_DIFFERENCE")
def explain_squared_difference(site: Site):
    a_t, b_t = site.tensor(0), site.tensor(1)
    shape = site.output.shape
    a = _broadcast_element(site.inputs[0], shape, site.index)
    b = _broadcast_element(site.inputs[1], shape, site.index)
    if a_t.dtype == np.float32:
        d = np.float32(a - b)
        out = np.float32(d * d)
        site.say(f"float32: ({float(a):.9g} - {float(b):.9g})^2 = {float(d):.9g}^2 = {float(out):.9g}")
        return out
    if a_t.dtype != np.int8:
        return NotImplemented
    p = site.params
    a, b = int(a), int(b)
    left = p["left_shift"]
    site.say(f"input 1: {a} from '{a_t.name}' {_quant_words(a_t)} = real {_real(a, a_t):.6g}")
    site.say(f"input 2: {b} from '{b_t.name}' {_quant_words(b_t)} = real {_real(b, b_t):.6g}")
    site.say()
    site.say(f"1. both inputs onto one scale, 2 * max(s1, s2) / 2^{left} (as ADD does, with a {left}-bit shift)")
    site.say(f"  input 1: ({a} - {-p['input1_offset']}) << {left} = {(a + p['input1_offset']) << left}")
    ra = _requantize_steps(site, (a + p["input1_offset"]) << left, p["input1_multiplier"], p["input1_shift"], "    ")
    site.say(f"  input 2: ({b} - {-p['input2_offset']}) << {left} = {(b + p['input2_offset']) << left}")
    rb = _requantize_steps(site, (b + p["input2_offset"]) << left, p["input2_multiplier"], p["input2_shift"], "    ")
    square = (ra - rb) * (ra - rb)
    site.say(f"2. ({ra} - {rb})^2 = {square}")
    site.say(f"3. to the output scale: (2 * max(s1, s2))^2 / (2^{2 * left} * out_scale)")
    out = _requantize_steps(site, square, p["output_multiplier"], p["output_shift"])
    site.say(f"  + output zero point {p['output_offset']}: {out + p['output_offset']}")
    q = _clamp(site, out + p["output_offset"], -128, 127, "int8")
    site.say()
    _float_comparison(site, q, (_real(a, a_t) - _real(b, b_t)) ** 2, "(a - b)^2 of the real values, in double")
    return q


# ----------------------------------------------------------------------------------------------
# ADD, SUB, MUL
# ----------------------------------------------------------------------------------------------

@explains("ADD", "SUB", "MUL")
def explain_elementwise(site: Site):
    a_t, b_t = site.tensor(0), site.tensor(1)
    shape = site.output.shape
    a = _broadcast_element(site.inputs[0], shape, site.index)
    b = _broadcast_element(site.inputs[1], shape, site.index)
    name = site.op.opcode
    sym = {"ADD": "+", "SUB": "-", "MUL": "*"}[name]
    if a_t.dtype in (np.float32, np.int32):
        site.say(f"{a!r} {sym} {b!r} in {a_t.type_name}")
        out = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[name](a, b)
        if a_t.dtype == np.float32:
            out = float_activation(out, site.op.options.get("fused_activation_function"))
        return out.astype(site.output.dtype)
    if a_t.dtype not in (np.int8, np.int16):
        return NotImplemented
    a, b = int(a), int(b)
    site.say(f"input 1: {a} from '{escape_text(a_t.name)}' {_quant_words(a_t)} = real {_real(a, a_t):.6g}")
    site.say(f"input 2: {b} from '{escape_text(b_t.name)}' {_quant_words(b_t)} = real {_real(b, b_t):.6g}")
    site.say()
    q = _mul(site, a, b) if name == "MUL" else _add_sub(site, a, b, name == "ADD")
    site.say()
    real_a, real_b = _real(a, a_t), _real(b, b_t)
    approx = {"ADD": real_a + real_b, "SUB": real_a - real_b, "MUL": real_a * real_b}[name]
    approx = float(float_activation(np.float64(approx), site.op.options.get("fused_activation_function")))
    _float_comparison(site, q, approx, f"{real_a:.6g} {sym} {real_b:.6g} in double")
    return q


def _add_sub(site: Site, a: int, b: int, is_add: bool) -> int:
    p = site.params
    if "a_multiplier" in p:
        return _add_sub_xnnpack(site, a, b, is_add)
    left = p["left_shift"]
    site.say(f"1. both inputs onto one scale, 2 * max(s1, s2) / 2^{left}: minus the zero point, << {left}"
             f" for precision, times each input's multiplier s_i / (2 * max(s1, s2))")
    site.say(f"  input 1: ({a} - {-p['input1_offset']}) << {left} = {(a + p['input1_offset']) << left}")
    ra = _requantize_steps(site, (a + p["input1_offset"]) << left, p["input1_multiplier"], p["input1_shift"], "    ")
    site.say(f"  input 2: ({b} - {-p['input2_offset']}) << {left} = {(b + p['input2_offset']) << left}")
    rb = _requantize_steps(site, (b + p["input2_offset"]) << left, p["input2_multiplier"], p["input2_shift"], "    ")
    raw = int(fp.wrap_int32(ra + rb if is_add else ra - rb))
    site.say(f"2. {ra} {'+' if is_add else '-'} {rb} = {raw}")
    site.say(f"3. to the output scale: multiplier 2 * max(s1, s2) / (2^{left} * out_scale)")
    out = _requantize_steps(site, raw, p["output_multiplier"], p["output_shift"])
    site.say(f"  + output zero point {p['output_offset']}: {out + p['output_offset']}")
    lo, hi = p["activation_min"], p["activation_max"]
    return _clamp(site, out + p["output_offset"], lo, hi, _activation_words(site, lo, hi))


def _add_sub_xnnpack(site: Site, a: int, b: int, is_add: bool) -> int:
    """XNNPACK qs8-vadd (elementwise._add_xnnpack): one integer multiplier per input, one shift."""
    p = site.params
    ma, mb, shift, bias = int(p["a_multiplier"]), int(p["b_multiplier"]), int(p["shift"]), int(p["bias"])
    z1, z2 = _zp(site.tensor(0)), _zp(site.tensor(1))
    site.say(f"XNNPACK qs8-vadd: each input's float32 ratio in_scale / out_scale as an integer multiplier"
             f" of 2^-{shift} (about 21 bits)" + ("" if is_add else "; SUB negates the second one"))
    site.say(f"  multipliers {ma} = {ma / 2**shift:.8g} * 2^{shift}, {mb} = {mb / 2**shift:.8g} * 2^{shift}")
    site.say(f"  bias = 2^{shift - 1} (the rounding) - {ma}*({z1}) - {mb}*({z2}) = {bias}   (the zero points folded in)")
    acc = int(fp.wrap_int32(bias + a * ma + b * mb))
    site.say(f"1. {bias} + {a}*{ma} + {b}*{mb} = {acc} (int32)")
    out = acc >> shift
    site.say(f"2. {acc} >> {shift} = {out}   (arithmetic shift: with the 2^{shift - 1} in the bias, round half up)")
    site.say(f"  + output zero point {p['output_offset']}: {out + p['output_offset']}")
    lo, hi = p["activation_min"], p["activation_max"]
    return _clamp(site, out + p["output_offset"], lo, hi, _activation_words(site, lo, hi))


def _mul(site: Site, a: int, b: int) -> int:
    p = site.params
    prod = (a + p["input1_offset"]) * (b + p["input2_offset"])
    site.say(f"1. ({a} - {-p['input1_offset']}) * ({b} - {-p['input2_offset']}) = {prod}")
    if "scale" in p:                                      # XNNPACK fp32
        site.say("2. to the output scale")
        out = _fp32_requantize_steps(site, int(fp.wrap_int32(prod)), np.float32(p["scale"]),
                                     "float32(float32(s1 * s2) / out_scale)")
    else:
        how = ("double(s1) * double(s2) / double(out_scale)" if _rule_name(site) == "fixed-point-f64"
               else "float32(s1 * s2) / out_scale")
        site.say(f"2. to the output scale: {how} = {p['real_multiplier']:.10g}")
        out = _requantize_steps(site, int(fp.wrap_int32(prod)), p["output_multiplier"], p["output_shift"])
    site.say(f"  + output zero point {p['output_offset']}: {out + p['output_offset']}")
    lo, hi = p["activation_min"], p["activation_max"]
    return _clamp(site, out + p["output_offset"], lo, hi, _activation_words(site, lo, hi))


# ----------------------------------------------------------------------------------------------
# QUANTIZE, DEQUANTIZE, CAST
# ----------------------------------------------------------------------------------------------

@explains("QUANTIZE")
def explain_quantize(site: Site):
    x_t, out_t = site.tensor(0), site.out_t
    x = site.inputs[0][site.index]
    lo, hi = int(np.iinfo(out_t.dtype).min), int(np.iinfo(out_t.dtype).max)
    if x_t.dtype == np.float32:
        scale = np.float32(_scale(out_t))
        ratio = np.float32(x / scale)
        r = int(fp.round_half_away(ratio))
        site.say(f"float32 input {float(x):.9g}: / scale {float(scale):.6g} = {float(ratio):.6f} (float32);"
                 f" round half away from zero = {r}; + zero point {_zp(out_t)} = {r + _zp(out_t)}")
        q = _clamp(site, r + _zp(out_t), lo, hi, f"the {out_t.type_name} range")
        _float_comparison(site, q, float(x), "the float input itself")
        return q
    p = site.params
    site.say(f"{x_t.type_name} input {int(x)} {_quant_words(x_t)} = real {_real(int(x), x_t):.6g}:"
             f" requantize by in_scale / out_scale = {p['real_multiplier']:.10g}")
    site.say(f"  {int(x)} - zero point {p['input_zero_point']} = {int(x) - p['input_zero_point']}")
    out = _requantize_steps(site, int(x) - p["input_zero_point"], p["multiplier"], p["shift"])
    site.say(f"  + output zero point {p['output_zero_point']}: {out + p['output_zero_point']}")
    q = _clamp(site, out + p["output_zero_point"], lo, hi, f"the {out_t.type_name} range")
    _float_comparison(site, q, _real(int(x), x_t), "the input's real value")
    return q


@explains("DEQUANTIZE")
def explain_dequantize(site: Site):
    x_t = site.tensor(0)
    x = site.inputs[0][site.index]
    if x_t.dtype == np.float16:
        site.say(f"float16 {x!r} widened exactly to float32")
        return np.float32(x)
    q = x_t.quantization
    channel = site.index[q.quantized_dimension] if q.per_channel else 0
    scale = np.float64(q.scales[channel])
    zp = int(q.zero_points[channel])
    out = np.float32(scale * (int(x) - zp))
    site.say(f"{x_t.type_name} {int(x)}: (float)((double) scale {float(scale):.9g} * ({int(x)} - {zp})) = {float(out):.9g}")
    return out


@explains("CAST")
def explain_cast(site: Site):
    x = site.inputs[0][site.index]
    out = np.asarray(x).astype(site.output.dtype)
    site.say(f"static_cast<{site.out_t.type_name.lower()}>({x!r}) = {out!r}")
    return out[()]


# ----------------------------------------------------------------------------------------------
# MEAN, SUM (quantized)
# ----------------------------------------------------------------------------------------------

@explains("MEAN", "SUM")
def explain_reduce(site: Site):
    from .kernels.reduce import mean_multiplier, resolve_axes, rows_to_reduce
    x_t, out_t, p = site.tensor(0), site.out_t, site.params
    if x_t.dtype == np.float32:
        return _reduce_float(site)
    if x_t.dtype not in (np.int8, np.int16):
        return NotImplemented
    x = site.inputs[0]
    if p["reads_int8_as_uint8"]:
        site.say("the reference int8 SUM reads its buffers as uint8 (a LiteRT bug we reproduce): -1 reads as 255")
        x = x.view(np.uint8)
    axes = resolve_axes(site.inputs[1], x.ndim)
    rows = rows_to_reduce(x.astype(np.int64), axes)
    count = rows.shape[-1]
    row = rows.reshape(-1, count)[int(np.ravel_multi_index(site.index, site.output.shape))]
    total = int(fp.wrap_int32(row.sum()))
    site.say(f"{count} values over axes {list(axes)}: {_ints(row)}; int32 sum {total}")
    shifted = int(fp.wrap_int32(total - p["input_zero_point"] * count))
    site.say(f"minus zero point * count: {total} - {p['input_zero_point']} * {count} = {shifted}")
    m, s = p["multiplier"], p["shift"]
    if site.op.opcode == "MEAN":
        m, s = mean_multiplier(m, s, count)
        site.say(f"1/{count} folded into the multiplier in_scale / out_scale: (M0 {m}, shift {s})")
    out = _requantize_steps(site, shifted, m, s)
    lo, hi = (0, 255) if p["reads_int8_as_uint8"] else (int(np.iinfo(out_t.dtype).min), int(np.iinfo(out_t.dtype).max))
    q = _clamp(site, out + p["output_zero_point"], lo, hi)
    if p["reads_int8_as_uint8"]:
        q = int(np.array(q, dtype=np.uint8).view(np.int8))
        site.say(f"  stored as a byte that reads back as int8 {q}")
    return q


def _reduce_float(site: Site):
    """reference_ops::Mean / ReduceGeneric (float): a float32 sum in the order the loop visits."""
    from .kernels.reduce import resolve_axes, rows_to_reduce, sequential_sum
    x = site.inputs[0]
    axes = resolve_axes(site.inputs[1], x.ndim)
    rows = rows_to_reduce(x, axes)
    count = rows.shape[-1]
    row = rows.reshape(-1, count)[int(np.ravel_multi_index(site.index, site.output.shape))]
    site.say(f"{count} float32 values over axes {list(axes)}: {_floats(row)}")
    if site.op.opcode == "SUM" and len(axes) == x.ndim and count > 0:
        total = sequential_sum(row)
        site.say(f"summed one at a time in float32, starting from the first value (ReduceAllDims): {float(total):.9g}")
        return np.float32(total)
    total = sequential_sum(row, np.float32(0))
    site.say(f"summed one at a time in float32 from 0: {float(total):.9g}"
             f" (in double: {float(row.astype(np.float64).sum()):.9g})")
    if site.op.opcode == "SUM":
        return np.float32(total)
    out = np.float32(total / np.float32(count))
    site.say(f"/ (float) {count} = {float(out):.9g}")
    return out


# ----------------------------------------------------------------------------------------------
# Shape ops: where the element came from
# ----------------------------------------------------------------------------------------------

SHAPE_OPS = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE", "TRANSPOSE", "STRIDED_SLICE", "SLICE", "GATHER",
             "PAD", "PADV2", "CONCATENATION")


@explains(*SHAPE_OPS)
def explain_shape_op(site: Site):
    """Run the kernel itself on inputs whose values are their own positions: the output then holds,
    at every element, which input element it copied (or the padding value)."""
    data_inputs = range(len(site.inputs)) if site.op.opcode == "CONCATENATION" else (0,)
    tagged = list(site.inputs)
    for k in data_inputs:
        x = site.inputs[k]
        tagged[k] = ((k + 1) << TAG_SHIFT) + np.arange(x.size, dtype=np.int64).reshape(x.shape)
    tag = int(site.step.run(tagged)[0][site.index])
    site.say("values move without arithmetic (same scale and zero point in and out)")
    if tag < (1 << TAG_SHIFT):
        pad = _pad_value(site)
        site.say(f"this element is padding: the pad value {_fmt(pad)}"
                 + (" (the output's zero point: real 0)" if site.out_t.quantization is not None else ""))
        return pad
    k, flat = (tag >> TAG_SHIFT) - 1, tag & ((1 << TAG_SHIFT) - 1)
    x = site.inputs[k]
    where = [int(i) for i in np.unravel_index(flat, x.shape)]
    value = x.reshape(-1)[flat]
    t = site.tensor(k)
    site.say(f"copied from input {k} '{escape_text(t.name)}' {list(x.shape)} at element {where}: {_fmt(value)}"
             + (f" = real {_real(int(value), t):.6g}" if t.quantization is not None and x.dtype.kind == "i" else ""))
    if site.op.opcode == "GATHER":
        site.say(f"  (GATHER axis {site.params.get('axis', 0)}: row {where[site.params.get('axis', 0)]}"
                 f" picked by the indices input)")
    return value


def _pad_value(site: Site):
    if len(site.inputs) > 2 and site.inputs[2] is not None:
        return np.asarray(site.inputs[2]).reshape(())[()].astype(site.output.dtype)
    return np.asarray(site.params.get("pad_value", 0)).astype(site.output.dtype)[()]


# ----------------------------------------------------------------------------------------------
# Fallback
# ----------------------------------------------------------------------------------------------

def _fallback(site: Site):
    shape = site.output.shape
    for k, (t, x) in enumerate(zip(site.step.ctx.inputs, site.inputs)):
        if t is None or x is None:
            continue
        try:
            value = f"at this element: {_fmt(_broadcast_element(x, shape, site.index))}"
        except ValueError:
            value = f"{list(x.shape)} {_floats(x) if x.dtype.kind == 'f' else _ints(x)}"
        site.say(f"input {k} '{escape_text(t.name)}' {t.type_name} {_quant_words(t)} {value}")
    out = site.output[site.index]
    site.say(f"output: {_fmt(out)}")
    return None
