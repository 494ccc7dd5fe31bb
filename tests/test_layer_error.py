"""layer-error: the int8 fixture against the float32 fixture of the same network."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.layer_error import SHAPE_OPS, layer_error, match_tensors, normalise_name
from npmobilebert.model import load_model

FIXTURES = Path(__file__).parent / "fixtures"
QUANT, FLOAT = FIXTURES / "tiny_int8.tflite", FIXTURES / "tiny_float32.tflite"


def test_normalise_name():
    assert normalise_name("a/b/BiasAdd;a/c/mul;x") == "a/b/BiasAdd"
    assert normalise_name("StatefulPartitionedCall_1:01") == "StatefulPartitionedCall_1:0"
    assert normalise_name("a/Softmax") == "a/Softmax"


def test_every_computed_tensor_is_matched_with_the_same_shape():
    q, f = load_model(str(QUANT)), load_model(str(FLOAT))
    matches = match_tensors(q, f)
    matched = {m.quant_op for m in matches}
    # only the QUANTIZE the int8 converter inserts for the mask has no float counterpart
    assert [op.opcode for op in q.operators if op.index not in matched] == ["QUANTIZE"]
    for m in matches:
        qt = q.tensors[q.operators[m.quant_op].outputs[0]]
        ft = f.tensors[f.operators[m.float_op].outputs[0]]
        assert qt.shape == ft.shape
        assert m.how == "name" or normalise_name(qt.name) == normalise_name(ft.name) or m.how == "position"
    logits = [m for m in matches if q.operators[m.quant_op].opcode == "FULLY_CONNECTED"
              and q.tensors[q.operators[m.quant_op].outputs[0]].shape[-1] == 3]
    assert logits and logits[-1].how == "normalised name"


def test_errors_are_small_and_grow_along_the_network():
    q, f = load_model(str(QUANT)), load_model(str(FLOAT))
    qm, fm = InputMaker(q), InputMaker(f)
    texts = ["a good day by the river", "bad food and slow service"]
    report = layer_error(q, f, Interpreter(q), Interpreter(f), [qm.from_text(t).arrays for t in texts],
                         [fm.from_text(t).arrays for t in texts])
    rows = report.compute_matches()
    assert rows and all(m.opcode not in SHAPE_OPS for m in rows)
    sqnr = [m.sqnr_db for m in rows if math.isfinite(m.sqnr_db)]
    assert min(sqnr) > 10 and all(m.cosine > 0.95 for m in rows)
    assert np.mean(sqnr[:5]) > np.mean(sqnr[-5:])          # damage accumulates
    final = report.matches[-1]
    assert final.count == 2 * 3 and final.max_abs >= final.abs_sum / final.count


def test_cli_layer_error(tmp_path):
    out = tmp_path / "le.json"
    args = [sys.executable, "-m", "npmobilebert.cli", "layer-error", "-m", str(QUANT), "--float", str(FLOAT),
            "--random", "2", "--text", "a good day", "--json", str(out)]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", str(tmp_path / "le.png")]
    except ImportError:
        pass
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SQNR dB" in r.stdout and "cosine" in r.stdout
    report = json.loads(out.read_text())
    assert report["inputs"] == 3 and report["matched"] > 50
    assert all(0.9 < t["cosine"] <= 1.0 for t in report["tensors"])
    if "--plot" in args:
        assert (tmp_path / "le.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_layer_error_with_a_float_model_of_another_network(tmp_path):
    """The shipped 6-layer model against the tiny fixture's float model: one line saying the
    float model does not match (not an error about token ids), exit 2, nothing written."""
    shipped = Path(__file__).resolve().parents[1] / "models" / "mobilebert_int8.tflite"
    total = sum(1 for op in load_model(shipped).operators if op.outputs)
    out = tmp_path / "le.json"
    r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "layer-error", "-m", str(shipped),
                        "--float", str(FLOAT), "--text", "a good day", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("error: the float model does not match: ")
    assert f" of {total} tensors have no counterpart" in lines[0]
    assert not out.exists()
