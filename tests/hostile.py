"""Hostile models: small, valid-looking .tflite files built to hurt a reader or a runtime.

Every file is the tiny int8 fixture (tests/fixtures/tiny_int8.tflite) edited with LiteRT's
FlatBuffer object API (``schema_py_generated``), its packed vocab/labels re-appended, so each
file still looks like a model the commands accept -- until the one hostile detail bites:

- shared tables: many vector entries pointing at ONE table (FlatBuffers allows it), so that
  a reader rebuilding the table per entry expands a small file to gigabytes or loops forever
  (tensors, quantization, metadata buffers, operators, subgraphs, signatures);
- zip bombs: a packed-file archive of many highly compressed members;
- shape bombs: an op whose inputs (constants) make a result of gigabytes while it declares a
  tiny output (ADD broadcast, GATHER, CONCATENATION, BATCH_MATMUL, FULLY_CONNECTED, PAD, TILE), or
  declares the full, consistent size (a run that allocates gigabytes in total);
- huge declared shapes;
- quantization parameters that crash LiteRT (zero, negative or tiny scales, per-channel
  quantized activations);
- names with newlines in the messages an error prints.

``build_all(directory)`` writes them all and returns {name: HostileFile}.
"""

from __future__ import annotations

import copy
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BASE_FIXTURE = FIXTURES / "tiny_int8.tflite"

# Commands that execute the model (the NumPy interpreter, LiteRT or both): a file whose
# execution would blow memory or crash LiteRT must be refused by every one of them.
EXECUTING = frozenset({"run", "verify", "lint", "layer-error", "explain", "classify", "eval", "dump",
                       "bench", "diff-runtimes"})
ALL_COMMANDS = frozenset({"info"}) | EXECUTING


@dataclass
class HostileFile:
    name: str
    kind: str                       # the class of attack (see the module docstring)
    path: Path
    # commands that must refuse the file (exit 2); the others may also accept it (exit 0/1),
    # e.g. ``info`` describes a model whose ADD declares the wrong shape without running it
    must_refuse: frozenset = field(default_factory=frozenset)


# ------------------------------------------------------------------------------------------------
# Reading and writing models
# ------------------------------------------------------------------------------------------------


def _load(path: Path = BASE_FIXTURE):
    """(ModelT of the fixture, its packed files)."""
    raw = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        packed = {info.filename: archive.read(info) for info in archive.infolist()}
    return model, packed


class Shared:
    """Packs the wrapped object once per builder: every vector entry holding this wrapper points
    at the same table (what a FlatBuffer writer that deduplicates tables emits)."""

    def __init__(self, obj):
        self.obj = obj
        self._packed: dict[int, int] = {}

    def Pack(self, builder):  # noqa: N802 - the object API's name
        key = id(builder)
        if key not in self._packed:
            self._packed[key] = self.obj.Pack(builder)
        return self._packed[key]


def _write(path: Path, model, packed: dict[str, bytes], archive: bytes | None = None) -> Path:
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    if archive is None:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            for name, content in packed.items():
                z.writestr(name, content)
        archive = out.getvalue()
    path.write_bytes(data + archive)
    return path


def _add_buffer(model, data: np.ndarray | None) -> int:
    buf = schema.BufferT()
    if data is not None:
        buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    model.buffers.append(buf)
    return len(model.buffers) - 1


def _add_tensor(model, name: str, shape, type_code: int, data: np.ndarray | None = None,
                quantization=None) -> int:
    sg = model.subgraphs[0]
    t = schema.TensorT()
    t.name = name
    t.shape = np.array(shape, dtype=np.int32)
    t.type = type_code
    t.buffer = _add_buffer(model, data)
    t.quantization = quantization
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _opcode(model, builtin: int, version: int = 1, custom: str | None = None) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin and oc.version == version and \
                (custom is None or oc.customCode == custom):
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = version
    oc.customCode = custom
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _add_op(model, builtin: int, inputs, outputs, options_type: int = 0, options=None,
            version: int = 1, as_graph_output: bool = True) -> None:
    sg = model.subgraphs[0]
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, builtin, version)
    op.inputs = np.array(inputs, dtype=np.int32)
    op.outputs = np.array(outputs, dtype=np.int32)
    op.builtinOptionsType = options_type
    op.builtinOptions = options
    sg.operators.append(op)
    if as_graph_output:
        sg.outputs = np.array(list(sg.outputs) + list(outputs), dtype=np.int32)


F32, I32 = schema.TensorType.FLOAT32, schema.TensorType.INT32
OP = schema.BuiltinOperator
OPT = schema.BuiltinOptions


# ------------------------------------------------------------------------------------------------
# Shared tables
# ------------------------------------------------------------------------------------------------


def shared_tensor(path: Path) -> Path:
    """200,000 extra tensor entries, all one tensor table with a 16 KiB name (~0.8 MB file;
    3.3 GB of names if each entry is decoded on its own)."""
    model, packed = _load()
    sg = model.subgraphs[0]
    victim = copy.deepcopy(sg.tensors[0])
    victim.name = "n" * 16384
    sg.tensors = list(sg.tensors) + [Shared(victim)] * 200_000
    return _write(path, model, packed)


def shared_quantization(path: Path) -> Path:
    """20,000 small tensors sharing one quantization table of 65,536 scales (~1 MB file;
    15 GB of scales and zero points if copied per tensor)."""
    model, packed = _load()
    q = schema.QuantizationParametersT()
    q.scale = np.full(65536, 0.5, np.float32)
    q.zeroPoint = np.zeros(65536, np.int64)
    q.quantizedDimension = 0
    shared_q = Shared(q)
    sg = model.subgraphs[0]
    extra = []
    for i in range(20_000):
        t = schema.TensorT()
        t.name = f"q{i}"
        t.shape = np.array([65536], np.int32)
        t.type = schema.TensorType.INT8
        t.buffer = 0
        t.quantization = shared_q
        extra.append(t)
    sg.tensors = list(sg.tensors) + extra
    return _write(path, model, packed)


def shared_metadata(path: Path) -> Path:
    """10,000 metadata entries, one table pointing at a 1 MiB buffer (~1 MB file; 10 GB of
    metadata when each entry copies its buffer)."""
    model, packed = _load()
    big = _add_buffer(model, np.zeros(1 << 20, np.uint8))
    entry = schema.MetadataT()
    entry.name = "bomb"
    entry.buffer = big
    model.metadata = list(model.metadata or []) + [Shared(entry)] * 10_000
    return _write(path, model, packed)


def shared_operator(path: Path) -> Path:
    """100,000 operator entries, one ADD table reading tensor 0 50,000 times (~0.6 MB file;
    5 billion index checks)."""
    model, packed = _load()
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, OP.ADD, 2)
    op.inputs = np.zeros(50_000, np.int32)
    op.outputs = np.array([0], np.int32)
    sg = model.subgraphs[0]
    sg.operators = list(sg.operators) + [Shared(op)] * 100_000
    return _write(path, model, packed)


def shared_subgraph(path: Path) -> Path:
    """100,000 subgraph entries, all the fixture's main graph (~0.5 MB file; 17 million
    tensors and 9 million operators to decode)."""
    model, packed = _load()
    main = model.subgraphs[0]
    model.subgraphs = [main] + [Shared(main)] * 100_000
    return _write(path, model, packed)


def shared_signature(path: Path) -> Path:
    """50,000 signature entries, one table with 20,000 inputs that are one tensor map
    (~0.3 MB file; a billion name decodes)."""
    model, packed = _load()
    tensor_map = schema.TensorMapT()
    tensor_map.name = "x" * 64
    tensor_map.tensorIndex = 0
    sig = schema.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    sig.inputs = [Shared(tensor_map)] * 20_000
    sig.outputs = []
    model.signatureDefs = [Shared(sig)] * 50_000
    return _write(path, model, packed)


# ------------------------------------------------------------------------------------------------
# Zip bomb
# ------------------------------------------------------------------------------------------------


def zip_bomb(path: Path) -> Path:
    """The fixture's packed files plus 900 members of 1.2 MB of zeros, deflated to ~1.2 KB each:
    each member is under the file's size (~1.3 MB), together they are 1 GB."""
    model, packed = _load()
    out = io.BytesIO()
    zeros = bytes(1_200_000)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, content in packed.items():
            z.writestr(name, content)
        for i in range(900):
            z.writestr(f"vocab{i}.txt", zeros)
    return _write(path, model, packed, archive=out.getvalue())


# ------------------------------------------------------------------------------------------------
# Shape bombs: an op at the end of the main graph (its output a graph output) whose constant
# inputs make a result far larger than what it declares (``declared=None``: the true shape).
# ------------------------------------------------------------------------------------------------


def _bomb(path: Path, build: Callable, declared) -> Path:
    model, packed = _load()
    build(model, declared)
    return _write(path, model, packed)


def _add_broadcast(model, declared, n=32768):
    a = _add_tensor(model, "bomb_a", [1, n], F32, np.ones((1, n), np.float32))
    b = _add_tensor(model, "bomb_b", [n, 1], F32, np.ones((n, 1), np.float32))
    out = _add_tensor(model, "bomb_out", declared or [n, n], F32)
    options = schema.AddOptionsT()
    _add_op(model, OP.ADD, [a, b], [out], OPT.AddOptions, options)


def _gather(model, declared, n=32768, depth=8192):
    params = _add_tensor(model, "bomb_params", [1, depth], F32, np.ones((1, depth), np.float32))
    indices = _add_tensor(model, "bomb_indices", [n], I32, np.zeros(n, np.int32))
    out = _add_tensor(model, "bomb_out", declared or [n, depth], F32)
    options = schema.GatherOptionsT()
    options.axis = 0
    _add_op(model, OP.GATHER, [params, indices], [out], OPT.GatherOptions, options)


def _concatenation(model, declared, copies=4096, n=65536):
    part = _add_tensor(model, "bomb_part", [1, n], F32, np.ones((1, n), np.float32))
    out = _add_tensor(model, "bomb_out", declared or [copies, n], F32)
    options = schema.ConcatenationOptionsT()
    options.axis = 0
    _add_op(model, OP.CONCATENATION, [part] * copies, [out], OPT.ConcatenationOptions, options)


def _batch_matmul(model, declared, n=16384):
    lhs = _add_tensor(model, "bomb_lhs", [1, n, 1], F32, np.ones((1, n, 1), np.float32))
    rhs = _add_tensor(model, "bomb_rhs", [1, 1, n], F32, np.ones((1, 1, n), np.float32))
    out = _add_tensor(model, "bomb_out", declared or [1, n, n], F32)
    options = schema.BatchMatMulOptionsT()
    _add_op(model, OP.BATCH_MATMUL, [lhs, rhs], [out], OPT.BatchMatMulOptions, options)


def _fully_connected(model, declared, n=16384):
    x = _add_tensor(model, "bomb_x", [n, 1], F32, np.ones((n, 1), np.float32))
    w = _add_tensor(model, "bomb_w", [n, 1], F32, np.ones((n, 1), np.float32))
    out = _add_tensor(model, "bomb_out", declared or [n, n], F32)
    options = schema.FullyConnectedOptionsT()
    _add_op(model, OP.FULLY_CONNECTED, [x, w, -1], [out], OPT.FullyConnectedOptions, options)


def _pad(model, declared, n=16384):
    x = _add_tensor(model, "bomb_x", [1, 1], F32, np.ones((1, 1), np.float32))
    paddings = _add_tensor(model, "bomb_paddings", [2, 2], I32,
                           np.array([[0, n - 1], [0, n - 1]], np.int32))
    out = _add_tensor(model, "bomb_out", declared or [n, n], F32)
    _add_op(model, OP.PAD, [x, paddings], [out], OPT.PadOptions, schema.PadOptionsT())


def _tile(model, declared, n=16384):
    """TILE, which the NumPy interpreter does not run and LiteRT does: [1,1] x [n,n] multiples."""
    x = _add_tensor(model, "bomb_x", [1, 1], F32, np.ones((1, 1), np.float32))
    multiples = _add_tensor(model, "bomb_multiples", [2], I32, np.array([n, n], np.int32))
    out = _add_tensor(model, "bomb_out", declared or [n, n], F32)
    _add_op(model, OP.TILE, [x, multiples], [out], OPT.TileOptions, schema.TileOptionsT())


def _add_graph_input(model, declared):
    """A graph input declared [2^31-1, 2^31-1] float32 feeding an ADD."""
    big = [2**31 - 1, 2**31 - 1]
    x = _add_tensor(model, "bomb_input", big, F32)
    one = _add_tensor(model, "bomb_one", [1, 1], F32, np.ones((1, 1), np.float32))
    out = _add_tensor(model, "bomb_out", big, F32)
    sg = model.subgraphs[0]
    sg.inputs = np.array(list(sg.inputs) + [x], np.int32)
    _add_op(model, OP.ADD, [x, one], [out], OPT.AddOptions, schema.AddOptionsT())


def _huge_output(model, declared):
    """A constant ADD declaring a [65536, 65536] float32 output (16 GiB) from [1,1] inputs."""
    a = _add_tensor(model, "bomb_a", [1, 1], F32, np.ones((1, 1), np.float32))
    out = _add_tensor(model, "bomb_out", [65536, 65536], F32)
    _add_op(model, OP.ADD, [a, a], [out], OPT.AddOptions, schema.AddOptionsT())


# ------------------------------------------------------------------------------------------------
# Quantization LiteRT cannot survive
# ------------------------------------------------------------------------------------------------


def _activation_tensors(model):
    """Indices of the main graph's int8 activations (no buffer data) with per-tensor scales."""
    sg = model.subgraphs[0]
    out = []
    for i, t in enumerate(sg.tensors):
        data = model.buffers[t.buffer].data
        q = t.quantization
        if t.type == schema.TensorType.INT8 and (data is None or len(data) == 0) and q is not None \
                and q.scale is not None and len(q.scale) == 1:
            out.append(i)
    return out


def _scales(path: Path, value: float) -> Path:
    model, packed = _load()
    for i in _activation_tensors(model):
        model.subgraphs[0].tensors[i].quantization.scale = np.array([value], np.float32)
    return _write(path, model, packed)


def per_channel_activation(path: Path) -> Path:
    """Every int8 activation quantized per channel along its last dimension."""
    model, packed = _load()
    sg = model.subgraphs[0]
    for i in _activation_tensors(model):
        t = sg.tensors[i]
        channels = int(t.shape[-1]) if len(t.shape) else 1
        if channels < 2:
            continue
        q = t.quantization
        q.scale = np.full(channels, q.scale[0], np.float32)
        q.zeroPoint = np.full(channels, q.zeroPoint[0], np.int64)
        q.quantizedDimension = len(t.shape) - 1
    return _write(path, model, packed)


# ------------------------------------------------------------------------------------------------
# Names with newlines
# ------------------------------------------------------------------------------------------------

INJECTED = "x\nTraceback (most recent call last):\n  injected line"


def newline_read_before_write(path: Path) -> Path:
    """Every tensor name holds newlines; operator 0 reads the graph output, which no earlier
    operator wrote (an error message that names the tensor)."""
    model, packed = _load()
    sg = model.subgraphs[0]
    for t in sg.tensors:
        t.name = INJECTED
    sg.operators[0].inputs = np.array([int(sg.outputs[0])] + list(sg.operators[0].inputs[1:]), np.int32)
    return _write(path, model, packed)


def newline_custom_op(path: Path) -> Path:
    """Operator 0 becomes a custom op whose code holds newlines."""
    model, packed = _load()
    oc = schema.OperatorCodeT()
    oc.builtinCode = OP.CUSTOM
    oc.deprecatedBuiltinCode = OP.CUSTOM
    oc.customCode = INJECTED
    oc.version = 1
    model.operatorCodes.append(oc)
    model.subgraphs[0].operators[0].opcodeIndex = len(model.operatorCodes) - 1
    return _write(path, model, packed)


def newline_wrong_shape(path: Path) -> Path:
    """Newline names on a shape bomb's tensors: the shape error names them."""
    model, packed = _load()
    _add_broadcast(model, [1, 1])
    for t in model.subgraphs[0].tensors[-3:]:
        t.name = INJECTED
    return _write(path, model, packed)


def newline_labels(path: Path) -> Path:
    """A packed labels.txt whose labels hold carriage returns and form feeds."""
    model, packed = _load()
    packed = dict(packed)
    packed["labels.txt"] = b"neg\rTraceback\x0cinjected\nneutral\x1b[31m\npositive\x85x\n"
    return _write(path, model, packed)


# ------------------------------------------------------------------------------------------------
# The catalogue
# ------------------------------------------------------------------------------------------------

_LOADER = ALL_COMMANDS         # the loader must refuse it: every command does
_CATALOGUE: list[tuple[str, str, Callable[[Path], Path], frozenset]] = [
    ("shared_tensor", "shared tables", shared_tensor, _LOADER),
    ("shared_quantization", "shared tables", shared_quantization, _LOADER),
    ("shared_metadata", "shared tables", shared_metadata, _LOADER),
    ("shared_operator", "shared tables", shared_operator, _LOADER),
    ("shared_subgraph", "shared tables", shared_subgraph, _LOADER),
    ("shared_signature", "shared tables", shared_signature, _LOADER),
    ("zip_bomb", "zip bomb", zip_bomb, frozenset()),
    ("add_broadcast_declares_1x1", "broadcast bomb", lambda p: _bomb(p, _add_broadcast, [1, 1]), EXECUTING),
    ("add_broadcast_1gib", "broadcast bomb",
     lambda p: _bomb(p, lambda m, d: _add_broadcast(m, d, n=16384), None), EXECUTING),
    ("gather_declares_1x1", "shape bomb", lambda p: _bomb(p, _gather, [1, 1]), EXECUTING),
    ("gather_1gib", "shape bomb", lambda p: _bomb(p, _gather, None), EXECUTING),
    ("concatenation_declares_1x1", "shape bomb", lambda p: _bomb(p, _concatenation, [1, 1]), EXECUTING),
    ("batch_matmul_declares_1x1x1", "shape bomb", lambda p: _bomb(p, _batch_matmul, [1, 1, 1]), EXECUTING),
    ("batch_matmul_1gib", "shape bomb", lambda p: _bomb(p, _batch_matmul, None), EXECUTING),
    ("fully_connected_declares_1x1", "shape bomb", lambda p: _bomb(p, _fully_connected, [1, 1]), EXECUTING),
    ("pad_declares_1x1", "shape bomb", lambda p: _bomb(p, _pad, [1, 1]), EXECUTING),
    ("tile_declares_1x1", "shape bomb", lambda p: _bomb(p, _tile, [1, 1]), EXECUTING),
    ("huge_graph_input", "huge declared shape", lambda p: _bomb(p, _add_graph_input, None), EXECUTING),
    ("huge_declared_output", "huge declared shape", lambda p: _bomb(p, _huge_output, None), EXECUTING),
    ("scale_zero", "crashing scales", lambda p: _scales(p, 0.0), EXECUTING),
    ("scale_negative", "crashing scales", lambda p: _scales(p, -0.05), EXECUTING),
    ("scale_tiny", "crashing scales", lambda p: _scales(p, 1e-30), EXECUTING),
    ("per_channel_activation", "crashing scales", per_channel_activation, EXECUTING),
    ("newline_read_before_write", "names with newlines", newline_read_before_write, EXECUTING),
    ("newline_custom_op", "names with newlines", newline_custom_op, EXECUTING),
    ("newline_wrong_shape", "names with newlines", newline_wrong_shape, EXECUTING),
    ("newline_labels", "names with newlines", newline_labels, frozenset()),
]

NAMES = [name for name, *_ in _CATALOGUE]


def build(name: str, directory: Path) -> HostileFile:
    for n, kind, make, must_refuse in _CATALOGUE:
        if n == name:
            path = make(Path(directory) / f"{name}.tflite")
            return HostileFile(name=name, kind=kind, path=path, must_refuse=must_refuse)
    raise KeyError(name)


def build_all(directory: Path) -> dict[str, HostileFile]:
    return {name: build(name, directory) for name in NAMES}


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile_models")
    target.mkdir(parents=True, exist_ok=True)
    for f in build_all(target).values():
        print(f"{f.path}  {f.path.stat().st_size:>10,}  {f.kind}")
