"""Tests of the FlatBuffer reader (npmobilebert.model) and the info report.

Two sources of models:

* the .tflite fixtures in tests/fixtures/, compared tensor by tensor and
  operator by operator with LiteRT's own view of the same file;
* small models built here with the flatbuffers builder, which let the tests
  plant exactly one defect (an index out of range, a short buffer...) and
  check the error that names it.

No TensorFlow is needed.
"""

from __future__ import annotations

import importlib
import io
import json
import random
import struct
import zipfile
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest

from npmobilebert.errors import ModelFormatError, NpMobileBertError, TensorNotFoundError
from npmobilebert.info import format_info, model_info
from npmobilebert.model import Model, Quantization, Tensor, load_model

FIXTURE_DIR = Path(__file__).parent / "fixtures"
FIXTURES = sorted(FIXTURE_DIR.glob("*.tflite"))

# One parameter per fixture; a single skipped parameter when there is none yet.
fixture_params = pytest.mark.parametrize(
    "fixture",
    [pytest.param(p, id=p.name) for p in FIXTURES]
    or [pytest.param(None, marks=pytest.mark.skip(reason=f"no .tflite fixtures in {FIXTURE_DIR}"))],
)


def litert_interpreter(path: Path):
    """LiteRT's interpreter on `path`, without the default (XNNPACK) delegate rewriting the graph."""
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")
    return litert.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )


# ---------------------------------------------------------------------------
# A minimal TFLite model writer (test-only), to plant defects precisely
# ---------------------------------------------------------------------------


def _fb(name: str) -> Any:
    """The flatc module tflite.<name> (the package namespace shadows modules with classes)."""
    return importlib.import_module(f"tflite.{name}")


FLOAT32, INT32, INT8 = 0, 2, 9  # tflite.TensorType
FULLY_CONNECTED, SOFTMAX, RESHAPE = 9, 25, 22  # tflite.BuiltinOperator
OPTIONS_FC, OPTIONS_SOFTMAX, OPTIONS_RESHAPE = 8, 9, 17  # tflite.BuiltinOptions
RELU = 1  # tflite.ActivationFunctionType


def tiny_spec() -> dict:
    """input[1,4] -> FULLY_CONNECTED(int8 per-channel weights, RELU) -> SOFTMAX(beta .5) -> RESHAPE[3]."""
    weights = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    bias = np.array([1, -2, 3], dtype="<i4")
    return {
        "buffers": [None, None, weights.tobytes(), bias.tobytes(), None, None, None, b"npmobilebert-meta"],
        "tensors": [
            {"name": "input", "shape": [1, 4], "type": FLOAT32, "buffer": 1, "shape_signature": [-1, 4]},
            {"name": "weights", "shape": [3, 4], "type": INT8, "buffer": 2,
             "scales": [0.5, 0.25, 0.125], "zero_points": [0, 0, 0], "quantized_dimension": 0},
            {"name": "bias", "shape": [3], "type": INT32, "buffer": 3},
            {"name": "fc", "shape": [1, 3], "type": FLOAT32, "buffer": 4},
            {"name": "probs", "shape": [1, 3], "type": FLOAT32, "buffer": 5},
            {"name": "out", "shape": [3], "type": FLOAT32, "buffer": 6},
        ],
        "opcodes": [FULLY_CONNECTED, SOFTMAX, RESHAPE],
        "operators": [
            {"opcode": 0, "inputs": [0, 1, 2], "outputs": [3], "options": ("fc", {"fused": RELU, "keep": True})},
            {"opcode": 1, "inputs": [3], "outputs": [4], "options": ("softmax", {"beta": 0.5})},
            {"opcode": 2, "inputs": [4, -1], "outputs": [5], "options": ("reshape", {"new_shape": [3]})},
        ],
        "inputs": [0],
        "outputs": [5],
        "metadata": {"npmobilebert": 7},
        "signatures": [{"key": "serving_default", "inputs": {"x": 0}, "outputs": {"y": 5}}],
        "external": {},  # buffer index -> (offset, size): data outside the FlatBuffer
    }


def _int_vector(builder: flatbuffers.Builder, values: list[int]) -> int:
    return builder.CreateNumpyVector(np.asarray(values, dtype="<i4"))


def _options(builder: flatbuffers.Builder, kind: str, values: dict) -> tuple[int, int]:
    """Build a builtin options table; returns (union type, offset)."""
    if kind == "fc":
        m = _fb("FullyConnectedOptions")
        m.Start(builder)
        m.AddFusedActivationFunction(builder, values.get("fused", 0))
        m.AddKeepNumDims(builder, values.get("keep", False))
        return OPTIONS_FC, m.End(builder)
    if kind == "softmax":
        m = _fb("SoftmaxOptions")
        m.Start(builder)
        m.AddBeta(builder, values["beta"])
        return OPTIONS_SOFTMAX, m.End(builder)
    if kind == "reshape":
        m = _fb("ReshapeOptions")
        shape = _int_vector(builder, values["new_shape"])
        m.Start(builder)
        m.AddNewShape(builder, shape)
        return OPTIONS_RESHAPE, m.End(builder)
    raise AssertionError(kind)


def _table_vector(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return builder.EndVector()


def _build_flatbuffer(spec: dict) -> bytes:
    b = flatbuffers.Builder(1024)

    buffers = []
    for i, data in enumerate(spec["buffers"]):
        vec = b.CreateByteVector(data) if data is not None else None
        m = _fb("Buffer")
        m.Start(b)
        if vec is not None:
            m.AddData(b, vec)
        if i in spec["external"]:
            offset, size = spec["external"][i]
            m.AddOffset(b, offset)
            m.AddSize(b, size)
        buffers.append(m.End(b))

    tensors = []
    for t in spec["tensors"]:
        name = b.CreateString(t["name"])
        shape = _int_vector(b, t["shape"])
        signature = _int_vector(b, t["shape_signature"]) if "shape_signature" in t else None
        quant = None
        if "scales" in t:
            qm = _fb("QuantizationParameters")
            scales = b.CreateNumpyVector(np.asarray(t["scales"], dtype="<f4"))
            zps = b.CreateNumpyVector(np.asarray(t["zero_points"], dtype="<i8"))
            qm.Start(b)
            qm.AddScale(b, scales)
            qm.AddZeroPoint(b, zps)
            qm.AddQuantizedDimension(b, t.get("quantized_dimension", 0))
            quant = qm.End(b)
        m = _fb("Tensor")
        m.Start(b)
        m.AddShape(b, shape)
        m.AddType(b, t["type"])
        m.AddBuffer(b, t["buffer"])
        m.AddName(b, name)
        if quant is not None:
            m.AddQuantization(b, quant)
        if signature is not None:
            m.AddShapeSignature(b, signature)
        tensors.append(m.End(b))

    operators = []
    for op in spec["operators"]:
        inputs = _int_vector(b, op["inputs"])
        outputs = _int_vector(b, op["outputs"])
        options = _options(b, *op["options"]) if "options" in op else None
        m = _fb("Operator")
        m.Start(b)
        m.AddOpcodeIndex(b, op["opcode"])
        m.AddInputs(b, inputs)
        m.AddOutputs(b, outputs)
        if options is not None:
            m.AddBuiltinOptionsType(b, options[0])
            m.AddBuiltinOptions(b, options[1])
        operators.append(m.End(b))

    sg = _fb("SubGraph")
    tensor_vec, op_vec = _table_vector(b, tensors), _table_vector(b, operators)
    in_vec, out_vec = _int_vector(b, spec["inputs"]), _int_vector(b, spec["outputs"])
    sg_name = b.CreateString("main")
    sg.Start(b)
    sg.AddTensors(b, tensor_vec)
    sg.AddOperators(b, op_vec)
    sg.AddInputs(b, in_vec)
    sg.AddOutputs(b, out_vec)
    sg.AddName(b, sg_name)
    subgraph = sg.End(b)

    opcodes = []
    for code in spec["opcodes"]:
        m = _fb("OperatorCode")
        m.Start(b)
        m.AddDeprecatedBuiltinCode(b, min(code, 127))
        m.AddBuiltinCode(b, code)
        m.AddVersion(b, 1)
        opcodes.append(m.End(b))

    metadata = []
    for name, buffer_index in spec["metadata"].items():
        name_off = b.CreateString(name)
        m = _fb("Metadata")
        m.Start(b)
        m.AddName(b, name_off)
        m.AddBuffer(b, buffer_index)
        metadata.append(m.End(b))

    signatures = []
    for sig in spec["signatures"]:
        maps = {}
        for kind in ("inputs", "outputs"):
            entries = []
            for name, index in sig[kind].items():
                name_off = b.CreateString(name)
                m = _fb("TensorMap")
                m.Start(b)
                m.AddName(b, name_off)
                m.AddTensorIndex(b, index)
                entries.append(m.End(b))
            maps[kind] = _table_vector(b, entries)
        key = b.CreateString(sig["key"])
        m = _fb("SignatureDef")
        m.Start(b)
        m.AddInputs(b, maps["inputs"])
        m.AddOutputs(b, maps["outputs"])
        m.AddSignatureKey(b, key)
        m.AddSubgraphIndex(b, sig.get("subgraph", 0))
        signatures.append(m.End(b))

    vectors = {
        "opcodes": _table_vector(b, opcodes),
        "subgraphs": _table_vector(b, [subgraph]),
        "buffers": _table_vector(b, buffers),
        "metadata": _table_vector(b, metadata),
        "signatures": _table_vector(b, signatures),
    }
    description = b.CreateString("built by test_model.py")
    m = _fb("Model")
    m.Start(b)
    m.AddVersion(b, 3)
    m.AddOperatorCodes(b, vectors["opcodes"])
    m.AddSubgraphs(b, vectors["subgraphs"])
    m.AddDescription(b, description)
    m.AddBuffers(b, vectors["buffers"])
    m.AddMetadata(b, vectors["metadata"])
    m.AddSignatureDefs(b, vectors["signatures"])
    b.Finish(m.End(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def build_model(spec: dict | None = None, *, tail: bytes = b"") -> bytes:
    """Serialise `spec` (default: tiny_spec()) and append `tail` (e.g. a ZIP archive)."""
    return _build_flatbuffer(spec or tiny_spec()) + tail


def zip_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


# ---------------------------------------------------------------------------
# Fixtures vs LiteRT
# ---------------------------------------------------------------------------


@fixture_params
def test_tensors_match_litert(fixture: Path) -> None:
    model = load_model(fixture)
    interpreter = litert_interpreter(fixture)
    details = interpreter.get_tensor_details()
    # LiteRT may add tensors of its own (kernel temporaries) after the model's.
    assert len(details) >= len(model.tensors)
    for tensor, d in zip(model.tensors, details):
        where = f"tensor {tensor.index} ({tensor.name})"
        assert d["index"] == tensor.index
        assert tensor.name == d["name"], where
        assert tensor.shape == tuple(d["shape"].tolist()), where
        expected_signature = tuple(d["shape_signature"].tolist())
        assert (tensor.shape_signature or tensor.shape) == expected_signature, where
        assert tensor.dtype == np.dtype(d["dtype"]), where
        qp = d["quantization_parameters"]
        if tensor.quantization is None:
            assert qp["scales"].size == 0, where
        else:
            np.testing.assert_array_equal(tensor.quantization.scales, qp["scales"], err_msg=where)
            np.testing.assert_array_equal(tensor.quantization.zero_points, qp["zero_points"], err_msg=where)
            assert tensor.quantization.quantized_dimension == qp["quantized_dimension"], where
            assert tensor.quantization.scales.dtype == np.float32
            assert tensor.quantization.zero_points.dtype == np.int64


@fixture_params
def test_constant_data_matches_litert(fixture: Path) -> None:
    model = load_model(fixture)
    interpreter = litert_interpreter(fixture)
    interpreter.allocate_tensors()  # LiteRT hands out no tensor data before this
    constants = [t for t in model.tensors if t.data is not None]
    assert constants, "a model without any constant tensor is not a useful fixture"
    for tensor in constants:
        expected = interpreter.get_tensor(tensor.index)
        assert tensor.data.dtype == expected.dtype, tensor.name
        assert tensor.data.shape == expected.shape, tensor.name
        np.testing.assert_array_equal(tensor.data, expected, err_msg=tensor.name)


@fixture_params
def test_operators_match_litert(fixture: Path) -> None:
    model = load_model(fixture)
    interpreter = litert_interpreter(fixture)
    ops = interpreter._get_ops_details()
    assert len(ops) == len(model.operators)
    for op, d in zip(model.operators, ops):
        expected_name = op.custom_code if op.opcode == "CUSTOM" else op.opcode
        assert expected_name == d["op_name"], f"operator {op.index}"
        assert op.inputs == tuple(d["inputs"].tolist()), f"operator {op.index} ({op.opcode})"
        assert op.outputs == tuple(d["outputs"].tolist()), f"operator {op.index} ({op.opcode})"


@fixture_params
def test_graph_io_and_signatures_match_litert(fixture: Path) -> None:
    model = load_model(fixture)
    interpreter = litert_interpreter(fixture)
    assert list(model.inputs) == [d["index"] for d in interpreter.get_input_details()]
    assert list(model.outputs) == [d["index"] for d in interpreter.get_output_details()]
    expected = interpreter._get_full_signature_list()
    assert {s.key for s in model.signatures} == set(expected)
    for sig in model.signatures:
        assert sig.inputs == expected[sig.key]["inputs"]
        assert sig.outputs == expected[sig.key]["outputs"]


# The fields of the options the MobileBERT kernels read, by schema name.
KNOWN_OPTION_FIELDS = {
    "FULLY_CONNECTED": {"fused_activation_function", "weights_format", "keep_num_dims", "asymmetric_quantize_inputs"},
    "BATCH_MATMUL": {"adj_x", "adj_y", "asymmetric_quantize_inputs"},
    "SOFTMAX": {"beta"},
    "CONCATENATION": {"axis", "fused_activation_function"},
    "RESHAPE": {"new_shape"},
    "STRIDED_SLICE": {"begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask", "offset"},
    "GATHER": {"axis", "batch_dims"},
    "ADD": {"fused_activation_function", "pot_scale_int16"},
    "SUB": {"fused_activation_function", "pot_scale_int16"},
    "MUL": {"fused_activation_function"},
}
ACTIVATIONS = {"NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"}


def check_known_options(model: Model) -> None:
    for op in model.operators:
        fields = KNOWN_OPTION_FIELDS.get(op.opcode)
        if fields is None or not op.options:
            continue  # e.g. RESHAPE with its shape as an input tensor carries no options
        # Newer schemas may add fields (FULLY_CONNECTED's quantized_bias_type): a superset is fine.
        assert fields <= set(op.options), (op.opcode, op.options)
        if "fused_activation_function" in fields:
            assert op.options["fused_activation_function"] in ACTIVATIONS
        for name in ("keep_num_dims", "asymmetric_quantize_inputs", "adj_x", "adj_y", "pot_scale_int16", "offset"):
            if name in op.options:
                assert isinstance(op.options[name], bool), (op.opcode, name)
        if op.opcode == "SOFTMAX":
            assert isinstance(op.options["beta"], float)
        if op.opcode == "RESHAPE":
            assert all(isinstance(v, int) for v in op.options["new_shape"])


@fixture_params
def test_fixture_options_have_the_schema_fields(fixture: Path) -> None:
    check_known_options(load_model(fixture))


@fixture_params
def test_fixture_views_are_read_only_and_zero_copy(fixture: Path) -> None:
    data = fixture.read_bytes()
    model = load_model(data)
    file_bytes = np.frombuffer(data, dtype=np.uint8)
    constants = [t for t in model.tensors if t.data is not None]
    for tensor in constants:
        assert not tensor.data.flags.writeable, tensor.name
        assert np.shares_memory(tensor.data, file_bytes), tensor.name
    assert model.file_size == len(data)
    # Loading by path gives the same structure.
    by_path = load_model(fixture)
    assert [(t.name, t.shape, t.dtype) for t in by_path.tensors] == [(t.name, t.shape, t.dtype) for t in model.tensors]
    assert by_path.path == str(fixture)


@pytest.mark.slow          # 10 truncations and 300 byte-mutated copies of every fixture (fuzz)
@fixture_params
def test_fixture_truncations_and_mutations_raise_model_format_error(fixture: Path) -> None:
    check_corruptions(fixture.read_bytes())


EXPECTED_SCHEMES = {
    "tiny_int8": ("int8", "per-channel"),
    "tiny_int8-per-tensor": ("int8", "per-tensor"),
    "tiny_dynamic": ("dynamic-range", None),
    "tiny_float32": ("float32", None),
    "tiny_float16": ("float16", None),
    "tiny_16x8": ("16x8", "per-channel"),
}


@fixture_params
def test_fixture_info(fixture: Path) -> None:
    info = model_info(load_model(fixture))
    json.dumps(info)  # serialisable
    text = format_info(info)
    assert str(info["tensor_count"]) in text
    expected = EXPECTED_SCHEMES.get(fixture.stem)
    if expected is not None:
        scheme, granularity = expected
        assert info["quantization"]["scheme"] == scheme
        if granularity is not None:
            assert info["quantization"]["fc_weights"] == granularity


# ---------------------------------------------------------------------------
# Built models: structure and API
# ---------------------------------------------------------------------------


def test_built_model_structure() -> None:
    model = load_model(build_model())
    assert model.path is None and model.version == 3
    assert model.description == "built by test_model.py"
    assert [t.name for t in model.tensors] == ["input", "weights", "bias", "fc", "probs", "out"]
    assert model.inputs == (0,) and model.outputs == (5,)
    assert model.subgraphs[0].name == "main"

    x = model.tensor("input")
    assert x.shape == (1, 4) and x.shape_signature == (-1, 4)
    assert x.dtype == np.float32 and x.type_name == "FLOAT32" and x.data is None and x.quantization is None

    w = model.tensor("weights")
    assert isinstance(w, Tensor) and w.dtype == np.int8 and w.type_name == "INT8"
    np.testing.assert_array_equal(w.data, np.arange(-6, 6, dtype=np.int8).reshape(3, 4))
    assert isinstance(w.quantization, Quantization) and w.quantization.per_channel
    np.testing.assert_array_equal(w.quantization.scales, np.array([0.5, 0.25, 0.125], np.float32))
    np.testing.assert_array_equal(w.quantization.zero_points, [0, 0, 0])
    assert w.quantization.quantized_dimension == 0

    bias = model.tensor(2)
    assert bias.dtype == np.int32 and bias.data.tolist() == [1, -2, 3]
    assert model.tensor(np.int64(2)) is bias


def test_built_model_operators_and_options() -> None:
    model = load_model(build_model())
    fc, softmax, reshape = model.operators
    assert (fc.opcode, fc.builtin_code, fc.version, fc.custom_code) == ("FULLY_CONNECTED", FULLY_CONNECTED, 1, None)
    assert fc.inputs == (0, 1, 2) and fc.outputs == (3,) and fc.intermediates == ()
    assert fc.options == {
        "fused_activation_function": "RELU",
        "weights_format": 0,
        "keep_num_dims": True,
        "asymmetric_quantize_inputs": False,
        "quantized_bias_type": 0,
    }
    assert softmax.options == {"beta": 0.5}
    assert reshape.inputs == (4, -1)  # -1: optional input absent
    assert reshape.options == {"new_shape": [3]}
    check_known_options(model)
    assert model.operator_histogram() == {("FULLY_CONNECTED", 1): 1, ("SOFTMAX", 1): 1, ("RESHAPE", 1): 1}


def test_built_model_metadata_and_signatures() -> None:
    model = load_model(build_model())
    assert model.metadata == {"npmobilebert": b"npmobilebert-meta"}
    (sig,) = model.signatures
    assert (sig.key, sig.subgraph_index, sig.inputs, sig.outputs) == ("serving_default", 0, {"x": 0}, {"y": 5})
    assert model.packed_files == {}


def test_unknown_tensor_lookup_raises_package_error() -> None:
    model = load_model(build_model())
    for key in ("no-such-tensor", 6, -1):
        with pytest.raises(TensorNotFoundError) as info:
            model.tensor(key)
        assert isinstance(info.value, NpMobileBertError) and isinstance(info.value, KeyError)
        assert "\n" not in str(info.value) and not str(info.value).startswith("'")


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "path"])
def test_views_are_read_only_and_share_the_file_bytes(kind: str, tmp_path: Path) -> None:
    raw = build_model()
    owner: Any = None
    if kind == "path":
        (tmp_path / "m.tflite").write_bytes(raw)
        model = load_model(tmp_path / "m.tflite")
    else:
        owner = {"bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(bytearray(raw))}[kind]
        model = load_model(owner)
    for name in ("weights", "bias"):
        data = model.tensor(name).data
        assert not data.flags.writeable
        with pytest.raises(ValueError):
            data[...] = 0
        if owner is not None:
            assert np.shares_memory(data, np.frombuffer(owner, dtype=np.uint8))
    q = model.tensor("weights").quantization
    assert not q.scales.flags.writeable and not q.zero_points.flags.writeable


def test_packed_files_are_read_from_the_appended_zip() -> None:
    files = {"vocab.txt": b"[PAD]\n[UNK]\nhello\n", "labels.txt": b"neg\npos\n"}
    model = load_model(build_model(tail=zip_bytes(files)))
    assert model.packed_files == files
    assert model.tensor("weights").data.tolist()[0] == [-6, -5, -4, -3]  # the model itself is intact


def test_corrupt_zip_gives_no_packed_files() -> None:
    archive = zip_bytes({"vocab.txt": b"a\nb\n"})
    # The end-of-central-directory record is kept, the rest is garbage.
    garbage = b"\xff" * (len(archive) - 22) + archive[-22:]
    assert load_model(build_model(tail=garbage)).packed_files == {}
    assert load_model(build_model(tail=b"PK\x05\x06" + b"\x00" * 4)).packed_files == {}


def test_huge_declared_member_size_is_not_read() -> None:
    archive = bytearray(zip_bytes({"vocab.txt": b"a\nb\n", "ok.txt": b"fine"}))
    # Patch the uncompressed size in vocab.txt's central directory entry to 2 GiB.
    central = archive.index(b"PK\x01\x02")
    struct.pack_into("<I", archive, central + 24, 0x7FFF_FFFF)
    model = load_model(build_model(tail=bytes(archive)))
    assert "vocab.txt" not in model.packed_files
    assert model.packed_files.get("ok.txt") == b"fine"


def _external_spec(offset: int) -> dict:
    """tiny_spec() with the weights stored outside the FlatBuffer (as in models > 2 GB)."""
    spec = tiny_spec()
    spec["buffers"][2] = None
    spec["external"] = {2: (offset, 12)}
    return spec


def test_buffers_outside_the_flatbuffer() -> None:
    weights = np.arange(-6, 6, dtype=np.int8).tobytes()
    # The offset field has a fixed width: build once to learn the FlatBuffer's size.
    size = len(build_model(_external_spec(1 << 40)))
    offset = (size + 15) // 16 * 16
    flat = build_model(_external_spec(offset))
    assert len(flat) == size
    raw = flat + b"\0" * (offset - size) + weights
    data = load_model(raw).tensor("weights").data
    np.testing.assert_array_equal(data, np.arange(-6, 6, dtype=np.int8).reshape(3, 4))
    assert np.shares_memory(data, np.frombuffer(raw, np.uint8))

    with pytest.raises(ModelFormatError, match=r"buffer 2 lies at bytes .* beyond the end"):
        load_model(flat)  # the data was never appended


# ---------------------------------------------------------------------------
# Invalid files
# ---------------------------------------------------------------------------


def assert_format_error(source: Any, match: str | None = None) -> ModelFormatError:
    with pytest.raises(ModelFormatError, match=match) as info:
        load_model(source)
    message = str(info.value)
    assert message and "\n" not in message
    return info.value


def test_empty_and_tiny_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    assert_format_error(empty, "empty.tflite: the file is empty")
    assert_format_error(b"", "empty")
    assert_format_error(b"TFL3", "too small")


def test_text_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.tflite"
    text.write_text("This is not a model, just some text.\n" * 10)
    assert_format_error(text, r"notes.tflite: not a TFLite model: file identifier")


def test_wrong_identifier() -> None:
    raw = bytearray(build_model())
    raw[4:8] = b"TFL2"
    assert_format_error(bytes(raw), r"identifier b'TFL2'.*expected b'TFL3'")


def test_root_offset_outside_the_file() -> None:
    raw = bytearray(build_model())
    struct.pack_into("<I", raw, 0, len(raw) + 100)
    assert_format_error(bytes(raw), "root table offset")


def test_truncated_model() -> None:
    raw = build_model()
    for length in (8, 12, 16, 32, len(raw) // 2, len(raw) - 20):
        assert_format_error(raw[:length])


def _mutated(**changes: Any) -> bytes:
    spec = tiny_spec()
    for path, value in changes.items():
        target: Any = spec
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return build_model(spec)


def test_operator_input_out_of_range() -> None:
    error = assert_format_error(_mutated(operators__1__inputs=[999]))
    assert str(error) == "<memory>: operator 1 (SOFTMAX) input 0 refers to tensor 999, but the subgraph has 6 tensors"


def test_operator_output_out_of_range() -> None:
    assert_format_error(_mutated(operators__0__outputs=[-7]), r"operator 0 \(FULLY_CONNECTED\) output 0 refers to tensor -7")


def test_opcode_index_out_of_range() -> None:
    assert_format_error(_mutated(operators__2__opcode=3), "operator 2 refers to operator code 3, but the model has 3")


def test_graph_output_out_of_range() -> None:
    assert_format_error(_mutated(outputs=[6]), "graph output 0 refers to tensor 6")


def test_tensor_buffer_index_out_of_range() -> None:
    assert_format_error(_mutated(tensors__2__buffer=42), r"tensor 2 \(bias\) refers to buffer 42, but the model has 8 buffers")


def test_buffer_size_does_not_match_shape() -> None:
    assert_format_error(
        _mutated(tensors__2__shape=[4]),
        r"tensor 2 \(bias\) has 12 bytes of data in buffer 3, but its shape \(4,\) of INT32 needs 16 bytes",
    )


def test_negative_dimension() -> None:
    assert_format_error(_mutated(tensors__3__shape=[1, -3]), r"tensor 3 \(fc\) has a negative dimension")


def test_unknown_tensor_type() -> None:
    assert_format_error(_mutated(tensors__3__type=99), r"tensor 3 \(fc\) has unknown tensor type 99")


def test_scales_without_matching_zero_points() -> None:
    spec = tiny_spec()
    spec["tensors"][1]["zero_points"] = [0, 0]
    assert_format_error(build_model(spec), "3 quantization scales but 2 zero points")


def test_signature_tensor_out_of_range() -> None:
    spec = tiny_spec()
    spec["signatures"][0]["outputs"] = {"y": 60}
    assert_format_error(build_model(spec), "signature 'serving_default' output 'y' refers to tensor 60")


def test_metadata_buffer_out_of_range() -> None:
    assert_format_error(_mutated(metadata={"npmobilebert": 99}), "metadata 'npmobilebert' refers to buffer 99")


def check_corruptions(raw: bytes, n_mutations: int = 300) -> None:
    """Truncations and random byte changes either parse or raise ModelFormatError -- nothing else."""
    sizes = sorted({0, 1, 7, 8, 9, 16, 64, len(raw) // 3, len(raw) // 2, len(raw) - 1})
    for size in sizes:
        if size < len(raw):
            _load_or_format_error(raw[:size])
    rng = random.Random(1234)
    for _ in range(n_mutations):
        mutated = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(8, len(raw))  # keep the header: reach the deeper checks
            mutated[position] = rng.randrange(256)
        _load_or_format_error(bytes(mutated))


def _load_or_format_error(raw: bytes) -> None:
    try:
        load_model(raw)
    except ModelFormatError as error:
        assert "\n" not in str(error)


def test_random_corruptions_of_a_built_model() -> None:
    check_corruptions(build_model(tail=zip_bytes({"vocab.txt": b"x\ny\n"})), n_mutations=1000)


def test_load_model_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        load_model(12345)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------


def test_info_of_built_model() -> None:
    files = {"vocab.txt": b"a\nb\nc\n"}
    info = model_info(load_model(build_model(tail=zip_bytes(files))))
    assert json.loads(json.dumps(info)) == info
    assert info["tensor_count"] == 6 and info["operator_count"] == 3
    assert info["quantization"] == {"scheme": "dynamic-range", "ops": {"dynamic-range": 1}, "fc_weights": "per-channel"}
    assert info["parameters"]["by_dtype"] == {
        "INT8": {"tensors": 1, "count": 12, "bytes": 12},
        "INT32": {"tensors": 1, "count": 3, "bytes": 12},
    }
    assert info["parameters"]["count"] == 15 and info["parameters"]["bytes"] == 24
    assert info["inputs"] == [
        {"index": 0, "name": "input", "shape": [1, 4], "shape_signature": [-1, 4], "dtype": "FLOAT32", "quantization": None}
    ]
    assert info["metadata"] == [{"name": "npmobilebert", "size": len(b"npmobilebert-meta")}]
    assert info["packed_files"] == [{"name": "vocab.txt", "size": 6}]
    assert [o["count"] for o in info["operators"]] == [1, 1, 1]
    text = format_info(info)
    for needle in ("dynamic-range", "vocab.txt", "FULLY_CONNECTED v1", "serving_default", "npmobilebert"):
        assert needle in text
