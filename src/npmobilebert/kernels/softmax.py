"""SOFTMAX.

int8 mirrors ``tflite/kernels/activations.cc`` SoftmaxPrepare (kReference branch) and
``tflite/kernels/internal/reference/softmax.h``: the input difference to the row maximum is
scaled into Q5.26 by a fixed-point multiplier, exp() is gemmlowp's ``exp_on_negative_values``,
the sum is accumulated in Q12.19 and inverted by ``GetReciprocal`` (Newton-Raphson).
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from .base import OpContext, PreparedOp, clamp_cast, dtype_limits, register, scale_of

SCALED_DIFF_INTEGER_BITS = 5     # exp() input is Q5.26
ACCUMULATION_INTEGER_BITS = 12   # sum of exps is Q12.19


@register("SOFTMAX")
def prepare_softmax(ctx: OpContext) -> PreparedOp:
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    beta = float(np.float32(ctx.options.get("beta", 1.0)))
    if x_t.dtype == np.float32:
        return _prepare_float(ctx, beta)
    if x_t.dtype == np.int8 and out_t.dtype in (np.int8, np.int16):
        return _prepare_int8(ctx, beta)
    raise ctx.unsupported("this dtype combination is not supported yet")


def _prepare_int8(ctx: OpContext, beta: float) -> PreparedOp:
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    multiplier, left_shift = fp.preprocess_softmax_scaling(
        beta, float(scale_of(x_t)), SCALED_DIFF_INTEGER_BITS)
    diff_min = -fp.calculate_input_radius(SCALED_DIFF_INTEGER_BITS, left_shift)
    out_min, out_max = dtype_limits(out_t.dtype)
    out_bits = np.dtype(out_t.dtype).itemsize * 8

    def run(inputs):
        x = inputs[0].astype(np.int64)
        diff = x - x.max(axis=-1, keepdims=True)                       # [..., depth], <= 0
        in_range = diff >= diff_min
        # MultiplyByQuantizedMultiplierGreaterThanOne: (diff << left_shift) * multiplier, Q5.26
        scaled_diff = fp.saturating_rounding_doubling_high_mul(
            fp.wrap_int32(diff << left_shift), multiplier)
        exps = fp.exp_on_negative_values(scaled_diff, SCALED_DIFF_INTEGER_BITS)   # Q0.31
        exps_q12 = fp.rescale(exps, 0, ACCUMULATION_INTEGER_BITS)
        sum_of_exps = fp.wrap_int32(np.where(in_range, exps_q12, 0).sum(axis=-1, keepdims=True))
        shifted_scale, bits_over_unit = fp.get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
        exponent = bits_over_unit + 31 - out_bits
        unsat = fp.rounding_divide_by_pot(fp.fixed_mul(shifted_scale, exps), exponent)
        out = np.where(in_range, unsat + out_min, out_min)
        return [clamp_cast(out, out_min, out_max, out_t.dtype)]

    params = {"input_multiplier": multiplier, "input_left_shift": left_shift, "diff_min": diff_min}
    return PreparedOp(ctx, run, params, "tflite/kernels/internal/reference/softmax.h (int8)")


def _prepare_float(ctx: OpContext, beta: float) -> PreparedOp:
    def run(inputs):
        x = inputs[0]
        e = np.exp((x - x.max(axis=-1, keepdims=True)) * np.float32(beta))
        return [(e / e.sum(axis=-1, keepdims=True)).astype(np.float32)]
    return PreparedOp(ctx, run, {"beta": beta}, "tflite/kernels/internal/reference/softmax.h (float)")
