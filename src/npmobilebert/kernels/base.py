"""The kernel registry and what every kernel shares: quantization parameters, activation ranges."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import UnsupportedOpError
from ..fixedpoint import round_half_away
from ..model import Operator, Tensor
from ..numerics import LITERT_REF, Profile

Arrays = list  # list[np.ndarray | None]


@dataclass
class OpContext:
    """What a kernel's prepare step sees: the operator and its tensors (None = optional, absent)."""

    op: Operator
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    numerics: Profile = LITERT_REF     # whose arithmetic (numerics.py): the kernel asks it for rules

    @property
    def options(self) -> dict:
        return self.op.options

    def unsupported(self, why: str) -> UnsupportedOpError:
        dtypes = ", ".join(t.type_name if t is not None else "-" for t in self.inputs)
        outs = ", ".join(t.type_name for t in self.outputs)
        return UnsupportedOpError(
            f"operator {self.op.index} ({self.op.opcode} v{self.op.version}, inputs {dtypes} -> {outs}): {why}")


@dataclass
class PreparedOp:
    """An op ready to run: ``run(inputs) -> outputs``; ``params`` holds its internals for tracing."""

    ctx: OpContext
    run: Callable[[Arrays], Arrays]
    params: dict = field(default_factory=dict)
    rule: str = ""  # the TFLite source this kernel mirrors, shown by --trace
    # int8 ADD/SUB/MUL: the op as a table of all its results (fusion.py composes such tables)
    pair_table: Int8PairTable | None = None


KERNELS: dict[str, Callable[[OpContext], PreparedOp]] = {}


def register(*opcodes: str):
    """Decorator: ``@register("ADD", "SUB")`` adds a prepare function to the registry."""
    def add(prepare: Callable[[OpContext], PreparedOp]):
        for name in opcodes:
            KERNELS[name] = prepare
        return prepare
    return add


def prepare_op(op: Operator, tensors, numerics: Profile = LITERT_REF) -> PreparedOp:
    """Look up and prepare one operator with a numerics profile's rules; an op we do not
    implement is a clear error."""
    prepare = KERNELS.get(op.opcode)
    ctx = OpContext(op=op,
                    inputs=[tensors[i] if i >= 0 else None for i in op.inputs],
                    outputs=[tensors[i] for i in op.outputs], numerics=numerics)
    if prepare is None:
        raise ctx.unsupported("this op is not implemented by the NumPy interpreter")
    return prepare(ctx)


# ----------------------------------------------------------------------------------------------
# Quantization parameters
# ----------------------------------------------------------------------------------------------

def scale_of(tensor: Tensor) -> np.float32:
    """The per-tensor scale as the float32 TFLite keeps in ``params.scale``."""
    if tensor.quantization is None:
        return np.float32(0.0)
    return np.float32(tensor.quantization.scales[0])


def zero_point_of(tensor: Tensor) -> int:
    if tensor.quantization is None:
        return 0
    return int(tensor.quantization.zero_points[0])


def is_quantized(tensor: Tensor) -> bool:
    return tensor.dtype in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


def dtype_limits(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _quantize_scalar(value: float, tensor: Tensor) -> int:
    # kernel_util.cc Quantize(): zero_point + round(f / scale), in float32
    return zero_point_of(tensor) + int(round_half_away(np.float32(value) / scale_of(tensor)))


def activation_range(activation: str, output: Tensor) -> tuple[int, int]:
    """CalculateActivationRangeQuantized (kernel_util.cc): the clamp a fused activation implies."""
    qmin, qmax = dtype_limits(output.dtype)
    if activation in ("NONE", None):
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, _quantize_scalar(0.0, output)), qmax
    if activation == "RELU6":
        return max(qmin, _quantize_scalar(0.0, output)), min(qmax, _quantize_scalar(6.0, output))
    if activation == "RELU_N1_TO_1":
        return max(qmin, _quantize_scalar(-1.0, output)), min(qmax, _quantize_scalar(1.0, output))
    raise UnsupportedOpError(f"fused activation {activation} on a quantized output is not supported")


def float_activation(x: np.ndarray, activation: str) -> np.ndarray:
    """Fused activation on a float output (ActivationFunctionWithMinMax)."""
    if activation in ("NONE", None):
        return x
    bounds = {"RELU": (0.0, np.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
    if activation in bounds:
        lo, hi = bounds[activation]
        return np.minimum(np.maximum(x, np.float32(lo)), np.float32(hi))
    if activation == "TANH":
        return np.tanh(x)
    if activation == "SIGN_BIT":
        return np.signbit(x).astype(x.dtype)
    raise UnsupportedOpError(f"fused activation {activation} is not supported")


def clamp_cast(values, lo: int, hi: int, dtype) -> np.ndarray:
    """Clamp int64 results to [lo, hi] and store them in the output dtype."""
    return np.clip(values, lo, hi).astype(dtype)


def gemm_float_type(depth: int, max_abs_a: int, max_abs_b: int):
    """The narrowest float type whose BLAS matmul of integer operands is exact.

    Every partial sum of ``a @ b`` is an integer of magnitude at most depth * max|a| * max|b|.
    Below 2**24 float32 represents all of them exactly (so any summation order, FMA included,
    gives the exact integer), below 2**53 float64 does. The bound is known from the dtypes and
    zero points when the model is prepared, so the choice is made once per op.
    """
    bound = int(depth) * int(max_abs_a) * int(max_abs_b)
    if bound < 2**24:
        return np.float32
    if bound < 2**53:
        return np.float64
    raise UnsupportedOpError(f"an integer product of depth {depth} could exceed 2**53")


_SCRATCH = threading.local()


def weights_in_scratch(weights: np.ndarray, float_type, offset: int = 0) -> np.ndarray:
    """Integer weights (+ a weight offset) as ``float_type``, exact (small integers), in a
    per-thread work array reused op after op: valid until the next kernel asks for it.

    Kernels convert their int8 weights to the GEMM's float type here at every run instead of
    keeping float copies of all weights: 4x less memory than float32 weights, nothing to convert
    when opening, and the array stays in cache, so the conversion costs a few microseconds per op.
    """
    dtype = np.dtype(float_type)
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(dtype)
    if buffer is None or buffer.size < weights.size:
        buffer = buffers[dtype] = np.empty(weights.size, dtype)
    w = buffer[:weights.size].reshape(weights.shape)
    np.copyto(w, weights)
    if offset:
        w += float_type(offset)
    return w


def transposed_on_first_use(weights: np.ndarray):
    """[units, depth] weights -> a function returning them as a contiguous [depth, units] copy,
    made on its first call and kept.

    BLAS runs ``x @ w`` with a row-major [depth, units] operand 15-40% faster than with the
    transposed view of a [units, depth] one on MobileBERT's 128-row shapes (OpenBLAS, one
    thread), and converting the int8 copy into the float scratch stays a contiguous pass. The
    copy costs as many bytes as the int8 weights; made on first use, opening stays zero-copy.
    """
    return functools.cache(lambda: np.ascontiguousarray(weights.T))


def sequential_float_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 ``a @ b`` summed as TFLite's reference float kernels do: one product at a time,
    in depth order, each product and each sum rounded to float32 (no FMA, no pairwise sums).

    BLAS reorders the sum and so differs in the last bits; this loop over the depth keeps the
    reference order while staying vectorised over the other dims.   [..., m, k] @ [..., k, n]
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    total = np.zeros(shape, dtype=np.float32)
    for k in range(a.shape[-1]):
        total += a[..., :, k:k + 1] * b[..., k:k + 1, :]
    return total


@functools.lru_cache(maxsize=None)
def _libm_float_function(name: str):
    """The C math library's ``float name(float)`` through ctypes, or None where it cannot be
    loaded. LiteRT's kernels call exactly these (std::exp(float) is expf, std::tanh(float) is
    tanhf; libpywrap_litert_common.so imports expf@GLIBC_2.27 and tanhf from libm.so.6)."""
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        func = getattr(libm, name)
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_float
    func.argtypes = [ctypes.c_float]
    return np.frompyfunc(func, 1, 1)


_LIBM_NAMES = {np.exp: "expf", np.tanh: "tanhf"}


@functools.lru_cache(maxsize=None)
def _glibc_expf_rounds_a_double() -> bool:
    """Whether the C library's expf is glibc's since 2.27 (Arm's optimized-routines expf): it
    computes e^x in double with a relative error below 1.69 * 2**-34 and rounds that once to
    float (the bound stated in its source, sysdeps/ieee754/flt-32/e_expf.c)."""
    try:
        version = ctypes.CDLL(None).gnu_get_libc_version
    except (OSError, AttributeError):
        return False
    version.restype = ctypes.c_char_p
    major, minor, *_ = (int(part) for part in version().decode().split(".")[:2])
    return (major, minor) >= (2, 27)


#: Wider than glibc expf's pre-rounding error (1.69 * 2**-34) with an 8x margin, and far wider
#: than NumPy's float64 exp error (a few 2**-53).
_EXPF_BAND = 2.0 ** -31


def _expf_banded(x: np.ndarray, libm_expf) -> np.ndarray:
    """glibc's expf on every element, mostly without calling it: where e^x (float64) widened
    by _EXPF_BAND either way still rounds to a single float32, glibc's double lies inside that
    band too and so rounds to the same float; only elements near a rounding boundary (about 1%
    of them: 2**-30 of relative width against float32's 2**-23 spacing; NaN included) go
    through libm itself."""
    e = np.exp(x.astype(np.float64))
    with np.errstate(over="ignore"):                      # past FLT_MAX: inf, as expf returns
        out = e.astype(np.float32)
        unsure = (e * (1 - _EXPF_BAND)).astype(np.float32) != (e * (1 + _EXPF_BAND)).astype(np.float32)
    if unsure.any():
        out[unsure] = libm_expf(x[unsure]).astype(np.float32)
    return out


def float32_of_exact(func, x: np.ndarray) -> np.ndarray:
    """``func`` (np.exp or np.tanh) of a float32 array as the C library's expf/tanhf computes it.

    glibc's expf/tanhf are not correctly rounded (expf is within ~0.502 ULP): the float64 value
    rounded once to float32 differs from them in rare cases, enough to break bit-exactness of
    float SOFTMAX on whole models. So these are libm's own results: element by element through
    ctypes (about a microsecond each), except for glibc's expf, whose error bound lets all but
    the elements near a rounding boundary come from NumPy (``_expf_banded``); float64-and-round
    only where no libm can be loaded.
    """
    x = np.asarray(x, dtype=np.float32)
    libm_func = _libm_float_function(_LIBM_NAMES[func]) if func in _LIBM_NAMES else None
    if libm_func is None or x.size == 0:
        return func(x.astype(np.float64)).astype(np.float32)
    if func is np.exp and _glibc_expf_rounds_a_double():
        return _expf_banded(x, libm_func)
    return np.asarray(libm_func(x), dtype=np.float32).reshape(x.shape)


INT8_VALUES = np.arange(256, dtype=np.uint8).view(np.int8)   # every int8, in uint8 order


class Int8PairTable:
    """A binary int8 op as a 256 x 256 table of its results, built on first use.

    Quantized ADD / SUB / MUL compute each output element from the two input values alone, so
    every possible result can be computed once -- with the very same integer arithmetic -- and
    the op becomes one gather: far fewer NumPy passes than the ~20 of the fixed-point pipeline.
    Built lazily, so opening a model stays cheap; 64 KiB per op.
    """

    def __init__(self, compute):
        self.compute = compute          # (int8 array, int8 array) -> output array, broadcasting
        self.table = None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.table is None:
            self.table = self.compute(INT8_VALUES[:, None], INT8_VALUES[None, :]).reshape(-1)
        # (a as uint8) * 256 + (b as uint8), broadcast, in a uint16 index: a quarter of the
        # memory traffic of an intp one (measured ~30% faster per op)
        index = np.empty(np.broadcast_shapes(a.shape, b.shape), np.uint16)
        np.left_shift(a.view(np.uint8), 8, out=index, dtype=np.uint16)
        np.bitwise_or(index, b.view(np.uint8), out=index, dtype=np.uint16)
        return np.take(self.table, index)
