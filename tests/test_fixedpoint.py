"""fixedpoint.py's vectorised rearrangements against the C++ they mirror, written out literally.

The fast forms (one shift where gemmlowp nudges and divides, one rounding where the softmax
rounds twice, clamp-then-round for the FULLY_CONNECTED requantization) are algebra; these
tests hold them to the original integer code, transcribed line by line with Python's unbounded
ints and exact decimals, on random operands and on the edges where rounding changes.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from npmobilebert import fixedpoint as fp

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def srdhm_cpp(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul(int32, int32), as written."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) >> 31                       # C++ integer division truncates toward zero
    return q if ab + nudge >= 0 else -q


def rdbp_cpp(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT(int32, int), as written."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def wrap32(x: int) -> int:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def mbqm_cpp(x: int, multiplier: int, shift: int) -> int:
    """common.cc MultiplyByQuantizedMultiplier(int32 x, int32 m, int shift), double rounding."""
    left, right = max(shift, 0), max(-shift, 0)
    return rdbp_cpp(srdhm_cpp(wrap32(x * (1 << left)), multiplier), right)


def c_round(y: float) -> int:
    """C's round(): half away from zero, on the exact binary value of y."""
    return int(Decimal(y).to_integral_value(rounding=ROUND_HALF_UP))


EDGES = [INT32_MIN, INT32_MIN + 1, -(1 << 30) - 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3,
         (1 << 30), (1 << 30) + 1, INT32_MAX - 1, INT32_MAX]


def operands(rng, n: int) -> np.ndarray:
    return np.concatenate([np.array(EDGES, np.int64), rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True),
                           rng.integers(-5000, 5000, n)])


def test_saturating_rounding_doubling_high_mul_is_gemmlowps():
    rng = np.random.default_rng(0)
    a, b = operands(rng, 3000), operands(rng, 3000)[::-1]
    expected = [srdhm_cpp(int(x), int(y)) for x, y in zip(a, b)]
    np.testing.assert_array_equal(fp.saturating_rounding_doubling_high_mul(a, b), expected)
    grid_a, grid_b = np.meshgrid(np.array(EDGES), np.array(EDGES))
    np.testing.assert_array_equal(fp.saturating_rounding_doubling_high_mul(grid_a, grid_b),
                                  [[srdhm_cpp(int(x), int(y)) for x, y in zip(r, s)] for r, s in zip(grid_a, grid_b)])


@pytest.mark.parametrize("exponent", [0, 1, 2, 7, 16, 30, 31])
def test_rounding_divide_by_pot_is_gemmlowps(exponent):
    x = operands(np.random.default_rng(exponent), 3000)
    expected = [rdbp_cpp(int(v), exponent) for v in x]
    np.testing.assert_array_equal(fp.rounding_divide_by_pot(x, exponent), expected)
    per_element = np.random.default_rng(99).integers(0, 32, x.shape)     # array exponents too
    np.testing.assert_array_equal(fp.rounding_divide_by_pot(x, per_element),
                                  [rdbp_cpp(int(v), int(e)) for v, e in zip(x, per_element)])


def test_multiply_by_quantized_multiplier_is_commons():
    rng = np.random.default_rng(1)
    x = operands(rng, 2000)
    for multiplier, shift in [(1 << 30, 0), (INT32_MAX, -31), (1518500250, -9), (1581848239, -7),
                              (1073741824, 3), (2147418112, 1), (1395864371, -1)]:
        expected = [mbqm_cpp(int(v), multiplier, shift) for v in x]
        np.testing.assert_array_equal(fp.multiply_by_quantized_multiplier(x, multiplier, shift), expected)


def test_softmax_product_and_shift_in_one_rounding():
    rng = np.random.default_rng(2)
    a = np.concatenate([[0, 1, 2, (1 << 30), INT32_MAX], rng.integers(0, 1 << 31, 400)]).astype(np.int64)
    b = np.concatenate([[0, 1, 2, (1 << 30), INT32_MAX], rng.integers(0, 1 << 31, 400)]).astype(np.int64)[::-1]
    for exponent in (0, 1, 5, 23, 31):
        expected = [rdbp_cpp(srdhm_cpp(int(x), int(y)), exponent) for x, y in zip(a, b)]
        np.testing.assert_array_equal(fp.high_mul_then_divide_by_pot_nonnegative_into(a, b.copy(), exponent), expected)


def test_round_half_away_doubled_is_c_round_then_clamp():
    rng = np.random.default_rng(3)
    halves = rng.integers(-300, 300, 2000) + 0.5
    near = np.concatenate([np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf),
                           np.nextafter(np.nextafter(halves, np.inf), np.inf)])
    y = np.concatenate([halves, near, np.round(halves), rng.normal(0, 100, 4000),
                        [0.0, -0.0, 0.49999999999999994, -0.49999999999999994, 0.5, -0.5, 1.5, -1.5]])
    lo, hi = -128, 127
    expected = [min(max(c_round(float(v)), lo), hi) for v in y]
    np.testing.assert_array_equal(fp.round_half_away_doubled_into(2 * y, lo, hi, np.int16), expected)
    # a caller's bound below 2**15 takes the int16 path (clamp after the rounding)
    bound = 2 * float(np.abs(y).max()) + 1
    for zero_point in (0, -128, 5):
        expected = [min(max(c_round(float(v)) + zero_point, lo), hi) for v in y]
        for b in (bound, np.inf):
            np.testing.assert_array_equal(
                fp.round_half_away_doubled_into(2 * y, lo, hi, np.int8, zero_point, bound=b), expected)
    big = rng.uniform(-2.0**40, 2.0**40, 2000)
    big = np.concatenate([big, np.floor(big) + 0.5, np.nextafter(np.floor(big) + 0.5, 0)])
    np.testing.assert_array_equal(fp.round_half_away_doubled_into(2 * big, -2**45, 2**45, np.int64),
                                  [c_round(float(v)) for v in big])


def test_float_form_of_multiply_by_quantized_multiplier():
    rng = np.random.default_rng(4)
    limit = fp.FLOAT_MBQM_LIMIT - 1
    x = np.concatenate([[-limit, -limit + 1, -1, 0, 1, limit - 1, limit], rng.integers(-limit, limit, 5000),
                        rng.integers(-3000, 3000, 5000)]).astype(np.int64)
    for multiplier, shift in [(1581848239, -7), (INT32_MAX, -31), (1 << 30, 0), (1518500250, -12), (1073741825, -1)]:
        for zero_point, lo, hi in [(-1, -128, 127), (5, -128, 127), (0, -32768, 32767), (3, -2**40, 2**40)]:
            dtype = np.int8 if hi == 127 else np.int16 if hi == 32767 else np.int64
            expected = [min(max(mbqm_cpp(int(v), multiplier, shift) + zero_point, lo), hi) for v in x]
            for x_bound in (limit, np.inf):         # (the bound picks the int16 path where it can)
                got = fp.multiply_by_quantized_multiplier_float(x.astype(np.float32),    # as a GEMM gives it
                                                                multiplier, shift, zero_point, lo, hi, dtype,
                                                                x_bound=x_bound)
                np.testing.assert_array_equal(got, expected)
