"""Per-op oracle tests: the NumPy interpreter against LiteRT's reference kernels (BUILTIN_REF).

Every case builds a one-op model (tests/opmodels.py) with random shapes, random quantization
parameters (scales log-uniform over several orders of magnitude, zero points anywhere in range)
and random data, runs it with ``LiteRTRunner(..., resolver="ref")`` and with
``npmobilebert.interpreter.Interpreter``, and demands bit-identical results for the outputs and
for every non-constant tensor (``run_all``).

Float ops are compared exactly too: the reference kernels accumulate in a fixed sequential order
without fused multiply-adds, which NumPy can reproduce.  The exceptions, with a ULP bound, are the
ops whose reference kernel calls libm's transcendental functions (``std::exp`` in SOFTMAX,
``std::tanh`` in TANH, ``std::exp`` in LOGISTIC): glibc's ``tanhf``/``expf`` are not correctly
rounded, so NumPy's own ``tanh``/``exp`` (or float64 evaluation rounded to float32) can differ from
them by an ULP or two.

Randomness is seeded per test and per case (``_rng``): a failure message names the case, its
quantization parameters and options, and the first mismatching element, and rerunning the test
reproduces it.
"""

from __future__ import annotations

import itertools
import os
import zlib

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter")

from opmodels import (  # noqa: E402
    ActivationFunctionType as Act,
    AddOptionsT,
    BatchMatMulOptionsT,
    BuiltinOperator,
    CastOptionsT,
    ConcatenationOptionsT,
    FullyConnectedOptionsT,
    GatherOptionsT,
    MulOptionsT,
    ReducerOptionsT,
    ReshapeOptionsT,
    SoftmaxOptionsT,
    StridedSliceOptionsT,
    SubOptionsT,
    TensorSpec,
    TensorType,
    max_ulp_diff,
    model,
    op,
    single_op_model,
    tensor,
)

from npmobilebert.errors import NpMobileBertError  # noqa: E402
from npmobilebert.runtime import LiteRTRunner  # noqa: E402

# Every test runs ROUNDS times its base number of random cases (NPMB_TEST_ROUNDS=20 for a soak).
ROUNDS = int(os.environ.get("NPMB_TEST_ROUNDS", "4"))

ACTS = {"NONE": Act.NONE, "RELU": Act.RELU, "RELU6": Act.RELU6}

# --------------------------------------------------------------------------------------------------
# Harness


def _rng(*key) -> np.random.Generator:
    """A generator seeded by the test's key (strings and ints): stable across runs and machines."""
    words = [zlib.crc32(repr(k).encode()) for k in key]
    return np.random.default_rng(words)


def _ours(blob: bytes):
    from npmobilebert.interpreter import Interpreter
    from npmobilebert.model import load_model

    return Interpreter(load_model(blob))


def _describe(opcode: str, specs_in, specs_out, options, extra: str = "") -> str:
    lines = [f"op {opcode}" + (f" ({extra})" if extra else "")]
    if options is not None:
        fields = {k: v for k, v in vars(options).items() if v is not None}
        lines.append(f"  options {type(options).__name__[:-1]} {fields}")
    for k, t in enumerate(specs_in):
        lines.append(f"  in{k}: " + ("absent (-1)" if t is None else t.describe()))
    for k, t in enumerate(specs_out):
        lines.append(f"  out{k}: {t.describe()}")
    return "\n".join(lines)


def _first_mismatch(ours: np.ndarray, theirs: np.ndarray, ulp: int) -> str:
    if ours.dtype.kind == "f" and ulp > 0:
        # element-wise ULP distances via max_ulp_diff on each element (arrays are small)
        flat_o, flat_t = ours.reshape(-1), theirs.reshape(-1)
        bad = [i for i in range(flat_o.size) if max_ulp_diff(flat_o[i:i + 1], flat_t[i:i + 1]) > ulp]
    else:
        neq = ~((ours == theirs) | (np.isnan(ours) & np.isnan(theirs)) if ours.dtype.kind == "f"
                else (ours == theirs))
        bad = list(np.flatnonzero(neq.reshape(-1)))
    if not bad:
        return "no element differs"
    i = bad[0]
    idx = tuple(int(v) for v in np.unravel_index(i, ours.shape)) if ours.ndim else ()
    o, t = ours.reshape(-1)[i], theirs.reshape(-1)[i]
    diff = ""
    if ours.dtype.kind in "iu":
        diff = f" (diff {int(o) - int(t)})"
    elif ours.dtype.kind == "f":
        diff = f" ({max_ulp_diff(np.array([o]), np.array([t]))} ULP)"
    return (f"{len(bad)} of {ours.size} elements differ; first at {list(idx)}: "
            f"ours {o!r} vs LiteRT {t!r}{diff}")


def _assert_same(ours, theirs, what: str, label: str, ulp: int = 0) -> None:
    ours = np.asarray(ours)
    theirs = np.asarray(theirs)
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        pytest.fail(f"{label}: ours {ours.dtype}{list(ours.shape)} vs LiteRT "
                    f"{theirs.dtype}{list(theirs.shape)}\n{what}", pytrace=False)
    if ulp == 0 or ours.dtype.kind != "f":
        same = np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")
    else:
        same = max_ulp_diff(ours, theirs) <= ulp
    if not same:
        bound = f" (allowed: {ulp} ULP)" if ulp and ours.dtype.kind == "f" else ""
        pytest.fail(f"{label}{bound}: {_first_mismatch(ours, theirs, ulp)}\n{what}", pytrace=False)


class Case:
    """One single-op model with its inputs."""

    def __init__(self, opcode: str, inputs: list[TensorSpec | None], outputs: list[TensorSpec],
                 options=None, arrays: list[np.ndarray] | None = None, extra: str = "",
                 version: int | None = None):
        self.opcode = opcode
        self.inputs = inputs
        self.outputs = outputs
        self.options = options
        self.blob = single_op_model(opcode, inputs, outputs, options, version)
        self.arrays = arrays if arrays is not None else []
        self.what = _describe(opcode, inputs, outputs, options, extra)

    def tensor_order(self) -> list[TensorSpec]:
        """Tensors in the order opmodels.model() numbers them: first use, inputs then outputs."""
        order, seen = [], set()
        for t in list(self.inputs) + list(self.outputs):
            if t is not None and id(t) not in seen:
                seen.add(id(t))
                order.append(t)
        return order


def check(case: Case | GraphCase, ulp: int = 0, label: str = "") -> dict[int, np.ndarray]:
    """Run ``case`` on LiteRT (reference kernels) and on our interpreter; every non-constant tensor
    must match (bit for bit, or within ``ulp`` for floats)."""
    what = f"{label}\n{case.what}" if label else case.what
    runner = LiteRTRunner(case.blob, resolver="ref")
    theirs_out = runner.run(case.arrays)
    theirs = runner.run_all(case.arrays)
    try:
        interp = _ours(case.blob)
        ours_out = interp.run(case.arrays)
    except Exception as e:  # say which case: the exception alone does not
        pytest.fail(f"our interpreter raised {type(e).__name__}: {e}\n{what}", pytrace=False)
    assert len(ours_out) == len(theirs_out), f"{len(ours_out)} outputs vs LiteRT's {len(theirs_out)}\n{what}"
    for k, (o, t) in enumerate(zip(ours_out, theirs_out)):
        _assert_same(o, t, what, f"output {k} ({case.outputs[k].name})", ulp)
    try:
        ours_all = interp.run_all(case.arrays)
    except Exception as e:
        pytest.fail(f"our run_all raised {type(e).__name__}: {e}\n{what}", pytrace=False)
    specs = case.tensor_order()
    for idx, t in theirs.items():
        if specs[idx].is_const:
            continue
        assert idx in ours_all, f"run_all lacks tensor {idx} ({specs[idx].name})\n{what}"
        _assert_same(ours_all[idx], t, what, f"run_all tensor {idx} ({specs[idx].name})", ulp)
    _check_batched(interp, case.arrays, ours_all, what)
    return theirs


def _check_batched(interp, arrays, ours_all: dict, what: str) -> None:
    """Interpreter.run_batch_all on the case's inputs beside other inputs (the same values
    shuffled; all zeros, where the op takes them): every input's every tensor must be the one
    its own run computes (whose values the caller checked against LiteRT)."""
    rng = np.random.default_rng(zlib.crc32(what.encode()))
    batch, singles = [list(arrays)], [ours_all]
    shuffled = [rng.permutation(np.asarray(a).reshape(-1)).reshape(np.shape(a)) for a in arrays]
    with np.errstate(all="ignore"):         # float RSQRT of zeros: inf, as LiteRT's 1.f / sqrtf
        for variant in (shuffled, [np.zeros_like(a) for a in arrays]):
            try:
                singles.append(interp.run_all(variant))
            except NpMobileBertError:
                continue                    # e.g. int8 RSQRT below its zero point: refused alone
            batch.append(variant)
    try:
        with np.errstate(all="ignore"):
            batched = interp.run_batch_all(batch)
    except Exception as e:
        pytest.fail(f"our run_batch_all raised {type(e).__name__}: {e}\n{what}", pytrace=False)
    for k, (single, together) in enumerate(zip(singles, batched)):
        assert together.keys() == single.keys(), f"input {k}: run_batch_all's tensors differ\n{what}"
        for idx, value in single.items():
            np.testing.assert_array_equal(together[idx], value, err_msg=f"input {k} tensor {idx}\n{what}")
            assert together[idx].dtype == value.dtype, f"input {k} tensor {idx}\n{what}"


_OPNAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}


class GraphCase:
    """A few ops chained (opmodels.model): graph inputs are the non-constant tensors no op writes."""

    def __init__(self, ops, arrays, extra: str = ""):
        self.ops = ops
        self.blob = model(ops)
        self.arrays = arrays
        consumed = {id(t) for o in ops for t in o.inputs if t is not None}
        self.outputs = [t for o in ops for t in o.outputs if id(t) not in consumed]
        self.what = "\n".join([f"graph of {len(ops)} ops" + (f" ({extra})" if extra else "")] + [
            _describe(_OPNAMES.get(o.opcode, str(o.opcode)), o.inputs, o.outputs, o.options) for o in ops])

    def tensor_order(self) -> list[TensorSpec]:
        order, seen = [], set()
        for o in self.ops:
            for t in list(o.inputs) + list(o.outputs):
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    order.append(t)
        return order


# --------------------------------------------------------------------------------------------------
# Random quantization parameters and data

QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767), "int32": (-(2 ** 31), 2 ** 31 - 1)}


def log_uniform(rng, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def rand_scale(rng, lo: float = 1e-4, hi: float = 1.0) -> float:
    return float(np.float32(log_uniform(rng, lo, hi)))


def rand_zp(rng, dtype: str) -> int:
    """Zero point: anywhere in range for int8; int16 activations are symmetric (TFLite requires 0)."""
    if dtype == "int8":
        return int(rng.integers(-128, 128))
    return 0


def rand_q(rng, shape, dtype: str, lo=None, hi=None) -> np.ndarray:
    qmin, qmax = QRANGE[dtype]
    lo = qmin if lo is None else lo
    hi = qmax if hi is None else hi
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64).astype(dtype)


def rand_f(rng, shape, magnitude: float | None = None) -> np.ndarray:
    mag = log_uniform(rng, 1e-2, 1e2) if magnitude is None else magnitude
    return (rng.standard_normal(shape) * mag).astype(np.float32)


def act_tensor(rng, name, shape, dtype, scale=None, zero_point=None) -> TensorSpec:
    """A non-constant activation tensor with random quantization for integer types (int8 scales
    in [1e-4, 1], int16 scales in [1e-5, 1e-1]: int16 activations hold small real values)."""
    if dtype in ("int8", "int16"):
        if scale is None:
            scale = rand_scale(rng) if dtype == "int8" else rand_scale(rng, 1e-5, 1e-1)
        zero_point = rand_zp(rng, dtype) if zero_point is None else zero_point
        return tensor(name, shape, dtype, scale=scale, zero_point=zero_point)
    return tensor(name, shape, dtype)


def real(spec: TensorSpec, q: np.ndarray) -> np.ndarray:
    """Dequantize (per-tensor or per-axis) in float64, to size the output quantization."""
    q = np.asarray(q, np.float64)
    if spec.scale is None:
        return q
    s = np.asarray(spec.scale, np.float64)
    z = np.asarray(spec.zero_point, np.float64)
    if s.size > 1:
        shape = [1] * q.ndim
        shape[spec.quantized_dimension] = s.size
        s, z = s.reshape(shape), z.reshape(shape)
    return (q - z) * s


def apply_act(values, act: str):
    """The real-valued effect of a fused activation (outputs are quantized to cover this range,
    as the converter does)."""
    if act == "RELU":
        return np.maximum(values, 0.0)
    if act == "RELU6":
        return np.clip(values, 0.0, 6.0)
    return values


def _keep_litert_alive(y: TensorSpec, min_scale: float) -> TensorSpec:
    """Raise ``y``'s scale above ``min_scale`` where needed, so that the output multiplier stays
    below 1.  ADD (real_output_multiplier = 2*max(s1,s2) / (2^left_shift * s_out)) and
    SQUARED_DIFFERENCE ((2*max)^2 / (2^14 * s_out)) pass it to QuantizeMultiplierSmallerThanOneExp,
    whose TFLITE_CHECK aborts the whole process (not an error status) when it is >= 1.  SUB accepts
    a multiplier > 1 at Prepare, but its reference kernel then applies it with
    MultiplyByQuantizedMultiplierSmallerThanOneExp, i.e. RoundingDivideByPOT with a negative
    exponent: a shift by a negative amount, undefined behaviour in C++ -- not something to test."""
    if y.scale[0] > min_scale * 1.01:
        return y
    return tensor(y.name, y.shape, y.dtype, scale=float(np.float32(min_scale * 1.5)), zero_point=y.zero_point)


def fit_out(rng, name, shape, dtype, values, spread=(-0.25, 0.5)) -> TensorSpec:
    """An output tensor whose quantization covers ``values`` (the op's real-valued result) give or
    take a random factor 10^spread: mostly in range, sometimes saturating, sometimes coarse."""
    if dtype not in ("int8", "int16"):
        return tensor(name, shape, dtype)
    v = np.asarray(values, np.float64)
    lo = min(float(v.min()) if v.size else 0.0, 0.0)
    hi = max(float(v.max()) if v.size else 0.0, 0.0)
    f = 10 ** rng.uniform(*spread)
    if dtype == "int8":
        scale = (hi - lo) / 255.0 * f if hi > lo else 1e-3
        scale = float(np.float32(scale))
        zp = int(np.clip(np.round(-128 - lo / scale + rng.uniform(-3, 3)), -128, 127))
    else:
        scale = float(np.float32(max(abs(lo), hi) / 32767.0 * f)) if hi > lo else 1e-5
        zp = 0
    return tensor(name, shape, dtype, scale=scale, zero_point=zp)


def rand_data_for(rng, spec: TensorSpec) -> np.ndarray:
    if spec.dtype.kind == "f":
        return rand_f(rng, spec.shape).astype(spec.dtype)
    return rand_q(rng, spec.shape, spec.dtype.name)


def cycle(cs: list, rounds: int | None = None):
    """(case number, combination): every combination ``rounds`` times (new random data each time)."""
    n = len(cs) * (ROUNDS if rounds is None else rounds)
    return ((i, cs[i % len(cs)]) for i in range(n))


def cases(n: int) -> range:
    return range(n * ROUNDS)


def combos(**axes):
    """All combinations of the given axes, as dicts (the cases of a test cycle through them)."""
    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(axes[k] for k in keys))]


def rand_shape(rng, rank: int, lo: int = 1, hi: int = 6) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(lo, hi + 1, size=rank))


def broadcast_pair(rng, rank: int, hi: int = 5) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast: per dim equal, or one of them 1; the second may have lower rank."""
    full = rand_shape(rng, rank, 1, hi)
    a, b = list(full), list(full)
    for d in range(rank):
        r = rng.random()
        if r < 0.25:
            a[d] = 1
        elif r < 0.5:
            b[d] = 1
    if rank > 1 and rng.random() < 0.3:
        b = b[int(rng.integers(1, rank)):]
    if rng.random() < 0.5:
        a, b = b, a
    return tuple(a), tuple(b)


# --------------------------------------------------------------------------------------------------
# FULLY_CONNECTED

def _fc_case(rng, path: str, per_channel: bool, bias: bool, keep: bool, rank: int, act: str,
             asym: bool = False) -> Case:
    k = int(rng.integers(1, 65))
    n = int(rng.integers(1, 33))
    batch = rand_shape(rng, rank - 1, 1, 5)
    in_shape = batch + (k,)
    out_shape = (batch + (n,)) if keep else (int(np.prod(batch)), n)
    opts = FullyConnectedOptionsT()
    opts.fusedActivationFunction = ACTS[act]
    opts.keepNumDims = keep
    if path in ("int8", "int16x8"):
        adt = "int8" if path == "int8" else "int16"
        x = act_tensor(rng, "x", in_shape, adt)
        w_scales = ([rand_scale(rng, 1e-4, 1e-1) for _ in range(n)] if per_channel
                    else [rand_scale(rng, 1e-4, 1e-1)])
        wq = rand_q(rng, (n, k), "int8", -127, 127)
        w = tensor("w", (n, k), "int8", scale=w_scales, zero_point=[0] * len(w_scales), data=wq)
        b = None
        if bias:
            bdt = "int32" if path == "int8" else "int64"
            b_scales = [float(np.float32(x.scale[0]) * np.float32(s)) for s in w_scales]
            # now and then a bias past 2**24: the int8 kernel then adds it in float64
            bits = 25 if rng.random() < 0.3 else 18
            bq = rng.integers(-(2 ** bits), 2 ** bits, size=n).astype(bdt)
            b = tensor("b", (n,), bdt, scale=b_scales, zero_point=[0] * len(b_scales), data=bq)
        xq = rand_q(rng, in_shape, adt)
        r = real(x, xq) @ real(w, wq).T + (real(b, b.data) if b is not None else 0)
        if act == "RELU6":
            # rescale the weights (and with them the bias scale) so that outputs are a few units
            f = 8.0 / max(float(np.abs(r).max()), 1e-30)
            w = tensor("w", (n, k), "int8", scale=[float(np.float32(v * f)) for v in w_scales],
                       zero_point=[0] * len(w_scales), data=wq)
            if b is not None:
                b = tensor("b", (n,), b.dtype,
                           scale=[float(np.float32(x.scale[0]) * np.float32(v)) for v in w.scale],
                           zero_point=[0] * n if len(w.scale) > 1 else [0], data=b.data)
            r = real(x, xq) @ real(w, wq).T + (real(b, b.data) if b is not None else 0)
        y = fit_out(rng, "y", out_shape, adt, apply_act(r, act))
        arrays = [xq]
    elif path == "float32":
        x = tensor("x", in_shape, "float32")
        w = tensor("w", (n, k), "float32", data=rand_f(rng, (n, k), 1.0))
        b = tensor("b", (n,), "float32", data=rand_f(rng, (n,))) if bias else None
        y = tensor("y", out_shape, "float32")
        arrays = [rand_f(rng, in_shape)]
    elif path == "hybrid":
        opts.asymmetricQuantizeInputs = asym
        x = tensor("x", in_shape, "float32")
        w_scales = ([rand_scale(rng, 1e-4, 1e-1) for _ in range(n)] if per_channel
                    else [rand_scale(rng, 1e-4, 1e-1)])
        w = tensor("w", (n, k), "int8", scale=w_scales, zero_point=[0] * len(w_scales),
                   data=rand_q(rng, (n, k), "int8", -127, 127))
        b = tensor("b", (n,), "float32", data=rand_f(rng, (n,))) if bias else None
        y = tensor("y", out_shape, "float32")
        xs = rand_f(rng, in_shape)
        if rng.random() < 0.2:  # a row of zeros: the hybrid kernel's scaling factor is 0 there
            xs.reshape(-1, k)[0] = 0
        arrays = [xs]
    else:
        raise AssertionError(path)
    if path == "int16x8" and rng.random() < 0.5:
        # TF's 16x8 quantizer writes quantized_bias_type INT64 (the bias, when present, is int64)
        opts.quantizedBiasType = TensorType.INT64
    extra = f"path={path} per_channel={per_channel} bias={bias} keep_num_dims={keep} act={act}"
    return Case("FULLY_CONNECTED", [x, w, b], [y], opts, arrays, extra)


FC_QUANT = combos(bias=[True, False], keep=[False, True], rank=[2, 3], act=["NONE", "RELU", "RELU6"])


@pytest.mark.parametrize("path,per_channel", [("int8", True), ("int8", False),
                                              ("int16x8", True), ("int16x8", False)])
def test_fully_connected_quantized(path, per_channel):
    for i, c in cycle(FC_QUANT):
        rng = _rng("fc", path, per_channel, i)
        check(_fc_case(rng, path, per_channel, **c), label=f"case {i}")


def test_fully_connected_float32():
    for i, c in cycle(FC_QUANT):
        rng = _rng("fc", "float32", i)
        check(_fc_case(rng, "float32", False, **c), label=f"case {i}")


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("asym", [False, True])
def test_fully_connected_hybrid(per_channel, asym):
    cs = combos(bias=[True, False], keep=[False, True], rank=[2, 3], act=["NONE", "RELU6"])
    for i, c in cycle(cs):
        rng = _rng("fc", "hybrid", per_channel, asym, i)
        check(_fc_case(rng, "hybrid", per_channel, asym=asym, **c), label=f"case {i}")


# --------------------------------------------------------------------------------------------------
# BATCH_MATMUL

def _bmm_shapes(rng, rank_l: int, rank_r: int):
    m, k, n = (int(v) for v in rng.integers(1, 17, size=3))
    nb = max(rank_l, rank_r) - 2
    batch = rand_shape(rng, nb, 1, 3)
    bl, br = list(batch), list(batch)
    for d in range(nb):
        r = rng.random()
        if r < 0.25:
            bl[d] = 1
        elif r < 0.5:
            br[d] = 1
    bl = bl[nb - (rank_l - 2):]
    br = br[nb - (rank_r - 2):]
    out_batch = tuple(int(v) for v in np.broadcast_shapes(tuple(bl), tuple(br)))
    return tuple(bl), tuple(br), m, k, n, out_batch


def _bmm_case(rng, path: str, adj_x: bool, adj_y: bool, ranks, const_rhs: bool,
              asym: bool = False) -> Case:
    bl, br, m, k, n, ob = _bmm_shapes(rng, *ranks)
    lshape = bl + ((k, m) if adj_x else (m, k))
    rshape = br + ((n, k) if adj_y else (k, n))
    oshape = ob + (m, n)
    opts = BatchMatMulOptionsT()
    opts.adjX, opts.adjY = adj_x, adj_y
    if path in ("int8", "int16"):
        lhs = act_tensor(rng, "lhs", lshape, path)
        rq = rand_q(rng, rshape, path)
        if const_rhs:
            rhs = tensor("rhs", rshape, path, scale=rand_scale(rng), zero_point=rand_zp(rng, path), data=rq)
        else:
            rhs = act_tensor(rng, "rhs", rshape, path)
        lq = rand_q(rng, lshape, path)
        lr, rr = real(lhs, lq), real(rhs, rq)
        r = np.matmul(np.swapaxes(lr, -1, -2) if adj_x else lr, np.swapaxes(rr, -1, -2) if adj_y else rr)
        out = fit_out(rng, "out", oshape, path, r)
        arrays = [lq] + ([] if const_rhs else [rq])
    elif path == "float32":
        lhs = tensor("lhs", lshape, "float32")
        rf = rand_f(rng, rshape)
        rhs = tensor("rhs", rshape, "float32", data=rf) if const_rhs else tensor("rhs", rshape, "float32")
        out = tensor("out", oshape, "float32")
        arrays = [rand_f(rng, lshape)] + ([] if const_rhs else [rf])
    elif path == "hybrid":
        opts.asymmetricQuantizeInputs = asym
        lhs = tensor("lhs", lshape, "float32")
        rhs = tensor("rhs", rshape, "int8", scale=rand_scale(rng, 1e-4, 1e-1), zero_point=0,
                     data=rand_q(rng, rshape, "int8", -127, 127))
        out = tensor("out", oshape, "float32")
        arrays = [rand_f(rng, lshape)]
    else:
        raise AssertionError(path)
    extra = f"path={path} adj_x={adj_x} adj_y={adj_y} const_rhs={const_rhs}"
    return Case("BATCH_MATMUL", [lhs, rhs], [out], opts, arrays, extra)


BMM_RANKS = [(2, 2), (3, 3), (4, 4), (3, 2), (2, 4), (4, 3), (5, 5)]


@pytest.mark.parametrize("path", ["int8", "int16", "float32"])
def test_batch_matmul(path):
    cs = combos(adj=[(False, False), (False, True), (True, False), (True, True)], ranks=BMM_RANKS,
                const_rhs=[False, True])
    for i, c in cycle(cs):
        rng = _rng("bmm", path, i)
        check(_bmm_case(rng, path, c["adj"][0], c["adj"][1], c["ranks"], c["const_rhs"]),
              label=f"case {i}")


@pytest.mark.parametrize("asym", [False, True])
def test_batch_matmul_hybrid(asym):
    cs = combos(adj=[(False, False), (False, True), (True, False)], ranks=[(2, 2), (3, 2), (3, 3), (4, 4)])
    for i, c in cycle(cs):
        rng = _rng("bmm-hybrid", asym, i)
        check(_bmm_case(rng, "hybrid", c["adj"][0], c["adj"][1], c["ranks"], True, asym=asym),
              label=f"case {i}")


# --------------------------------------------------------------------------------------------------
# SOFTMAX

SOFTMAX_BETAS = [1.0, 0.5, 2.0, None]  # None: random in [0.1, 3]


def _softmax_case(rng, dtype: str, beta) -> Case:
    rank = int(rng.integers(1, 5))
    shape = rand_shape(rng, rank - 1, 1, 4) + (int(rng.integers(1, 65)),)
    b = float(np.float32(rng.uniform(0.1, 3.0))) if beta is None else beta
    opts = SoftmaxOptionsT()
    opts.beta = b
    if dtype == "int8":
        x = act_tensor(rng, "x", shape, "int8", scale=rand_scale(rng, 1e-3, 0.3))
        y = tensor("y", shape, "int8", scale=1.0 / 256, zero_point=-128)
        arrays = [rand_q(rng, shape, "int8")]
    elif dtype == "int16":
        x = act_tensor(rng, "x", shape, "int16", scale=rand_scale(rng, 1e-4, 1e-2))
        y = tensor("y", shape, "int16", scale=1.0 / 32768, zero_point=0)
        arrays = [rand_q(rng, shape, "int16")]
    else:
        x = tensor("x", shape, "float32")
        y = tensor("y", shape, "float32")
        arrays = [rand_f(rng, shape, log_uniform(rng, 0.1, 20))]
    return Case("SOFTMAX", [x], [y], opts, arrays, f"beta={b}")


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_softmax_quantized(dtype):
    for i in cases(48):
        rng = _rng("softmax", dtype, i)
        check(_softmax_case(rng, dtype, SOFTMAX_BETAS[i % 4]), label=f"case {i}")


def test_softmax_float32():
    # ULP bound: the reference kernel calls std::exp (glibc expf), which NumPy does not reproduce
    # bit for bit; one ULP in an exp can move the sum and so every quotient of the row.
    for i in cases(24):
        rng = _rng("softmax", "float32", i)
        check(_softmax_case(rng, "float32", SOFTMAX_BETAS[i % 4]), ulp=4, label=f"case {i}")


# --------------------------------------------------------------------------------------------------
# ADD / SUB / MUL

def _binary_case(rng, opcode: str, dtype: str, rank: int, act: str, const_b: bool) -> Case:
    sa, sb = broadcast_pair(rng, rank)
    so = tuple(int(v) for v in np.broadcast_shapes(sa, sb))
    cls = {"ADD": AddOptionsT, "SUB": SubOptionsT, "MUL": MulOptionsT}[opcode]
    opts = cls()
    opts.fusedActivationFunction = ACTS[act]
    if opcode in ("ADD", "SUB") and dtype == "int16":
        opts.potScaleInt16 = False
    if dtype in ("int8", "int16"):
        if act == "RELU6":  # real values of a few units, so that the clamp at 6 matters
            a = act_tensor(rng, "a", sa, dtype, scale=rand_scale(rng, 1e-3, 0.1) if dtype == "int8"
                           else rand_scale(rng, 1e-5, 3e-4))
        else:
            a = act_tensor(rng, "a", sa, dtype)
        s1 = a.scale[0]
        s2 = s1 * 10 ** rng.uniform(-2, 2) if rng.random() < 0.8 else rand_scale(rng)
        s2 = float(np.float32(min(max(s2, 1e-6), 10.0)))
        bq = rand_q(rng, sb, dtype)
        if const_b:
            b = tensor("b", sb, dtype, scale=s2, zero_point=rand_zp(rng, dtype), data=bq)
        else:
            b = act_tensor(rng, "b", sb, dtype, scale=s2)
        aq = rand_q(rng, sa, dtype)
        ra, rb = real(a, aq), real(b, bq)
        r = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[opcode](ra, rb)
        if opcode == "MUL" and act != "RELU6" and rng.random() < 0.15:
            # an effective multiplier s1*s2/s_out > 1 (MUL version 3)
            y = act_tensor(rng, "y", so, dtype, scale=float(np.float32(s1 * s2 * 10 ** rng.uniform(-1, 0))))
        else:
            y = fit_out(rng, "y", so, dtype, apply_act(r, act))
            if opcode in ("ADD", "SUB"):
                y = _keep_litert_alive(y, 2 * max(s1, s2) / 2 ** (20 if dtype == "int8" else 15))
        arrays = [aq] + ([] if const_b else [bq])
    else:
        a = tensor("a", sa, "float32")
        bf = rand_f(rng, sb)
        b = tensor("b", sb, "float32", data=bf) if const_b else tensor("b", sb, "float32")
        y = tensor("y", so, "float32")
        arrays = [rand_f(rng, sa)] + ([] if const_b else [bf])
    return Case(opcode, [a, b], [y], opts, arrays, f"act={act} const_b={const_b}")


BINARY = combos(rank=[1, 2, 3, 4, 5], act=["NONE", "RELU", "RELU6"], const_b=[False, True])


@pytest.mark.parametrize("opcode", ["ADD", "SUB", "MUL"])
@pytest.mark.parametrize("dtype", ["int8", "int16", "float32"])
def test_binary(opcode, dtype):
    for i, c in cycle(BINARY):
        if dtype == "int16" and c["rank"] == 5 and opcode == "MUL":
            continue  # TODO(check): int16 MUL with 5-D broadcast -- covered if LiteRT accepts it
        rng = _rng("binary", opcode, dtype, i)
        check(_binary_case(rng, opcode, dtype, **c), label=f"case {i}")


def test_binary_same_input():
    """x + x, x * x: one tensor feeding both operands."""
    for i, opcode in cycle(["ADD", "SUB", "MUL"], 4 * ROUNDS):
        rng = _rng("binary-same", i)
        shape = rand_shape(rng, 3)
        x = act_tensor(rng, "x", shape, "int8")
        xq = rand_q(rng, shape, "int8")
        r = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[opcode](real(x, xq), real(x, xq))
        y = fit_out(rng, "y", shape, "int8", r if opcode != "SUB" else real(x, xq))
        opts = {"ADD": AddOptionsT, "SUB": SubOptionsT, "MUL": MulOptionsT}[opcode]()
        check(Case(opcode, [x, x], [y], opts, [xq]), label=f"case {i}")


def _binary_op(rng, opcode: str, a: TensorSpec, a_q, b: TensorSpec, b_q, name: str):
    """One int8 ADD / SUB / MUL node on (a, b) with an output sized to its real result."""
    r = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[opcode](real(a, a_q), real(b, b_q))
    out = fit_out(rng, name, np.broadcast_shapes(a.shape, b.shape), "int8", r)
    if opcode in ("ADD", "SUB"):
        out = _keep_litert_alive(out, 2 * max(a.scale[0], b.scale[0]) / 2 ** 20)
    options = {"ADD": AddOptionsT, "SUB": SubOptionsT, "MUL": MulOptionsT}[opcode]()
    # op1's output quantized from its real result: what sizes the next op's output
    approx_q = np.clip(np.round(r / out.scale[0]) + out.zero_point[0], -128, 127).astype(np.int8)
    return op(opcode, [a, b], [out], options), out, approx_q


# op1 has a constant of this shape on side `const_first`; op2 reads op1's result on side
# `result_first`, its other operand a per-channel constant or a computed [1, 1, channels] tensor
TABLE_CHAINS = combos(const_shape=[(), (6,), (1, 1, 6)], const_first=[False, True],
                      result_first=[False, True], other_const=[False, True])


def test_table_chains():
    """Two int8 table ops in a row, every operand order (fusion.py composes the fusable ones into
    one table for run()): run() and run_all against LiteRT, and the fusion really happens where
    it should -- a per-channel constant feeding a computed operand stays two ops."""
    for i, c in cycle(TABLE_CHAINS):
        rng = _rng("table-chain", i)
        opcode1, opcode2 = (str(v) for v in rng.choice(["ADD", "SUB", "MUL"], size=2))
        x = act_tensor(rng, "x", (2, 3, 6), "int8")
        x_q = rand_q(rng, x.shape, "int8")
        const_q = rand_q(rng, c["const_shape"], "int8")
        const = tensor("c", c["const_shape"], "int8", scale=rand_scale(rng, 1e-2, 1.0),
                       zero_point=rand_zp(rng, "int8"), data=const_q)
        pair = [(const, const_q), (x, x_q)] if c["const_first"] else [(x, x_q), (const, const_q)]
        op1, y, y_q = _binary_op(rng, opcode1, *pair[0], *pair[1], "y")
        other_q = rand_q(rng, (1, 1, 6), "int8")
        other = (tensor("u", (1, 1, 6), "int8", scale=rand_scale(rng, 1e-2, 1.0), zero_point=rand_zp(rng, "int8"),
                        data=other_q) if c["other_const"] else act_tensor(rng, "u", (1, 1, 6), "int8"))
        pair = [(y, y_q), (other, other_q)] if c["result_first"] else [(other, other_q), (y, y_q)]
        op2, _, _ = _binary_op(rng, opcode2, *pair[0], *pair[1], "z")
        arrays = [x_q] + ([] if c["other_const"] else [other_q])
        case = GraphCase([op1, op2], arrays, f"{opcode1} then {opcode2}, {c}")
        check(case, label=f"case {i}")
        fusable = c["other_const"] or c["const_shape"] == ()
        assert len(_ours(case.blob)._run_plan) == (1 if fusable else 2), case.what


# --------------------------------------------------------------------------------------------------
# RESHAPE / TRANSPOSE / STRIDED_SLICE / GATHER / PAD / CONCATENATION

DTYPES_MOVE = ["int8", "int16", "float32", "int32"]


@pytest.mark.parametrize("dtype", DTYPES_MOVE)
def test_reshape(dtype):
    for i in cases(12):
        rng = _rng("reshape", dtype, i)
        shape = rand_shape(rng, int(rng.integers(1, 5)))
        size = int(np.prod(shape))
        # a random factorization of size into 1..4 dims
        dims = []
        rest = size
        for _ in range(int(rng.integers(0, 3))):
            divs = [d for d in range(1, rest + 1) if rest % d == 0]
            d = int(rng.choice(divs))
            dims.append(d)
            rest //= d
        dims.append(rest)
        new = list(dims)
        spec_new = list(new)
        if rng.random() < 0.4:
            spec_new[int(rng.integers(0, len(new)))] = -1
        x = act_tensor(rng, "x", shape, dtype)
        y = tensor("y", new, dtype, scale=x.scale, zero_point=x.zero_point)
        mode = i % 3
        opts = None
        if mode == 0:  # shape as a constant input tensor
            s = tensor("shape", (len(spec_new),), "int32", data=spec_new)
            ins = [x, s]
        elif mode == 1:  # shape in the options only
            opts = ReshapeOptionsT()
            opts.newShape = spec_new
            ins = [x]
        else:  # both (the converter writes both)
            opts = ReshapeOptionsT()
            opts.newShape = spec_new
            ins = [x, tensor("shape", (len(spec_new),), "int32", data=spec_new)]
        check(Case("RESHAPE", ins, [y], opts, [rand_data_for(rng, x)], f"new_shape={spec_new}"),
              label=f"case {i}")


@pytest.mark.parametrize("dtype", DTYPES_MOVE)
def test_transpose(dtype):
    for i in cases(15):
        rng = _rng("transpose", dtype, i)
        rank = 1 + i % 5 if dtype != "int32" else 1 + i % 4
        shape = rand_shape(rng, rank, 1, 5)
        perm = [int(p) for p in rng.permutation(rank)]
        x = act_tensor(rng, "x", shape, dtype)
        y = tensor("y", [shape[p] for p in perm], dtype, scale=x.scale, zero_point=x.zero_point)
        p = tensor("perm", (rank,), "int32", data=perm)
        check(Case("TRANSPOSE", [x, p], [y], None, [rand_data_for(rng, x)], f"perm={perm}"),
              label=f"case {i}")


def _np_strided_slice(x, begin, end, strides, begin_mask, end_mask, shrink_mask):
    idx = []
    for d in range(x.ndim):
        if shrink_mask >> d & 1:
            idx.append(begin[d])
            continue
        b = None if begin_mask >> d & 1 else begin[d]
        e = None if end_mask >> d & 1 else end[d]
        idx.append(slice(b, e, strides[d]))
    return x[tuple(idx)]


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32", "int32"])
def test_strided_slice(dtype):
    done, want = 0, 20 * ROUNDS
    for i in range(3 * want):
        if done == want:
            break
        rng = _rng("strided_slice", dtype, i)
        rank = 5 if done % 5 == 4 else 1 + done % 4  # rank 5: version 4
        shape = rand_shape(rng, rank, 2, 8)
        begin, end, strides = [], [], []
        shrink = 0
        for d, n in enumerate(shape):
            s = int(rng.choice([1, 1, 1, 2, 3, -1, -1, -2]))
            if s > 0:
                b = int(rng.integers(-n, n // 2 + 1))
                e = int(rng.integers(n // 2, n + 3)) * (1 if rng.random() < 0.8 else -1)
            else:
                b = int(rng.integers(n // 2, n + 2)) * (1 if rng.random() < 0.8 else -1)
                e = int(rng.integers(-n - 2, n // 2))
            if rng.random() < 0.15 and rank > 1:
                shrink |= 1 << d
                s = 1
                b = int(rng.integers(-n, n))
                e = b + 1 if b != -1 else 0
            begin.append(b)
            end.append(e)
            strides.append(s)
        bm = int(rng.integers(0, 1 << rank)) & ~shrink if rng.random() < 0.5 else 0
        em = int(rng.integers(0, 1 << rank)) & ~shrink if rng.random() < 0.5 else 0
        x = act_tensor(rng, "x", shape, dtype)
        data = rand_data_for(rng, x)
        expect = _np_strided_slice(data, begin, end, strides, bm, em, shrink)
        if expect.size == 0 or expect.ndim == 0:
            continue  # empty or scalar results: not what models do
        done += 1
        y = tensor("y", expect.shape, dtype, scale=x.scale, zero_point=x.zero_point)
        opts = StridedSliceOptionsT()
        opts.beginMask, opts.endMask, opts.shrinkAxisMask = bm, em, shrink
        ins = [x, tensor("begin", (rank,), "int32", data=begin), tensor("end", (rank,), "int32", data=end),
               tensor("strides", (rank,), "int32", data=strides)]
        case = Case("STRIDED_SLICE", ins, [y], opts, [data],
                    f"begin={begin} end={end} strides={strides}")
        theirs = check(case, label=f"case {i}")
        # and the model is what we meant: LiteRT agrees with NumPy's slicing
        np.testing.assert_array_equal(theirs[len(ins)], expect, err_msg=case.what)
    assert done == want


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32", "int32"])
@pytest.mark.parametrize("const_params", [True, False])
def test_gather(dtype, const_params):
    for i in cases(12):
        rng = _rng("gather", dtype, const_params, i)
        rank = int(rng.integers(1, 4))
        shape = rand_shape(rng, rank, 1, 8)
        axis = int(rng.integers(-rank, rank))
        ax = axis % rank
        ishape = rand_shape(rng, int(rng.integers(0, 3)), 1, 4)
        idx = rng.integers(0, shape[ax], size=ishape).astype(np.int32)
        oshape = shape[:ax] + ishape + shape[ax + 1:]
        pdata = rand_data_for(rng, tensor("p", shape, dtype))
        scale = rand_scale(rng) if dtype in ("int8", "int16") else None
        zp = rand_zp(rng, dtype) if scale else None
        opts = GatherOptionsT()
        opts.axis = axis
        if const_params:  # an embedding table: constant params, indices from the graph
            p = tensor("params", shape, dtype, scale=scale, zero_point=zp, data=pdata)
            ind = tensor("indices", ishape, "int32")
            arrays = [idx]
        else:
            p = tensor("params", shape, dtype, scale=scale, zero_point=zp)
            ind = tensor("indices", ishape, "int32", data=idx)
            arrays = [pdata]
        y = tensor("y", oshape, dtype, scale=scale, zero_point=zp)
        check(Case("GATHER", [p, ind], [y], opts, arrays, f"axis={axis}"), label=f"case {i}")


def test_gather_out_of_range():
    """Out-of-range indices: LiteRT's invoke fails (negative ones too); ours must refuse as well
    rather than return data."""
    p = tensor("params", (5, 3), "float32", data=np.arange(15, dtype=np.float32).reshape(5, 3))
    ind = tensor("indices", (2,), "int32")
    y = tensor("y", (2, 3), "float32")
    blob = single_op_model("GATHER", [p, ind], [y], GatherOptionsT())
    runner = LiteRTRunner(blob, resolver="ref")
    np.testing.assert_array_equal(runner.run([np.array([4, 0], np.int32)])[0],
                                  [[12, 13, 14], [0, 1, 2]])
    interp = _ours(blob)
    for bad in ([5, 0], [-1, 0]):
        with pytest.raises(NpMobileBertError):
            runner.run([np.array(bad, np.int32)])
        with pytest.raises(NpMobileBertError):
            interp.run([np.array(bad, np.int32)])


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32", "int32"])
def test_pad(dtype):
    for i in cases(12):
        rng = _rng("pad", dtype, i)
        rank = 1 + i % 4 if dtype != "int8" or i % 12 < 9 else 5
        shape = rand_shape(rng, rank, 1, 5)
        pads = rng.integers(0, 4, size=(rank, 2)).astype(np.int32)
        x = act_tensor(rng, "x", shape, dtype)
        y = tensor("y", [n + int(p.sum()) for n, p in zip(shape, pads)], dtype,
                   scale=x.scale, zero_point=x.zero_point)
        check(Case("PAD", [x, tensor("paddings", (rank, 2), "int32", data=pads)], [y], None,
                   [rand_data_for(rng, x)], f"paddings={pads.tolist()}"), label=f"case {i}")


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32"])
def test_concatenation(dtype):
    """LiteRT's int8 CONCATENATION requires every input to carry the output's scale and zero point
    (concatenation.cc: "no re-scaling needed for Int8"); int16 requires zero points 0 but does not
    compare scales -- and then copies the raw values without rescaling.  Both are tested as LiteRT
    does them: int16 cases with mixed scales expect the raw copy."""
    for i in cases(24):
        rng = _rng("concat", dtype, i)
        rank = int(rng.integers(1, 5))
        base = rand_shape(rng, rank, 1, 5)
        axis = int(rng.integers(-rank, rank))
        ax = axis % rank
        n_in = int(rng.integers(1, 5))
        ins, arrays = [], []
        mixed = dtype == "int16" and i % 4 == 3
        out_scale = rand_scale(rng)
        out_zp = rand_zp(rng, dtype)
        for k in range(n_in):
            shape = list(base)
            shape[ax] = int(rng.integers(1, 5))
            if dtype == "float32":
                t = tensor(f"x{k}", shape, dtype)
            elif mixed:
                t = act_tensor(rng, f"x{k}", shape, dtype,
                               scale=float(np.float32(out_scale * 10 ** rng.uniform(-1, 1))))
            else:
                t = tensor(f"x{k}", shape, dtype, scale=out_scale, zero_point=out_zp)
            if rng.random() < 0.2:  # a constant operand
                t = tensor(t.name, t.shape, dtype, scale=t.scale, zero_point=t.zero_point,
                           data=rand_data_for(rng, t))
            else:
                arrays.append(rand_data_for(rng, t))
            ins.append(t)
        oshape = list(base)
        oshape[ax] = sum(t.shape[ax] for t in ins)
        y = (tensor("y", oshape, dtype) if dtype == "float32"
             else tensor("y", oshape, dtype, scale=out_scale, zero_point=out_zp))
        opts = ConcatenationOptionsT()
        opts.axis = axis
        check(Case("CONCATENATION", ins, [y], opts, arrays, f"axis={axis} mixed_scales={mixed}"),
              label=f"case {i}")


def test_concatenation_int8_rejects_mixed_scales():
    a = tensor("a", (2, 3), "int8", scale=0.1, zero_point=0)
    b = tensor("b", (2, 3), "int8", scale=0.2, zero_point=0)
    y = tensor("y", (4, 3), "int8", scale=0.1, zero_point=0)
    with pytest.raises(NpMobileBertError, match="scale"):
        LiteRTRunner(single_op_model("CONCATENATION", [a, b], [y], ConcatenationOptionsT()), resolver="ref")


# --------------------------------------------------------------------------------------------------
# CAST / QUANTIZE / DEQUANTIZE

CASTS = [("int32", "float32"), ("float32", "int32"), ("int8", "int32"), ("int32", "int8"),
         ("int8", "float32"), ("int16", "int32"), ("int32", "int16"), ("float32", "int8"),
         ("int32", "int64"), ("int64", "int32"), ("bool", "int32"), ("int32", "bool"),
         ("float32", "bool")]


@pytest.mark.parametrize("src,dst", CASTS)
def test_cast(src, dst):
    for i in cases(4):
        rng = _rng("cast", src, dst, i)
        shape = rand_shape(rng, int(rng.integers(1, 4)))
        if src == "float32":
            lim = {"int32": 2.0e9, "int8": 127.0, "bool": 3.0}[dst]
            data = rng.uniform(-lim, lim, size=shape).astype(np.float32)
            if dst == "bool":
                data[rng.random(shape) < 0.3] = 0.0
        elif src == "bool":
            data = rng.random(shape) < 0.5
        else:
            lo, hi = {"int8": (-128, 127), "int16": (-32768, 32767),
                      "int32": (-(2 ** 31), 2 ** 31 - 1), "int64": (-(2 ** 31), 2 ** 31 - 1)}[src]
            if dst in ("int8", "int16"):  # narrowing: values that fit (wrapping is not modelled)
                lo, hi = QRANGE[dst]
            if dst == "bool":
                lo, hi = -3, 3
            data = rng.integers(lo, hi + 1, size=shape, dtype=np.int64).astype(src)
        x = tensor("x", shape, src)
        y = tensor("y", shape, dst)
        opts = CastOptionsT()
        opts.inDataType, opts.outDataType = x.type, y.type
        check(Case("CAST", [x], [y], opts, [data]), label=f"case {i}")


def _quantize_input(rng, shape, scale, zp, qdt):
    """Floats around the quantized range, with exact .5 ties and out-of-range values mixed in."""
    qmin, qmax = QRANGE[qdt]
    q = rng.uniform(qmin - 20, qmax + 20, size=shape)
    ties = rng.random(shape) < 0.2
    q[ties] = np.round(q[ties]) + 0.5
    return ((q - zp) * scale).astype(np.float32)


@pytest.mark.parametrize("src,dst", [("float32", "int8"), ("float32", "int16"), ("int8", "int8"),
                                     ("int16", "int16"), ("int8", "int16"), ("int16", "int8")])
def test_quantize(src, dst):
    for i in cases(12):
        rng = _rng("quantize", src, dst, i)
        shape = rand_shape(rng, int(rng.integers(1, 4)))
        y = act_tensor(rng, "y", shape, dst)
        if src == "float32":
            x = tensor("x", shape, "float32")
            data = _quantize_input(rng, shape, y.scale[0], y.zero_point[0], dst)
        else:
            # input range from a tenth to three times the output range
            ratio = QRANGE[dst][1] / QRANGE[src][1]
            s = float(np.float32(y.scale[0] * ratio * 10 ** rng.uniform(-1, 0.5)))
            x = act_tensor(rng, "x", shape, src, scale=s)
            data = rand_q(rng, shape, src)
        check(Case("QUANTIZE", [x], [y], None, [data]), label=f"case {i}")


@pytest.mark.parametrize("src", ["int8", "int16", "float16", "int8-per-channel"])
def test_dequantize(src):
    for i in cases(12):
        rng = _rng("dequantize", src, i)
        shape = rand_shape(rng, int(rng.integers(1, 4)))
        y = tensor("y", shape, "float32")
        if src == "float16":
            data = rand_f(rng, shape).astype(np.float16)
            if i % 2:  # a constant (fp16 weights), as the converter writes them
                x = tensor("x", shape, "float16", data=data)
                arrays = []
            else:
                x = tensor("x", shape, "float16")
                arrays = [data]
        elif src == "int8-per-channel":
            qd = int(rng.integers(0, len(shape)))
            n = shape[qd]
            x = tensor("x", shape, "int8", scale=[rand_scale(rng) for _ in range(n)],
                       zero_point=[0] * n, quantized_dimension=qd, data=rand_q(rng, shape, "int8", -127, 127))
            arrays = []
        else:
            x = act_tensor(rng, "x", shape, src)
            arrays = [rand_q(rng, shape, src)]
        check(Case("DEQUANTIZE", [x], [y], None, arrays), label=f"case {i}")


# --------------------------------------------------------------------------------------------------
# TANH / LOGISTIC

@pytest.mark.parametrize("opcode", ["TANH", "LOGISTIC"])
@pytest.mark.parametrize("dtype", ["int8", "int16", "float32"])
def test_tanh_logistic(opcode, dtype):
    n_cases = 24 if dtype != "float32" else 8
    for i in cases(n_cases):
        rng = _rng("act", opcode, dtype, i)
        shape = rand_shape(rng, int(rng.integers(1, 4)), 1, 8)
        if dtype == "int8":
            x = act_tensor(rng, "x", shape, "int8", scale=rand_scale(rng, 1e-3, 0.15))
            y = (tensor("y", shape, "int8", scale=1.0 / 128, zero_point=0) if opcode == "TANH"
                 else tensor("y", shape, "int8", scale=1.0 / 256, zero_point=-128))
            data = rand_q(rng, shape, "int8")
        elif dtype == "int16":
            # power-of-two input scales (what the int16 converter emits) and arbitrary ones
            s = 2.0 ** -int(rng.integers(8, 14)) if i % 2 else rand_scale(rng, 1e-5, 1e-3)
            x = tensor("x", shape, "int16", scale=s, zero_point=0)
            y = tensor("y", shape, "int16", scale=1.0 / 32768, zero_point=0)
            data = rand_q(rng, shape, "int16")
        else:
            x = tensor("x", shape, "float32")
            y = tensor("y", shape, "float32")
            data = rand_f(rng, shape, log_uniform(rng, 0.1, 20))
        # float32: the reference kernels call std::tanh / std::exp (glibc), which NumPy's
        # transcendental functions do not reproduce bit for bit -> a ULP bound.
        check(Case(opcode, [x], [y], None, [data]), ulp=4 if dtype == "float32" else 0,
              label=f"case {i}")


# --------------------------------------------------------------------------------------------------
# MEAN / SUM / RSQRT / SQUARED_DIFFERENCE

@pytest.mark.parametrize("opcode", ["MEAN", "SUM"])
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_reduce(opcode, dtype):
    for i in cases(16):
        rng = _rng("reduce", opcode, dtype, i)
        rank = int(rng.integers(1, 5))
        shape = rand_shape(rng, rank, 1, 6)
        n_axes = int(rng.integers(1, rank + 1))
        axes = sorted(int(a) for a in rng.choice(rank, size=n_axes, replace=False))
        if rng.random() < 0.3:
            axes = [a - rank for a in axes]  # negative axes
        keep = bool(i % 2)
        pos = [a % rank for a in axes]
        oshape = [1 if d in pos else n for d, n in enumerate(shape)] if keep else \
            [n for d, n in enumerate(shape) if d not in pos]
        count = int(np.prod([shape[a] for a in pos]))
        if dtype == "int8":
            x = act_tensor(rng, "x", shape, "int8")
            xq = rand_q(rng, shape, "int8")
            r = (np.mean if opcode == "MEAN" else np.sum)(real(x, xq), axis=tuple(pos))
            if opcode == "MEAN" and i % 4 == 0:  # same quantization in and out (MobileBERT-style)
                y = tensor("y", oshape, "int8", scale=x.scale, zero_point=x.zero_point)
            else:
                y = fit_out(rng, "y", oshape, "int8", r)
        else:
            x = tensor("x", shape, "float32")
            y = tensor("y", oshape, "float32")
            xq = rand_data_for(rng, x)
        opts = ReducerOptionsT()
        opts.keepDims = keep
        ax = tensor("axes", (len(axes),), "int32", data=axes)
        check(Case(opcode, [x, ax], [y], opts, [xq], f"axes={axes} keep_dims={keep} count={count}"),
              label=f"case {i}")


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32"])
def test_rsqrt(dtype):
    for i in cases(12):
        rng = _rng("rsqrt", dtype, i)
        shape = rand_shape(rng, int(rng.integers(1, 4)))
        if dtype == "float32":
            x = tensor("x", shape, "float32")
            y = tensor("y", shape, "float32")
            data = np.abs(rand_f(rng, shape)) + np.float32(1e-3)
        else:
            # positive inputs only (rsqrt of a non-positive value is an error in the int kernels)
            x = act_tensor(rng, "x", shape, dtype, scale=rand_scale(rng, 1e-4, 1e-1),
                           zero_point=int(rng.integers(-128, 100)) if dtype == "int8" else 0)
            zp = x.zero_point[0]
            qmax = QRANGE[dtype][1]
            data = rand_q(rng, shape, dtype, lo=min(zp + 1, qmax), hi=qmax)
            y = fit_out(rng, "y", shape, dtype, real(x, data) ** -0.5)
        check(Case("RSQRT", [x], [y], None, [data]), label=f"case {i}")


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_squared_difference(dtype):
    for i in cases(16):
        rng = _rng("sqdiff", dtype, i)
        sa, sb = broadcast_pair(rng, 1 + i % 4)
        so = tuple(int(v) for v in np.broadcast_shapes(sa, sb))
        if dtype == "int8":
            a = act_tensor(rng, "a", sa, "int8")
            b = act_tensor(rng, "b", sb, "int8",
                           scale=float(np.float32(a.scale[0] * 10 ** rng.uniform(-1, 1))))
            arrays = [rand_q(rng, sa, "int8"), rand_q(rng, sb, "int8")]
            y = fit_out(rng, "y", so, "int8", (real(a, arrays[0]) - real(b, arrays[1])) ** 2)
            y = _keep_litert_alive(y, (2 * max(a.scale[0], b.scale[0])) ** 2 / 2 ** 14)
        else:
            a, b, y = tensor("a", sa, "float32"), tensor("b", sb, "float32"), tensor("y", so, "float32")
            arrays = [rand_f(rng, sa), rand_f(rng, sb)]
        check(Case("SQUARED_DIFFERENCE", [a, b], [y], None, arrays), label=f"case {i}")


# --------------------------------------------------------------------------------------------------
# A chain: one int8 attention head pattern, every intermediate compared

@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_chain_attention(dtype):
    """QUANTIZE -> FULLY_CONNECTED -> RESHAPE -> TRANSPOSE -> BATCH_MATMUL -> SOFTMAX -> BATCH_MATMUL
    -> DEQUANTIZE, quantized the way the converter does it (ranges fitted to the float result)."""
    wdt = "int8"
    for i in cases(4):
        rng = _rng("chain", dtype, i)
        b, sq = int(rng.integers(1, 3)), int(rng.integers(2, 9))
        heads, dh = int(rng.integers(1, 4)), int(rng.integers(2, 9))
        d = heads * dh
        xf = rand_f(rng, (b, sq, d), 1.0)
        wf = rng.standard_normal((d, d)) / np.sqrt(d)
        bf = rng.standard_normal(d) * 0.1
        x = tensor("x", (b, sq, d), "float32")
        xq_t = fit_out(rng, "x_q", (b, sq, d), dtype, xf, (0, 0.1))
        w_scales = [float(np.float32(np.abs(wf[c]).max() / 127)) for c in range(d)]
        w = tensor("w", (d, d), wdt, scale=w_scales, zero_point=[0] * d,
                   data=np.clip(np.round(wf / np.array(w_scales)[:, None]), -127, 127))
        bdt = "int32" if dtype == "int8" else "int64"
        b_scales = [float(np.float32(np.float32(xq_t.scale[0]) * np.float32(s))) for s in w_scales]
        bias = tensor("b", (d,), bdt, scale=b_scales, zero_point=[0] * d,
                      data=np.round(bf / np.array(b_scales)))
        hf = xf @ wf.T + bf
        h = fit_out(rng, "h", (b, sq, d), dtype, hf, (0, 0.1))
        fc_opts = FullyConnectedOptionsT()
        fc_opts.keepNumDims = True
        h4 = tensor("h4", (b, sq, heads, dh), dtype, scale=h.scale, zero_point=h.zero_point)
        ht = tensor("ht", (b, heads, sq, dh), dtype, scale=h.scale, zero_point=h.zero_point)
        hf_t = hf.reshape(b, sq, heads, dh).transpose(0, 2, 1, 3)
        sf = hf_t @ np.swapaxes(hf_t, -1, -2)
        scores = fit_out(rng, "scores", (b, heads, sq, sq), dtype, sf, (0, 0.1))
        bmm_qk = BatchMatMulOptionsT()
        bmm_qk.adjY = True
        probs = (tensor("probs", (b, heads, sq, sq), "int8", scale=1 / 256, zero_point=-128) if dtype == "int8"
                 else tensor("probs", (b, heads, sq, sq), "int16", scale=1 / 32768, zero_point=0))
        sm = SoftmaxOptionsT()
        sm.beta = 1.0
        e = np.exp(sf - sf.max(-1, keepdims=True))
        pf = e / e.sum(-1, keepdims=True)
        ctx = fit_out(rng, "ctx", (b, heads, sq, dh), dtype, pf @ hf_t, (0, 0.1))
        out = tensor("out", (b, heads, sq, dh), "float32")
        ops = [
            op("QUANTIZE", [x], [xq_t]),
            op("FULLY_CONNECTED", [xq_t, w, bias], [h], fc_opts),
            op("RESHAPE", [h, tensor("shape4", (4,), "int32", data=[b, sq, heads, dh])], [h4]),
            op("TRANSPOSE", [h4, tensor("perm", (4,), "int32", data=[0, 2, 1, 3])], [ht]),
            op("BATCH_MATMUL", [ht, ht], [scores], bmm_qk),
            op("SOFTMAX", [scores], [probs], sm),
            op("BATCH_MATMUL", [probs, ht], [ctx], BatchMatMulOptionsT()),
            op("DEQUANTIZE", [ctx], [out]),
        ]
        check(GraphCase(ops, [xf], f"{dtype} b={b} seq={sq} heads={heads} head_dim={dh}"), label=f"case {i}")


# --------------------------------------------------------------------------------------------------
# The harness itself

def test_models_load_in_litert_with_converter_versions():
    """Every op model above uses the version the converter would emit; the reference resolver
    accepts them (a wrong version fails at load time, not silently)."""
    x = tensor("x", (2, 3), "int8", scale=0.1, zero_point=1)
    y = tensor("y", (2, 3), "int8", scale=1.0 / 128, zero_point=0)
    blob = single_op_model("TANH", [x], [y])
    LiteRTRunner(blob, resolver="ref")
    with pytest.raises(NpMobileBertError, match="(?i)version|op"):
        LiteRTRunner(single_op_model("TANH", [x], [y], version=99), resolver="ref")


def test_tensor_type_table():
    assert tensor("t", (1,), "int8").type == TensorType.INT8
    assert tensor("t", (1,), np.float32).type == TensorType.FLOAT32


# --------------------------------------------------------------------------------------------------
# LiteRTRunner (the oracle side)

def _hybrid_fc_blob():
    x = tensor("x", (2, 8), "float32")
    w = tensor("w", (4, 8), "int8", scale=0.02, zero_point=0, data=np.arange(32).reshape(4, 8) - 16)
    y = tensor("y", (2, 4), "float32")
    opts = FullyConnectedOptionsT()
    opts.asymmetricQuantizeInputs = True
    return single_op_model("FULLY_CONNECTED", [x, w, None], [y], opts)


@pytest.mark.parametrize("resolver", ["ref", "builtin", "default"])
def test_runner_run_all_reads_model_tensors_only(resolver):
    # The hybrid kernel adds temporaries (quantized input, scaling factors, ...) after the model's
    # three tensors, some with shapes and empty names: run_all must not report them.
    runner = LiteRTRunner(_hybrid_fc_blob(), resolver=resolver)
    xs = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    every = runner.run_all([xs])
    assert sorted(every) == [0, 1, 2]
    np.testing.assert_array_equal(every[0], xs)
    out = runner.run({"x": xs})[0]
    np.testing.assert_array_equal(every[2], out)
    every[2][...] = 0  # copies, not views of LiteRT's buffers
    np.testing.assert_array_equal(runner.run_all([xs])[2], out)


def test_runner_input_checks():
    runner = LiteRTRunner(_hybrid_fc_blob())
    good = np.zeros((2, 8), np.float32)
    for bad, pattern in [([good, good], "takes 1 inputs"), ([good[:1]], "shape"),
                         ([good.astype(np.int32)], "dtype"), ({"nope": good}, "missing")]:
        with pytest.raises(NpMobileBertError, match=pattern) as e:
            runner.run(bad)
        assert "\n" not in str(e.value)
    runner.run([good.astype(np.float64)])  # floats convert, as the NumPy interpreter accepts them


def test_runner_run_all_needs_preserved_tensors():
    runner = LiteRTRunner(_hybrid_fc_blob(), preserve_all_tensors=False)
    runner.run([np.zeros((2, 8), np.float32)])
    with pytest.raises(NpMobileBertError, match="preserve_all_tensors"):
        runner.run_all([np.zeros((2, 8), np.float32)])


def test_runner_rejects_bad_models_and_resolvers():
    with pytest.raises(NpMobileBertError, match="resolver"):
        LiteRTRunner(_hybrid_fc_blob(), resolver="xnnpack")
    # the checks before LiteRT read the model first: a non-model never reaches LiteRT
    with pytest.raises(NpMobileBertError, match="not a TFLite model"):
        LiteRTRunner(b"not a model")


def test_runtime_name():
    from npmobilebert.runtime import runtime_name

    name = runtime_name()
    assert name.split()[0] in ("ai-edge-litert", "tflite-runtime") and len(name.split()) == 2
