"""Read a TFLite FlatBuffer into plain, immutable Python data.

The reader is a thin, validating layer over the flatc-generated accessors of
the ``tflite`` package: no TensorFlow, no arithmetic, no copies of constant
data.  The file is read into memory once (or memory-mapped when it is large)
and every constant tensor's ``data`` is a read-only ``np.frombuffer`` view of
those bytes, reshaped to the tensor's shape.

Everything that can be wrong with a file -- not a TFLite model, truncated,
garbage offsets, indices out of range, buffer sizes that do not match shapes --
is reported as a one-line :class:`~npmobilebert.errors.ModelFormatError`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib
import inspect
import io
import math
import os
import re
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from tflite.ActivationFunctionType import ActivationFunctionType as _ActivationFunctionType
from tflite.BuiltinOperator import BuiltinOperator as _BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions as _BuiltinOptions
from tflite.Model import Model as _FbModel
from tflite.TensorType import TensorType as _TensorType

from .errors import ModelFormatError, TensorNotFoundError

try:  # Present in recent schemas only (StableHLO ops); absent in old tflite packages.
    from tflite.BuiltinOptions2 import BuiltinOptions2 as _BuiltinOptions2
except ImportError:  # pragma: no cover - depends on the installed tflite version
    _BuiltinOptions2 = None

__all__ = [
    "Quantization",
    "Tensor",
    "Operator",
    "Subgraph",
    "SignatureDef",
    "Model",
    "load_model",
    "FILE_IDENTIFIER",
]

#: The FlatBuffer file identifier of TFLite models (bytes 4..8 of the file).
FILE_IDENTIFIER = b"TFL3"

# FlatBuffers let many vector entries point at one table, so a small file can describe far more
# than it holds (200,000 tensor entries sharing one tensor with a 16 KiB name: 3.3 GB of names
# from an 816 KB file). The reader charges everything it decodes -- a fixed cost per entry (the
# Python objects it builds) plus the bytes of its names, vectors and copied data -- against a
# budget proportional to the file's size, and refuses the file once the budget is spent: work
# and memory stay bounded by the file's size. An honest file stores each entry once, in more
# bytes than the fixed charge, so it spends at most a few times its size.
_EXPANSION_PER_BYTE = 8
_EXPANSION_SLACK = 1 << 20
_ENTRY_CHARGE = 64

# What the flatbuffers accessors raise when offsets point at garbage: struct
# errors and IndexError for reads past the end, TypeError/OverflowError from
# flatbuffers' own range checks of offsets, ValueError from np.frombuffer with
# a count beyond the buffer, UnicodeDecodeError from strings, AttributeError
# when a union points to a table of the wrong kind, MemoryError/RecursionError
# for absurd sizes.  All of them mean "corrupt file" here.
_DECODE_ERRORS = (
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    OverflowError,
    UnicodeDecodeError,
    AttributeError,
    MemoryError,
    RecursionError,
)


# --------------------------------------------------------------------------
# Enum tables from the tflite package
# --------------------------------------------------------------------------


def _enum_names(enum_cls: type) -> dict[int, str]:
    """Reverse a flatc enum class (``NAME = value`` attributes) into value -> name."""
    names: dict[int, str] = {}
    for name, value in vars(enum_cls).items():
        if name.startswith("_") or not isinstance(value, int):
            continue
        names.setdefault(value, name)  # keep the first name for aliased values
    return names


_OPCODE_NAMES = _enum_names(_BuiltinOperator)
_ACTIVATION_NAMES = _enum_names(_ActivationFunctionType)
_TYPE_NAMES = _enum_names(_TensorType)
_OPTIONS_NAMES = _enum_names(_BuiltinOptions)
_OPTIONS2_NAMES = _enum_names(_BuiltinOptions2) if _BuiltinOptions2 is not None else {}

# NumPy dtype of each TensorType, explicitly little-endian: FlatBuffers (and
# TFLite buffers) are little-endian whatever the host is.
_DTYPES: dict[str, np.dtype] = {
    "FLOAT32": np.dtype("<f4"),
    "FLOAT16": np.dtype("<f2"),
    "INT32": np.dtype("<i4"),
    "UINT8": np.dtype("u1"),
    "INT64": np.dtype("<i8"),
    "STRING": np.dtype(np.bytes_),
    "BOOL": np.dtype(np.bool_),
    "INT16": np.dtype("<i2"),
    "COMPLEX64": np.dtype("<c8"),
    "INT8": np.dtype("i1"),
    "FLOAT64": np.dtype("<f8"),
    "COMPLEX128": np.dtype("<c16"),
    "UINT64": np.dtype("<u8"),
    "RESOURCE": np.dtype(object),
    "VARIANT": np.dtype(object),
    "UINT32": np.dtype("<u4"),
    "UINT16": np.dtype("<u2"),
    # INT4 values are stored packed, two per byte; the unpacked element type is int8.
    "INT4": np.dtype("i1"),
    # NumPy has no bfloat16: expose the raw 16-bit patterns.
    "BFLOAT16": np.dtype("<u2"),
}

# Types whose buffer is not a plain array of `dtype` elements in `shape`
# (variable-length strings, packed nibbles, opaque handles): their `data` is
# the raw bytes as a flat uint8 view.
_RAW_TYPES = frozenset({"STRING", "INT4", "RESOURCE", "VARIANT"})

# QuantizationParameters.details_type (the QuantizationDetails union) -> what the details are.
_QUANTIZATION_DETAILS = {1: "custom", 2: "blockwise", 3: "multi-axis"}


def _quantization_details(q: _Fields | None) -> str | None:
    """What QuantizationParameters.details (field 4 its union type, 5 its table) holds, if any."""
    kind = q.scalar(4, _U8) if q is not None else 0
    return _QUANTIZATION_DETAILS.get(kind, f"details type {kind}") if kind else None


# Builtin code of custom operators.
_CUSTOM_CODE = getattr(_BuiltinOperator, "CUSTOM", 32)


# --------------------------------------------------------------------------
# Public data classes
# --------------------------------------------------------------------------


def _readonly(array: np.ndarray) -> np.ndarray:
    """Mark `array` read-only (views of a bytearray would otherwise be writable)."""
    array.flags.writeable = False
    return array


# The classes holding arrays (directly or through tensors) use eq=False, i.e.
# identity equality and hashing: element-wise ndarray comparison has no single
# truth value.  Operator and SignatureDef compare by value.
@dataclass(frozen=True, eq=False)
class Quantization:
    """Affine quantization parameters: ``real = scale * (q - zero_point)``."""

    scales: np.ndarray  # float32 [n]; n == 1: per-tensor
    zero_points: np.ndarray  # int64 [n]
    quantized_dimension: int
    min: np.ndarray | None = None  # float32, as recorded by the converter (informative)
    max: np.ndarray | None = None

    @property
    def per_channel(self) -> bool:
        """True when there is one scale per slice along `quantized_dimension`."""
        return self.scales.size > 1

    @property
    def scale(self) -> float:
        """The scale of a per-tensor quantization (the first scale otherwise)."""
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        """The zero point of a per-tensor quantization (the first one otherwise)."""
        return int(self.zero_points[0])


@dataclass(frozen=True, eq=False)
class Tensor:
    """One tensor of a subgraph."""

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    dtype: np.dtype
    type_name: str  # 'INT8', 'FLOAT32', ...
    buffer_index: int
    # Constant data: a read-only, zero-copy view into the file bytes, reshaped
    # to `shape`; None for activations.  For STRING/INT4/RESOURCE/VARIANT and
    # sparse tensors it is the flat raw buffer (uint8, or `dtype` when sparse).
    data: np.ndarray | None = field(repr=False)
    quantization: Quantization | None
    is_variable: bool
    is_sparse: bool = False  # has SparsityParameters; `data` is then the packed values
    # The kind of QuantizationParameters.details when the file sets one ("blockwise",
    # "multi-axis", "custom"): quantization that scales/zero points alone do not describe.
    quantization_details: str | None = None

    @property
    def is_constant(self) -> bool:
        """True when the tensor's value is stored in the model."""
        return self.data is not None

    @property
    def size(self) -> int:
        """Number of elements (from `shape`)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the declared shape takes in `dtype` (a Python int: never overflows)."""
        return self.size * self.dtype.itemsize


@dataclass(frozen=True)
class Operator:
    """One operator (node) of a subgraph."""

    index: int
    opcode: str  # builtin op name, e.g. 'FULLY_CONNECTED'; 'CUSTOM' for custom ops
    builtin_code: int
    version: int
    custom_code: str | None
    inputs: tuple[int, ...]  # tensor indices; -1 = optional input absent
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...]
    options: dict  # decoded builtin options, snake_case field name -> python value
    custom_options: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """What to call the op in messages and listings: the builtin name, or a custom op's
        ``custom_code`` (file data, so escaped when it is not plain printable text), as LiteRT's
        op details name custom ops."""
        if self.opcode != "CUSTOM" or not self.custom_code:
            return self.opcode
        code = self.custom_code
        return code if code.isprintable() and code.strip() == code else repr(code)


@dataclass(frozen=True, eq=False)
class Subgraph:
    """A graph of tensors and operators; subgraph 0 is the main graph."""

    index: int
    name: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class SignatureDef:
    """A named entry point: signature input/output names -> tensor indices."""

    key: str
    subgraph_index: int
    inputs: dict[str, int]
    outputs: dict[str, int]


@dataclass(frozen=True, eq=False)
class Model:
    """A parsed TFLite model."""

    path: str | None
    version: int
    description: str
    subgraphs: tuple[Subgraph, ...]
    signatures: tuple[SignatureDef, ...]
    metadata: dict[str, bytes]  # metadata name -> bytes of its buffer
    packed_files: dict[str, bytes]  # files of the ZIP archive appended by TFLite metadata
    file_size: int

    # -- convenience accessors for the main graph (subgraph 0) ---------------

    @property
    def main(self) -> Subgraph:
        """Subgraph 0, the graph that runs."""
        return self.subgraphs[0]

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return self.main.tensors

    @property
    def operators(self) -> tuple[Operator, ...]:
        return self.main.operators

    @property
    def inputs(self) -> tuple[int, ...]:
        return self.main.inputs

    @property
    def outputs(self) -> tuple[int, ...]:
        return self.main.outputs

    @functools.cached_property
    def _tensors_by_name(self) -> dict[str, Tensor]:
        by_name: dict[str, Tensor] = {}
        for tensor in self.tensors:
            by_name.setdefault(tensor.name, tensor)  # names may repeat: first wins
        return by_name

    def tensor(self, name_or_index: str | int) -> Tensor:
        """The tensor of the main graph with this name or index."""
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            index = int(name_or_index)
            if 0 <= index < len(self.tensors):
                return self.tensors[index]
            raise TensorNotFoundError(
                f"tensor index {index} is out of range: the main graph has {len(self.tensors)} tensors"
            )
        try:
            return self._tensors_by_name[name_or_index]
        except (KeyError, TypeError):
            raise TensorNotFoundError(f"the model has no tensor named {name_or_index!r}") from None

    def operator_histogram(self) -> collections.Counter:
        """Counter of (op name, version) over the operators of all subgraphs (custom ops by custom code)."""
        return collections.Counter(
            (op.name, op.version) for subgraph in self.subgraphs for op in subgraph.operators
        )


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_model(source: str | os.PathLike | bytes | bytearray | memoryview) -> Model:
    """Parse a TFLite model from a path or from its bytes.

    Raises :class:`ModelFormatError` for anything that is not a valid TFLite
    FlatBuffer.  ``OSError`` (missing file, permissions) is not caught.
    """
    path, buf = _read_source(source)
    return _ModelReader(buf, path).read()


def _read_source(source: Any) -> tuple[str | None, Any]:
    """Return (path or None, buffer) for a path or a bytes-like object."""
    if isinstance(source, (bytes, bytearray)):
        return None, source
    if isinstance(source, memoryview):
        if not source.contiguous:
            raise ModelFormatError("<memory>: the memoryview holding the model is not contiguous")
        return None, source.cast("B") if (source.format != "B" or source.ndim != 1) else source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return path, _read_file(path)
    raise TypeError(f"load_model() needs a path or bytes, not {type(source).__name__}")


def _read_file(path: str) -> bytes:
    """Read a regular file once, into memory.

    Not memory-mapped: a mapped file that is truncated while it is read (another process
    rewriting the model) kills the process with SIGBUS, which no Python handler can turn into
    an error; a copy cannot change under the reader. A non-regular file is refused before it
    is opened: opening a FIFO blocks until a writer comes, opening a device may act on it.
    """
    name = os.path.basename(path) or path
    refused = ModelFormatError(f"{name}: not a regular file, not a TFLite model")
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise refused
    # O_NONBLOCK: should the path become a FIFO between the stat and the open, the open
    # returns at once and the fstat below refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refused
        # the size when opened: a file that grows while it is read is not read for ever
        return f.read(st.st_size)


def _snake_case(name: str) -> str:
    """'FusedActivationFunction' -> 'fused_activation_function', 'DilationHFactor' -> 'dilation_h_factor'."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _decode_str(raw: bytes | None) -> str:
    """Decode a FlatBuffer string; names are UTF-8 by convention, but never fail on them."""
    if raw is None:
        return ""
    return raw.decode("utf-8", errors="replace")


_I32, _U32, _U16, _I8, _U8 = (struct.Struct(f) for f in ("<i", "<I", "<H", "<b", "<B"))


class _Fields:
    """One FlatBuffer table's fields, its vtable read once.

    The flatc-generated accessors re-read the vtable on every call (four Python calls per
    field before the value), which was most of the time spent opening a 2,000-tensor model;
    the hot tables (Tensor, QuantizationParameters, Operator's index vectors) are read
    through this instead. Field ``i`` sits in vtable slot 4 + 2 * i, as the generated code
    says (``Offset(4)`` for field 0): FlatBuffers never renumbers fields, schemas only append.
    Out-of-range reads raise struct.error / IndexError, which the reader reports as a corrupt
    file, as it does for the generated accessors.
    """

    __slots__ = ("buf", "pos", "offsets")

    def __init__(self, buf: Any, pos: int):
        self.buf, self.pos = buf, pos
        vtable = pos - _I32.unpack_from(buf, pos)[0]
        n = (_U16.unpack_from(buf, vtable)[0] - 4) // 2
        self.offsets = struct.unpack_from(f"<{n}H", buf, vtable + 4) if n > 0 else ()

    @classmethod
    def of(cls, table: Any) -> _Fields:
        """The fields of a flatc-generated table object."""
        return cls(table._tab.Bytes, table._tab.Pos)

    def _at(self, i: int) -> int:
        """The field's absolute position, 0 when absent."""
        o = self.offsets[i] if i < len(self.offsets) else 0
        return self.pos + o if o else 0

    def scalar(self, i: int, fmt: struct.Struct, default: int = 0) -> int:
        at = self._at(i)
        return fmt.unpack_from(self.buf, at)[0] if at else default

    def present(self, i: int) -> bool:
        return bool(self._at(i))

    def table(self, i: int) -> _Fields | None:
        at = self._at(i)
        return _Fields(self.buf, at + _U32.unpack_from(self.buf, at)[0]) if at else None

    def _vector(self, i: int, item_size: int) -> tuple[int, int] | None:
        """(start of the elements, count) of a vector field, None when absent."""
        at = self._at(i)
        if not at:
            return None
        start = at + _U32.unpack_from(self.buf, at)[0]
        n = _U32.unpack_from(self.buf, start)[0]
        if start + 4 + n * item_size > len(self.buf):   # a garbage length: refuse before reading
            raise struct.error(f"a vector of {n} entries at byte {start} runs past the end of the file")
        return start + 4, n

    def length(self, i: int, item_size: int) -> int:
        """The number of entries of a vector field (0 when absent), without reading them."""
        vec = self._vector(i, item_size)
        return 0 if vec is None else vec[1]

    def int32_vector(self, i: int) -> tuple[int, ...] | None:
        """An int32 vector as a tuple, None when absent."""
        vec = self._vector(i, 4)
        return None if vec is None else struct.unpack_from(f"<{vec[1]}i", self.buf, vec[0])

    def array(self, i: int, dtype: str) -> np.ndarray | None:
        """A numeric vector as a (read-only, zero-copy) array, None when absent."""
        dtype = np.dtype(dtype)
        vec = self._vector(i, dtype.itemsize)
        return None if vec is None else np.frombuffer(self.buf, dtype, count=vec[1], offset=vec[0])

    def string(self, i: int) -> str:
        vec = self._vector(i, 1)
        return "" if vec is None else _decode_str(bytes(self.buf[vec[0]: vec[0] + vec[1]]))

    def tables(self, i: int) -> list[_Fields]:
        """A vector of tables."""
        vec = self._vector(i, 4)
        if vec is None:
            return []
        start, n = vec
        return [_Fields(self.buf, p + _U32.unpack_from(self.buf, p)[0]) for p in range(start, start + 4 * n, 4)]


def _as_int_tuple(array: Any) -> tuple[int, ...]:
    """An int32 vector from an ``XAsNumpy()`` accessor (which returns 0 when absent) as a tuple."""
    if isinstance(array, np.ndarray):
        return tuple(int(v) for v in array.tolist())
    return ()


class _ModelReader:
    """Walks the FlatBuffer once, validating as it goes.

    `where` names the part being read, so that a decoding error deep inside the
    flatbuffers accessors still produces a message saying where it happened.
    """

    def __init__(self, buf: Any, path: str | None):
        self.buf = buf
        self.size = len(buf)
        self.path = path
        self.label = os.path.basename(path) if path else "<memory>"
        self.where = "the model header"
        self.budget = _EXPANSION_PER_BYTE * self.size + _EXPANSION_SLACK
        self.spent = 0

    # -- errors ---------------------------------------------------------------

    def error(self, message: str) -> ModelFormatError:
        """A ModelFormatError prefixed with the file name, on one line."""
        return ModelFormatError(f"{self.label}: {message}".replace("\n", " "))

    # -- entry point ----------------------------------------------------------

    def read(self) -> Model:
        self.check_header()
        try:
            return self.read_model()
        except ModelFormatError:
            raise
        except _DECODE_ERRORS as exc:
            kind = type(exc).__name__ if type(exc).__module__ == "builtins" else f"{type(exc).__module__}.{type(exc).__name__}"
            detail = str(exc).replace("\n", " ")
            raise self.error(f"corrupt FlatBuffer while reading {self.where} ({kind}: {detail})") from exc

    def check_header(self) -> None:
        """The 4-byte root offset and the 'TFL3' identifier must be there."""
        if self.size == 0:
            raise self.error("the file is empty, not a TFLite model")
        if self.size < 8:
            raise self.error(f"the file is only {self.size} bytes, too small to be a TFLite model")
        identifier = bytes(self.buf[4:8])
        if identifier != FILE_IDENTIFIER:
            raise self.error(
                f"not a TFLite model: file identifier {identifier!r} at bytes 4..8, expected {FILE_IDENTIFIER!r}"
            )
        (root,) = struct.unpack_from("<I", self.buf, 0)
        if root + 4 > self.size:
            raise self.error(f"truncated or corrupt: the root table offset {root} lies outside the {self.size}-byte file")

    def charge(self, n_bytes: int) -> None:
        """Count what decoding one more entry costs; refuse the file past its budget (see
        _EXPANSION_PER_BYTE). Called before the entry's data is copied or looped over."""
        self.spent += _ENTRY_CHARGE + n_bytes
        if self.spent > self.budget:
            raise self.error(
                f"its tables expand to more than {self.budget:,} bytes when read ({_EXPANSION_PER_BYTE}x "
                f"the file's size + 1 MiB), at {self.where}: vector entries share tables "
                f"(a FlatBuffer expansion bomb), refusing the file")

    def check_count(self, count: int, element_size: int, what: str) -> int:
        """A vector length must fit in the file; guards against looping over garbage lengths."""
        if count < 0 or count * element_size > self.size:
            raise self.error(f"{what} declares {count} entries, more than a {self.size}-byte file can hold")
        return count

    def read_model(self) -> Model:
        fb = _FbModel.GetRootAs(self.buf, 0)
        self.where = "the model table"
        version = fb.Version()
        description = _decode_str(fb.Description())

        self.buffers = self.read_buffers(fb)
        self.opcodes = self.read_opcodes(fb)

        self.where = "the subgraph list"  # reading its length may be what fails
        n_subgraphs = self.check_count(fb.SubgraphsLength(), 4, "the subgraph list")
        if n_subgraphs == 0:
            raise self.error("the model has no subgraphs")
        subgraphs = tuple(self.read_subgraph(fb.Subgraphs(i), i, n_subgraphs) for i in range(n_subgraphs))

        signatures = self.read_signatures(fb, subgraphs)
        metadata = self.read_metadata(fb)
        self.where = "the packed files"
        packed_files = _read_packed_files(self.buf, self.size)
        return Model(
            path=self.path,
            version=version,
            description=description,
            subgraphs=subgraphs,
            signatures=signatures,
            metadata=metadata,
            packed_files=packed_files,
            file_size=self.size,
        )

    # -- buffers ----------------------------------------------------------------

    def read_buffers(self, fb: _FbModel) -> list[np.ndarray | None]:
        """Every buffer as a read-only uint8 view of the file, or None when it is empty."""
        self.where = "the buffer list"  # reading its length may be what fails
        count = self.check_count(fb.BuffersLength(), 4, "the buffer list")
        return [self.read_buffer(fb.Buffers(i), i) for i in range(count)]

    def read_buffer(self, buffer: Any, index: int) -> np.ndarray | None:
        self.where = f"buffer {index}"
        self.charge(0)
        if buffer is None:
            return None
        # Models over 2 GB keep buffer data outside the FlatBuffer and record
        # its position in the file; offset 1 is a placeholder the converter
        # writes before the real offsets are known, so only > 1 counts.
        offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
        if offset > 1:
            size = buffer.Size()
            if offset + size > self.size:
                raise self.error(
                    f"buffer {index} lies at bytes {offset}..{offset + size}, beyond the end of the {self.size}-byte file"
                )
            view = np.frombuffer(self.buf, dtype=np.uint8, count=size, offset=offset)
        else:
            if buffer.DataIsNone():
                return None
            length = buffer.DataLength()
            if length == 0:
                return None
            view = buffer.DataAsNumpy()
            if view.size != length:  # np.frombuffer raises first, but be explicit
                raise self.error(f"buffer {index} is truncated")
        return _readonly(view)

    def buffer_view(self, index: int, what: str) -> np.ndarray | None:
        """The data of buffer `index`, checking the index."""
        if not 0 <= index < len(self.buffers):
            raise self.error(f"{what} refers to buffer {index}, but the model has {len(self.buffers)} buffers")
        return self.buffers[index]

    # -- operator codes -------------------------------------------------------

    def read_opcodes(self, fb: _FbModel) -> list[tuple[str, int, int, str | None]]:
        """(opcode name, builtin code, version, custom code) for each operator code."""
        self.where = "the operator code list"  # reading its length may be what fails
        count = self.check_count(fb.OperatorCodesLength(), 4, "the operator code list")
        opcodes = []
        for i in range(count):
            self.where = f"operator code {i}"
            self.charge(0)
            # OperatorCode fields: 0 deprecated_builtin_code (int8), 1 custom_code, 2 version
            # (default 1), 3 builtin_code (int32).  Codes above 127 only fit the newer field; old
            # files have only the int8 one, and newer writers (ai-edge-quantizer, LiteRT's NPU
            # tools) may set only `builtin_code`.  The real code is the larger of the two, as
            # tflite::GetBuiltinCode (schema_utils.cc) reads it.  The tflite package's
            # BuiltinCode() cannot be used: it returns the deprecated byte whenever the int32
            # field is below 127, i.e. 0 = ADD for a file that sets only `builtin_code`.
            fields = _Fields.of(fb.OperatorCodes(i))
            code = max(fields.scalar(3, _I32), fields.scalar(0, _I8))
            custom_code = fields.string(1) if fields.present(1) else None
            name = _OPCODE_NAMES.get(code, f"UNKNOWN_{code}")
            opcodes.append((name, code, fields.scalar(2, _I32, default=1), custom_code))
        return opcodes

    # -- subgraphs --------------------------------------------------------------

    def read_subgraph(self, sg: Any, index: int, n_subgraphs: int) -> Subgraph:
        self.where = f"subgraph {index}"
        prefix = f"subgraph {index} " if index else ""
        self.charge(4 * (sg.InputsLength() + sg.OutputsLength()))
        name = _decode_str(sg.Name())
        self.charge(len(name))

        n_tensors = self.check_count(sg.TensorsLength(), 4, f"{prefix}tensor list".strip())
        tensor_tables = _Fields.of(sg).tables(0)      # SubGraph field 0: tensors
        tensors = tuple(self.read_tensor(t, i, prefix) for i, t in enumerate(tensor_tables))

        inputs = _as_int_tuple(sg.InputsAsNumpy())
        outputs = _as_int_tuple(sg.OutputsAsNumpy())
        for kind, indices in (("input", inputs), ("output", outputs)):
            for position, t in enumerate(indices):
                if not 0 <= t < n_tensors:
                    raise self.error(
                        f"{prefix}graph {kind} {position} refers to tensor {t}, but the subgraph has {n_tensors} tensors"
                    )

        n_ops = self.check_count(sg.OperatorsLength(), 4, f"{prefix}operator list".strip())
        operators = tuple(self.read_operator(sg.Operators(i), i, prefix, n_tensors) for i in range(n_ops))
        tensors = _empty_constants(tensors, operators, inputs)
        return Subgraph(index=index, name=name, tensors=tensors, operators=operators, inputs=inputs, outputs=outputs)

    # -- tensors ----------------------------------------------------------------

    def read_tensor(self, fields: _Fields, index: int, prefix: str) -> Tensor:
        """Tensor table fields: 0 shape, 1 type, 2 buffer, 3 name, 4 quantization,
        5 is_variable, 6 sparsity, 7 shape_signature."""
        self.where = f"{prefix}tensor {index}"
        q = fields.table(4)
        # name, shape, shape signature; quantization: scales copied as float32, zero points as
        # int64, min and max as float32
        self.charge(fields.length(3, 1) + 4 * (fields.length(0, 4) + fields.length(7, 4)) + (
            0 if q is None else 12 * q.length(2, 4) + 4 * (q.length(0, 4) + q.length(1, 4))))
        name = fields.string(3)
        what = f"{prefix}tensor {index} ({name})"

        type_code = fields.scalar(1, _I8)
        type_name = _TYPE_NAMES.get(type_code)
        if type_name is None or type_name not in _DTYPES:
            raise self.error(f"{what} has unknown tensor type {type_code}")
        dtype = _DTYPES[type_name]

        shape = fields.int32_vector(0) or ()
        if any(d < 0 for d in shape):
            raise self.error(f"{what} has a negative dimension in its shape {shape}")
        shape_signature = fields.int32_vector(7)
        if shape_signature is not None and any(d < -1 for d in shape_signature):
            raise self.error(f"{what} has an invalid shape signature {shape_signature}")

        buffer_index = fields.scalar(2, _U32)
        is_sparse = fields.present(6)
        raw = self.buffer_view(buffer_index, what)
        data = None if raw is None else self.tensor_data(raw, shape, dtype, type_name, is_sparse, what, buffer_index)
        return Tensor(
            index=index,
            name=name,
            shape=shape,
            shape_signature=shape_signature,
            dtype=dtype,
            type_name=type_name,
            buffer_index=buffer_index,
            data=data,
            quantization=self.read_quantization(q, shape, what),
            is_variable=bool(fields.scalar(5, _U8)),
            is_sparse=is_sparse,
            quantization_details=_quantization_details(q),
        )

    def tensor_data(
        self,
        raw: np.ndarray,
        shape: tuple[int, ...],
        dtype: np.dtype,
        type_name: str,
        is_sparse: bool,
        what: str,
        buffer_index: int,
    ) -> np.ndarray:
        """View the uint8 buffer `raw` as the tensor's typed, shaped, read-only array."""
        if type_name in _RAW_TYPES:
            if type_name == "INT4":
                needed = (math.prod(shape) + 1) // 2
                if raw.size != needed:
                    raise self.error(
                        f"{what} has {raw.size} bytes of data in buffer {buffer_index}, "
                        f"but its shape {shape} of packed INT4 needs {needed} bytes"
                    )
            return raw
        if is_sparse:
            # Sparse constants hold only the stored values, in the tensor's type.
            return _readonly(raw.view(dtype)) if raw.size % dtype.itemsize == 0 else raw
        needed = math.prod(shape) * dtype.itemsize
        if raw.size != needed:
            raise self.error(
                f"{what} has {raw.size} bytes of data in buffer {buffer_index}, "
                f"but its shape {shape} of {type_name} needs {needed} bytes"
            )
        # .view() keeps the chain of bases back to the file bytes: zero-copy.
        return _readonly(raw.view(dtype).reshape(shape))

    def read_quantization(self, q: _Fields | None, shape: tuple[int, ...], what: str) -> Quantization | None:
        """Quantization parameters, or None when there are no scales. QuantizationParameters
        fields: 0 min, 1 max, 2 scale, 3 zero_point, 6 quantized_dimension."""
        if q is None:
            return None
        scales = q.array(2, "<f4")
        if scales is None or scales.size == 0:
            return None  # min/max only (or nothing): not quantized
        zero_points = q.array(3, "<i8")
        if zero_points is None:
            # The C++ runtime refuses this too.
            raise self.error(f"{what} has quantization scales but no zero points")
        if zero_points.size != scales.size:
            raise self.error(f"{what} has {scales.size} quantization scales but {zero_points.size} zero points")
        if not np.all(np.isfinite(scales)):
            # NaN or infinite scales make every quantized value meaningless.
            raise self.error(f"{what} has a quantization scale that is not a finite number")
        quantized_dimension = q.scalar(6, _I32)
        if scales.size > 1 and not 0 <= quantized_dimension < len(shape):
            raise self.error(
                f"{what} is quantized per channel along dimension {quantized_dimension}, "
                f"but its shape {shape} has rank {len(shape)}"
            )
        return Quantization(
            scales=_readonly(np.array(scales, dtype=np.float32)),
            zero_points=_readonly(np.array(zero_points, dtype=np.int64)),
            quantized_dimension=int(quantized_dimension),
            min=_optional_float_array(q.array(0, "<f4")),
            max=_optional_float_array(q.array(1, "<f4")),
        )

    # -- operators ------------------------------------------------------------

    def read_operator(self, op: Any, index: int, prefix: str, n_tensors: int) -> Operator:
        self.where = f"{prefix}operator {index}"
        opcode_index = op.OpcodeIndex()
        if not 0 <= opcode_index < len(self.opcodes):
            raise self.error(
                f"{prefix}operator {index} refers to operator code {opcode_index}, "
                f"but the model has {len(self.opcodes)} operator codes"
            )
        opcode, code, version, custom_code = self.opcodes[opcode_index]
        what = f"{prefix}operator {index} ({opcode})"

        fields = _Fields.of(op)   # Operator: 1 inputs, 2 outputs, 8 intermediates
        self.charge(4 * (fields.length(1, 4) + fields.length(2, 4) + fields.length(8, 4))
                    + fields.length(5, 1))   # 5: custom options
        inputs = fields.int32_vector(1) or ()
        outputs = fields.int32_vector(2) or ()
        intermediates = fields.int32_vector(8) or ()
        for kind, indices, optional_ok in (
            ("input", inputs, True),
            ("output", outputs, True),
            ("intermediate", intermediates, False),
        ):
            for position, t in enumerate(indices):
                if optional_ok and t == -1:
                    continue  # an absent optional tensor
                if not 0 <= t < n_tensors:
                    raise self.error(
                        f"{what} {kind} {position} refers to tensor {t}, but the subgraph has {n_tensors} tensors"
                    )

        return Operator(
            index=index,
            opcode=opcode,
            builtin_code=code,
            version=version,
            custom_code=custom_code,
            inputs=inputs,
            outputs=outputs,
            intermediates=intermediates,
            options=_decode_options(op),
            custom_options=self.read_custom_options(op, code, what),
        )

    def read_custom_options(self, op: Any, code: int, what: str) -> bytes | None:
        """The opaque options blob of custom operators (inline or, for large models, by offset)."""
        offset = op.LargeCustomOptionsOffset() if hasattr(op, "LargeCustomOptionsOffset") else 0
        if offset > 1:
            size = op.LargeCustomOptionsSize()
            if offset + size > self.size:
                raise self.error(f"{what} custom options lie beyond the end of the {self.size}-byte file")
            self.charge(size)
            return bytes(self.buf[offset : offset + size])
        if op.CustomOptionsIsNone():
            return None
        blob = op.CustomOptionsAsNumpy()
        return blob.tobytes() if isinstance(blob, np.ndarray) else None

    # -- signatures and metadata ---------------------------------------------------

    def read_signatures(self, fb: _FbModel, subgraphs: tuple[Subgraph, ...]) -> tuple[SignatureDef, ...]:
        self.where = "the signature list"  # reading its length may be what fails
        count = self.check_count(fb.SignatureDefsLength(), 4, "the signature list")
        signatures = []
        for i in range(count):
            self.where = f"signature {i}"
            self.charge(0)
            sig = fb.SignatureDefs(i)
            key = _decode_str(sig.SignatureKey())
            self.charge(len(key))
            sg_index = sig.SubgraphIndex()
            if not 0 <= sg_index < len(subgraphs):
                raise self.error(
                    f"signature {key!r} refers to subgraph {sg_index}, but the model has {len(subgraphs)} subgraphs"
                )
            n_tensors = len(subgraphs[sg_index].tensors)
            maps = {}
            for kind, length, getter in (("input", sig.InputsLength, sig.Inputs), ("output", sig.OutputsLength, sig.Outputs)):
                entries: dict[str, int] = {}
                for j in range(self.check_count(length(), 4, f"signature {key!r} {kind} list")):
                    tensor_map = getter(j)
                    name = _decode_str(tensor_map.Name())
                    self.charge(len(name))
                    t = tensor_map.TensorIndex()
                    if not 0 <= t < n_tensors:
                        raise self.error(
                            f"signature {key!r} {kind} {name!r} refers to tensor {t}, "
                            f"but subgraph {sg_index} has {n_tensors} tensors"
                        )
                    entries[name] = t
                maps[kind] = entries
            signatures.append(SignatureDef(key=key, subgraph_index=sg_index, inputs=maps["input"], outputs=maps["output"]))
        return tuple(signatures)

    def read_metadata(self, fb: _FbModel) -> dict[str, bytes]:
        self.where = "the metadata list"  # reading its length may be what fails
        count = self.check_count(fb.MetadataLength(), 4, "the metadata list")
        metadata: dict[str, bytes] = {}
        for i in range(count):
            self.where = f"metadata entry {i}"
            entry = fb.Metadata(i)
            name = _decode_str(entry.Name())
            view = self.buffer_view(entry.Buffer(), f"metadata {name!r}")
            self.charge(len(name) + (0 if view is None else view.size))   # the buffer is copied
            metadata[name] = b"" if view is None else view.tobytes()
        return metadata


def _empty_constants(tensors: tuple[Tensor, ...], operators: tuple[Operator, ...],
                     inputs: tuple[int, ...]) -> tuple[Tensor, ...]:
    """Give zero-size tensors that nothing writes their (empty) value.

    The converter writes a constant of shape [0] (e.g. RESHAPE's new shape for a scalar) with an
    empty buffer, and an empty buffer is how a file says "no data".  LiteRT
    (InterpreterBuilder::ParseTensors, get_readonly_data) makes such a tensor read-only with no
    bytes, or, in older versions, read-write; either way ops read it without anything writing it
    -- it has no elements to write.  Its value is the empty array of its shape, so it is a
    constant here like any other.
    """
    written = set(inputs)
    for op in operators:
        written.update(op.outputs)
    if not any(t.data is None and t.size == 0 and t.index not in written for t in tensors):
        return tensors
    return tuple(
        dataclasses.replace(t, data=_readonly(np.zeros(t.shape, t.dtype)))
        if (t.data is None and t.size == 0 and t.index not in written and not t.is_variable
            and t.type_name not in _RAW_TYPES) else t
        for t in tensors)


def _optional_float_array(array: Any) -> np.ndarray | None:
    """A float32 copy of an optional ``XAsNumpy()`` vector (0 when absent)."""
    if isinstance(array, np.ndarray) and array.size:
        return _readonly(np.array(array, dtype=np.float32))
    return None


# --------------------------------------------------------------------------
# Builtin options, decoded by introspecting the flatc-generated classes
# --------------------------------------------------------------------------

# Accessor suffixes that are helpers of a vector field, not fields themselves.
_HELPER_SUFFIXES = ("Length", "AsNumpy", "IsNone")


@functools.lru_cache(maxsize=None)
def _options_class(name: str) -> type | None:
    """The flatc class `tflite.<name>.<name>` for an options union member."""
    try:
        module = importlib.import_module(f"tflite.{name}")
    except ImportError:
        return None
    return getattr(module, name, None)


def _is_vector_helper(name: str, cls: type) -> bool:
    """True for `XLength`/`XAsNumpy`/`XIsNone` when `X` is a field of `cls`."""
    for suffix in _HELPER_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in vars(cls):
            return True
    return False


@functools.lru_cache(maxsize=None)
def _option_fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(snake_case name, accessor name, is_vector) for every field of an options class.

    Fields are the public instance methods other than Init and the vector
    helpers; a method taking an index `j` is a vector field.  The class
    dictionary keeps definition order, which is the schema's field order.
    """
    fields = []
    for name, member in vars(cls).items():
        if name.startswith("_") or name == "Init" or not inspect.isfunction(member):
            continue  # classmethods (GetRootAs...) are not plain functions here
        if _is_vector_helper(name, cls):
            continue
        n_params = len(inspect.signature(member).parameters)
        if n_params == 1:
            fields.append((_snake_case(name), name, False))
        elif n_params == 2:
            fields.append((_snake_case(name), name, True))
    return tuple(fields)


def _option_value(snake: str, value: Any) -> Any:
    """Convert one decoded option to a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    if snake == "fused_activation_function" and isinstance(value, int):
        return _ACTIVATION_NAMES.get(value, str(value))
    return value


def _read_option_table(cls: type, table: Any) -> dict:
    """Call every field accessor of an options table."""
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    options: dict = {}
    for snake, accessor, is_vector in _option_fields(cls):
        if is_vector:
            as_numpy = getattr(obj, accessor + "AsNumpy", None)
            if as_numpy is not None:
                array = as_numpy()
                value = array.tolist() if isinstance(array, np.ndarray) else []
            else:  # a vector of tables or strings: element by element
                length = getattr(obj, accessor + "Length")()
                value = [getattr(obj, accessor)(j) for j in range(length)]
            options[snake] = [_option_value(snake, v) for v in value]
        else:
            value = getattr(obj, accessor)()
            if hasattr(value, "_tab"):
                continue  # a nested table: not part of any options the runtime reads
            options[snake] = _option_value(snake, value)
    return options


def _decode_options(op: Any) -> dict:
    """Decode `builtin_options` (and `builtin_options_2`) of an operator into a dict."""
    unions: list[tuple[Callable[[], int], Callable[[], Any], dict[int, str]]] = [
        (op.BuiltinOptionsType, op.BuiltinOptions, _OPTIONS_NAMES),
    ]
    if hasattr(op, "BuiltinOptions2Type"):
        unions.append((op.BuiltinOptions2Type, op.BuiltinOptions2, _OPTIONS2_NAMES))
    options: dict = {}
    for get_type, get_table, names in unions:
        type_code = get_type()
        if type_code == 0:
            continue  # NONE
        cls = _options_class(names.get(type_code, ""))
        table = get_table()
        if cls is None or table is None:
            continue  # an options type newer than the installed schema: nothing to decode
        options.update(_read_option_table(cls, table))
    return options


# --------------------------------------------------------------------------
# Packed files (the ZIP archive TFLite metadata appends after the FlatBuffer)
# --------------------------------------------------------------------------


class _BufferFile(io.RawIOBase):
    """A read-only, seekable file over a buffer, without copying it (BytesIO would copy it)."""

    def __init__(self, buf: Any):
        super().__init__()
        self._view = memoryview(buf)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, target: Any) -> int:
        chunk = self._view[self._pos : self._pos + len(target)]
        n = len(chunk)
        memoryview(target).cast("B")[:n] = chunk
        self._pos += n
        return n


def _read_packed_files(buf: Any, file_size: int) -> dict[str, bytes]:
    """Files of the ZIP archive appended after the FlatBuffer; {} when there is none or it is corrupt.

    Packed files are informative extras (vocabularies, label lists), so a damaged archive
    is not an error. Together the members are read at most `file_size` bytes: a hostile
    archive may hold many members that each decompress to nearly the file's size (a zip
    bomb). A member whose declared size no longer fits is skipped before it is decompressed,
    and one that decompresses past its declared size (a lying header) is cut off at what is
    left of the budget and skipped.
    """
    try:
        archive = zipfile.ZipFile(_BufferFile(buf))
    except Exception:  # noqa: BLE001 - zipfile raises many kinds of errors on garbage
        return {}
    files: dict[str, bytes] = {}
    left = file_size
    with archive:
        for info in archive.infolist():
            if info.is_dir() or info.file_size > left:
                continue
            try:
                with archive.open(info) as member:
                    content = member.read(left + 1)
            except Exception:  # noqa: BLE001 - a damaged member: skip it, keep the others
                continue
            left -= min(len(content), left)
            if len(content) == info.file_size:
                files[info.filename] = content
    return files
