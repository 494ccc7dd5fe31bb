"""Interpreter.run_batch: N inputs executed together give each input exactly its own run.

Every op of every fixture scheme and of the shipped models runs batched here; each input's every
tensor is compared with its single run (itself checked against LiteRT's reference kernels by
test_interpreter / test_real_files), and the batched outputs directly against LiteRT's too.
Every single-op case of test_ops.py is also run batched (test_ops._check_batched).
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from npmobilebert.errors import InputError
from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.model import load_model

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("*.tflite"))
SHIPPED = [ROOT / "models" / "mobilebert_int8.tflite", ROOT / "models" / "mobilebert_dynamic.tflite"]

# Different token counts: different attention masks and padding in the fixed-shape inputs.
TEXTS = ["good", "bad day", "not the best film I have seen this year, but close",
         "what a terrible waste of time and money it was, really, from start to end of it all"]


def _inputs(model) -> list[list[np.ndarray]]:
    """The texts' inputs and two random ones."""
    maker = InputMaker(model)
    rng = np.random.default_rng(7)
    with warnings.catch_warnings():         # the long texts are truncated on 16-token fixtures
        warnings.simplefilter("ignore", UserWarning)
        batch = [maker.from_text(text).arrays for text in TEXTS]
    return batch + [maker.random(rng).arrays for _ in range(2)]


def _check_every_tensor(path: Path) -> tuple[Interpreter, list, list]:
    model = load_model(str(path))
    interp = Interpreter(model)
    batch = _inputs(model)
    names = [t.name for t in interp.input_tensors]
    masks = {tuple(np.asarray(arrays[k]).ravel()) for arrays in batch for k, name in enumerate(names)
             if "mask" in name}
    assert len(masks) >= 4, "the texts must give different attention masks"
    together = interp.run_batch_all(batch)
    outputs = interp.run_batch(batch)
    assert len(together) == len(outputs) == len(batch)
    for k, arrays in enumerate(batch):
        alone = interp.run_all(arrays)
        assert together[k].keys() == alone.keys()
        for i, value in alone.items():
            np.testing.assert_array_equal(together[k][i], value, err_msg=f"{path.name} input {k} tensor {i}")
            assert together[k][i].dtype == value.dtype
        for ours, theirs in zip(outputs[k], interp.run(arrays)):
            np.testing.assert_array_equal(ours, theirs)
    return interp, batch, outputs


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_run_batch_equals_single_runs_on_fixtures(path):
    _check_every_tensor(path)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_run_batch_outputs_equal_litert_reference(path):
    from npmobilebert.runtime import LiteRTRunner

    pytest.importorskip("ai_edge_litert.interpreter")
    model = load_model(str(path))
    interp = Interpreter(model)
    batch = _inputs(model)
    runner = LiteRTRunner(str(path), resolver="ref")
    for k, (arrays, ours) in enumerate(zip(batch, interp.run_batch(batch))):
        for mine, theirs in zip(ours, runner.run(arrays)):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{path.name} input {k}")


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_run_batch_equals_single_runs_on_shipped_models(path):
    from npmobilebert.runtime import LiteRTRunner

    interp, batch, outputs = _check_every_tensor(path)
    runner = LiteRTRunner(str(path), resolver="ref")
    for arrays, ours in zip(batch, outputs):
        for mine, theirs in zip(ours, runner.run(arrays)):
            np.testing.assert_array_equal(mine, theirs)


def test_run_batch_of_one_and_observer():
    path = ROOT / "tests" / "fixtures" / "tiny_int8.tflite"
    model = load_model(str(path))
    interp = Interpreter(model)
    batch = _inputs(model)
    seen = []
    outs = interp.run_batch(batch, observer=lambda step, args, result: seen.append((step, result)))
    assert len(seen) == len(interp.plan)
    computed = [r for step, r in seen if any(i in interp.graph.inputs for i in step.ctx.op.inputs)]
    assert computed and all(out.shape[0] == len(batch) for r in computed for out in r)
    for arrays, together in zip(batch, outs):
        np.testing.assert_array_equal(together[0], interp.run(arrays)[0])
    [single] = interp.run_batch(batch[:1])
    np.testing.assert_array_equal(single[0], interp.run(batch[0])[0])
    with pytest.raises(InputError):
        interp.run_batch([])
    with pytest.raises(InputError, match="input set 1 of the batch: input .* has shape"):
        interp.run_batch([batch[0], [a[..., :3] for a in batch[1]]])


# -- the dataset commands: classify / eval --engine numpy run texts in batches ----------------------

MADE_UP = [("positive", "loved every minute of the show"), ("negative", "the update broke my phone"),
           ("neutral", "the shop opens at nine"), ("positive", "best coffee in town, thanks"),
           ("negative", "waited two hours and nobody came, never again, this was the worst experience"),
           ("neutral", "a meeting about the budget"), ("positive", "what a goal"),
           ("negative", "so tired of the delays"), ("neutral", "new timetable from monday on")] * 3


@pytest.mark.parametrize("name", ["tiny_int8", "tiny_dynamic", "tiny_float32", "tiny_16x8"])
def test_numpy_engine_batches_give_the_per_text_logits_and_litert_refs(name, monkeypatch):
    pytest.importorskip("ai_edge_litert.interpreter")
    from npmobilebert.runtime import LiteRTRunner

    classify = importlib.import_module("npmobilebert.classify")    # the module, not the function
    path = str(ROOT / "tests" / "fixtures" / f"{name}.tflite")
    texts = [text for _, text in MADE_UP]
    engine = classify._Engine(path, "numpy")
    # a cap of a few runs' activations: the chunk runs as several batches, the last one short
    monkeypatch.setattr("npmobilebert.interpreter.BATCH_ACTIVATION_BYTES",
                        4 * Interpreter(engine.model).activation_bytes())
    batched = classify.predict(path, texts, "numpy", processes=1)
    assert classify._Engine(path, "numpy").batch_size == 4
    interp, runner = Interpreter(engine.model), LiteRTRunner(path, resolver="ref")
    for k, text in enumerate(texts):
        arrays = engine.arrays(text)
        alone = classify.to_logits(interp.run(arrays)[engine.pos], engine.scale, engine.zero_point)
        theirs = classify.to_logits(runner.run(arrays)[engine.pos], engine.scale, engine.zero_point)
        np.testing.assert_array_equal(batched.logits[k], alone)
        np.testing.assert_array_equal(batched.logits[k], theirs)


def test_eval_numpy_report_equals_litert_reference_report(tmp_path):
    import json
    import subprocess
    import sys

    pytest.importorskip("ai_edge_litert.interpreter")
    data = tmp_path / "made_up.tsv"
    data.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in MADE_UP), encoding="utf-8")
    reports = {}
    for engine in ("numpy", "litert-ref"):
        out = tmp_path / f"{engine}.json"
        r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "eval", "-m",
                            str(ROOT / "tests" / "fixtures" / "tiny_dynamic.tflite"), str(data),
                            "--engine", engine, "--json", str(out)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        reports[engine] = {k: v for k, v in json.loads(out.read_text()).items() if k not in ("engine", "seconds")}
    assert reports["numpy"] == reports["litert-ref"]


def test_bench_batch_runs_the_numpy_engine_in_batches(tmp_path):
    import json
    import subprocess
    import sys

    pytest.importorskip("ai_edge_litert.interpreter")
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "bench", "-m",
                        str(ROOT / "tests" / "fixtures" / "tiny_int8.tflite"), "--engine", "numpy",
                        "--threads", "1", "--runs", "4", "--warmup", "1", "--batch", "3", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    [row] = json.loads(out.read_text())["results"]
    assert row["status"] == "ok", row
    assert row["throughput_mode"] == "run_batch x3"
    assert row["batch_ms_per_tweet"] > 0 and row["tweets_per_s"] > 0


@pytest.mark.parametrize("name", ["tiny_int8", "tiny_dynamic"])
def test_verify_in_batches_finds_every_tensor_identical(name, monkeypatch):
    from npmobilebert.runtime import LiteRTRunner
    from npmobilebert.verify import verify

    pytest.importorskip("ai_edge_litert.interpreter")
    path = ROOT / "tests" / "fixtures" / f"{name}.tflite"
    model = load_model(str(path))
    interp = Interpreter(model)
    monkeypatch.setattr("npmobilebert.interpreter.BATCH_ACTIVATION_BYTES", 2 * interp.activation_bytes())
    inputs = _inputs(model)                 # 6 inputs: three batches of two
    report = verify(model, interp, LiteRTRunner(str(path), resolver="ref"), inputs, "ref")
    assert report.inputs == len(inputs) and report.outputs_identical == len(inputs)
    assert report.ok and report.comparison.diffs == []


@pytest.mark.parametrize("name", ["tiny_int8", "tiny_int8_mask10000", "tiny_16x8"])
def test_lint_in_batches_finds_what_single_observed_runs_find(name):
    from npmobilebert.lint import Linter, lint_model

    model = load_model(str(ROOT / "tests" / "fixtures" / f"{name}.tflite"))
    interp = Interpreter(model)
    inputs = _inputs(model)
    alone = Linter()
    for arrays in inputs:
        alone.start_run()
        interp.run_all(arrays, observer=alone.observe)
    together = lint_model(model, interp, inputs)
    assert together.runs == alone.runs == len(inputs)
    assert together.summary() == alone.summary()
    assert [f.to_json() for f in together.findings()] == [f.to_json() for f in alone.findings()]


@pytest.mark.parametrize("numerics", ["xnnpack", "tflm"])
@pytest.mark.parametrize("name", ["tiny_int8", "tiny_int8-per-tensor", "tiny_16x8", "tiny_dynamic"])
def test_run_batch_equals_single_runs_under_other_numerics(name, numerics):
    model = load_model(str(ROOT / "tests" / "fixtures" / f"{name}.tflite"))
    interp = Interpreter(model, numerics=numerics)
    batch = _inputs(model)
    for k, (arrays, together) in enumerate(zip(batch, interp.run_batch_all(batch))):
        alone = interp.run_all(arrays)
        assert together.keys() == alone.keys()
        for i, value in alone.items():
            np.testing.assert_array_equal(together[i], value, err_msg=f"{name} {numerics} input {k} tensor {i}")
