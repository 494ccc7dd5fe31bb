"""lint: flags the attention collapse that a -10000 mask causes, is quiet on the shipped model,
and each static check fires on a model built to trip it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.lint import lint_model
from npmobilebert.model import load_model

FIXTURES = Path(__file__).parent / "fixtures"
MASK10000 = FIXTURES / "tiny_int8_mask10000.tflite"
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "mobilebert_int8.tflite"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          text=True, timeout=600)


def _lint(path, n_random=4, texts=()):
    model = load_model(str(path))
    interp = Interpreter(model)
    maker = InputMaker(model)
    rng = np.random.default_rng(0)
    sets = [maker.from_text(t).arrays for t in texts] + [maker.random(rng).arrays for _ in range(n_random)]
    return model, lint_model(model, interp, sets)


def test_collapsed_softmax_is_flagged_on_the_mask_10000_model():
    model, linter = _lint(MASK10000, texts=["the river runs past the old mill"])
    collapsed = [f for f in linter.findings() if f.check == "collapsed-softmax"]
    softmaxes = [op.index for op in model.operators if op.opcode == "SOFTMAX"]
    assert sorted(f.op_index for f in collapsed) == softmaxes
    assert all(f.numbers["median_levels"] <= 1 for f in collapsed)
    assert all(f.numbers["input_scale"] > 30 for f in collapsed)     # ~10000 / 255 per step


def test_the_fixture_with_the_small_mask_is_not_collapsed():
    _, linter = _lint(FIXTURES / "tiny_int8.tflite")
    assert not [f for f in linter.findings() if f.check in ("collapsed-softmax", "few-levels")]
    medians = [r["softmax_row_levels_median"] for r in linter.summary() if "softmax_row_levels_median" in r]
    assert medians and min(medians) > 4


def test_cli_lint_flags_and_writes_json(tmp_path):
    out = tmp_path / "lint.json"
    r = cli("lint", "-m", str(MASK10000), "--random", "3", "--json", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "attention collapsed" in r.stdout
    report = json.loads(out.read_text())
    assert report["inputs"] == 3 and any(f["check"] == "collapsed-softmax" for f in report["findings"])


def test_cli_lint_is_quiet_on_the_shipped_model():
    r = cli("lint", "-m", str(SHIPPED), "--random", "4", "--text", "a quiet walk along the river after lunch")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no warnings" in r.stdout


def test_trace_marks_flagged_ops():
    r = cli("run", "-m", str(MASK10000), "-t", "the river runs past the old mill and the long bridge")
    assert r.returncode == 0, r.stderr
    flagged = [line for line in r.stdout.splitlines() if "  ! " in line]
    assert any("SOFTMAX" in line and "softmax collapsed" in line for line in flagged)
    r = cli("run", "-m", str(FIXTURES / "tiny_int8.tflite"), "-t", "good food")
    assert not [line for line in r.stdout.splitlines() if "softmax collapsed" in line]


# -- static checks on models built to trip them -----------------------------------------------------

def _fc_model(opmodels, depth, w_scales, w_zero_point, out_scale=0.1):
    t = opmodels.tensor
    rng = np.random.default_rng(0)
    units = len(w_scales)
    x = t("x", (2, depth), "int8", scale=0.05, zero_point=-3)
    wq = rng.integers(-127, 128, (units, depth))
    w = t("w", (units, depth), "int8", scale=w_scales, zero_point=w_zero_point, data=wq)
    y = t("y", (2, units), "int8", scale=out_scale, zero_point=0)
    return load_model(opmodels.single_op_model("FULLY_CONNECTED", [x, w, None], [y],
                                               opmodels.FullyConnectedOptionsT()))


def _checks(model, n=3):
    interp = Interpreter(model)
    rng = np.random.default_rng(1)
    x_t = model.tensors[model.inputs[0]]
    sets = [[rng.integers(-128, 128, x_t.shape).astype(np.int8)] for _ in range(n)]
    return {f.check for f in lint_model(model, interp, sets).findings()}


def test_weight_zero_point_scale_spread_accumulator_and_saturation():
    opmodels = pytest.importorskip("opmodels")
    assert _checks(_fc_model(opmodels, 16, [0.01], [5], out_scale=50.0)) == {"weight-zero-point"}
    assert "scale-spread" in _checks(_fc_model(opmodels, 16, [1e-2, 1e-6], [0, 0], out_scale=50.0))
    assert "accumulator" in _checks(_fc_model(opmodels, 80_000, [1e-3], [0], out_scale=50.0))
    assert "saturation" in _checks(_fc_model(opmodels, 16, [0.01], [0], out_scale=1e-4))
    assert not _checks(_fc_model(opmodels, 16, [0.01], [0], out_scale=0.5))
