"""float32_of_exact: libm's own expf/tanhf results, the oracle being libm itself (ctypes, element
by element), on values spread over the whole float32 range of each function: the fast path for
glibc's expf (NumPy's float64 exp where it provably rounds to the same float) must agree
everywhere, including where plain float64-and-round does not (those elements exist here: the
test checks it finds some, so it cannot pass vacuously)."""

from __future__ import annotations

import numpy as np
import pytest

from npmobilebert.kernels.base import _libm_float_function, float32_of_exact


def _spread(rng, lo: float, hi: float, n: int) -> np.ndarray:
    specials = [-np.inf, np.inf, np.nan, 0.0, -0.0, 1e-8, -1e-8, 88.72283, 88.72284, 89.0,
                -87.33655, -103.27893, -103.97208, -104.0, -150.0]
    return np.concatenate([rng.uniform(lo, hi, n), rng.normal(0, 3, n // 2), specials]).astype(np.float32)


@pytest.mark.parametrize("func, name, lo, hi", [(np.exp, "expf", -110.0, 90.0), (np.tanh, "tanhf", -12.0, 12.0)])
def test_float32_of_exact_is_libm(func, name, lo, hi):
    libm = _libm_float_function(name)
    if libm is None:
        pytest.skip("no C math library to compare with")
    x = _spread(np.random.default_rng(7), lo, hi, 400_000)
    with np.errstate(over="ignore"):
        expected = np.asarray(libm(x), dtype=np.float32)
        naive = func(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(float32_of_exact(func, x), expected)
    if name == "expf":
        assert np.count_nonzero(naive != expected) > 0   # the boundary cases are in the sample
