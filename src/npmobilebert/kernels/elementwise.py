"""ADD, SUB, MUL (with NumPy broadcasting, which matches TFLite's BroadcastBinaryFunction6DSlow).

Quantized ADD/SUB mirror ``tflite/kernels/add.cc`` / ``sub.cc`` Prepare and
``reference/integer_ops/add.h`` AddFunc: both inputs are shifted left (20 bits for int8, 15 for
int16), rescaled to twice the larger input scale by their own multipliers, summed, and the sum is
rescaled to the output. Quantized MUL mirrors ``mul.cc`` and ``reference/integer_ops/mul.h``: one
multiplier for ``s1 * s2 / s_out``, computed in float32 as the C++ does.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from .base import (OpContext, PreparedOp, activation_range, clamp_cast, float_activation, register,
                   scale_of, zero_point_of)

_FLOAT_OPS = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}


@register("ADD", "SUB", "MUL")
def prepare_elementwise(ctx: OpContext) -> PreparedOp:
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
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

    def run(inputs):
        a = fp.multiply_by_quantized_multiplier(
            (inputs[0].astype(np.int64) + o1) << left_shift, m1, sh1)
        b = fp.multiply_by_quantized_multiplier(
            (inputs[1].astype(np.int64) + o2) << left_shift, m2, sh2)
        raw = fp.wrap_int32(a + sign * b)
        out = fp.multiply_by_quantized_multiplier(raw, mo, sho) + out_zp
        return [clamp_cast(out, lo, hi, out_t.dtype)]

    params = {"left_shift": left_shift, "input1_multiplier": m1, "input1_shift": sh1,
              "input2_multiplier": m2, "input2_shift": sh2, "output_multiplier": mo,
              "output_shift": sho, "input1_offset": o1, "input2_offset": o2,
              "output_offset": out_zp, "activation_min": lo, "activation_max": hi}
    return PreparedOp(ctx, run, params, f"tflite/kernels/internal/reference/integer_ops/add.h ({ctx.op.opcode})")


def _general_int16_scales(*tensors) -> bool:
    """add.cc: the POT path applies only when every scale is an exact power of two."""
    for t in tensors:
        mantissa, _ = np.frexp(np.float64(scale_of(t)))
        if mantissa != 0.5:
            return True
    return False


def _prepare_mul(ctx: OpContext, activation: str) -> PreparedOp:
    a_t, b_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    real = np.float32(scale_of(a_t) * scale_of(b_t)) / scale_of(out_t)   # float32 arithmetic
    multiplier, shift = fp.quantize_multiplier(float(np.float32(real)))
    o1, o2, out_zp = -zero_point_of(a_t), -zero_point_of(b_t), zero_point_of(out_t)
    lo, hi = activation_range(activation, out_t)

    def run(inputs):
        prod = (inputs[0].astype(np.int64) + o1) * (inputs[1].astype(np.int64) + o2)
        out = fp.multiply_by_quantized_multiplier(fp.wrap_int32(prod), multiplier, shift) + out_zp
        return [clamp_cast(out, lo, hi, out_t.dtype)]

    params = {"real_multiplier": float(real), "output_multiplier": multiplier, "output_shift": shift,
              "input1_offset": o1, "input2_offset": o2, "output_offset": out_zp,
              "activation_min": lo, "activation_max": hi}
    return PreparedOp(ctx, run, params, "tflite/kernels/internal/reference/integer_ops/mul.h")
