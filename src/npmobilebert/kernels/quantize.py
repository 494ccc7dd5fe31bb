"""QUANTIZE, DEQUANTIZE, CAST.

QUANTIZE float -> int mirrors ``reference/quantize.h`` AffineQuantize (float32 division, round half
away from zero); int -> int is ``reference/requantize.h`` with the fixed-point multiplier of
``double(in_scale) / double(out_scale)`` (quantize.cc Prepare). DEQUANTIZE mirrors
``reference/dequantize.h``: ``(float)((double) scale * (q - zero_point))``; float16 constants are
widened exactly.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from .base import OpContext, PreparedOp, clamp_cast, dtype_limits, register, scale_of, zero_point_of


@register("QUANTIZE")
def prepare_quantize(ctx: OpContext) -> PreparedOp:
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    if out_t.quantization is not None and len(out_t.quantization.scales) > 1:
        raise ctx.unsupported("per-channel QUANTIZE is not supported")
    lo, hi = dtype_limits(out_t.dtype)
    out_zp, out_scale = zero_point_of(out_t), scale_of(out_t)

    if x_t.dtype == np.float32:
        def run_float(inputs):
            # quantize.h casts round(val / scale) to int32, undefined in C++ beyond int32's range:
            # saturate there, so that a huge quotient (a tiny scale, an inf or NaN input) clamps
            # like any large value instead of overflowing the int64 cast
            with np.errstate(over="ignore", invalid="ignore"):
                rounded = np.clip(fp.round_half_away(inputs[0] / out_scale), -2.0**31, 2.0**31 - 1)
                q = np.nan_to_num(rounded, nan=0.0).astype(np.int64) + out_zp
            return [clamp_cast(q, lo, hi, out_t.dtype)]
        return PreparedOp(ctx, run_float, {"scale": float(out_scale), "zero_point": out_zp},
                          "tflite/kernels/internal/reference/quantize.h AffineQuantize")

    if x_t.dtype in (np.int8, np.uint8, np.int16, np.int32):
        real = np.float64(scale_of(x_t)) / np.float64(out_scale)
        multiplier, shift = fp.quantize_multiplier(real)
        in_zp = zero_point_of(x_t)

        def run_requantize(inputs):
            q = fp.multiply_by_quantized_multiplier(inputs[0].astype(np.int64) - in_zp,
                                                    multiplier, shift) + out_zp
            return [clamp_cast(q, lo, hi, out_t.dtype)]
        params = {"real_multiplier": float(real), "multiplier": multiplier, "shift": shift,
                  "input_zero_point": in_zp, "output_zero_point": out_zp}
        return PreparedOp(ctx, run_requantize, params,
                          "tflite/kernels/internal/reference/requantize.h Requantize")
    raise ctx.unsupported("this dtype combination is not supported")


@register("DEQUANTIZE")
def prepare_dequantize(ctx: OpContext) -> PreparedOp:
    x_t = ctx.inputs[0]
    if x_t.dtype == np.float16:
        return PreparedOp(ctx, lambda ins: [ins[0].astype(np.float32)], {},
                          "tflite/kernels/dequantize.h (float16)")
    if x_t.dtype not in (np.int8, np.uint8, np.int16):
        raise ctx.unsupported("this dtype is not supported")
    q = x_t.quantization
    axis = q.quantized_dimension if q is not None else 0
    scales = q.scales.astype(np.float64)
    zero_points = q.zero_points.astype(np.int64)
    shape = [1] * len(x_t.shape)
    if len(scales) > 1:             # per-channel (PerChannelDequantize)
        shape[axis] = len(scales)
    scales, zero_points = scales.reshape(shape), zero_points.reshape(shape)

    def run(inputs):
        return [(scales * (inputs[0].astype(np.int64) - zero_points)).astype(np.float32)]
    return PreparedOp(ctx, run, {"scale": q.scales, "zero_point": q.zero_points},
                      "tflite/kernels/internal/reference/dequantize.h")


@register("CAST")
def prepare_cast(ctx: OpContext) -> PreparedOp:
    out_dtype = ctx.outputs[0].dtype

    def run(inputs):
        # static_cast semantics: float -> int truncates toward zero, as astype does
        return [inputs[0].astype(out_dtype)]
    return PreparedOp(ctx, run, {}, "tflite/kernels/cast.cc")
