"""SOFTMAX.

int8 mirrors ``tflite/kernels/activations.cc`` SoftmaxPrepare (kReference branch) and
``tflite/kernels/internal/reference/softmax.h``: the input difference to the row maximum is
scaled into Q5.26 by a fixed-point multiplier, exp() is gemmlowp's ``exp_on_negative_values``,
the sum is accumulated in Q12.19 and inverted by ``GetReciprocal`` (Newton-Raphson).

int16 mirrors SoftmaxPrepare's int16 branch and ``reference_ops::SoftmaxInt16``: two 513-entry
int16 tables (exp on [-10, 0] and 1/(1+x) on [0, 1], built by the double LUTPopulate) replace
the fixed-point exp and reciprocal.
"""

from __future__ import annotations

import math

import numpy as np

from .. import fixedpoint as fp
from .base import (OpContext, PreparedOp, clamp_cast, dtype_limits, float32_of_exact, register,
                   scale_of, zero_point_of)

SCALED_DIFF_INTEGER_BITS = 5     # exp() input is Q5.26
ACCUMULATION_INTEGER_BITS = 12   # sum of exps is Q12.19


@register("SOFTMAX")
def prepare_softmax(ctx: OpContext) -> PreparedOp:
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    beta = float(np.float32(ctx.options.get("beta", 1.0)))
    if x_t.dtype == np.float32:
        return _prepare_float(ctx, beta)
    if x_t.dtype == np.int8 and out_t.dtype == np.int8 and ctx.numerics.strategy("softmax_int8") == "float-lut":
        return _prepare_int8_float_lut(ctx, beta)
    if x_t.dtype == np.int8 and out_t.dtype == np.int8 and ctx.numerics.strategy("softmax_int8") == "uint16-lut":
        return _prepare_int8_uint16_lut(ctx, beta)
    if x_t.dtype == np.int8 and out_t.dtype in (np.int8, np.int16):
        return _prepare_int8(ctx, beta)
    if x_t.dtype == np.int16 and out_t.dtype == np.int16:
        return _prepare_int16(ctx, beta)
    raise ctx.unsupported("this dtype combination is not supported yet")


def _prepare_int8(ctx: OpContext, beta: float) -> PreparedOp:
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    multiplier, left_shift = fp.preprocess_softmax_scaling(
        beta, float(scale_of(x_t)), SCALED_DIFF_INTEGER_BITS)
    diff_min = -fp.calculate_input_radius(SCALED_DIFF_INTEGER_BITS, left_shift)
    out_min, out_max = dtype_limits(out_t.dtype)
    out_bits = np.dtype(out_t.dtype).itemsize * 8

    # An int8 row's difference to its maximum takes one of 256 values (0, -1, ..., -255), so the
    # per-element half of the kernel -- rescale to Q5.26, exp, Rescale to Q12.19 -- is a table
    # built once here, exactly as the reference computes each element.
    diffs = -np.arange(256, dtype=np.int64)                              # table index = -diff
    in_range = diffs >= diff_min
    # MultiplyByQuantizedMultiplierGreaterThanOne: (diff << left_shift) * multiplier, Q5.26
    scaled_diff = fp.saturating_rounding_doubling_high_mul(fp.wrap_int32(diffs << left_shift), multiplier)
    exp_table = fp.exp_on_negative_values(scaled_diff, SCALED_DIFF_INTEGER_BITS)            # Q0.31
    sum_table = np.where(in_range, fp.rescale(exp_table, 0, ACCUMULATION_INTEGER_BITS), 0)  # Q12.19
    # Below diff_min the reference writes out_min; a zero exp gives exactly that below (the
    # product and its rounding are 0), so one expression covers both branches.
    exp_table = np.where(in_range, exp_table, 0)
    # Both halves travel in one int64 entry, exp (< 2**31) in the high word and its Q12.19 term
    # (>= 0) in the low one: one gather instead of two. A row's int64 sum then holds the sum of
    # the terms modulo 2**32 in its low word -- carries only move upwards, and the int64 sum
    # wraps modulo 2**64 -- which is the int32 accumulator's wrapped sum after wrap_int32.
    packed_table = (exp_table << 32) | sum_table

    def run(inputs):
        x = inputs[0]
        # max - x is in 0..255: the int8 difference wraps, and read as uint8 it is exact. (np.take:
        # fancy indexing with a uint8 index is ~3x slower.)
        index = np.subtract(x.max(axis=-1, keepdims=True), x).view(np.uint8)   # [..., depth]
        packed = np.take(packed_table, index)                                # [..., depth] int64
        sum_of_exps = fp.wrap_int32(packed.sum(axis=-1, keepdims=True))      # [..., 1]
        shifted_scale, bits_over_unit = fp.get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
        exponent = bits_over_unit + 31 - out_bits
        packed >>= 32                                                        # the exps, in place
        unsat = fp.high_mul_then_divide_by_pot_nonnegative_into(shifted_scale, packed, exponent)
        np.minimum(unsat, out_max - out_min, out=unsat)                  # unsat >= 0
        out = unsat.astype(out_t.dtype)
        out += out.dtype.type(out_min)    # wraps into [out_min, out_max]: the true sum is in range
        return [out]

    params = {"input_multiplier": multiplier, "input_left_shift": left_shift, "diff_min": diff_min}
    # the rule's own source string: diff-runtimes names the rule from it (numerics.rule_of_source)
    return PreparedOp(ctx, run, params, ctx.numerics.rule("softmax_int8", "gemmlowp").source)


def _prepare_int8_float_lut(ctx: OpContext, beta: float) -> PreparedOp:
    """LiteRT's builtin (optimized) int8 SOFTMAX: activations.cc SoftmaxPrepare fills a float
    table with PopulateSoftmaxLookupTable (expf(-in_scale * beta * d) for d = max - x), and
    optimized_ops::Softmax sums the row's table values in float32, takes
    1 / (sum * out_scale) and rounds table * that (std::round) + zero point."""
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    scale = np.float32(-scale_of(x_t) * np.float32(beta))
    table = float32_of_exact(np.exp, (scale * np.arange(256, dtype=np.float32)).astype(np.float32))
    out_scale, out_zp = scale_of(out_t), zero_point_of(out_t)

    def run(inputs):
        x = inputs[0].astype(np.int64)
        exps = table[x.max(axis=-1, keepdims=True) - x]                 # [..., depth] float32
        sum_exp = np.add.accumulate(exps, axis=-1, dtype=np.float32)[..., -1:]   # sequential
        inv = (np.float32(1) / (sum_exp * out_scale).astype(np.float32)).astype(np.float32)
        prob = (exps * inv).astype(np.float32)
        out = fp.round_half_away(prob).astype(np.int64) + out_zp
        return [clamp_cast(out, -128, 127, np.int8)]

    rule = ctx.numerics.rule("softmax_int8")
    return PreparedOp(ctx, run, {"table": table}, rule.source)


def _prepare_int8_uint16_lut(ctx: OpContext, beta: float) -> PreparedOp:
    """LiteRT's builtin int8 SOFTMAX on aarch64 (optimized_ops.h defines
    TFLITE_SOFTMAX_USE_UINT16_LUT for ``__aarch64__ && __clang__``, and activations.cc then runs
    SoftmaxInt8LUT instead of the float table): PopulateSoftmaxUInt8LookupTable stores
    ``(int)(expf(scale * -d) * 65535 + 0.5)`` for d = max - x as two uint8 halves; a row sums
    them in int32, ``1.0f / (sum * out_scale)`` becomes a (multiplier, shift) pair
    (QuantizeMultiplier) and each table value is requantized by MultiplyByQuantizedMultiplier
    (its NEON form, vqrdmulh + vrshl, equals the scalar one on these non-negative values)."""
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    scale = np.float32(np.float32(scale_of(x_t)) * np.float32(beta))
    # scale * (val - 255) for val = 255 - d, in float32; expf; * 65535 in float32; + 0.5 in
    # double; the cast truncates (the value is >= 0.5); min(65535, .)
    exps = float32_of_exact(np.exp, (scale * -np.arange(256, dtype=np.float32)).astype(np.float32))
    table = np.minimum(np.trunc((exps * np.float32(65535)).astype(np.float32).astype(np.float64) + 0.5)
                       .astype(np.int64), 65535)
    out_scale, out_zp = np.float32(scale_of(out_t)), zero_point_of(out_t)

    def run(inputs):
        x = inputs[0]
        index = np.subtract(x.max(axis=-1, keepdims=True), x).view(np.uint8)   # d = max - x
        values = np.take(table, index)                                       # [..., depth] int64
        sums = values.sum(axis=-1)                                           # int32 in the C++
        out = np.empty(values.shape, dtype=np.int64)
        flat_values, flat_out = values.reshape(-1, values.shape[-1]), out.reshape(-1, values.shape[-1])
        # one (multiplier, shift) per row: 1.0f / ((float) sum * out_scale) in float32
        inv = np.float32(1) / (sums.reshape(-1).astype(np.float32) * out_scale).astype(np.float32)
        for row, (value, inverse) in enumerate(zip(flat_values, inv.astype(np.float32))):
            multiplier, shift = fp.quantize_multiplier(float(inverse))
            flat_out[row] = fp.multiply_by_quantized_multiplier(value, multiplier, shift)
        return [clamp_cast(out + out_zp, -128, 127, np.int8)]

    rule = ctx.numerics.rule("softmax_int8")
    return PreparedOp(ctx, run, {"table": table}, rule.source)


INT16_RANGE = 65535   # int16 max - int16 min


def _libm(func):
    """Apply a scalar libm function (math.exp is the C library's exp, as std::exp(double) is)
    to every element: NumPy's vectorised exp may differ from it in the last bit."""
    return lambda values: np.array([func(float(v)) for v in values], dtype=np.float64)


def softmax_int16_luts() -> tuple[np.ndarray, np.ndarray]:
    """SoftmaxPrepare (int16): exp on [-10, 0] and 1 / (1 + x) on [0, 1], both into [-1, 1],
    with the deprecated double LUTPopulate (as the C++ does, "for backward compatibility")."""
    exp_lut = fp.lut_populate_int16(_libm(math.exp), 10.0 / INT16_RANGE, 32767,
                                    2.0 / INT16_RANGE, 0, np.float64)
    recip_lut = fp.lut_populate_int16(lambda v: 1.0 / (1.0 + v), 1.0 / INT16_RANGE, -32768,
                                      2.0 / INT16_RANGE, 0, np.float64)
    return exp_lut, recip_lut


def _prepare_int16(ctx: OpContext, beta: float) -> PreparedOp:
    x_t = ctx.inputs[0]
    exp_lut, recip_lut = softmax_int16_luts()
    # input_scale * beta is a float32 product; / (10 / 65535) maps [-65535, 0] onto [-10, 0]
    real = float(np.float32(scale_of(x_t) * np.float32(beta))) / (10.0 / 65535.0)
    multiplier, shift = fp.quantize_multiplier(real)

    def run(inputs):
        x = inputs[0].astype(np.int64)
        diff = x - x.max(axis=-1, keepdims=True)                       # [..., depth], <= 0
        # SoftMaxCalculateExp: rescale, recentre to [-32768, 32767], exp LUT -> Q0.15
        scaled = fp.multiply_by_quantized_multiplier(diff, multiplier, shift)
        exps = fp.lut_lookup_int16(np.clip(scaled + 32767, -32768, 32767), exp_lut)
        sum_of_exps = exps.sum(axis=-1, keepdims=True)                  # Q16.15, int32
        headroom_plus_one = fp.count_leading_zeros_u32(sum_of_exps)
        # normalise the sum to [1, 2) in Q1.14 ... recentred from [0, 65535] for the 1/(1+x) LUT
        shifted_sum = ((sum_of_exps << (headroom_plus_one - 1)) + (1 << 13)) >> 14
        sym_shifted_sum = np.clip(shifted_sum - ((1 << 15) + (1 << 16)), -32768, 32767)
        reciprocal = fp.lut_lookup_int16(sym_shifted_sum, recip_lut)   # Q0.15
        right_shift = 31 - headroom_plus_one
        result = (exps * reciprocal + (np.int64(1) << (right_shift - 1))) >> right_shift
        return [np.clip(result, 0, 32767).astype(np.int16)]

    params = {"input_multiplier": multiplier, "input_left_shift": shift,
              "exp_lut": exp_lut, "one_over_one_plus_x_lut": recip_lut}
    return PreparedOp(ctx, run, params,
                      "tflite/kernels/internal/reference/softmax.h SoftmaxInt16 "
                      "(LUTs: common.h LUTPopulateInt16<double>)")


def _prepare_float(ctx: OpContext, beta: float) -> PreparedOp:
    # reference_ops::Softmax (float): expf of (x - max) * beta, a running float32 sum, a division
    def run(inputs):
        x = inputs[0]
        e = float32_of_exact(np.exp, (x - x.max(axis=-1, keepdims=True)) * np.float32(beta))
        running = np.add.accumulate(e, axis=-1, dtype=np.float32)   # sequential, like the C loop
        return [e / running[..., -1:]]
    return PreparedOp(ctx, run, {"beta": beta}, "tflite/kernels/internal/reference/softmax.h (float)")
