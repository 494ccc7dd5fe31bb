"""Every quantization scheme users meet, against LiteRT BUILTIN_REF, every tensor.

* Weight zero points the spec forbids but real models have (the MLPerf int8 MobileBERT): a
  converted fixture's FULLY_CONNECTED weights edited to non-zero zero points.  LiteRT applies a
  per-tensor weight zero point (``weights_offset``, "for backward compatibility") and ignores a
  per-channel one (the spec says it is 0); the NumPy interpreter must do exactly the same.
* The scheme matrix (``tools``: needs TensorFlow): a small MobileBERT converted by the real
  converter into all six schemes once per session, each verified on random inputs.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from npmobilebert.compare import compare_runs
from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.model import load_model

# converts a model into six schemes with TensorFlow (about 100 s on 2 cores)
pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
TOOLS = Path(__file__).resolve().parent.parent / "tools"
SCHEMES = ("int8", "int8-per-tensor", "dynamic", "16x8", "float32", "float16")


def _runner(blob, resolver="ref"):
    pytest.importorskip("ai_edge_litert.interpreter")
    from npmobilebert.runtime import LiteRTRunner

    return LiteRTRunner(blob, resolver=resolver)


def _assert_identical(model, interp, runner, inputs, label):
    produced = {i for op in model.operators for i in op.outputs} | set(model.inputs)
    for k, arrays in enumerate(inputs):
        cmp = compare_runs(model, interp.run_all(arrays), runner.run_all(arrays))
        first = cmp.first_divergence
        assert first is None, (f"{label} input {k}: op {first.op_index} {first.op_type} tensor "
                               f"'{first.name}' differs in {first.mismatched}/{first.size} values "
                               f"(max {first.max_diff})")
        assert not cmp.missing and cmp.compared == len(produced), label


# ------------------------------------------------------------------ non-zero weight zero points


def with_fc_weight_zero_points(data: bytes, zero_points, declare: bool = True) -> tuple[bytes, int]:
    """The model with every int8 FULLY_CONNECTED weight tensor given non-zero zero points.

    ``zero_points(k, channels)`` gives the k-th weight tensor's zero point(s).  The weights are
    squeezed (w * (127 - max|zp|) / 127, rounded) and shifted by their zero point, so
    ``w_q - zp`` is the squeezed weight and stays in int8.  With ``declare=False`` the weights are
    shifted the same but the zero points stay 0: what a kernel that ignores them computes.
    Edited with LiteRT's FlatBuffer object API; the packed vocab/labels ZIP is carried over.
    Returns (model bytes, how many weight tensors were edited).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    fc = {k for k, oc in enumerate(model.operatorCodes)
          if max(oc.builtinCode, oc.deprecatedBuiltinCode) == schema.BuiltinOperator.FULLY_CONNECTED}
    sg = model.subgraphs[0]
    edited: set[int] = set()
    for op in sg.operators:
        if op.opcodeIndex not in fc:
            continue
        w_index = int(op.inputs[1])
        t = sg.tensors[w_index]
        if w_index in edited or t.type != schema.TensorType.INT8:
            continue
        q = t.quantization
        channels = len(q.scale)
        zp = np.resize(np.asarray(zero_points(len(edited), channels), np.int64), channels)
        assert np.any(zp != 0)
        buf = model.buffers[t.buffer]
        w = np.asarray(buf.data, np.uint8).view(np.int8).astype(np.int64).reshape(t.shape)
        w = np.round(w * (127 - int(np.abs(zp).max())) / 127.0).astype(np.int64)
        along = [1] * w.ndim
        if channels > 1:
            along[q.quantizedDimension] = channels
        w = w + zp.reshape(along)
        assert w.min() >= -128 and w.max() <= 127
        buf.data = w.astype(np.int8).view(np.uint8).reshape(-1)
        q.zeroPoint = zp if declare else np.zeros_like(zp)
        edited.add(w_index)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(builder.Output()))
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "a") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    return out.getvalue(), len(edited)


def _per_tensor_zps(k, channels):
    return [(k * 37) % 61 - 30 or 5]                     # -30 .. 30, never 0


def _per_channel_zps(k, channels):
    return (np.arange(channels) * 7 + k) % 41 - 20       # -20 .. 20, differing by channel


def _fc_outputs(model, values):
    return [values[op.outputs[0]] for op in model.operators if op.opcode == "FULLY_CONNECTED"]


@pytest.mark.parametrize("name", ["tiny_int8-per-tensor.tflite", "tiny_int8_tf215.tflite",
                                  "tiny_16x8_tf215.tflite"])
def test_per_tensor_weight_zero_points_applied(name):
    """Per-tensor weights with zero points -30..30: LiteRT subtracts them, and so do we."""
    data = (FIXTURES / name).read_bytes()
    blob, n = with_fc_weight_zero_points(data, _per_tensor_zps)
    model = load_model(blob)
    fcs = [op for op in model.operators if op.opcode == "FULLY_CONNECTED"]
    assert n == len(fcs) > 0
    assert all(len(model.tensors[op.inputs[1]].quantization.scales) == 1 for op in fcs)
    assert all(model.tensors[op.inputs[1]].quantization.zero_points[0] != 0 for op in fcs)
    interp, runner, maker = Interpreter(model), _runner(blob), InputMaker(model)
    rng = np.random.default_rng(21)
    inputs = [maker.random(rng).arrays for _ in range(4)]
    _assert_identical(model, interp, runner, inputs, name + " with weight zero points")
    # the zero points matter: the same shifted weights with zero points 0 compute other values
    undeclared = load_model(with_fc_weight_zero_points(data, _per_tensor_zps, declare=False)[0])
    ours, other = interp.run_all(inputs[0]), Interpreter(undeclared).run_all(inputs[0])
    assert not np.array_equal(_fc_outputs(model, ours)[0], _fc_outputs(undeclared, other)[0])


@pytest.mark.parametrize("name", ["tiny_int8.tflite", "tiny_16x8.tflite"])
def test_per_channel_weight_zero_points_ignored(name):
    """Per-channel weights with zero points -20..20: LiteRT's per-channel kernels assume 0 and
    ignore them; so do we -- every tensor equals LiteRT's and the zero-point-0 model's."""
    data = (FIXTURES / name).read_bytes()
    blob, n = with_fc_weight_zero_points(data, _per_channel_zps)
    model = load_model(blob)
    fcs = [op for op in model.operators if op.opcode == "FULLY_CONNECTED"]
    assert n == len(fcs) > 0
    q = model.tensors[fcs[0].inputs[1]].quantization
    assert len(q.scales) > 1 and len(set(q.zero_points.tolist())) > 1
    interp, runner, maker = Interpreter(model), _runner(blob), InputMaker(model)
    rng = np.random.default_rng(22)
    inputs = [maker.random(rng).arrays for _ in range(4)]
    _assert_identical(model, interp, runner, inputs, name + " with per-channel weight zero points")
    undeclared = load_model(with_fc_weight_zero_points(data, _per_channel_zps, declare=False)[0])
    ours, other = interp.run_all(inputs[0]), Interpreter(undeclared).run_all(inputs[0])
    for a, b in zip(_fc_outputs(model, ours), _fc_outputs(undeclared, other)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ the scheme matrix (TensorFlow)


SMALL = dict(vocab_size=0, seq_len=32, num_layers=3, hidden=128, intra_bottleneck=64,
             intermediate=128, num_ffn=2, num_heads=4, embedding_size=64, num_labels=3)


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """A 3-layer MobileBERT (hidden 128, seq 32, vocab_small.txt), converted by the real
    converter into all six schemes, once per session."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    sys.path.insert(0, str(TOOLS))
    import convert
    from build_mobilebert import MobileBertConfig

    vocab = convert.read_lines(FIXTURES / "vocab_small.txt")
    cfg = MobileBertConfig(**dict(SMALL, vocab_size=len(vocab)))
    out = tmp_path_factory.mktemp("schemes")
    res = convert.run(cfg, list(SCHEMES), str(out), "small", seed=0, vocab=vocab, calib_n=32,
                      show=False, log=io.StringIO())
    return {scheme: Path(r["path"]) for scheme, r in res.items()}


@pytest.mark.tools
@pytest.mark.parametrize("scheme", SCHEMES)
def test_scheme_matrix_every_tensor_identical(small_models, scheme):
    path = small_models[scheme]
    model = load_model(path)
    assert model.tensors[model.inputs[0]].shape == (1, SMALL["seq_len"])
    interp, runner, maker = Interpreter(model), _runner(str(path)), InputMaker(model)
    rng = np.random.default_rng(100 + SCHEMES.index(scheme))
    inputs = [maker.random(rng).arrays for _ in range(5)]
    _assert_identical(model, interp, runner, inputs, f"small {scheme}")
