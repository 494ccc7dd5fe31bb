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
    """SaturatingRoundingDoublingHighMul<int32>: round(a*b / 2**31), nudged, truncating division.

    The C++ adds a nudge of 2**30 (product >= 0) or 1 - 2**30 (product < 0) and divides by 2**31
    truncating toward zero; for an integer product both cases are floor((ab + 2**30) / 2**31),
    one add and one arithmetic shift. The only product that saturates is INT32_MIN * INT32_MIN
    (2**62 -> 2**31), the only result above INT32_MAX: a minimum clamps it.
    """
    ab = np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)
    return np.minimum((ab + (1 << 30)) >> 31, INT32_MAX)


def rounding_divide_by_pot(x, exponent):
    """RoundingDivideByPOT: x / 2**exponent rounded to nearest, ties away from zero.

    The C++ adds one when the remainder (x & mask) exceeds mask/2 (+1 for negative x); for
    exponent >= 1 that is (x + 2**(exponent-1) - [x < 0]) >> exponent.
    """
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    if exponent.ndim == 0:
        if exponent == 0:
            return x
        return (x + (np.int64(1) << (exponent - 1)) - (x < 0)) >> exponent
    half = (np.int64(1) << exponent) >> 1                 # 0 where the exponent is 0
    return (x + half - ((x < 0) & (exponent > 0))) >> exponent


def high_mul_then_divide_by_pot_nonnegative_into(a, b: np.ndarray, exponent) -> np.ndarray:
    """RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(a, b), exponent) for a, b >= 0,
    with one rounding: what the int8 softmax does to every element. ``b``: an int64 array,
    overwritten with the result (the softmax's fresh gather: no temporaries).

    For a non-negative product SRDHM is floor((ab + 2**30) / 2**31) and RDBP(h, e) is
    floor((h + 2**(e-1)) / 2**e); nested floors of integers collapse,
    floor((floor(A / p) + c) / q) = floor((A + c*p) / (p*q)), so the pair is
    (ab + 2**30 + 2**(e-1) * 2**31) >> (31 + e): three passes instead of eleven. Nothing
    saturates (INT32_MIN is negative); ab < 2**62 and the sum stays below 2**63.
    """
    exponent = np.asarray(exponent, dtype=np.int64)
    half = ((np.int64(1) << exponent) >> 1) << 31             # 2**(e-1) * 2**31, 0 for e = 0
    b *= np.asarray(a, dtype=np.int64)
    b += (1 << 30) + half
    b >>= exponent + 31
    return b


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
    right = np.maximum(-shift, 0)
    x = np.asarray(x, dtype=np.int64)
    if np.any(shift > 0):                                 # x * (1 << left) wraps in int32
        x = wrap_int32(x << np.maximum(shift, 0))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


#: |x| below this keeps every step of multiply_by_quantized_multiplier_float exact in float64:
#: |x * multiplier| + 2**30 < 2**53 for any int32 multiplier.
FLOAT_MBQM_LIMIT = 1 << 22


def multiply_by_quantized_multiplier_float(x: np.ndarray, multiplier: int, shift: int, zero_point: int,
                                           lo: int, hi: int, dtype, x_bound: float = math.inf) -> np.ndarray:
    """clamp(MultiplyByQuantizedMultiplier(x, multiplier, shift) + zero_point, lo, hi) as
    ``dtype``, computed in float64 for |x| < FLOAT_MBQM_LIMIT and shift <= 0.

    Every step is exact there: SaturatingRoundingDoublingHighMul is
    floor((x*m + 2**30) / 2**31) (nothing saturates: m > 0) = floor(x * (m / 2**31) + 1/2), and
    x*m is an integer below 2**53, so x times the exact double m / 2**31 is x*m scaled by a power
    of two, exact, and adding 1/2 keeps it a multiple of 2**-31 below 2**22: exact too.
    RoundingDivideByPOT is round-half-away of that over 2**-shift (round_half_away_doubled_into,
    which also clamps). Float64 passes are SIMD-fast where int64 multiplies and shifts are not:
    about 3x faster than the integer form on BATCH_MATMUL's outputs. ``x``: exact integers, any
    float or int dtype; ``x_bound``: a bound on |x| known to the caller.
    """
    if shift > 0 or multiplier <= 0:
        raise ValueError("the float form needs shift <= 0 and a positive multiplier")
    y = np.asarray(x).astype(np.float64)
    y *= float(multiplier) * 2.0 ** -31
    y += 0.5
    np.floor(y, out=y)                                    # SaturatingRoundingDoublingHighMul
    y *= 2.0 ** (shift + 1)                               # 2 * (y / 2**-shift), exact
    doubled_bound = (x_bound * multiplier * 2.0 ** -31 + 1) * 2.0 ** (shift + 1)   # |floor(.)| <= that
    return round_half_away_doubled_into(y, lo, hi, dtype, zero_point, doubled_bound)   # RoundingDivideByPOT


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


def round_half_away_doubled_into(doubled: np.ndarray, lo: int, hi: int, dtype, zero_point: int = 0,
                                 bound: float = math.inf) -> np.ndarray:
    """clamp(round_half_away(y) + zero_point, lo, hi) as ``dtype``, given ``doubled`` = 2y
    (float64, overwritten). Callers fold the 2 into a scale they multiply by anyway: exact, and free.

    With n = trunc(2y), y rounded half away from zero is (n + 1) >> 1 for n >= 0 and n >> 1
    for n < 0 (arithmetic shifts floor): for y >= 0, floor((floor(2y) + 1) / 2) =
    floor(y + 1/2); for y < 0, floor(ceil(2y) / 2) = ceil(y - 1/2), checked on both parities
    of ceil(2y) (and y in (-1/2, 0) gives n = 0 -> 0). Rounding is monotone and leaves
    integers alone, so clamping 2y to [2 lo, 2 hi] first is the same as clamping after. One
    float->int cast (it truncates) and then integer passes on the narrowest type that holds
    the clamped 2y: far cheaper than rint plus a tie check, or np.copysign.

    ``bound``: what the caller knows of |2y| from the operand ranges. Below 2**15 every 2y
    truncates into int16 as it is, and the clamp runs there after the rounding: a 2-byte pass
    instead of an 8-byte one (~25% of this function on a 128 x 512 output).
    """
    lo, hi = lo - zero_point, hi - zero_point             # the clamp leaves room for the zero point
    clamp_after = bound < 2**15 and -2**15 <= lo and hi < 2**15
    if clamp_after:
        n = doubled.astype(np.int16)                      # trunc(2y), exact: |2y| < 2**15
    else:
        np.clip(doubled, 2 * lo, 2 * hi, out=doubled)
        limit = 2 * max(abs(lo), abs(hi))
        n = doubled.astype(np.int16 if limit < 2**15 else np.int32 if limit < 2**31 else np.int64)
    n += n >= 0
    n >>= 1
    if clamp_after:
        np.clip(n, lo, hi, out=n)
    out = n.astype(dtype, copy=False)
    out += out.dtype.type(zero_point)
    return out


def double_requantizer(effective_scale, zero_point: int, lo: int, hi: int, dtype, acc_bound: float = math.inf):
    """The 2025 reference FULLY_CONNECTED requantization as a function of the accumulator:
    ``acc -> clamp((int32) round((double) acc * scale) + zero_point, lo, hi)`` as ``dtype``.

    The function takes float64 exact integers and overwrites them (the caller's fresh
    accumulator). ``acc_bound``: a bound on |acc| known when the model is prepared.
    """
    doubled_scale = 2 * np.asarray(effective_scale, dtype=np.float64)
    # |2y| <= the bound times the largest scale, up to the product's rounding: a relative
    # 2**-52 that the margin of 1 covers with room
    bound = acc_bound * float(doubled_scale.max(initial=0)) + 1

    def requantize(acc: np.ndarray) -> np.ndarray:
        acc *= doubled_scale                   # 2 * (acc * scale), exactly
        return round_half_away_doubled_into(acc, lo, hi, dtype, zero_point, bound)
    return requantize


def requantize_fp32(acc, scale):
    """XNNPACK's fp32 requantization (src/qs8-gemm, src/qs8-vmul ``*-fp32-*`` kernels):
    ``(float) acc * scale`` in float32, rounded to nearest, ties to even (cvtps2dq / lrintf /
    the magic-bias trick all round so). Returns int64 values before the zero point is added."""
    scaled = np.asarray(acc).astype(np.float32) * np.float32(scale)
    return np.rint(scaled.astype(np.float32)).astype(np.int64)


def xnnpack_add_multipliers(a_output_scale, b_output_scale) -> tuple[int, int, int]:
    """xnn_init_qs8_add_minmax_scalar_params (XNNPACK src/microparams-init.c): (a multiplier,
    b multiplier, shift) for ``(bias + a*ma + b*mb) >> shift``. The scales are float32
    ratios; the shift puts the larger one's multiplier in [2**20, 2**21); each multiplier is
    lrintf(|scale| * 2**shift), negative for a negative scale (SUB)."""
    a, b = np.float32(a_output_scale), np.float32(b_output_scale)
    largest = max(abs(a), abs(b))
    exponent = int((largest.view(np.uint32) >> 23) & 0xFF) - 127
    shift = 20 - exponent

    def multiplier(v: np.float32) -> int:
        m = int(np.rint(np.float32(abs(v) * np.float32(2.0 ** shift))))   # exact: a power of two
        return -m if np.signbit(v) else m
    return multiplier(a), multiplier(b), shift


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


# ----------------------------------------------------------------------------------------------
# Inverse square root   [common.h GetInvSqrtQuantizedMultiplierExp]
# ----------------------------------------------------------------------------------------------

def inv_sqrt_quantized_multiplier_exp(x, reverse_shift: int = -1):
    """GetInvSqrtQuantizedMultiplierExp: 1/sqrt(x) of positive int32 values -> (multiplier, shift).

    Newton-Raphson in gemmlowp Q3.28 (x_{n+1} = 1.5 x - x/2 * x^3, five rounds from x = 1), then a
    factor sqrt(2)/2 in Q0.31. ``x <= 1`` returns (int32 max, 0), as the C++ special-cases it.
    """
    x = np.asarray(x, dtype=np.int64)
    small = x <= 1
    value = np.where(small, 2, x)
    shift = np.full(value.shape, 11, dtype=np.int64)
    # while (input >= 1 << 29) { input /= 4; ++shift; }
    while np.any(value >= (1 << 29)):
        big = value >= (1 << 29)
        value = np.where(big, value // 4, value)
        shift = shift + big
    max_left_shift_bit_pairs = (count_leading_zeros_u32(value) - 1) // 2
    left_shift_bit_pairs = max_left_shift_bit_pairs - 1
    shift = shift - left_shift_bit_pairs
    value = value << (2 * left_shift_bit_pairs)                    # in [2**27, 2**29)
    fixed_input = value >> 1                                        # F3 raw
    half_input = saturating_rounding_multiply_by_pot(fixed_input, -1)
    half_three = (1 << 28) + (1 << 27)                              # 1.5 in Q3.28
    est = np.full(value.shape, 1 << 28, dtype=np.int64)            # F3::One()
    for _ in range(5):
        # x*x*x is Q9.22 (F3*F3 -> F6, F6*F3 -> F9); Rescale<3> is a saturating << 6
        x3 = saturating_rounding_multiply_by_pot(fixed_mul(fixed_mul(est, est), est), 6)
        # F3*F3 -> F6; the difference wraps as int32; Rescale<3> from F6 is a saturating << 3
        diff = wrap_int32(fixed_mul(half_three, est) - fixed_mul(half_input, x3))
        est = saturating_rounding_multiply_by_pot(diff, 3)
    est = fixed_mul(est, 1518500250)                                # * sqrt(2)/2 (Q0.31)
    # a negative shift is folded into the multiplier (an int32 shift: it may wrap)
    est = np.where(shift < 0, wrap_int32(est << np.maximum(-shift, 0)), est)
    shift = np.maximum(shift, 0) * reverse_shift
    return (np.where(small, INT32_MAX, est).astype(np.int64),
            np.where(small, 0, shift).astype(np.int64))


def checked_log2(x: float) -> tuple[bool, int]:
    """CheckedLog2 (quantization_util.cc): float32 log(x) / log(2); (is a power of two, rounded log2)."""
    x_log2 = np.float32(np.log(np.float32(x))) * (np.float32(1.0) / np.float32(np.log(np.float32(2.0))))
    rounded = np.float32(round_half_away(np.float32(x_log2)))
    return bool(abs(np.float32(x_log2 - rounded)) < np.float32(1e-3)), int(rounded)


# ----------------------------------------------------------------------------------------------
# int16 lookup tables   [common.h LUTPopulateInt16, LUTLookup]
# ----------------------------------------------------------------------------------------------

LUT_INT16_STEPS = 512


def lut_populate_int16(transform, input_scale, input_zero_point: int, output_scale,
                       output_zero_point: int, float_type=np.float32) -> np.ndarray:
    """LUTPopulateInt16<FloatT>: 513 int16 samples of ``transform`` over the int16 input range.

    Every quantity is computed in ``float_type``: float32 for the float overload (RSQRT int16),
    float64 for the deprecated double overload that int16 SOFTMAX still uses. ``transform`` maps an array of
    ``float_type`` to the same. Each sample is biased by half the error that linear interpolation
    makes at the midpoint of its interval, as the C++ does.
    """
    ft = float_type
    qmin, qmax = -32768, 32767
    input_min = ft(input_scale) * ft(qmin - input_zero_point)
    input_max = ft(input_scale) * ft(qmax - input_zero_point)
    output_min = ft(output_scale) * ft(qmin - output_zero_point)
    output_max = ft(output_scale) * ft(qmax - output_zero_point)
    step = ft((input_max - input_min) / ft(LUT_INT16_STEPS))
    half_step = ft(step / ft(2))
    scaling_inv = ft(ft(qmax - qmin + 1) / ft(output_max - output_min))

    i = np.arange(LUT_INT16_STEPS).astype(ft)
    x = (input_min + i * step).astype(ft)
    val = np.asarray(transform(x), dtype=ft)
    val_mid = np.asarray(transform((input_min + i * step + half_step).astype(ft)), dtype=ft)
    val_next = np.asarray(transform((input_min + (i + ft(1)) * step).astype(ft)), dtype=ft)

    sample = round_half_away((val * scaling_inv).astype(ft))
    mid_interp = round_half_away(((val_next * scaling_inv + sample) / ft(2)).astype(ft))
    mid_exact = round_half_away((val_mid * scaling_inv).astype(ft))
    bias = round_half_away(((mid_interp - mid_exact) / ft(2)).astype(ft))
    table = np.empty(LUT_INT16_STEPS + 1, dtype=np.int16)
    table[:-1] = np.clip(sample - bias, qmin, qmax).astype(np.int16)
    last = round_half_away((np.asarray(transform(np.array([input_max], dtype=ft)), dtype=ft)
                            * scaling_inv).astype(ft))
    table[-1] = np.int16(np.clip(last[0], qmin, qmax))
    return table


def lut_lookup_int16(values, lut: np.ndarray) -> np.ndarray:
    """LUTLookup(int16): the top 9 bits index the table, the low 7 interpolate to the next entry."""
    v = np.asarray(values, dtype=np.int64)
    index = 256 + (v >> 7)
    offset = v & 0x7F
    base = lut.astype(np.int64)[index]
    slope = lut.astype(np.int16)[index + 1].astype(np.int64) - base
    slope = ((slope + (1 << 15)) & 0xFFFF) - (1 << 15)             # stored in an int16
    delta = (slope * offset + 64) >> 7
    return (((base + delta) + (1 << 15)) & 0xFFFF) - (1 << 15)      # static_cast<int16_t>


# Table of sigmoid(i/24) in 0.16 format, 256 entries (common.h sigmoid_table_uint16). It is data,
# not a formula: a rounded 65536 / (1 + exp(-i/24)) differs from it in 44 entries.
SIGMOID_TABLE_UINT16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498,
    40149, 40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255,
    46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865,
    52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174,
    56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544, 58800, 59048, 59288,
    59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279, 61441,
    61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886,
    62990, 63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835,
    63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450,
    64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845,
    64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097,
    65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425,
    65429, 65433, 65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465,
    65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508,
    65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516, 65517, 65517, 65518,
    65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524, 65525,
    65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529,
    65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531,
    65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533,
    65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65535], dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# On-the-fly input quantization of the hybrid kernels   [neon_tensor_utils.cc]
#
# LiteRT's x86 build defines USE_NEON through NEON_2_SSE (neon_check.h: GCC with SSE4.1), so
# tensor_utils::{Symmetric,Asymmetric}QuantizeFloats are the *Neon* versions, not the portable
# ones: they differ in how the range and scale are computed and in their rounding.
# ----------------------------------------------------------------------------------------------

NEON_FLOATS_PER_LOOP = 8   # 2 * kFloatValuesPerNeonVector: the vector loop's stride


def neon_round_to_nearest(x):
    """RoundToNearest without ARMv8 (neon_tensor_utils.cc): trunc(x + (x < 0 ? -0.5f : 0.5f)),
    the addition in float32. Unlike round() it can round up a value just below .5 whose sum
    with 0.5 rounds to the next integer. Returns the integers as float32 (exact)."""
    x = np.asarray(x, dtype=np.float32)
    # copysign gives -0.0 a -0.5 where the C++ adds +0.5: both truncate to zero
    rounded = x + np.copysign(np.float32(0.5), x)
    return np.trunc(rounded, out=rounded)


def _neon_round_rows(scaled: np.ndarray) -> np.ndarray:
    """The Neon quantizers round the first ``size & ~7`` values of a row in the vector loop
    (RoundToNearest) and the rest in the scalar postamble (TfLiteRound). float32 integers.
    ``scaled`` is the caller's temporary (float32): rounded in place where it can be."""
    n = scaled.shape[-1]
    vector_end = n - n % NEON_FLOATS_PER_LOOP
    if vector_end == n and scaled.dtype == np.float32:
        scaled += np.copysign(np.float32(0.5), scaled)          # as neon_round_to_nearest
        return np.trunc(scaled, out=scaled)
    if vector_end == n:
        return neon_round_to_nearest(scaled)
    head = neon_round_to_nearest(scaled[..., :vector_end])
    tail = round_half_away(scaled[..., vector_end:]).astype(np.float32)
    return np.concatenate([head, tail], axis=-1)


def symmetric_quantize_floats(rows: np.ndarray):
    """NeonSymmetricQuantizeFloats, one row per batch: [..., n] float32 ->
    (int8 values as float32 integers [..., n], float32 scaling factors [...]).

    range = max(|min|, |max|); factor = range / 127 and its inverse 127 / range in float32;
    q = round(x * inverse) clamped to +-127. An all-zero row gets factor 1 and zeros.
    """
    rows = np.asarray(rows, dtype=np.float32)
    value_range = np.maximum(np.abs(rows.min(axis=-1)), np.abs(rows.max(axis=-1)))   # [...]
    zero = value_range == 0
    safe_range = np.where(zero, np.float32(1), value_range)
    factor = np.where(zero, np.float32(1), safe_range / np.float32(127)).astype(np.float32)
    inverse = (np.float32(127) / safe_range).astype(np.float32)
    q = _neon_round_rows(rows * inverse[..., None])
    np.clip(q, -127, 127, out=q)
    q[zero] = 0
    return q, factor


def asymmetric_quantize_floats(rows: np.ndarray, centred: bool = False):
    """NeonAsymmetricQuantizeFloats, one row per batch: [..., n] float32 ->
    (int8 values as float32 integers [..., n], float32 scaling factors [...], int64 offsets [...]).
    ``centred``: the values minus their row's offset instead (what the hybrid kernels' products
    amount to), clamped straight to [-128 - offset, 127 - offset]: the same integers, two
    passes fewer.

    NeonMinMax starts from 0, so the range always holds zero. The scale is
    (rmax - rmin) / 255 with the subtraction in *float32* and the division in double; the zero
    point comes from whichever end has the smaller error (in double) and is nudged into
    [-128, 127] with round(); q = round(x * (1.0 / factor)) + offset, clamped to [-128, 127].
    """
    rows = np.asarray(rows, dtype=np.float32)
    rmin = np.minimum(np.float32(0), rows.min(axis=-1))
    rmax = np.maximum(np.float32(0), rows.max(axis=-1))
    flat = rmin == rmax
    scale = np.where(flat, 1.0, (rmax - rmin).astype(np.float32).astype(np.float64) / 255.0)
    rmin64, rmax64 = rmin.astype(np.float64), rmax.astype(np.float64)
    zp_from_min = -128.0 - rmin64 / scale
    zp_from_max = 127.0 - rmax64 / scale
    err_min = 128.0 + np.abs(rmin64 / scale)
    err_max = 127.0 + np.abs(rmax64 / scale)
    zp = np.where(err_min < err_max, zp_from_min, zp_from_max)
    nudged = np.where(zp <= -128.0, -128.0, np.where(zp >= 127.0, 127.0, round_half_away(zp)))
    offset = np.where(flat, 0, nudged).astype(np.int64)
    factor = np.where(flat, np.float32(1), scale.astype(np.float32)).astype(np.float32)
    # 1.0 / factor in double, stored as float (equal to the float32 quotient)
    inverse = (1.0 / factor.astype(np.float64)).astype(np.float32)
    q = _neon_round_rows(rows * inverse[..., None])
    if centred:             # (np.maximum/np.minimum: np.clip with per-row bounds is 4x slower)
        np.maximum(q, (-128 - offset)[..., None].astype(np.float32), out=q)
        np.minimum(q, (127 - offset)[..., None].astype(np.float32), out=q)
    else:
        q += offset[..., None].astype(np.float32)                   # exact: small integers
        np.clip(q, -128, 127, out=q)
    q[flat] = 0                                                     # (a flat row's offset is 0)
    return q, factor, offset
