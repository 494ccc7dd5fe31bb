"""Build small .tflite models (one op, or a short chain) directly, without TensorFlow.

The models are written with the FlatBuffer object API that ships with LiteRT
(``ai_edge_litert.schema_py_generated``), so the tests need neither TensorFlow nor the converter:

    x = tensor("x", (2, 8), "int8", scale=0.05, zero_point=-3)
    w = tensor("w", (4, 8), "int8", scale=[0.01] * 4, zero_point=[0] * 4, data=weights)
    b = tensor("b", (4,), "int32", scale=[0.0005] * 4, zero_point=[0] * 4, data=bias)
    y = tensor("y", (2, 4), "int8", scale=0.1, zero_point=5)
    blob = single_op_model("FULLY_CONNECTED", [x, w, b], [y], FullyConnectedOptionsT())

Tensors with ``data`` become constants with their own buffer; the others that no op produces become
the subgraph's inputs (in order of first use); ``None`` in an op's inputs is an absent optional
input (index -1).  The op version defaults to the one the TFLite converter would emit for those
dtypes and options (``converter_version``, a transcription of the relevant cases of
``tflite/converter/tools/versioning/op_version.cc``): LiteRT's op resolvers only accept the
versions they register, and some kernels read the version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import flatbuffers
import numpy as np

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.schema_py_generated import (  # noqa: F401  (re-exported for the tests)
    ActivationFunctionType,
    AddOptionsT,
    BatchMatMulOptionsT,
    BufferT,
    BuiltinOperator,
    BuiltinOptions,
    CastOptionsT,
    ConcatenationOptionsT,
    DequantizeOptionsT,
    FullyConnectedOptionsT,
    GatherOptionsT,
    ModelT,
    MulOptionsT,
    OperatorCodeT,
    OperatorT,
    PadOptionsT,
    QuantizationParametersT,
    QuantizeOptionsT,
    ReducerOptionsT,
    ReshapeOptionsT,
    SoftmaxOptionsT,
    SquaredDifferenceOptionsT,
    StridedSliceOptionsT,
    SubGraphT,
    SubOptionsT,
    TensorT,
    TensorType,
    TransposeOptionsT,
)

# numpy dtype name <-> TensorType
TFLITE_TYPES: dict[str, int] = {
    "float32": TensorType.FLOAT32,
    "float16": TensorType.FLOAT16,
    "float64": TensorType.FLOAT64,
    "int8": TensorType.INT8,
    "uint8": TensorType.UINT8,
    "int16": TensorType.INT16,
    "uint16": TensorType.UINT16,
    "int32": TensorType.INT32,
    "uint32": TensorType.UINT32,
    "int64": TensorType.INT64,
    "bool": TensorType.BOOL,
}
NP_DTYPES: dict[int, np.dtype] = {v: np.dtype(k) for k, v in TFLITE_TYPES.items()}


def _as_list(value, n: int | None = None) -> list | None:
    if value is None:
        return None
    if np.ndim(value) == 0:
        return [value]
    return list(np.asarray(value).reshape(-1))


@dataclass(eq=False)
class TensorSpec:
    """One tensor of a model under construction (identity, not name, makes two specs the same)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: list[float] | None = None
    zero_point: list[int] | None = None
    quantized_dimension: int = 0
    data: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    @property
    def type(self) -> int:
        return TFLITE_TYPES[self.dtype.name]

    def describe(self) -> str:
        q = ""
        if self.scale is not None:
            s = self.scale if len(self.scale) <= 3 else f"{self.scale[:3]}...({len(self.scale)})"
            z = self.zero_point if len(self.zero_point) <= 3 else f"{self.zero_point[:3]}..."
            q = f" scale={s} zp={z}" + (f" qdim={self.quantized_dimension}" if len(self.scale) > 1 else "")
        c = " const" if self.is_const else ""
        return f"{self.name}{list(self.shape)} {self.dtype.name}{q}{c}"


def tensor(name: str, shape: Sequence[int], dtype, scale=None, zero_point=None,
           quantized_dimension: int = 0, data=None) -> TensorSpec:
    """A tensor spec.  ``scale``/``zero_point``: a number (per-tensor) or a list (per-axis along
    ``quantized_dimension``); a zero point without scale is an error, a scale without zero point
    gets zero points 0.  ``data`` (cast to ``dtype``) makes it a constant."""
    dt = np.dtype(dtype)
    if dt.name not in TFLITE_TYPES:
        raise ValueError(f"unsupported dtype {dt}")
    shape = tuple(int(d) for d in shape)
    scales = _as_list(scale)
    zps = _as_list(zero_point)
    if scales is not None:
        scales = [float(s) for s in scales]
        if zps is None:
            zps = [0] * len(scales)
        zps = [int(z) for z in zps]
        if len(zps) == 1 and len(scales) > 1:
            zps = zps * len(scales)
        if len(zps) != len(scales):
            raise ValueError(f"{name}: {len(scales)} scales but {len(zps)} zero points")
    elif zps is not None:
        raise ValueError(f"{name}: zero_point without scale")
    arr = None
    if data is not None:
        arr = np.asarray(data)
        if arr.dtype != dt:
            arr = arr.astype(dt)
        if arr.shape != shape:
            arr = arr.reshape(shape)
    return TensorSpec(name, shape, dt, scales, zps, int(quantized_dimension), arr)


@dataclass(eq=False)
class OpSpec:
    opcode: int
    inputs: list[TensorSpec | None]
    outputs: list[TensorSpec]
    options: object | None = None
    version: int | None = None
    intermediates: list[TensorSpec] = field(default_factory=list)


def _opcode(opcode) -> int:
    if isinstance(opcode, str):
        return int(getattr(BuiltinOperator, opcode.upper()))
    return int(opcode)


def op(opcode, inputs: Sequence[TensorSpec | None], outputs: Sequence[TensorSpec],
       options=None, version: int | None = None) -> OpSpec:
    """One operator: ``opcode`` a BuiltinOperator name ("FULLY_CONNECTED") or number; ``options``
    a ``*OptionsT`` object or None; ``version`` None = what the converter would emit."""
    return OpSpec(_opcode(opcode), list(inputs), list(outputs), options, version)


class _AlignedBufferT(BufferT):
    """A buffer whose data starts on a 16-byte boundary, as the converter writes them (TFLite maps
    constant data in place, so int32/int64/float data should be naturally aligned)."""

    def Pack(self, builder):
        data = None
        if self.data is not None:
            raw = bytes(self.data)
            builder.StartVector(1, len(raw), 16)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _options_type(options) -> int:
    name = type(options).__name__
    if not name.endswith("T"):
        raise TypeError(f"options must be a *OptionsT object, got {name}")
    return int(getattr(BuiltinOptions, name[:-1]))


def model(ops: Sequence[OpSpec], inputs: Sequence[TensorSpec] | None = None,
          outputs: Sequence[TensorSpec] | None = None, description: str = "npmobilebert test") -> bytes:
    """Serialize a graph of ``ops`` (in execution order) to .tflite bytes.

    Graph inputs default to the non-constant tensors that no op produces, in order of first use;
    graph outputs default to the tensors produced and never consumed, in order of production."""
    order: list[TensorSpec] = []
    index: dict[int, int] = {}

    def add(t: TensorSpec) -> int:
        if id(t) not in index:
            index[id(t)] = len(order)
            order.append(t)
        return index[id(t)]

    produced: list[TensorSpec] = []
    consumed: set[int] = set()
    for o in ops:
        for t in o.inputs:
            if t is not None:
                add(t)
                consumed.add(id(t))
        for t in o.outputs:
            add(t)
            produced.append(t)
    produced_ids = {id(t) for t in produced}
    if inputs is None:
        inputs = [t for t in order if not t.is_const and id(t) not in produced_ids]
    if outputs is None:
        outputs = [t for t in produced if id(t) not in consumed]
    for t in list(inputs) + list(outputs):
        add(t)

    buffers = [_AlignedBufferT()]  # buffer 0: the empty sentinel
    tensors = []
    for t in order:
        tt = TensorT()
        tt.name = t.name
        tt.shape = list(t.shape)
        tt.type = t.type
        tt.buffer = 0
        if t.is_const:
            b = _AlignedBufferT()
            b.data = np.ascontiguousarray(t.data).astype(t.dtype.newbyteorder("<"), copy=False).tobytes()
            tt.buffer = len(buffers)
            buffers.append(b)
        if t.scale is not None:
            q = QuantizationParametersT()
            q.scale = list(t.scale)
            q.zeroPoint = list(t.zero_point)
            q.quantizedDimension = t.quantized_dimension
            tt.quantization = q
        tensors.append(tt)

    codes: list[tuple[int, int]] = []
    operators = []
    for o in ops:
        version = o.version if o.version is not None else converter_version(o)
        key = (o.opcode, version)
        if key not in codes:
            codes.append(key)
        ot = OperatorT()
        ot.opcodeIndex = codes.index(key)
        ot.inputs = [-1 if t is None else index[id(t)] for t in o.inputs]
        ot.outputs = [index[id(t)] for t in o.outputs]
        if o.intermediates:
            ot.intermediates = [index[id(t)] for t in o.intermediates]
        if o.options is not None:
            ot.builtinOptionsType = _options_type(o.options)
            ot.builtinOptions = o.options
        operators.append(ot)

    sg = SubGraphT()
    sg.tensors = tensors
    sg.inputs = [index[id(t)] for t in inputs]
    sg.outputs = [index[id(t)] for t in outputs]
    sg.operators = operators
    sg.name = "main"

    m = ModelT()
    m.version = 3
    m.description = description
    m.buffers = buffers
    m.subgraphs = [sg]
    m.operatorCodes = []
    for code, version in codes:
        oc = OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
        oc.version = version
        m.operatorCodes.append(oc)

    builder = flatbuffers.Builder(1024)
    packed = m.Pack(builder)
    builder.Finish(packed, file_identifier=b"TFL3")
    return bytes(builder.Output())


def single_op_model(opcode, inputs: Sequence[TensorSpec | None], outputs: Sequence[TensorSpec],
                    options=None, version: int | None = None) -> bytes:
    """A model of one operator; see :func:`model`."""
    return model([op(opcode, inputs, outputs, options, version)])


# --------------------------------------------------------------------------------------------------
# Op versions, as tflite/converter/tools/versioning/op_version.cc assigns them (the cases we use).
#
# Checked against TF 2.21's converter: int8 and dynamic-range models carry exactly these versions
# (e.g. FULLY_CONNECTED 4 int8, 12 hybrid per-channel, 5 hybrid per-tensor with keep_num_dims;
# BATCH_MATMUL 4 hybrid).  Its 16x8 post-training quantizer, however, writes the int8 versions for
# int16 ops (ADD/SUB/MUL/SOFTMAX/TANH/LOGISTIC/BATCH_MATMUL 2, FULLY_CONNECTED 4 even with
# quantized_bias_type INT64).  LiteRT's kernels do not read the version, the resolvers only check
# that it is registered, so either numbering runs the same arithmetic.

def converter_version(o: OpSpec) -> int:
    B = BuiltinOperator
    ins = [t for t in o.inputs]
    t0 = ins[0].dtype.name if ins and ins[0] is not None else None
    t1 = ins[1].dtype.name if len(ins) > 1 and ins[1] is not None else None
    out0 = o.outputs[0].dtype.name if o.outputs else None
    opts = o.options
    code = o.opcode
    rank0 = len(ins[0].shape) if ins and ins[0] is not None else 0

    if code == B.FULLY_CONNECTED:
        w = ins[1]
        per_channel = (w.scale is not None and len(w.shape) > 0 and len(w.scale) == w.shape[0])
        if t0 == "float32" and t1 == "int8" and out0 == "float32" and per_channel:
            return 12
        if t0 == "int16" and t1 == "int8" and out0 == "int16" and opts is not None \
                and getattr(opts, "quantizedBiasType", 0):
            return 11
        if t0 == "int16" and t1 == "int16" and out0 == "int16":
            return 7
        if len(ins) == 2:
            return 6
        if opts is not None and opts.keepNumDims:
            return 5
        if t0 == "int8" and t1 == "int8" and out0 == "int8":
            return 4
        if t0 == "float32" and t1 == "int8" and out0 == "float32":
            return 9 if (opts is not None and opts.asymmetricQuantizeInputs) else 3
        return 1
    if code == B.BATCH_MATMUL:
        if t0 == "int16":
            return 3
        if t0 == "int8":
            return 2
        if t0 == "float32" and t1 == "int8" and out0 == "float32" and opts is not None \
                and opts.asymmetricQuantizeInputs:
            return 4
        return 1
    if code == B.SOFTMAX:
        return {"float16": 4, "int16": 3, "int8": 2}.get(t0, 1)
    if code == B.ADD:
        if t0 == "float16":
            return 6
        if t0 == "int16" and ins[0].scale is None:
            return 5
        if t0 == "int64":
            return 4
        if t0 == "int16" and out0 == "int16" and opts is not None and not opts.potScaleInt16:
            return 3
        return 2 if t0 == "int8" else 1
    if code == B.SUB:
        if t0 == "int16" and out0 == "int16" and opts is not None and not opts.potScaleInt16:
            return 5
        if t0 == "int64":
            return 4
        if ins[0].shape != ins[1].shape and max(len(ins[0].shape), len(ins[1].shape)) > 4:
            return 3
        return 2 if t0 == "int8" else 1
    if code == B.MUL:
        if t0 == "float16":
            return 8
        input_quantized = ins[0].scale is not None or ins[1].scale is not None
        if (t0 == "int16" and not input_quantized) or t0 == "uint32":
            return 7
        if t0 == "int64":
            return 5
        if t0 == "int16":
            return 4
        if all(t.scale is not None for t in (ins[0], ins[1], o.outputs[0])):
            if ins[0].scale[0] * ins[1].scale[0] / o.outputs[0].scale[0] >= 1.0:
                return 3
        return 2 if t0 == "int8" else 1
    if code == B.TRANSPOSE:
        if t0 == "float16":
            return 9
        if rank0 > 6:
            return 8
        if rank0 > 5:
            return 6
        if t0 == "int16":
            return 5
        if rank0 > 4:
            return 4
        if t0 == "bool":
            return 3
        return 2 if t0 == "int8" else 1
    if code == B.STRIDED_SLICE:
        if opts is not None and getattr(opts, "offset", False):
            return 8
        if t0 == "uint32":
            return 7
        if opts is not None and (opts.ellipsisMask or opts.newAxisMask):
            return 6
        if rank0 > 4:
            return 4
        if t0 == "bool":
            return 3
        return 2 if t0 == "int8" else 1
    if code == B.GATHER:
        if t1 == "int16":
            return 6
        if opts is not None and opts.batchDims != 0:
            return 5
        if t0 == "int16":
            return 4
        if t0 == "bool":
            return 3
        return 2 if t0 == "int8" else 1
    if code in (B.PAD, B.PADV2):
        if t0 == "bool":
            return 5
        if rank0 > 4:
            return 4
        if t0 == "int16":
            return 3
        return 2 if t0 == "int8" else 1
    if code == B.CONCATENATION:
        if t0 == "float16":
            return 6
        if t0 == "uint32":
            return 4
        if t0 == "int16":
            return 3
        return 2 if t0 == "int8" else 1
    if code == B.CAST:
        types = (t0, out0)
        if "float64" in types or "float16" in types:
            return 5
        if "uint16" in types:
            return 4
        if "int8" in types:
            return 3
        if "uint32" in types:
            return 2
        return 1
    if code == B.QUANTIZE:
        out = o.outputs[0]
        if out.scale is not None and len(out.scale) > 1:
            return 3
        return 2 if out0 == "int16" else 1
    if code == B.DEQUANTIZE:
        if t0 in ("int16", "float16"):
            return 3
        if t0 == "int8":
            if ins[0].scale is not None and len(ins[0].scale) > 1:
                return 5
            return 2
        return 1
    if code in (B.TANH, B.LOGISTIC):
        if t0 == "int16" and out0 == "int16":
            return 3
        return 2 if t0 == "int8" else 1
    if code in (B.MEAN, B.RSQRT, B.REDUCE_MAX, B.REDUCE_MIN, B.RELU6, B.MIRROR_PAD):
        return {"int16": 3, "int8": 2}.get(t0, 1)
    if code in (B.SUM, B.SQUARED_DIFFERENCE, B.LOG_SOFTMAX):
        return 2 if t0 == "int8" else 1
    return 1


# --------------------------------------------------------------------------------------------------
# Comparing float results

def max_ulp_diff(a, b) -> int:
    """The largest distance between ``a`` and ``b`` in units in the last place (float16/32/64).

    0 means bit-identical (except +0 vs -0, which are 0 ULP apart); NaN against anything but a NaN,
    or infinities of different sign, count as the largest possible distance.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(f"max_ulp_diff: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
    if a.size == 0:
        return 0
    ints = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    bits = a.dtype.itemsize * 8

    def ordered(x):
        # Map the float bit patterns onto a monotonic integer line (in Python ints: no overflow).
        i = x.view(ints).astype(np.int64 if bits < 64 else object)
        sign = 1 << (bits - 1)
        return np.where(i < 0, -(i + sign), i)

    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if np.any(nan_a != nan_b):
        return 1 << (bits - 1)
    keep = ~nan_a
    d = np.abs(ordered(a[keep]) - ordered(b[keep]))
    return int(d.max()) if d.size else 0
