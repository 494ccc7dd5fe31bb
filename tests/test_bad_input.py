"""A fixed corpus of nasty inputs: each kind gives one line of the package's own exception.

Every bad model here is made in the test from a committed fixture -- unpacked with LiteRT's
FlatBuffer object API (``ModelT``), edited, packed again -- or from a few bytes: no binary file
is committed for them.  Each case asserts the exception type and the part of its message that
tells the user what is wrong; a sample goes through the real console (exit 2, one line on
stderr, no traceback).  Inputs (text, token ids, arrays) and output paths get the same treatment.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from npmobilebert.errors import (InputError, ModelFormatError, NpMobileBertError,
                                 UnsupportedOpError)
from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.model import load_model

schema = pytest.importorskip("ai_edge_litert.schema_py_generated",
                             reason="the FlatBuffer object API ships with ai-edge-litert")

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_int8.tflite"
RAW = TINY.read_bytes()


# --------------------------------------------------------------------------------------------
# Building bad models from the fixture
# --------------------------------------------------------------------------------------------


def pack(m) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def edited(edit) -> bytes:
    """tiny_int8 unpacked, changed by ``edit(model_t, subgraph_t)``, packed again."""
    m = schema.ModelT.InitFromPackedBuf(RAW, 0)
    edit(m, m.subgraphs[0])
    return pack(m)


_MODEL = load_model(RAW)


def first_op(opcode: str, int8_input: bool = False) -> int:
    for op in _MODEL.operators:
        if op.opcode == opcode and (not int8_input or _MODEL.tensors[op.inputs[0]].type_name == "INT8"):
            return op.index
    raise AssertionError(opcode)


FC, SOFTMAX, TRANSPOSE, ADD = (first_op("FULLY_CONNECTED"), first_op("SOFTMAX"),
                               first_op("TRANSPOSE"), first_op("ADD", int8_input=True))


def set_opcode(m, sg, op_index: int, code: int, version: int | None = None, custom: str | None = None):
    """Give operator `op_index` a new operator code of its own."""
    oc = schema.OperatorCodeT()
    old = m.operatorCodes[sg.operators[op_index].opcodeIndex]
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = old.version if version is None else version
    oc.customCode = custom
    m.operatorCodes.append(oc)
    sg.operators[op_index].opcodeIndex = len(m.operatorCodes) - 1


def fixture_field(label: str) -> int:
    """Position of the first FlatBuffer field called `label` in tiny_int8 (see test_fuzz)."""
    from test_fuzz import _FieldMap

    return next(pos for pos, _, name in _FieldMap(RAW).targets if name == label)


def with_bytes(position: int, fmt: str, value) -> bytes:
    data = bytearray(RAW)
    struct.pack_into(fmt, data, position, value)
    return bytes(data)


def flip_bit(position: int, bit: int) -> bytes:
    data = bytearray(RAW)
    data[position] ^= 1 << bit
    return bytes(data)


def _onnx_like() -> bytes:
    # The first fields of an ONNX ModelProto: ir_version 7, producer_name "pytorch", a graph.
    return b"\x08\x07\x12\x07pytorch\x1a\x052.1.0:\x9a\x01\n\x1b\n\x05input\x12\x06output\x1a\x04Relu" * 4


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("model.tflite", RAW[:1000])
    return out.getvalue()


def _png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + b"\0" * 4


def _while_op(m, sg):
    """A WHILE op after the graph, with a trivial extra subgraph as its cond and body."""
    body = schema.SubGraphT()
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = "loop_var", [1, 3], schema.TensorType.FLOAT32, 0
    body.tensors, body.inputs, body.outputs, body.operators, body.name = [t], [0], [0], [], "body"
    m.subgraphs.append(body)
    out = schema.TensorT()
    out.name, out.shape, out.type, out.buffer = "while_out", [1, 3], schema.TensorType.FLOAT32, 0
    sg.tensors.append(out)
    options = schema.WhileOptionsT()
    options.condSubgraphIndex, options.bodySubgraphIndex = 1, 1
    op = schema.OperatorT()
    op.inputs, op.outputs = [int(sg.outputs[0])], [len(sg.tensors) - 1]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.WhileOptions, options
    sg.operators.append(op)
    set_opcode(m, sg, len(sg.operators) - 1, schema.BuiltinOperator.WHILE, version=1)
    sg.outputs = [len(sg.tensors) - 1]


def _orphan_output(m, sg):
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = "orphan", [1, 3], schema.TensorType.FLOAT32, 0
    sg.tensors.append(t)
    sg.outputs = [len(sg.tensors) - 1]


def _external_buffer(m, sg):
    """The first FC's weights stored "outside the FlatBuffer" (models > 2 GB), past the end."""
    weights = sg.tensors[sg.operators[FC].inputs[1]]
    buffer = m.buffers[weights.buffer]
    buffer.data, buffer.offset, buffer.size = None, 1 << 31, 4096


def _swap_transpose_dims(m, sg):
    out = sg.tensors[sg.operators[TRANSPOSE].outputs[0]]
    shape = list(out.shape)
    shape[1], shape[2] = shape[2], shape[1]
    out.shape = shape


def _tensor_shape(which, shape):
    def edit(m, sg):
        sg.tensors[which(sg)].shape = shape
    return edit


def _first_activation_output(sg):
    return int(sg.operators[0].outputs[0])


def _constant_of(op_index, position):
    return lambda sg: int(sg.operators[op_index].inputs[position])


def _set(path_fn, value):
    def edit(m, sg):
        obj, attr = path_fn(m, sg)
        setattr(obj, attr, value)
    return edit


def _op_io(op_index: int, attr: str, position: int, value: int):
    def edit(m, sg):
        op = sg.operators[op_index]
        values = [int(v) for v in getattr(op, attr)]
        values[position] = value
        setattr(op, attr, values)
    return edit


def _graph_inputs(position: int, value: int):
    def edit(m, sg):
        values = [int(v) for v in sg.inputs]
        values[position] = value
        sg.inputs = values
    return edit


def _opcode_version(op_index: int, version: int):
    def edit(m, sg):
        set_opcode(m, sg, op_index, m.operatorCodes[sg.operators[op_index].opcodeIndex].builtinCode, version)
    return edit


def _scale(tensor_of, value: float):
    def edit(m, sg):
        q = sg.tensors[tensor_of(sg)].quantization
        q.scale = [value] * len(q.scale)
    return edit


# (id, bytes or a path, stage that refuses it, exception type, what the message must say)
MODEL_CASES = [
    # -- not a model at all
    ("empty", lambda: b"", "load", ModelFormatError, r"the file is empty, not a TFLite model"),
    ("too-small", lambda: RAW[:6], "load", ModelFormatError, r"only 6 bytes, too small"),
    ("foreign-onnx-protobuf", _onnx_like, "load", ModelFormatError, r"not a TFLite model: file identifier"),
    ("foreign-text", lambda: b"hello, this is a text file\n" * 20, "load", ModelFormatError,
     r"not a TFLite model: file identifier b'o, t'"),
    ("foreign-zip", _zip, "load", ModelFormatError, r"not a TFLite model: file identifier"),
    ("foreign-png", _png, "load", ModelFormatError, r"not a TFLite model: file identifier b'\\r\\n\\x1a\\n'"),
    ("wrong-identifier", lambda: RAW[:4] + b"TFL2" + RAW[8:], "load", ModelFormatError,
     r"file identifier b'TFL2' at bytes 4..8, expected b'TFL3'"),
    ("not-a-regular-file", lambda: Path("/dev/zero"), "load", ModelFormatError, r"not a regular file"),
    # -- truncated, bit-flipped, offsets outside the file
    ("truncated-to-header", lambda: RAW[:8], "load", ModelFormatError,
     r"truncated or corrupt: the root table offset \d+ lies outside the 8-byte file"),
    ("truncated-to-half", lambda: RAW[:len(RAW) // 2], "load", ModelFormatError,
     r"corrupt FlatBuffer while reading the model table \(struct.error"),
    ("truncated-in-buffers", lambda: RAW[:len(RAW) - 9000], "load", ModelFormatError,
     r"corrupt FlatBuffer while reading buffer \d+"),
    ("bit-flip-in-vector-length", lambda: flip_bit(fixture_field("SubGraph.tensors (length)") + 3, 6),
     "load", ModelFormatError, r"tensor list declares 10737\d+ entries, more than a \d+-byte file can hold"),
    ("offset-past-end-of-file", lambda: with_bytes(fixture_field("Model.subgraphs (uoffset)"), "<I", len(RAW)),
     "load", ModelFormatError, r"corrupt FlatBuffer while reading the subgraph list"),
    ("root-offset-past-end-of-file", lambda: with_bytes(0, "<I", len(RAW) + 4), "load", ModelFormatError,
     r"root table offset \d+ lies outside the \d+-byte file"),
    ("external-buffer-past-end-of-file", lambda: edited(_external_buffer), "load", ModelFormatError,
     r"buffer \d+ lies at bytes 2147483648..2147487744, beyond the end of the \d+-byte file"),
    # -- indices out of range
    ("operator-input-out-of-range", lambda: edited(_op_io(5, "inputs", 0, 9999)), "load", ModelFormatError,
     r"operator 5 \(STRIDED_SLICE\) input 0 refers to tensor 9999, but the subgraph has 170 tensors"),
    ("operator-output-out-of-range", lambda: edited(_op_io(2, "outputs", 0, -5)), "load", ModelFormatError,
     r"operator 2 \(SUB\) output 0 refers to tensor -5"),
    ("opcode-index-out-of-range", lambda: edited(_set(lambda m, sg: (sg.operators[3], "opcodeIndex"), 99)),
     "load", ModelFormatError, r"operator 3 refers to operator code 99, but the model has 15 operator codes"),
    ("tensor-buffer-out-of-range", lambda: edited(_set(lambda m, sg: (sg.tensors[3], "buffer"), 9999)),
     "load", ModelFormatError, r"tensor 3 \(.*\) refers to buffer 9999, but the model has \d+ buffers"),
    ("graph-input-out-of-range", lambda: edited(_graph_inputs(0, 500)), "load", ModelFormatError,
     r"graph input 0 refers to tensor 500, but the subgraph has 170 tensors"),
    # -- shapes and sizes
    ("negative-dimension", lambda: edited(_tensor_shape(_first_activation_output, [1, -16])), "load",
     ModelFormatError, r"tensor 81 \(.*\) has a negative dimension in its shape \(1, -16\)"),
    ("constant-of-terabytes", lambda: edited(_tensor_shape(_constant_of(FC, 1), [2 ** 20, 2 ** 20])), "load",
     ModelFormatError, r"has \d+ bytes of data in buffer \d+, but its shape \(1048576, 1048576\) of INT8 needs "
                       r"1099511627776 bytes"),
    ("activation-of-terabytes", lambda: edited(_tensor_shape(_first_activation_output, [2 ** 20, 2 ** 20])),
     "prepare", ModelFormatError, r"tensor 81 \(.*\) declares shape \[1048576, 1048576\] of FLOAT32: 4 TiB, "
                                  r"over the interpreter's limit of 1 GiB per tensor"),
    ("graph-input-of-gigabytes", lambda: edited(_tensor_shape(lambda sg: int(sg.inputs[1]), [1, 2 ** 31 - 1])),
     "prepare", ModelFormatError, r"declares shape \[1, 2147483647\] of INT32: 8 GiB, over the interpreter's limit"),
    ("nan-quantization-scale", lambda: edited(_scale(_constant_of(FC, 1), math.nan)), "load", ModelFormatError,
     r"has a quantization scale that is not a finite number"),
    ("declared-shape-differs-from-computed", lambda: edited(_swap_transpose_dims), "prepare", ModelFormatError,
     rf"operator {TRANSPOSE} \(TRANSPOSE\) computes shape \[1, 2, 16, 16\] for tensor \d+ \(.*\), "
     rf"but the model declares \[1, 16, 2, 16\]"),
    # -- graph structure
    ("use-before-definition", lambda: edited(lambda m, sg: sg.operators.insert(0, sg.operators.pop(1))),
     "prepare", ModelFormatError, r"operator 0 \(QUANTIZE\) reads tensor 81 \(.*\) before any operator writes it"),
    ("cycle", lambda: edited(_op_io(1, "inputs", 0, 84)), "prepare", ModelFormatError,
     r"operator 1 \(QUANTIZE\) reads tensor 84 .* before any operator writes it"),
    ("tensor-written-twice", lambda: edited(_op_io(3, "outputs", 0, 83)), "prepare", ModelFormatError,
     r"operator 3 \(MUL\) writes tensor 83 .*, which operator 2 already wrote"),
    ("operator-writes-a-graph-input", lambda: edited(_op_io(0, "outputs", 0, 1)), "prepare", ModelFormatError,
     r"operator 0 \(CAST\) writes tensor 1 .*, which is a graph input"),
    ("graph-output-nobody-writes", lambda: edited(_orphan_output), "prepare", ModelFormatError,
     r"graph output 0 is tensor 170 \('orphan'\), which no operator writes"),
    ("operator-output-absent", lambda: edited(_op_io(2, "outputs", 0, -1)), "prepare", ModelFormatError,
     r"operator 2 \(SUB\) has an absent \(-1\) output"),
    ("required-input-absent", lambda: edited(_op_io(FC, "inputs", 1, -1)), "prepare", ModelFormatError,
     rf"operator {FC} \(FULLY_CONNECTED\) input 1 is absent \(-1\), but the op requires it"),
    ("too-few-inputs", lambda: edited(lambda m, sg: setattr(sg.operators[FC], "inputs", [sg.operators[FC].inputs[0]])),
     "prepare", ModelFormatError, rf"operator {FC} \(FULLY_CONNECTED\) has 1 input; the op takes 2 to 3"),
    # -- operators the interpreter does not run
    ("unsupported-op", lambda: edited(lambda m, sg: set_opcode(m, sg, SOFTMAX, schema.BuiltinOperator.FLOOR)),
     "prepare", UnsupportedOpError, rf"operator {SOFTMAX} \(FLOOR v\d.*this op is not implemented"),
    ("custom-op", lambda: edited(lambda m, sg: set_opcode(m, sg, SOFTMAX, schema.BuiltinOperator.CUSTOM,
                                                          custom="MyFancySoftmax")),
     "prepare", UnsupportedOpError, rf"custom op MyFancySoftmax: not implemented by the NumPy interpreter \(operator {SOFTMAX}\)"),
    ("op-version-too-new", lambda: edited(_opcode_version(SOFTMAX, 99)), "prepare", UnsupportedOpError,
     rf"operator {SOFTMAX} \(SOFTMAX v99\): unknown op version; SOFTMAX has versions 1 to 4"),
    ("op-version-zero", lambda: edited(_opcode_version(ADD, 0)), "prepare", UnsupportedOpError,
     rf"operator {ADD} \(ADD v0\): unknown op version"),
    ("control-flow-while", lambda: edited(_while_op), "prepare", UnsupportedOpError,
     r"\(WHILE v1\) is control flow \(it runs subgraphs: cond 1, body 1\): "
     r"the NumPy interpreter runs one straight-line graph"),
    # -- parameters a kernel cannot work with: still one line naming the op
    ("zero-quantization-scale", lambda: edited(_scale(lambda sg: int(sg.operators[ADD].outputs[0]), 0.0)), "prepare", NpMobileBertError,
     rf"operator {ADD} \(ADD v\d"),
]


def test_every_kernel_has_a_version_limit_and_an_arity():
    """A kernel added to the registry needs its entries in the interpreter's tables, and LiteRT
    must know the highest version we accept (else we would run files LiteRT refuses)."""
    from npmobilebert.interpreter import MAX_OP_VERSIONS, OP_ARITY
    from npmobilebert.kernels import KERNELS

    assert sorted(set(KERNELS) - set(MAX_OP_VERSIONS)) == []
    assert sorted(set(KERNELS) - set(OP_ARITY)) == []
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    from opmodels import single_op_model, tensor

    for opcode, version in MAX_OP_VERSIONS.items():
        blob = single_op_model(opcode, [tensor("x", [1], "float32")], [tensor("y", [1], "float32")], version=version)
        try:
            litert.Interpreter(model_content=blob, experimental_op_resolver_type=(
                litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        except (ValueError, RuntimeError) as e:  # a Prepare failure on the dummy tensors is fine
            assert "find op" not in str(e), f"{opcode} v{version}: {e}"


def _source(make, tmp_path: Path, name: str):
    made = make()
    if isinstance(made, Path):
        if not made.exists():
            pytest.skip(f"{made} does not exist here")
        return made
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(made)
    return path


def _run_stages(path: Path):
    """load -> prepare -> run on valid inputs; returns nothing when everything succeeds."""
    model = load_model(path)
    interp = Interpreter(model)
    arrays = InputMaker(model).random(np.random.default_rng(0)).arrays
    interp.run(arrays)


@pytest.mark.parametrize("name,make,stage,exc_type,message", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model(tmp_path, name, make, stage, exc_type, message):
    path = _source(make, tmp_path, name)
    if stage != "load":
        model = load_model(path)  # it is well-formed as a FlatBuffer: the reader accepts it
        if stage == "run":
            Interpreter(model)
    with pytest.raises(exc_type, match=message) as info:
        _run_stages(path)
    text = str(info.value)
    assert text and "\n" not in text
    if stage == "load":
        assert text.startswith(f"{path.name}: ") or path == Path("/dev/zero")


def test_absurd_activation_is_refused_before_any_allocation():
    """A [2**20, 2**20] activation is refused by Interpreter() having allocated (almost) nothing."""
    model = load_model(edited(_tensor_shape(_first_activation_output, [2 ** 20, 2 ** 20])))
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match="over the interpreter's limit"):
            Interpreter(model)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    # The cap is configurable: a lower one refuses the fixture's own 6 KiB activations.
    with pytest.raises(ModelFormatError, match=r"over the interpreter's limit of 1 KiB per tensor"):
        Interpreter(_MODEL, max_tensor_bytes=1024)
    with pytest.raises(ModelFormatError, match="over the limit"):
        InputMaker(load_model(edited(_tensor_shape(lambda sg: int(sg.inputs[1]), [1, 2 ** 31 - 1]))))


def test_pad_with_paddings_that_do_not_match_is_refused_when_prepared():
    """TFLite's Prepare computes a PAD's output shape from its (constant) paddings: an oversized
    padding must be refused when the model is prepared, before np.pad allocates anything."""
    def grow_paddings(m, sg):
        pad = next(op for op in sg.operators if m.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.PAD)
        buffer = m.buffers[sg.tensors[pad.inputs[1]].buffer]
        paddings = np.frombuffer(bytes(buffer.data), "<i4").copy()
        paddings[-1] = 1 << 16     # 64 Ki more columns: 32 MiB instead of 512 bytes
        buffer.data = paddings.tobytes()
    with pytest.raises(ModelFormatError):
        Interpreter(load_model(edited(grow_paddings)))


# --------------------------------------------------------------------------------------------
# Inputs: text, token ids, arrays through the Python API
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def maker():
    return InputMaker(_MODEL)


@pytest.fixture(scope="module")
def good(maker):
    return maker.from_ids([101, 7, 8, 102]).arrays


TEXT_AND_IDS_CASES = [
    ("empty-text", lambda mk: mk.from_text(""), r"the text is empty"),
    ("whitespace-only-text", lambda mk: mk.from_text(" \t\n \u3000 "), r"the text is empty"),
    ("non-utf8-text", lambda mk: mk.from_text("caf\udce9 au lait"), r"not valid UTF-8 \(byte 0xe9 at character 3\)"),
    ("lone-surrogate-text", lambda mk: mk.from_text("x\ud800y"), r"not valid UTF-8 \(a lone surrogate"),
    ("text-not-a-string", lambda mk: mk.from_text(b"bytes"), r"text must be a string"),
    ("ids-outside-vocabulary", lambda mk: mk.from_ids([101, 10 ** 6, 102]),
     r"token id 1000000 is outside the vocabulary \[0, \d+\)"),
    ("negative-id", lambda mk: mk.from_ids([101, -1, 102]), r"token id -1 is outside the vocabulary"),
    ("too-many-ids", lambda mk: mk.from_ids([5] * 17), r"17 ids given; the model takes at most 16"),
    ("no-ids", lambda mk: mk.from_ids([]), r"no token ids given"),
]


@pytest.mark.parametrize("name,action,message", TEXT_AND_IDS_CASES, ids=[c[0] for c in TEXT_AND_IDS_CASES])
def test_bad_text_and_ids(maker, name, action, message):
    with pytest.raises(InputError, match=message) as info:
        action(maker)
    assert "\n" not in str(info.value)


def test_emoji_and_other_scripts_run(maker):
    made = maker.from_text("love 😍🔥👍🏽 今日 مرحبا Привет naïve")
    assert made.tokens[0] == "[CLS]" and made.tokens[-1] == "[SEP]" and 2 < made.length <= 16
    (logits,) = Interpreter(_MODEL).run(made.arrays)
    assert logits.shape == (1, 3)


def test_ten_kilobyte_text_is_truncated_with_a_warning(maker):
    text = "the bank was helpful but the app keeps crashing " * 210
    assert len(text.encode()) > 10_000
    with pytest.warns(UserWarning, match=r"text of more than 16 tokens truncated to the model's 16"):
        made = maker.from_text(text)
    assert made.length == 16 and made.tokens[-1] == "[SEP]"
    Interpreter(_MODEL).run(made.arrays)


def _array_cases(good):
    ids = good[1]
    return [
        ("wrong-count", good[:2], r"the model takes 3 inputs \(.*\), got 2"),
        ("too-many", good + [good[0]], r"the model takes 3 inputs"),
        ("wrong-shape", [good[0], ids[:, :4], good[2]], r"shape \[1, 16\], got \[1, 4\]"),
        ("wrong-rank", [good[0], ids.reshape(16), good[2]], r"shape \[1, 16\], got \[16\]"),
        ("wrong-dtype", [good[0], ids.astype(np.float32), good[2]], r"INT32|int32.*float32"),
        ("values-outside-dtype", [good[0], ids.astype(np.int64) + 2 ** 40, good[2]], r"INT32|int32"),
        ("strings", [good[0], np.full((1, 16), "a"), good[2]], r"INT32|int32"),
        ("ragged", [good[0], [[1, 2], [3]], good[2]], r"not an array|inhomogeneous|ragged|dtype"),
        ("not-a-list", 42, r"list of arrays|inputs"),
        ("by-name-missing", {"nope": good[0]}, r"missing .*unknown \['nope'\]|expected"),
    ]


def test_bad_arrays_interpreter(good):
    interp = Interpreter(_MODEL)
    for name, inputs, message in _array_cases(good):
        with pytest.raises(InputError, match=message) as info:
            interp.run(inputs)
        assert "\n" not in str(info.value), name
    ids = good[1].copy()
    ids[0, 1] = 10 ** 6  # an id the embedding table does not have: GATHER refuses it
    with pytest.raises(InputError, match=r"GATHER\): index 1000000 is outside"):
        interp.run([good[0], ids, good[2]])


def test_bad_arrays_litert(good):
    pytest.importorskip("ai_edge_litert.interpreter")
    from npmobilebert.runtime import LiteRTRunner

    runner = LiteRTRunner(TINY, resolver="ref")
    for name, inputs, message in _array_cases(good):
        with pytest.raises(InputError) as info:
            runner.run(inputs)
        assert "\n" not in str(info.value), name


# --------------------------------------------------------------------------------------------
# Outputs: atomic writes, bad paths
# --------------------------------------------------------------------------------------------


def test_interrupted_npz_write_leaves_nothing(tmp_path, monkeypatch):
    from npmobilebert import fileio

    target = tmp_path / "trace.npz"
    real_write = np.lib.format.write_array
    calls = []

    def write_then_fail(member, array, **kw):
        calls.append(1)
        if len(calls) == 2:  # the second tensor: the archive is half written
            member.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        real_write(member, array, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    arrays = {"a": np.arange(10), "b": np.ones((3, 3)), "c": np.zeros(2)}
    with pytest.raises(KeyboardInterrupt):
        fileio.save_npz(target, arrays)
    assert list(tmp_path.iterdir()) == []           # neither trace.npz nor .trace.npz.*.part

    target.write_bytes(b"the previous run's file")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        fileio.save_npz(target, arrays)
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"the previous run's file"  # untouched

    monkeypatch.setattr(np.lib.format, "write_array", real_write)
    fileio.save_npz(target, arrays)
    with np.load(target) as saved:
        assert sorted(saved.files) == ["a", "b", "c"]
    assert list(tmp_path.iterdir()) == [target]


def test_interrupted_json_write_leaves_nothing(tmp_path, monkeypatch):
    from npmobilebert import fileio

    def dump_then_fail(data, f, **kw):
        f.write('{"half": ')
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fileio.json, "dump", dump_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        fileio.save_json(tmp_path / "report.json", {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_npz_keys_are_any_tensor_names(tmp_path):
    """Names that are also np.savez's own parameters, or look like paths, are plain keys."""
    from npmobilebert.fileio import save_npz

    arrays = {"file": np.arange(3), "allow_pickle": np.ones(2), "model/dense/MatMul;1": np.zeros(1), "": np.eye(2)}
    save_npz(tmp_path / "t.npz", arrays)
    with np.load(tmp_path / "t.npz") as saved:
        assert sorted(saved.files) == sorted(arrays)
        np.testing.assert_array_equal(saved["file"], np.arange(3))


def test_output_paths_are_checked(tmp_path):
    from npmobilebert.fileio import check_writable, save_json

    (tmp_path / "a_file").write_text("x")
    for path, message in [(tmp_path / "missing" / "out.npz", r"the directory .*missing does not exist"),
                          (tmp_path / "a_file" / "out.npz", r"the directory .*a_file is not a directory"),
                          (tmp_path, r"it is a directory")]:
        with pytest.raises(InputError, match=message):
            check_writable(path)
        with pytest.raises(InputError, match=message):
            save_json(path, {})
    assert not (tmp_path / "missing").exists()  # no directory is created behind the user's back
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="not writable"):
            save_json(locked / "r.json", {})


# --------------------------------------------------------------------------------------------
# The console: exit 2, one line, no traceback
# --------------------------------------------------------------------------------------------


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          cwd=cwd, timeout=300)


def _cli_model(tmp_path: Path, case_id: str) -> str:
    case = next(c for c in MODEL_CASES if c[0] == case_id)
    return str(_source(case[1], tmp_path, case_id))


CLI_MODEL_CASES = ["empty", "foreign-png", "truncated-to-half", "offset-past-end-of-file",
                   "operator-input-out-of-range", "activation-of-terabytes", "cycle", "unsupported-op",
                   "control-flow-while", "external-buffer-past-end-of-file", "not-a-regular-file",
                   "declared-shape-differs-from-computed"]


@pytest.mark.parametrize("case_id", CLI_MODEL_CASES)
def test_cli_bad_model(tmp_path, case_id):
    path = _cli_model(tmp_path, case_id)
    message = next(c[4] for c in MODEL_CASES if c[0] == case_id)
    command = "info" if case_id in ("empty", "foreign-png", "truncated-to-half", "not-a-regular-file") else "run"
    args = ["info", "-m", path] if command == "info" else ["run", "-m", path, "--ids", "101 7 102"]
    r = cli(*args)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]


def test_cli_bad_text_and_files(tmp_path):
    latin1 = tmp_path / "tweets.txt"
    latin1.write_bytes("good service\ncaf\xe9 au lait was great\n".encode("latin-1"))
    cases = [
        (["run", "-m", str(TINY), ""], "the text is empty"),
        (["run", "-m", str(TINY), "   "], "the text is empty"),
        (["run", "-m", str(TINY), b"caf\xe9 au lait"], "not valid UTF-8 (byte 0xe9"),
        (["run", "-m", str(TINY), "--ids", "101 -7 102"], "outside the vocabulary"),
        (["verify", "-m", str(TINY), "--file", str(latin1)], "not UTF-8 text (byte 0xe9 on line 2)"),
        (["run", "-m", str(TINY), "--save", str(tmp_path / "no" / "such" / "dir" / "t.npz"), "--ids", "101 102"],
         "does not exist"),
        (["run", "-m", str(TINY), "--save", str(latin1 / "t.npz"), "--ids", "101 102"], "is not a directory"),
        (["verify", "-m", str(TINY), "--random", "1", "--json", str(tmp_path / "no" / "r.json")], "does not exist"),
    ]
    for args, needle in cases:
        r = cli(*args)
        err = r.stderr.decode()
        assert r.returncode == 2, (args, err)
        assert "Traceback" not in err
        lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, err)
    assert not (tmp_path / "no").exists()


def test_cli_long_text_warns_in_one_line(tmp_path):
    r = cli("run", "-m", str(TINY), "the bank was helpful but the app keeps crashing " * 210)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert err.strip().splitlines() == [next(line for line in err.splitlines() if line.startswith("warning:"))]
    assert "truncated to the model's 16" in err


# --------------------------------------------------------------------------------------------
# Found by trying to break every command (one defect each; each test failed before its fix)
# --------------------------------------------------------------------------------------------


def _one_error_line(r) -> str:
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines()
             if not line.startswith(("warning: ", "running both models"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_usage_errors_are_one_line(tmp_path):
    """click's own usage errors (a directory for a file, a value out of range, a missing option)
    were three lines: usage, a hint, the error."""
    for args, needle in [(["run", "-m", str(tmp_path), "--ids", "101 102"], "is a directory"),
                         (["dump", "--threads", "0", "--out", str(tmp_path / "d.npz")], "0 is not in the range"),
                         (["explain", "-m", str(TINY)], "Missing option '--op'"),
                         (["no-such-command"], "No such command")]:
        assert needle in _one_error_line(cli(*args)), args
    bare = cli()
    assert b"Commands:" in bare.stdout + bare.stderr        # `npmobilebert` alone still shows the help


def test_files_without_texts_are_refused(tmp_path):
    """A --file with no text in it was an empty list, which verify, lint, layer-error and bench
    quietly replaced with random inputs (exit 0 on inputs the user never chose)."""
    from npmobilebert.cli import read_texts

    files = {"empty.txt": "", "header-only.tsv": "label\ttext\n", "blank-texts.tsv": "label\ttext\npositive\t  \n"}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")         # blank-texts.tsv: "skipped 1 rows with an empty text"
            with pytest.raises(InputError, match=rf"{name}: no texts in the file"):
                read_texts(str(tmp_path / name))
    line = _one_error_line(cli("verify", "-m", str(TINY), "--file", str(tmp_path / "empty.txt")))
    assert "no texts in the file" in line


def test_labelled_tsv_names_the_line_of_a_bad_byte(tmp_path):
    """eval's message said 'invalid continuation byte at byte 23 of a block': an offset into a read
    buffer, not into the file."""
    from npmobilebert.classify import read_labelled_tsv

    path = tmp_path / "gold.tsv"
    path.write_bytes("label\ttext\npositive\tgood\nneutral\tcaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"gold.tsv: not UTF-8 text \(byte 0xe9 on line 3\)"):
        read_labelled_tsv(str(path))


def test_unreadable_dumps_are_one_line(tmp_path):
    """verify --against an empty file printed a blank line and 'aborted' (exit 130: np.load's
    EOFError, which click takes for Ctrl-D); a damaged entry was an internal error (BadZipFile)."""
    from npmobilebert.dump import DUMP_FORMAT, META_KEY, Dump
    from npmobilebert.fileio import save_npz

    empty = tmp_path / "run.npz"
    empty.write_bytes(b"")
    line = _one_error_line(cli("verify", "-m", str(TINY), "--against", str(empty)))
    assert "run.npz: not a readable .npz dump" in line

    good = tmp_path / "good.npz"
    save_npz(good, {META_KEY: np.array(json.dumps({"format": DUMP_FORMAT})), "t": np.arange(4096, dtype=np.int32)})
    data = bytearray(good.read_bytes())
    data[data.index(np.arange(4096, dtype=np.int32).tobytes()) + 1000] ^= 0xFF   # in t's data: a bad CRC
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(data))
    dump = Dump(str(damaged))
    with pytest.raises(InputError, match=r"damaged.npz: its entry t is not readable \(Bad CRC-32"):
        dump.get("t")
    dump.close()


def test_layer_error_model_without_outputs_and_no_inputs(tmp_path):
    """A float model with no graph outputs was an internal error (IndexError); --random 0 with no
    text printed a table of infinite SQNRs computed from no input at all (exit 0)."""
    from npmobilebert.layer_error import layer_error

    floating = FIXTURES / "tiny_float32.tflite"
    no_outputs = load_model(edited(lambda m, sg: setattr(sg, "outputs", [])))
    f_model = load_model(floating)
    arrays = InputMaker(_MODEL).random(np.random.default_rng(0)).arrays
    report = layer_error(_MODEL, f_model, Interpreter(_MODEL), Interpreter(f_model), [arrays], [arrays])
    assert report.labels_agree == 1
    report = layer_error(f_model, no_outputs, Interpreter(f_model), Interpreter(no_outputs), [arrays], [arrays])
    assert report.labels_agree == 0 and report.inputs == 1

    line = _one_error_line(cli("layer-error", "-m", str(TINY), "--float", str(floating), "--random", "0"))
    assert "nothing to compare" in line


def test_atomic_writes_to_links_pipes_and_their_mode(tmp_path):
    """atomic_path renamed its temporary file over whatever the path named: a symlink became a
    plain file, and a pipe or device (--json /dev/stdout, --save /dev/null) was replaced by a
    regular file when run as root.  Its files were also mode 0600 (mkstemp's), not the umask's."""
    import stat

    from npmobilebert.fileio import save_json

    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real.name)
    save_json(link, {"x": 1})
    assert link.is_symlink() and real.read_text().startswith('{\n  "x": 1')
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(real.stat().st_mode) == 0o666 & ~umask

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # a reader is there: the writer does not block
    try:
        save_json(fifo, {"y": 2})
        assert stat.S_ISFIFO(fifo.lstat().st_mode)
        assert os.read(reader, 1 << 16).startswith(b'{\n  "y": 2')
    finally:
        os.close(reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "pipe", "real.json"]


def test_layer_error_plot_is_a_png_written_atomically(tmp_path):
    """plot_report called savefig(path): a name not ending in .png was an internal error after the
    whole run (matplotlib's 'Format 'txt' is not supported'), and the file was not written atomically."""
    pytest.importorskip("matplotlib")
    from npmobilebert.layer_error import layer_error, plot_report

    f_model = load_model(FIXTURES / "tiny_float32.tflite")
    arrays = InputMaker(_MODEL).random(np.random.default_rng(0)).arrays
    report = layer_error(_MODEL, f_model, Interpreter(_MODEL), Interpreter(f_model), [arrays], [arrays])
    plot_report(report, str(tmp_path / "errors.txt"))
    assert (tmp_path / "errors.txt").read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["errors.txt"]
