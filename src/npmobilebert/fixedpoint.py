"""TFLite's integer arithmetic, vectorised over NumPy arrays.

Every kernel takes its rounding, multipliers and fixed-point maths from here; nothing else
re-implements them. Each function names the C++ it mirrors:

- ``tflite/kernels/internal/quantization_util.cc``  (QuantizeMultiplier, PreprocessSoftmaxScaling, ...)
- ``tflite/kernels/internal/common.{h,cc}``         (MultiplyByQuantizedMultiplier, GetReciprocal, LUTs)
- ``gemmlowp/fixedpoint/fixedpoint.h``              (SaturatingRoundingDoublingHighMul,
                                                     RoundingDivideByPOT, exp_on_negative_values, ...)

Conventions: integer inputs may be any integer dtype; results are int64 arrays holding values that
fit the C++ type named in the docstring (int32 wrap-around is applied where C++ would wrap).
TFLite is built with double rounding (``TFLITE_SINGLE_ROUNDING`` off) for LiteRT's CPU kernels;
the single-rounding variants used by TFLite Micro are provided for the numerics profiles.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


# ----------------------------------------------------------------------------------------------
# Rounding of real numbers
# ----------------------------------------------------------------------------------------------

def round_half_away(x):
    """C's ``round()`` / ``TfLiteRound``: ties away from zero (NumPy's ``np.round`` rounds to even).

    Exact for every float: ``x - trunc(x)`` is computed without error.
    """
    x = np.asarray(x)
    whole = np.trunc(x)
    frac = x - whole
    return whole + np.where(np.abs(frac) >= 0.5, np.sign(x), 0).astype(x.dtype)


def wrap_int32(x):
    """Two's-complement wrap of int64 values into int32 range (what C++ int32 arithmetic does)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _trunc_div_pow2(x, exponent: int):
    """C++ integer division by 2**exponent (truncates toward zero; ``>>`` and ``//`` floor)."""
    q = np.abs(x) >> exponent
    return np.where(x < 0, -q, q)


# ----------------------------------------------------------------------------------------------
# Multipliers: real scale -> (int32 significand, shift)   [quantization_util.cc]
# ----------------------------------------------------------------------------------------------

def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: real = m * 2**(shift - 31), m in [2**30, 2**31). Mirrors the frexp path."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(np.float64(q * (1 << 31))))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out: TFLite flushes to zero
        return 0, 0
    return q_fixed, shift


def quantize_multiplier_greater_than_one(real: float) -> tuple[int, int]:
    """QuantizeMultiplierGreaterThanOne: as quantize_multiplier; TFLite asserts shift >= 0."""
    return quantize_multiplier(real)


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel quantize_multiplier: float64 array -> (int64 significands, int64 shifts)."""
    pairs = [quantize_multiplier(r) for r in np.asarray(reals, dtype=np.float64).ravel()]
    m = np.array([p[0] for p in pairs], dtype=np.int64)
    s = np.array([p[1] for p in pairs], dtype=np.int64)
    return m, s


# ----------------------------------------------------------------------------------------------
# gemmlowp primitives   [gemmlowp/fixedpoint/fixedpoint.h]
# ----------------------------------------------------------------------------------------------

def saturating_rounding_doubling_high_mul(a, b):
    """SaturatingRoundingDoublingHighMul<int32>: round(a*b / 2**31), nudged, truncating division."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    result = _trunc_div_pow2(ab + nudge, 31)
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, result)


def rounding_divide_by_pot(x, exponent):
    """RoundingDivideByPOT: x / 2**exponent rounded to nearest, ties away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_multiply_by_pot(x, exponent: int, bits: int = 32):
    """SaturatingRoundingMultiplyByPOT<exponent> on a ``bits``-wide raw value."""
    x = np.asarray(x, dtype=np.int64)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    threshold = (1 << (bits - 1 - exponent)) - 1
    return np.where(x > threshold, hi, np.where(x < -threshold, lo, x << exponent))


def rounding_half_sum(a, b):
    """RoundingHalfSum<int32>: (a + b + sign) / 2 with truncating division."""
    s = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    s = s + np.where(s >= 0, 1, -1)
    return np.where(s < 0, -((-s) >> 1), s >> 1)


def fixed_mul(a, b):
    """FixedPoint operator*: the raw product is SaturatingRoundingDoublingHighMul."""
    return saturating_rounding_doubling_high_mul(a, b)


def rescale(raw, src_integer_bits: int, dst_integer_bits: int):
    """gemmlowp::Rescale<dst>(FixedPoint<int32, src>)."""
    return saturating_rounding_multiply_by_pot(raw, src_integer_bits - dst_integer_bits)


def fixed_one(integer_bits: int) -> int:
    """FixedPoint<int32, I>::One(): raw 2**(31-I), or int32 max when I == 0."""
    return INT32_MAX if integer_bits == 0 else 1 << (31 - integer_bits)


def _constant_q0(raw: int) -> int:
    return raw


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """gemmlowp: exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = wrap_int32(a + (1 << 28))  # a + 1/8 (ConstantPOT<-3>)
    x2 = fixed_mul(x, x)
    x3 = fixed_mul(x2, x)
    x4 = fixed_mul(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(
        wrap_int32(fixed_mul(wrap_int32(x4_over_4 + x3), constant_1_over_3) + x2), -1)
    return wrap_int32(constant_term + fixed_mul(constant_term, wrap_int32(x + poly)))


# exp(-2**k) in Q0.31 for the barrel shifter, k = -2 .. 4
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits: int):
    """gemmlowp::exp_on_negative_values: a (raw Q{I}.{31-I}, a <= 0) -> exp(a) as raw Q0.31."""
    a = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = wrap_int32((a & mask) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = wrap_int32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            shift = fractional_bits + exponent
            bit_set = (remainder & (1 << shift)) != 0
            result = np.where(bit_set, fixed_mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # -32.0 in this format
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp::one_over_one_plus_x_for_x_in_0_1: Newton-Raphson on 1/(1+a), Q0.31 in and out."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    constant_48_over_17 = 1515870810  # Q2.29
    constant_neg_32_over_17 = -1010580540
    x = wrap_int32(constant_48_over_17 + fixed_mul(half_denominator, constant_neg_32_over_17))
    one_q2 = fixed_one(2)
    for _ in range(3):
        half_denominator_times_x = fixed_mul(half_denominator, x)
        one_minus = wrap_int32(one_q2 - half_denominator_times_x)
        x = wrap_int32(x + rescale(fixed_mul(x, one_minus), 2 + 2, 2))
    # ExactMulByPot<-1> turns Q2.29 into Q1.30 with the same raw; Rescale<0> from 1 integer bit.
    return rescale(x, 1, 0)


def count_leading_zeros_u32(x):
    """CountLeadingZeros of a uint32 (32 for zero)."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    n = np.full(x.shape, 32, dtype=np.int64)
    nz = x > 0
    # floor(log2) via frexp is exact for integers < 2**53
    _, e = np.frexp(np.where(nz, x, 1).astype(np.float64))
    return np.where(nz, 32 - e, n)


def get_reciprocal(x, x_integer_digits: int):
    """GetReciprocal (common.h): 1/x of a positive fixed-point x -> (raw Q0.31 scale, num_bits_over_unit)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    shifted_sum_minus_one = wrap_int32(shifted)
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


# ----------------------------------------------------------------------------------------------
# Requantization   [common.cc]
# ----------------------------------------------------------------------------------------------

def multiply_by_quantized_multiplier(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier(int32 x, ...), double rounding (LiteRT's CPU build).

    x * 2**left_shift (int32, wraps), then SaturatingRoundingDoublingHighMul, then
    RoundingDivideByPOT by the right shift. ``multiplier``/``shift`` may be per-channel arrays.
    """
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(np.asarray(x, dtype=np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_single_round(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier(int32 x, ...) with TFLITE_SINGLE_ROUNDING (TFLite Micro)."""
    total_shift = 31 - np.asarray(shift, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    round_ = np.int64(1) << (total_shift - 1)
    return (x * np.asarray(multiplier, dtype=np.int64) + round_) >> total_shift


def multiply_by_quantized_multiplier_int64(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier(int64 x, ...): the multiplier is first reduced to 16 bits.

    Used by int16 paths with int64 accumulators (e.g. BATCH_MATMUL int16). The product is exact
    in Python ints; NumPy int64 suffices because |x| < 2**47 and the reduced multiplier < 2**15.
    """
    multiplier = np.asarray(multiplier, dtype=np.int64)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
    total_shift = 15 - np.asarray(shift, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    result = (x * reduced + (np.int64(1) << (total_shift - 1))) >> total_shift
    return wrap_int32(result)


def requantize_double(acc, effective_scale):
    """The 2025 reference FULLY_CONNECTED requantization: ``(int32) round((double) acc * scale)``."""
    return round_half_away(np.asarray(acc, dtype=np.float64) * effective_scale).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Softmax scaling   [quantization_util.cc]
# ----------------------------------------------------------------------------------------------

def preprocess_softmax_scaling(beta: float, input_scale: float, input_integer_bits: int,
                               single_rounding: bool = False) -> tuple[int, int]:
    """PreprocessSoftmaxScaling -> (multiplier, left_shift) for the Q5.26 softmax input."""
    max_real = float((1 << 30) - 1) if single_rounding else float((1 << 31) - 1)
    real = min(float(beta) * float(input_scale) * (1 << (31 - input_integer_bits)), max_real)
    return quantize_multiplier_greater_than_one(real)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """CalculateInputRadius: the largest |input diff| that does not saturate after scaling."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * (1 << (total_signed_bits - input_integer_bits))
                          / (1 << input_left_shift))
    return int(math.floor(max_input_rescaled))
