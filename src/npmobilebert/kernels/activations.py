"""TANH, LOGISTIC, RELU, RELU6 for float32 and int8; TANH and LOGISTIC for int16.

int8 TANH/LOGISTIC mirror ``tflite/kernels/activations.cc`` (kReference branch): a 256-entry
lookup table built by ``LUTPopulateInt8`` (common.h) -- dequantize each int8 value in float32,
apply the float function, ``round(y / out_scale) + out_zp``, clamp.

int16 TANH/LOGISTIC: the reference resolver always calls ``reference_integer_ops::Tanh`` /
``Logistic`` (int16 overloads), which rescale the input to 1/(3*4096) (or use the power-of-two
shortcut) and interpolate linearly in the 256-entry ``sigmoid_table_uint16``.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..fixedpoint import round_half_away
from .base import (OpContext, PreparedOp, activation_range, clamp_cast, float32_of_exact, register,
                   scale_of, zero_point_of)

def _logistic(x: np.ndarray) -> np.ndarray:
    """reference/logistic.h (float): 1 above 16.619047, expf(x) below -9, else 1 / (1 + expf(-x))."""
    x = np.asarray(x, dtype=np.float32)
    middle = np.float32(1) / (np.float32(1) + float32_of_exact(np.exp, -x))
    low = float32_of_exact(np.exp, x)
    return np.where(x > np.float32(16.619047164916992188), np.float32(1),
                    np.where(x < np.float32(-9), low, middle)).astype(np.float32)


_FLOAT_FUNCS = {
    "TANH": lambda x: float32_of_exact(np.tanh, x),
    "LOGISTIC": _logistic,
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
    if x_t.dtype == np.int16 and out_t.dtype == np.int16 and name in ("TANH", "LOGISTIC"):
        return _prepare_int16_sigmoid_family(ctx)
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
    params = {"multiplier": multiplier, "shift": shift, "input_zero_point": in_zp,
              "output_zero_point": out_zp, "activation_min": lo, "activation_max": hi}
    return PreparedOp(ctx, run, params, "tflite/kernels/activations.cc ReluPrepare / reference_ops::ReluX")


def int16_input_rescale(input_scale: float, is_tanh: bool) -> tuple[int, int]:
    """TanhPrepare / SigmoidPrepare (int16) -> (input_multiplier, input_left_shift).

    A power-of-two input scale whose shift lands on 0 (or 1, TANH only) keeps multiplier 0: the
    kernel then uses 3 << shift. Otherwise the multiplier is scale * 4096 * 3 doubled until it
    exceeds 32767 / 2, truncated to an integer, and the shift counts the doublings.
    """
    input_bits = 3                                     # kInputIntegerBits
    is_pot, log2_rounded = fp.checked_log2(input_scale)
    left_shift = (15 - input_bits) + log2_rounded
    is_pot = is_pot and (left_shift in (0, 1) if is_tanh else left_shift == 0)
    if is_pot:
        return 0, left_shift
    multiplier = float(np.float32(input_scale)) * 4096.0 * 3.0
    left_shift = 0
    while multiplier <= 32767.0 / 2.0 and left_shift <= 30:
        left_shift += 1
        multiplier *= 2.0
    return int(multiplier), left_shift


def int16_sigmoid_family(x: np.ndarray, multiplier: int, left_shift: int, is_tanh: bool) -> np.ndarray:
    """reference_integer_ops::Tanh / Logistic (int16): table interpolation on |input|,
    mirrored for negative inputs. tanh(x) = 2 * sigmoid(2x) - 1 reuses the sigmoid table."""
    if multiplier == 0:                                # power-of-two case
        multiplier, left_shift = 3 << left_shift, 0
    rounding = (1 << (left_shift - 1)) if left_shift > 0 else 0
    value = (x.astype(np.int64) * multiplier + rounding) >> left_shift
    magnitude = np.abs(value)
    table = fp.SIGMOID_TABLE_UINT16
    frac_bits = 8 if is_tanh else 9                    # tanh reads sigmoid at twice the input
    uh = magnitude >> frac_bits
    inside = uh < 255
    ua = table[np.where(inside, uh, 0)]
    ub = table[np.where(inside, uh + 1, 0)]
    ut = magnitude & ((1 << frac_bits) - 1)
    if is_tanh:
        interpolated = np.where(inside, (ua << 8) + ut * (ub - ua), 0xFFFF << 8)
        result = np.where(value >= 0, interpolated - (1 << 23) + (1 << 7),
                          -interpolated + (1 << 23) + (1 << 7) - 1)
        result = result >> 8                           # int32 arithmetic shift
    else:
        interpolated = np.where(inside, (ua << 9) + ut * (ub - ua), 0x7FFF << 10)
        result = np.where(value >= 0, interpolated + (1 << 9),
                          (1 << 25) - interpolated + (1 << 9) - 1)
        result = (result & 0xFFFFFFFF) >> 10           # uint32 arithmetic
    return (((result + (1 << 15)) & 0xFFFF) - (1 << 15)).astype(np.int16)   # static_cast<int16_t>


def _prepare_int16_sigmoid_family(ctx: OpContext) -> PreparedOp:
    x_t = ctx.inputs[0]
    is_tanh = ctx.op.opcode == "TANH"
    multiplier, left_shift = int16_input_rescale(float(scale_of(x_t)), is_tanh)

    def run(inputs):
        return [int16_sigmoid_family(inputs[0], multiplier, left_shift, is_tanh)]
    source = "tanh.h Tanh" if is_tanh else "logistic.h Logistic"
    return PreparedOp(ctx, run, {"input_multiplier": multiplier, "input_left_shift": left_shift},
                      f"tflite/kernels/internal/reference/integer_ops/{source} (int16)")
