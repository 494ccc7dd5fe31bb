"""TANH, LOGISTIC, RELU, RELU6 for float32 and int8.

int8 TANH/LOGISTIC mirror ``tflite/kernels/activations.cc`` (kReference branch): a 256-entry
lookup table built by ``LUTPopulateInt8`` (common.h) -- dequantize each int8 value in float32,
apply the float function, ``round(y / out_scale) + out_zp``, clamp.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..fixedpoint import round_half_away
from .base import OpContext, PreparedOp, activation_range, clamp_cast, register, scale_of, zero_point_of

_FLOAT_FUNCS = {
    "TANH": np.tanh,
    "LOGISTIC": lambda x: (1.0 / (1.0 + np.exp(-x))).astype(x.dtype),
    "RELU": lambda x: np.maximum(x, np.float32(0)),
    "RELU6": lambda x: np.minimum(np.maximum(x, np.float32(0)), np.float32(6)),
}


def lut_int8(func, x_t, out_t) -> np.ndarray:
    """LUTPopulateInt8: table[q + 128] for every int8 q."""
    q = np.arange(-128, 128, dtype=np.int32)
    dequantized = scale_of(x_t) * (q - zero_point_of(x_t)).astype(np.float32)   # float32
    transformed = func(dequantized.astype(np.float32)).astype(np.float32)
    inverse_scale = np.float32(1.0) / scale_of(out_t)
    rescaled = round_half_away(transformed * inverse_scale)
    quantized = rescaled.astype(np.int64) + zero_point_of(out_t)
    return clamp_cast(quantized, -128, 127, np.int8)


@register("TANH", "LOGISTIC", "RELU", "RELU6")
def prepare_activation(ctx: OpContext) -> PreparedOp:
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    name = ctx.op.opcode
    if x_t.dtype == np.float32:
        func = _FLOAT_FUNCS[name]
        return PreparedOp(ctx, lambda ins: [func(ins[0])], {}, f"tflite/kernels/activations.cc ({name} float)")
    if x_t.dtype == np.int8 and name in ("TANH", "LOGISTIC"):
        table = lut_int8(_FLOAT_FUNCS[name], x_t, out_t)
        return PreparedOp(ctx, lambda ins: [table[ins[0].astype(np.int64) + 128]], {"lut": table},
                          "tflite/kernels/internal/common.h LUTPopulateInt8")
    if x_t.dtype == np.int8 and name in ("RELU", "RELU6"):
        return _prepare_quantized_relu(ctx)
    raise ctx.unsupported("this dtype is not supported yet")


def _prepare_quantized_relu(ctx: OpContext) -> PreparedOp:
    """reference_ops::ReluX: requantize to the output scale, then clamp to the activation range."""
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    multiplier, shift = fp.quantize_multiplier(np.float64(scale_of(x_t)) / np.float64(scale_of(out_t)))
    lo, hi = activation_range(ctx.op.opcode, out_t)
    in_zp, out_zp = zero_point_of(x_t), zero_point_of(out_t)

    def run(inputs):
        v = fp.multiply_by_quantized_multiplier(inputs[0].astype(np.int64) - in_zp, multiplier, shift)
        return [clamp_cast(v + out_zp, lo, hi, out_t.dtype)]
    return PreparedOp(ctx, run, {"multiplier": multiplier, "shift": shift},
                      "tflite/kernels/activations.cc ReluPrepare / reference_ops::ReluX")
