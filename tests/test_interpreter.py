"""Whole models converted by the real TFLite converter: every tensor against LiteRT BUILTIN_REF."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from npmobilebert.compare import compare_runs
from npmobilebert.errors import InputError, UnsupportedOpError
from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.model import load_model

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_TWEETS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tweeteval" / "val.tsv"
# every quantization scheme the converter makes: int8 (per-channel and per-tensor FC weights),
# dynamic-range, 16x8, float32 and float16 weights -- all bit-identical, float ones included
FIXTURES_ALL = ["tiny_int8.tflite", "tiny_int8-per-tensor.tflite", "tiny_dynamic.tflite",
                "tiny_16x8.tflite", "tiny_float32.tflite", "tiny_float16.tflite",
                # the same model by the TF 2.15.1 converter: per-tensor FC weights, FC v9 (dynamic)
                "tiny_int8_tf215.tflite", "tiny_dynamic_tf215.tflite", "tiny_16x8_tf215.tflite"]


def _runner(path):
    from npmobilebert.runtime import LiteRTRunner
    pytest.importorskip("ai_edge_litert.interpreter")
    return LiteRTRunner(str(path), resolver="ref")


def _tweets(n: int) -> list[str]:
    """A few real tweets from ../shared (never committed); none where the data is absent."""
    if not SHARED_TWEETS.exists():
        return []
    with open(SHARED_TWEETS, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["text"] for r in rows[:n]]


def _assert_all_identical(model, interp, runner, arrays, label):
    ours = interp.run_all(arrays)
    theirs = runner.run_all(arrays)
    cmp = compare_runs(model, ours, theirs)
    first = cmp.first_divergence
    assert first is None, (f"{label}: op {first.op_index} {first.op_type} tensor '{first.name}' "
                           f"differs in {first.mismatched}/{first.size} values (max {first.max_diff} LSB)")
    assert not cmp.missing, f"{label}: LiteRT did not expose {cmp.missing[:3]}"
    # every activation of the graph was compared (constants are not run)
    produced = {i for op in model.operators for i in op.outputs}
    assert cmp.compared == len(produced | set(model.inputs))
    for i in model.outputs:
        np.testing.assert_array_equal(ours[i], theirs[i])
    # the plain run (intermediates freed, int8 table chains fused: fusion.py) gives the same outputs
    for i, out in zip(model.outputs, interp.run(arrays)):
        np.testing.assert_array_equal(out, theirs[i])


@pytest.mark.parametrize("name", FIXTURES_ALL)
def test_every_tensor_identical_random_inputs(name):
    model = load_model(FIXTURES / name)
    interp, runner = Interpreter(model), _runner(FIXTURES / name)
    maker = InputMaker(model)
    rng = np.random.default_rng(1234)
    for k in range(12):
        _assert_all_identical(model, interp, runner, maker.random(rng).arrays, f"{name} random input {k}")


@pytest.mark.parametrize("name", FIXTURES_ALL)
def test_every_tensor_identical_texts(name):
    model = load_model(FIXTURES / name)
    interp, runner = Interpreter(model), _runner(FIXTURES / name)
    maker = InputMaker(model)
    texts = ["the service was great and the staff were friendly",
             "@user worst bank ever!!! http://t.co/xyz #fail", "ÉMOJI 🙂 çà et là, 北京"] + _tweets(8)
    for text in texts:
        _assert_all_identical(model, interp, runner, maker.from_text(text).arrays, repr(text[:30]))


def test_inputs_are_checked():
    model = load_model(FIXTURES / "tiny_int8.tflite")
    interp = Interpreter(model)
    good = InputMaker(model).random(np.random.default_rng(0)).arrays
    with pytest.raises(InputError, match="takes 3 inputs"):
        interp.run(good[:2])
    with pytest.raises(InputError, match="shape"):
        interp.run([good[0][:, :4], good[1], good[2]])
    with pytest.raises(InputError, match="FLOAT32|INT32"):
        interp.run([good[0].astype(np.float32), good[1], good[2]])
    by_name = {t.name: a for t, a in zip(interp.input_tensors, good)}
    np.testing.assert_array_equal(interp.run(by_name)[0], interp.run(good)[0])


def test_out_of_vocabulary_ids_are_an_input_error():
    model = load_model(FIXTURES / "tiny_int8.tflite")
    maker = InputMaker(model)
    with pytest.raises(InputError, match="outside the vocabulary"):
        maker.from_ids([101, maker.vocab_size, 102])
    arrays = maker.from_ids([101, 5, 102]).arrays
    ids_index = maker.roles.index("ids")
    arrays[ids_index] = arrays[ids_index].copy()
    arrays[ids_index][0, 1] = 10**6          # bypass InputMaker: the GATHER kernel still refuses
    with pytest.raises(InputError, match="GATHER"):
        Interpreter(model).run(arrays)


def test_unsupported_op_is_named():
    """An op the interpreter lacks is a clear error naming op, version and index."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from opmodels import single_op_model, tensor

    blob = single_op_model("FLOOR", [tensor("x", [4], "float32")], [tensor("y", [4], "float32")])
    with pytest.raises(UnsupportedOpError, match=r"operator 0 \(FLOOR v1"):
        Interpreter(load_model(blob))


def test_shipped_default_model_identical():
    """The model in models/ (the README's main job) agrees with LiteRT on every tensor."""
    path = Path(__file__).resolve().parents[1] / "models" / "mobilebert_int8.tflite"
    model = load_model(path)
    interp, runner, maker = Interpreter(model), _runner(path), InputMaker(model)
    texts = ["Just switched banks and the new one is so much better"] + _tweets(3)
    for text in texts:
        _assert_all_identical(model, interp, runner, maker.from_text(text).arrays, repr(text[:30]))
    _assert_all_identical(model, interp, runner, maker.random(np.random.default_rng(5)).arrays, "random")


@pytest.mark.parametrize("name, chains", [("tiny_int8.tflite", 10), ("tiny_16x8.tflite", 0)])
def test_table_chains_are_fused(name, chains):
    """The int8 fixture's NoNorm (x * gamma + beta) and score (s * scale + mask) pairs run as one
    table each in run() -- the tests above then hold the fused plan to LiteRT; int16 ops have
    no tables to fuse."""
    interp = Interpreter(load_model(FIXTURES / name))
    fused = [step for step in interp._run_plan if "fused into" in step.rule]
    assert len(fused) == chains
    assert len(interp._run_plan) == len(interp.plan) - chains
