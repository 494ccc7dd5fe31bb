"""explain: for every op of every fixture, the step-by-step derivation lands exactly on the
interpreter's output element -- and says so loudly when it does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npmobilebert import explain as explain_mod
from npmobilebert.explain import explain, explain_step
from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.model import load_model
from npmobilebert.numerics import PROFILES

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = sorted(p.name for p in FIXTURES.glob("*.tflite"))
ELEMENTS_PER_OP = 4


def _run(path, seed=0, text=None, numerics=None):
    model = load_model(str(path))
    interp = Interpreter(model, numerics=numerics)
    maker = InputMaker(model)
    made = maker.from_text(text) if text else maker.random(np.random.default_rng(seed))
    return model, interp, interp.run_all(made.arrays)


def _same(value, expected) -> bool:
    a, b = np.asarray(value), np.asarray(expected)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    return int(a) == int(b)


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("name", MODELS)
def test_every_op_every_sampled_element_is_reproduced(name, profile):
    """Every op instance of every fixture (every scheme) under every numerics profile: the
    default element and a few random ones, on a random input -- an op without an explainer, or
    an explanation that does not land on the profile's own output, fails."""
    _, interp, values = _run(FIXTURES / name, seed=3, numerics=profile)
    rng = np.random.default_rng(7)
    for step in interp.plan:
        out = values[step.ctx.op.outputs[0]]
        picks = [None] + [tuple(int(rng.integers(0, n)) for n in out.shape) for _ in range(ELEMENTS_PER_OP - 1)]
        for index in picks:
            e = explain(interp, values, step.ctx.op.index, index)
            assert e.explained, f"{name} op {e.op_index} {e.opcode}: no explainer"
            assert _same(e.value, out[e.index]), e.text()
            assert e.matches and "identical" in e.text()
            assert e.text().splitlines()[-1].startswith("TFLite source: ")


@pytest.mark.parametrize("name,profile", [("tiny_int8.tflite", "litert-ref"), ("tiny_int8.tflite", "tflm"),
                                          ("tiny_int8.tflite", "xnnpack"), ("tiny_16x8.tflite", "litert-ref"),
                                          ("tiny_dynamic.tflite", "litert-ref")])
def test_every_element_of_the_arithmetic_ops_on_text(name, profile):
    """Exhaustively, on a real text (padding and mask in play): every element of one op per kind."""
    _, interp, values = _run(FIXTURES / name, text="a good day for a long walk by the river", numerics=profile)
    seen = set()
    for step in interp.plan:
        op = step.ctx.op
        if op.opcode in seen or op.opcode in explain_mod.SHAPE_OPS:
            continue
        seen.add(op.opcode)
        out = values[op.outputs[0]]
        for index in np.ndindex(out.shape):
            e = explain(interp, values, op.index, index)
            assert _same(e.value, out[index]), e.text()


def test_default_element_is_the_largest_magnitude():
    _, interp, values = _run(FIXTURES / "tiny_int8.tflite")
    step = next(s for s in interp.plan if s.ctx.op.opcode == "FULLY_CONNECTED")
    out, zp = values[step.ctx.op.outputs[0]], step.ctx.outputs[0].quantization.zero_point
    e = explain(interp, values, step.ctx.op.index)
    assert abs(int(out[e.index]) - zp) == np.abs(out.astype(np.int64) - zp).max()


def test_fully_connected_explanation_shows_the_steps():
    _, interp, values = _run(FIXTURES / "tiny_int8.tflite", text="good food")
    step = next(s for s in interp.plan if s.ctx.op.opcode == "FULLY_CONNECTED")
    text = explain(interp, values, step.ctx.op.index).text()
    for words in ("dot product over depth", "bias", "real multiplier", "round((double)",
                  "QuantizeMultiplier", "SaturatingRoundingDoublingHighMul", "RoundingDivideByPOT",
                  "clamp to", "dequantized", "float computation it approximates", "error:",
                  "fully_connected.h"):
        assert words in text, words


def test_softmax_explanation_shows_the_fixed_point_steps():
    _, interp, values = _run(FIXTURES / "tiny_int8.tflite", text="good food and a nice view")
    step = next(s for s in interp.plan if s.ctx.op.opcode == "SOFTMAX")
    out = values[step.ctx.op.outputs[0]]
    index = tuple(int(i) for i in np.argwhere(out > -128)[1])
    text = explain(interp, values, step.ctx.op.index, index).text()
    for words in ("row maximum", "Q5.26", "exp_on_negative_values", "Q12.19", "GetReciprocal",
                  "num_bits_over_unit", "softmax.h"):
        assert words in text, words


# -- ops the fixtures do not have: single-op models ------------------------------------------------

def _single_op_cases():
    opmodels = pytest.importorskip("opmodels")
    t = opmodels.tensor
    rng = np.random.default_rng(5)
    shape = (3, 40)
    cases = []
    for opcode in ("TANH", "LOGISTIC"):
        y8 = (t("y", shape, "int8", scale=1 / 128, zero_point=0) if opcode == "TANH"
              else t("y", shape, "int8", scale=1 / 256, zero_point=-128))
        cases.append((opmodels.single_op_model(opcode, [t("x", shape, "int8", scale=0.04, zero_point=3)], [y8]),
                      rng.integers(-128, 128, shape).astype(np.int8)))
        for scale in (2.0 ** -12, 3.1e-4):
            cases.append((opmodels.single_op_model(opcode, [t("x", shape, "int16", scale=scale, zero_point=0)],
                                                   [t("y", shape, "int16", scale=1 / 32768, zero_point=0)]),
                          rng.integers(-32768, 32768, shape).astype(np.int16)))
        cases.append((opmodels.single_op_model(opcode, [t("x", shape, "float32")], [t("y", shape, "float32")]),
                      rng.standard_normal(shape).astype(np.float32) * 3))
    for opcode in ("MEAN", "SUM"):
        opts = opmodels.ReducerOptionsT()
        opts.keepDims = False
        x = t("x", (2, 5, 6), "int8", scale=0.05, zero_point=-4)
        axes = t("axes", (1,), "int32", data=[1])
        y = t("y", (2, 6), "int8", scale=0.07 if opcode == "MEAN" else 0.3, zero_point=2)
        cases.append((opmodels.single_op_model(opcode, [x, axes], [y], opts),
                      rng.integers(-128, 128, (2, 5, 6)).astype(np.int8)))
    for opcode in ("MEAN", "SUM"):
        for axes in ([1], [0, 1, 2]):
            opts = opmodels.ReducerOptionsT()
            opts.keepDims = False
            out_shape = (2, 6) if len(axes) == 1 else ()
            cases.append((opmodels.single_op_model(
                opcode, [t("x", (2, 5, 6), "float32"), t("axes", (len(axes),), "int32", data=axes)],
                [t("y", out_shape, "float32")], opts), rng.standard_normal((2, 5, 6)).astype(np.float32)))
    for opcode in ("RELU", "RELU6"):
        cases.append((opmodels.single_op_model(opcode, [t("x", shape, "float32")], [t("y", shape, "float32")]),
                      rng.standard_normal(shape).astype(np.float32) * 5))
        cases.append((opmodels.single_op_model(opcode, [t("x", shape, "int8", scale=0.05, zero_point=-7)],
                                               [t("y", shape, "int8", scale=0.03, zero_point=-128)]),
                      rng.integers(-128, 128, shape).astype(np.int8)))
    for asymmetric in (False, True):
        for scales in (0.02, list(rng.uniform(0.01, 0.03, 5))):
            opts = opmodels.BatchMatMulOptionsT()
            opts.asymmetricQuantizeInputs = asymmetric
            # two batch dims on the lhs: the kernel reads scaling factors at its own batch offsets
            w = t("w", (3, 8, 5), "int8", scale=scales, zero_point=0, quantized_dimension=2,
                  data=rng.integers(-127, 128, (3, 8, 5)))
            cases.append((opmodels.single_op_model("BATCH_MATMUL", [t("x", (2, 3, 4, 8), "float32"), w],
                                                   [t("y", (2, 3, 4, 5), "float32")], opts),
                          rng.standard_normal((2, 3, 4, 8)).astype(np.float32) + 0.5))
    cases.append((opmodels.single_op_model("RSQRT", [t("x", shape, "float32")], [t("y", shape, "float32")]),
                  rng.uniform(0.01, 50, shape).astype(np.float32)))
    cases.append((opmodels.single_op_model("RSQRT", [t("x", shape, "int8", scale=0.02, zero_point=-100)],
                                           [t("y", shape, "int8", scale=0.05, zero_point=-128)]),
                  rng.integers(-100, 128, shape).astype(np.int8)))
    cases.append((opmodels.single_op_model("RSQRT", [t("x", shape, "int16", scale=1e-3, zero_point=0)],
                                           [t("y", shape, "int16", scale=1e-3, zero_point=0)]),
                  rng.integers(0, 32768, shape).astype(np.int16)))
    return cases


def _binary_op_cases():
    """Two-input ops the fixtures do not have: (model, [a, b])."""
    opmodels = pytest.importorskip("opmodels")
    t = opmodels.tensor
    rng = np.random.default_rng(6)
    shape = (4, 32)
    opts = opmodels.SquaredDifferenceOptionsT()
    return [
        (opmodels.single_op_model("SQUARED_DIFFERENCE", [t("a", shape, "float32"), t("b", (32,), "float32")],
                                  [t("y", shape, "float32")], opts),
         [rng.standard_normal(shape).astype(np.float32), rng.standard_normal(32).astype(np.float32)]),
        (opmodels.single_op_model("SQUARED_DIFFERENCE", [t("a", shape, "int8", scale=0.04, zero_point=3),
                                                         t("b", (32,), "int8", scale=0.03, zero_point=-5)],
                                  [t("y", shape, "int8", scale=0.05, zero_point=-128)], opts),
         [rng.integers(-128, 128, shape).astype(np.int8), rng.integers(-128, 128, 32).astype(np.int8)]),
    ]


@pytest.mark.parametrize("profile", list(PROFILES))
def test_single_op_models_every_element(profile):
    """Ops and dtypes the fixtures do not have, one-op models, every element, every profile."""
    cases = [(blob, [data]) for blob, data in _single_op_cases()] + _binary_op_cases()
    for blob, arrays in cases:
        model = load_model(blob)
        interp = Interpreter(model, numerics=profile)
        values = interp.run_all(arrays)
        out = values[model.operators[0].outputs[0]]
        for index in np.ndindex(out.shape):
            e = explain(interp, values, 0, index)
            assert e.explained, f"{model.operators[0].opcode}: no explainer"
            assert _same(e.value, out[index]), e.text()


# -- honesty: a wrong explanation is loud, a missing one says so -------------------------------------

def test_a_wrong_explanation_says_mismatch(monkeypatch):
    _, interp, values = _run(FIXTURES / "tiny_int8.tflite")
    real = explain_mod.EXPLAINERS["ADD"]
    monkeypatch.setitem(explain_mod.EXPLAINERS, "ADD", lambda site: real(site) + 1)
    step = next(s for s in interp.plan if s.ctx.op.opcode == "ADD")
    e = explain(interp, values, step.ctx.op.index)
    assert not e.matches
    assert "MISMATCH" in e.text()


def test_an_op_without_explainer_falls_back(monkeypatch):
    _, interp, values = _run(FIXTURES / "tiny_int8.tflite")
    monkeypatch.delitem(explain_mod.EXPLAINERS, "MUL")
    step = next(s for s in interp.plan if s.ctx.op.opcode == "MUL")
    args = [values.get(i, interp.tensors[i].data) for i in step.ctx.op.inputs]
    e = explain_step(step, args, [values[step.ctx.op.outputs[0]]], None)
    assert not e.explained and e.matches
    assert "no step-by-step explainer" in e.text() and "input 0" in e.text()


def test_bad_index_is_an_input_error():
    from npmobilebert.errors import InputError
    _, interp, values = _run(FIXTURES / "tiny_int8.tflite")
    with pytest.raises(InputError):
        explain(interp, values, 12, (0, 99, 0))
    with pytest.raises(InputError):
        explain(interp, values, 10_000)


# -- the command -----------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_explain():
    tiny = str(FIXTURES / "tiny_int8.tflite")
    model = load_model(tiny)
    fc = next(op.index for op in model.operators if op.opcode == "FULLY_CONNECTED")
    r = cli("explain", "-m", tiny, "--op", str(fc), "--index", "0,3,5", "--text", "a nice walk")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "element [0, 3, 5]" in r.stdout and "identical" in r.stdout and "TFLite source" in r.stdout
    r = cli("explain", "-m", tiny, "--op", "28")              # random input by default
    assert r.returncode == 0 and "random (seed 0)" in r.stdout and "SOFTMAX" in r.stdout
    r = cli("explain", "-m", tiny, "--op", "999")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = cli("explain", "-m", tiny, "--op", str(fc), "--index", "0,1")
    assert r.returncode == 2 and "not an element" in r.stderr
