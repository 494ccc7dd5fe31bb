"""BATCH_MATMUL.

Mirrors ``tflite/kernels/batch_matmul.cc`` (Prepare, EvalInt8Int8, EvalInt16) and
``tflite/kernels/internal/reference/batch_matmul.h``. Unlike FULLY_CONNECTED, the integer path
still requantizes with a fixed-point (multiplier, shift) pair, whose real multiplier is
``double(float(lhs_scale * rhs_scale)) / double(out_scale)`` (GetQuantizedConvolutionMultipler
without bias: the scale product is taken in float32).
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import (multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_int64,
                          quantize_multiplier)
from .base import (OpContext, PreparedOp, clamp_cast, dtype_limits, exact_int_matmul, register,
                   scale_of, zero_point_of)


def _orient(ctx: OpContext):
    """adj_x / adj_y: transpose the last two dims of an operand before the product."""
    adj_x = bool(ctx.options.get("adj_x"))
    adj_y = bool(ctx.options.get("adj_y"))

    def lhs(a):
        return np.swapaxes(a, -1, -2) if adj_x else a

    def rhs(b):
        return np.swapaxes(b, -1, -2) if adj_y else b
    return lhs, rhs


@register("BATCH_MATMUL")
def prepare_batch_matmul(ctx: OpContext) -> PreparedOp:
    lhs_t, rhs_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    lhs_of, rhs_of = _orient(ctx)
    out_shape = tuple(out_t.shape)

    if lhs_t.dtype == np.float32 and rhs_t.dtype == np.float32:
        def run_float(inputs):
            out = np.matmul(lhs_of(inputs[0]), rhs_of(inputs[1])).astype(np.float32)
            return [out.reshape(out_shape)]
        return PreparedOp(ctx, run_float, {}, "tflite/kernels/internal/reference/batch_matmul.h (float)")

    if lhs_t.dtype not in (np.int8, np.int16) or rhs_t.dtype != lhs_t.dtype:
        raise ctx.unsupported("this dtype combination is not supported yet")

    product_scale = np.float32(scale_of(lhs_t) * scale_of(rhs_t))   # float32 product, as TFLite
    real_multiplier = np.float64(product_scale) / np.float64(scale_of(out_t))
    multiplier, shift = quantize_multiplier(real_multiplier)
    lhs_offset, rhs_offset = -zero_point_of(lhs_t), -zero_point_of(rhs_t)
    out_zp = zero_point_of(out_t)
    lo, hi = dtype_limits(out_t.dtype)    # BATCH_MATMUL has no fused activation
    # int16 accumulates in int64 and uses the int64 MultiplyByQuantizedMultiplier overload,
    # which first rounds the multiplier to 16 bits (common.cc).
    requantize = (multiply_by_quantized_multiplier_int64 if lhs_t.dtype == np.int16
                  else multiply_by_quantized_multiplier)

    def run(inputs):
        lhs = lhs_of(inputs[0].astype(np.int64) + lhs_offset)
        rhs = rhs_of(inputs[1].astype(np.int64) + rhs_offset)
        acc = exact_int_matmul(lhs, rhs)                     # [..., rows, cols]
        out = requantize(acc, multiplier, shift) + out_zp
        return [clamp_cast(out, lo, hi, out_t.dtype).reshape(out_shape)]

    params = {"real_multiplier": real_multiplier, "multiplier": multiplier, "shift": shift,
              "lhs_offset": lhs_offset, "rhs_offset": rhs_offset, "output_offset": out_zp}
    return PreparedOp(ctx, run, params, "tflite/kernels/internal/reference/batch_matmul.h (int8/int16)")
