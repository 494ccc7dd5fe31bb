"""ADD, SUB, MUL, SQUARED_DIFFERENCE and RSQRT (NumPy broadcasting matches TFLite's
BroadcastBinaryFunction6DSlow / 4DSlow).

Quantized ADD/SUB mirror ``tflite/kernels/add.cc`` / ``sub.cc`` Prepare and
``reference/integer_ops/add.h`` AddFunc: both inputs are shifted left (20 bits for int8, 15 for
int16), rescaled to twice the larger input scale by their own multipliers, summed, and the sum is
rescaled to the output. Quantized MUL mirrors ``mul.cc`` and ``reference/integer_ops/mul.h``: one
multiplier for ``s1 * s2 / s_out``, computed in float32 as LiteRT's C++ does (TFLite Micro's
``mul_common.cc``: in double).

SQUARED_DIFFERENCE int8 (``squared_difference.cc``) rescales like ADD with a 7-bit shift and
squares the raw difference. RSQRT (``elementwise.cc``): int8 by the fixed-point Newton-Raphson of
``GetInvSqrtQuantizedMultiplierExp``, int16 by an interpolated LUT, float32 as ``1.f / sqrtf``.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from .base import (Int8PairTable, OpContext, PreparedOp, activation_range, clamp_cast,
                   float_activation, register, scale_of, zero_point_of)

_FLOAT_OPS = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}


@register("ADD", "SUB", "MUL")
def prepare_elementwise(ctx: OpContext) -> PreparedOp:
    a_t, b_t = ctx.inputs[0], ctx.inputs[1]
    activation = ctx.options.get("fused_activation_function")
    if a_t.dtype != b_t.dtype:
        raise ctx.unsupported("inputs of different dtypes")
    if a_t.dtype == np.float32:
        func = _FLOAT_OPS[ctx.op.opcode]
        return PreparedOp(ctx, lambda ins: [float_activation(func(ins[0], ins[1]), activation)],
                          {}, "tflite/kernels/internal/reference/*.h (float)")
    if a_t.dtype == np.int32 and ctx.op.opcode in ("ADD", "SUB", "MUL") and activation in ("NONE", None):
        func = _FLOAT_OPS[ctx.op.opcode]
        return PreparedOp(ctx, lambda ins: [func(ins[0], ins[1]).astype(np.int32)], {},
                          "int32 elementwise")
    if a_t.dtype not in (np.int8, np.int16):
        raise ctx.unsupported("this dtype is not supported yet")
    if ctx.op.opcode == "MUL":
        return _prepare_mul(ctx, activation)
    return _prepare_add_sub(ctx, activation)


def _prepare_add_sub(ctx: OpContext, activation: str) -> PreparedOp:
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    if a_t.dtype == np.int16 and ctx.options.get("pot_scale_int16", True) and ctx.op.opcode == "ADD":
        if not _general_int16_scales(a_t, b_t, out_t):
            raise ctx.unsupported("int16 ADD with power-of-two scales (pot_scale_int16) is not supported yet")
    strategy = ctx.numerics.strategy("add_requantize")
    if strategy == "xnnpack" and (a_t.dtype != np.int8 or not _xnnpack_takes_add(ctx)):
        strategy = "fixed-point"        # not delegated: LiteRT's builtin kernel runs it
    rule = ctx.numerics.rule("add_requantize", strategy)
    compute, params = ADD_STRATEGIES[strategy](ctx, activation)
    return _elementwise_op(ctx, compute, params, rule.source)


def _add_fixed_point(ctx: OpContext, activation: str):
    """LiteRT and TFLite Micro (reference/integer_ops/add.h AddFunc): inputs << 20 (15 for
    int16), each rescaled to twice the larger input scale, summed, rescaled to the output."""
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    left_shift = 15 if a_t.dtype == np.int16 else 20
    s1, s2, so = scale_of(a_t), scale_of(b_t), scale_of(out_t)
    twice_max_input_scale = 2.0 * float(max(s1, s2))
    m1, sh1 = fp.quantize_multiplier(float(s1) / twice_max_input_scale)
    m2, sh2 = fp.quantize_multiplier(float(s2) / twice_max_input_scale)
    # (1 << left_shift) * out_scale is a float32 product in C++ (exact: a power of two)
    mo, sho = fp.quantize_multiplier(twice_max_input_scale / float(np.float32((1 << left_shift) * so)))
    o1, o2, out_zp = -zero_point_of(a_t), -zero_point_of(b_t), zero_point_of(out_t)
    lo, hi = activation_range(activation, out_t)
    sign = 1 if ctx.op.opcode == "ADD" else -1

    def compute(x1, x2):
        a = fp.multiply_by_quantized_multiplier((x1.astype(np.int64) + o1) << left_shift, m1, sh1)
        b = fp.multiply_by_quantized_multiplier((x2.astype(np.int64) + o2) << left_shift, m2, sh2)
        raw = fp.wrap_int32(a + sign * b)
        out = fp.multiply_by_quantized_multiplier(raw, mo, sho) + out_zp
        return clamp_cast(out, lo, hi, out_t.dtype)

    params = {"left_shift": left_shift, "input1_multiplier": m1, "input1_shift": sh1,
              "input2_multiplier": m2, "input2_shift": sh2, "output_multiplier": mo,
              "output_shift": sho, "input1_offset": o1, "input2_offset": o2,
              "output_offset": out_zp, "activation_min": lo, "activation_max": hi}
    return compute, params


def _add_xnnpack(ctx: OpContext, activation: str):
    """XNNPACK qs8-vadd (microparams-init.c xnn_init_qs8_add_minmax_scalar_params): one integer
    multiplier per input (~21 bits) from the float32 ratio in_scale / out_scale, one rounding
    arithmetic shift: ``(bias + a*ma + b*mb) >> shift``, the zero points folded into the bias.
    SUB is an ADD whose b scale is negated."""
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    so = scale_of(out_t)
    sign = 1 if ctx.op.opcode == "ADD" else -1
    ma, mb, shift = fp.xnnpack_add_multipliers(scale_of(a_t) / so, np.float32(sign) * scale_of(b_t) / so)
    bias = (1 << (shift - 1)) - ma * zero_point_of(a_t) - mb * zero_point_of(b_t)
    out_zp = zero_point_of(out_t)
    lo, hi = activation_range(activation, out_t)

    def compute(x1, x2):
        acc = fp.wrap_int32(bias + x1.astype(np.int64) * ma + x2.astype(np.int64) * mb)
        return clamp_cast((acc >> shift) + out_zp, lo, hi, out_t.dtype)

    params = {"a_multiplier": ma, "b_multiplier": mb, "shift": shift, "bias": bias,
              "output_offset": out_zp, "activation_min": lo, "activation_max": hi}
    return compute, params


def _xnnpack_takes_add(ctx: OpContext) -> bool:
    """The delegate takes a quantized ADD/SUB only where XNNPACK's parameter init accepts the
    scales: |in_scale / out_scale| in [2**-10, 2**8) for both inputs (xnnpack_delegate.cc
    CheckTensorsInputOutputScale); otherwise LiteRT's builtin kernel runs it."""
    so = scale_of(ctx.outputs[0])
    return all(2.0 ** -10 <= float(scale_of(t) / so) < 2.0 ** 8 for t in ctx.inputs[:2])


ADD_STRATEGIES = {"fixed-point": _add_fixed_point, "xnnpack": _add_xnnpack}


def _elementwise_op(ctx: OpContext, compute, params: dict, rule: str) -> PreparedOp:
    """int8: a lazily built table of every result (Int8PairTable); int16: compute directly."""
    if ctx.inputs[0].dtype == np.int8:
        table = Int8PairTable(compute)
        return PreparedOp(ctx, lambda inputs: [table(inputs[0], inputs[1])], params, rule, pair_table=table)
    return PreparedOp(ctx, lambda inputs: [compute(inputs[0], inputs[1])], params, rule)


def _general_int16_scales(*tensors) -> bool:
    """add.cc: the POT path applies only when every scale is an exact power of two."""
    for t in tensors:
        mantissa, _ = np.frexp(np.float64(scale_of(t)))
        if mantissa != 0.5:
            return True
    return False


def _prepare_mul(ctx: OpContext, activation: str) -> PreparedOp:
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    o1, o2, out_zp = -zero_point_of(a_t), -zero_point_of(b_t), zero_point_of(out_t)
    lo, hi = activation_range(activation, out_t)
    strategy = ctx.numerics.strategy("mul_requantize")
    if strategy == "xnnpack-fp32" and (a_t.dtype != np.int8 or not _xnnpack_takes_mul(ctx)):
        strategy = "fixed-point"        # not delegated: LiteRT's builtin kernel runs it
    rule = ctx.numerics.rule("mul_requantize", strategy)
    requantize, params = MUL_STRATEGIES[strategy](ctx)

    def compute(x1, x2):
        prod = (x1.astype(np.int64) + o1) * (x2.astype(np.int64) + o2)
        return clamp_cast(requantize(fp.wrap_int32(prod)) + out_zp, lo, hi, out_t.dtype)

    params.update({"input1_offset": o1, "input2_offset": o2, "output_offset": out_zp,
                   "activation_min": lo, "activation_max": hi})
    return _elementwise_op(ctx, compute, params, rule.source)


def _mul_fixed_point(ctx: OpContext):
    """LiteRT (mul.cc, reference/integer_ops/mul.h): one multiplier for s1 * s2 / s_out, the
    ratio computed in float32 as the C++ does."""
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    real = np.float32(scale_of(a_t) * scale_of(b_t)) / scale_of(out_t)   # float32 arithmetic
    multiplier, shift = fp.quantize_multiplier(float(np.float32(real)))

    def requantize(prod):
        return fp.multiply_by_quantized_multiplier(prod, multiplier, shift)
    return requantize, {"real_multiplier": float(real), "output_multiplier": multiplier,
                        "output_shift": shift}


def _mul_fixed_point_double_scale(ctx: OpContext):
    """TFLite Micro (mul_common.cc CalculateOpDataMul): the same kernel (reference
    integer_ops/mul.h), but the multiplier for s1 * s2 / s_out is computed from the scales
    converted to double first: ``static_cast<double>(s1) * static_cast<double>(s2) /
    static_cast<double>(s_out)``."""
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    real = np.float64(scale_of(a_t)) * np.float64(scale_of(b_t)) / np.float64(scale_of(out_t))
    multiplier, shift = fp.quantize_multiplier(float(real))

    def requantize(prod):
        return fp.multiply_by_quantized_multiplier(prod, multiplier, shift)
    return requantize, {"real_multiplier": float(real), "output_multiplier": multiplier,
                        "output_shift": shift}


def _mul_xnnpack(ctx: OpContext):
    """XNNPACK qs8-vmul fp32 (xnn_init_qs8_mul_minmax_scalar_params): the float32 scale
    (s1 * s2) / s_out, the product in float32 times it, rounded to nearest-even."""
    scale = _xnnpack_mul_scale(ctx)

    def requantize(prod):
        return fp.requantize_fp32(prod, scale)
    return requantize, {"scale": float(scale)}


def _xnnpack_mul_scale(ctx: OpContext) -> np.float32:
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    return np.float32(np.float32(scale_of(a_t) * scale_of(b_t)) / scale_of(out_t))


def _xnnpack_takes_mul(ctx: OpContext) -> bool:
    """XNNPACK accepts a quantized MUL when s1 * s2 / s_out is in [2**-16, 2**8)
    (xnnpack_delegate.cc CheckTensorsInputProductOutputScale)."""
    return 2.0 ** -16 <= float(_xnnpack_mul_scale(ctx)) < 2.0 ** 8


MUL_STRATEGIES = {"fixed-point": _mul_fixed_point, "fixed-point-f64": _mul_fixed_point_double_scale,
                  "xnnpack-fp32": _mul_xnnpack}


# ----------------------------------------------------------------------------------------------
# SQUARED_DIFFERENCE   [tflite/kernels/squared_difference.cc]
# ----------------------------------------------------------------------------------------------

SQDIFF_LEFT_SHIFT = 7   # arithmetic_params.left_shift: both inputs << 7, the square << 14


@register("SQUARED_DIFFERENCE")
def prepare_squared_difference(ctx: OpContext) -> PreparedOp:
    a_t, b_t = ctx.inputs[0], ctx.inputs[1]
    if a_t.dtype != b_t.dtype:
        raise ctx.unsupported("inputs of different dtypes")
    if a_t.dtype == np.float32:
        def run_float(inputs):
            d = inputs[0] - inputs[1]                    # float32: (a - b) * (a - b)
            return [d * d]
        return PreparedOp(ctx, run_float, {}, "tflite/kernels/squared_difference.cc (float)")
    if a_t.dtype == np.int8:
        return _prepare_squared_difference_int8(ctx)
    raise ctx.unsupported("this dtype is not supported yet")


def _prepare_squared_difference_int8(ctx: OpContext) -> PreparedOp:
    """squared_difference.cc Prepare / SquaredDifference(int8): rescale both inputs to twice the
    larger input scale (as ADD does, with a 7-bit left shift), square the raw difference and
    rescale (2 * max_scale)^2 / (2^14 * out_scale) to the output."""
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    s1, s2, so = scale_of(a_t), scale_of(b_t), scale_of(out_t)
    twice_max_input_scale = float(np.float32(2) * max(s1, s2))      # float32, then double
    m1, sh1 = fp.quantize_multiplier(float(s1) / twice_max_input_scale)
    m2, sh2 = fp.quantize_multiplier(float(s2) / twice_max_input_scale)
    # (1 << 14) * out_scale is a float32 product (exact: a power of two)
    out_real = (twice_max_input_scale * twice_max_input_scale
                / float(np.float32((1 << (2 * SQDIFF_LEFT_SHIFT)) * so)))
    mo, sho = fp.quantize_multiplier(out_real)
    if max(sh1, sh2, sho) > 0:
        # QuantizeMultiplierSmallerThanOneExp TFLITE_CHECKs this: LiteRT aborts the process
        raise ctx.unsupported("SQUARED_DIFFERENCE with an output multiplier >= 1")
    o1, o2, out_zp = -zero_point_of(a_t), -zero_point_of(b_t), zero_point_of(out_t)

    def run(inputs):
        a = fp.multiply_by_quantized_multiplier(
            (inputs[0].astype(np.int64) + o1) << SQDIFF_LEFT_SHIFT, m1, sh1)
        b = fp.multiply_by_quantized_multiplier(
            (inputs[1].astype(np.int64) + o2) << SQDIFF_LEFT_SHIFT, m2, sh2)
        raw_diff = a - b                                  # broadcasts (BroadcastBinaryFunction4DSlow)
        # at most 255^2 << 14: fits int32, as the C++ comment notes
        out = fp.multiply_by_quantized_multiplier(raw_diff * raw_diff, mo, sho) + out_zp
        return [clamp_cast(out, -128, 127, np.int8)]

    params = {"left_shift": SQDIFF_LEFT_SHIFT, "input1_multiplier": m1, "input1_shift": sh1,
              "input2_multiplier": m2, "input2_shift": sh2, "output_multiplier": mo,
              "output_shift": sho, "input1_offset": o1, "input2_offset": o2,
              "output_offset": out_zp}
    return PreparedOp(ctx, run, params, "tflite/kernels/squared_difference.cc SquaredDifference (int8)")


# ----------------------------------------------------------------------------------------------
# RSQRT   [tflite/kernels/elementwise.cc]
# ----------------------------------------------------------------------------------------------

RSQRT_KEEP_SHIFT = 20   # kShift in RsqrtEvalQuantizedInt8: keeps 1/sqrt(v) an integer


@register("RSQRT")
def prepare_rsqrt(ctx: OpContext) -> PreparedOp:
    x_t = ctx.inputs[0]
    if x_t.dtype == np.float32:
        # 1.f / std::sqrt(f): both correctly rounded in float32
        return PreparedOp(ctx, lambda ins: [np.float32(1) / np.sqrt(ins[0])], {},
                          "tflite/kernels/elementwise.cc RsqrtEval (float)")
    if x_t.dtype == np.int8:
        return _prepare_rsqrt_int8(ctx)
    if x_t.dtype == np.int16 and x_t.quantization is not None:
        return _prepare_rsqrt_int16(ctx)
    raise ctx.unsupported("this dtype is not supported yet")


def _check_positive(ctx: OpContext, x: np.ndarray, zero_point: int) -> None:
    """RsqrtEval refuses inputs below the zero point ("only defined for positive values")."""
    if x.size and x.min() < zero_point:
        from ..errors import InputError
        raise InputError(f"operator {ctx.op.index} (RSQRT): an input is below the zero point "
                         f"{zero_point}; rsqrt is only defined for positive values")


def _prepare_rsqrt_int8(ctx: OpContext) -> PreparedOp:
    """RsqrtEvalQuantizedInt8: 1/sqrt(q - zp) by GetInvSqrtQuantizedMultiplierExp, taken to an
    integer with a 20-bit shift, then rescaled by 1 / (sqrt(in_scale) * out_scale). With 256
    possible inputs, the whole map is tabulated here."""
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    in_zp, out_zp = zero_point_of(x_t), zero_point_of(out_t)
    # SetRsqrtOutputMultiplier: 1. / (sqrtf(in_scale) * out_scale), the product in float32
    real = 1.0 / float(np.float32(np.sqrt(scale_of(x_t)) * scale_of(out_t)))
    multiplier, shift = fp.quantize_multiplier(real)
    values = np.arange(-128, 128, dtype=np.int64) - in_zp         # every int8 input, minus zp
    inv_m, inv_s = fp.inv_sqrt_quantized_multiplier_exp(np.maximum(values, 0))
    data = fp.multiply_by_quantized_multiplier(1, inv_m, inv_s + RSQRT_KEEP_SHIFT)
    out = fp.multiply_by_quantized_multiplier(data, multiplier, shift - RSQRT_KEEP_SHIFT) + out_zp
    out = np.where(values == 0, 127, out)                          # 0 maps to the max output
    table = clamp_cast(out, -128, 127, np.int8)                    # [256], index q + 128

    def run(inputs):
        _check_positive(ctx, inputs[0], in_zp)
        return [table[inputs[0].astype(np.int64) + 128]]

    return PreparedOp(ctx, run, {"multiplier": multiplier, "shift": shift, "table": table,
                                 "input_zero_point": in_zp, "output_zero_point": out_zp},
                      "tflite/kernels/elementwise.cc RsqrtEvalQuantizedInt8 "
                      "(common.h GetInvSqrtQuantizedMultiplierExp)")


def _prepare_rsqrt_int16(ctx: OpContext) -> PreparedOp:
    """GenericPrepare (RSQRT, int16): a float LUTPopulate<int16> of 1/sqrt (non-positive inputs
    map to 32767 * out_scale), read with the interpolating LUTLookup."""
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    out_scale = scale_of(out_t)

    def rsqrt_or_max(v):
        v = np.asarray(v, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (np.float32(1) / np.sqrt(v)).astype(np.float32)
        return np.where(v <= 0, np.float32(32767) * out_scale, r).astype(np.float32)

    lut = fp.lut_populate_int16(rsqrt_or_max, scale_of(x_t), zero_point_of(x_t), out_scale,
                                zero_point_of(out_t), np.float32)

    def run(inputs):
        _check_positive(ctx, inputs[0], zero_point_of(x_t))
        return [fp.lut_lookup_int16(inputs[0], lut).astype(np.int16)]

    return PreparedOp(ctx, run, {"lut": lut},
                      "tflite/kernels/elementwise.cc RsqrtEvalQuantizedInt16 "
                      "(common.h LUTPopulateInt16<float>, LUTLookup)")
