"""What a graph will compute and allocate, known from its declared shapes before anything runs.

A kernel computes its whole result before anyone can compare it with the declared output: an
ADD of two constants ``[1,32768] + [32768,1]`` declaring ``[1,1]`` builds 4 GiB first. So every
op whose result can be larger than its inputs (broadcasting, GATHER, CONCATENATION, the matrix
products, PAD) has its output shape inferred here from its inputs' declared shapes (and constant
operands), as each LiteRT kernel's Prepare computes it, and compared with the declared one; and
the whole run's memory -- every activation a run keeps plus the largest temporaries of one op --
is bounded before the first op runs (constant folding included). Both engines call this: the
NumPy interpreter when it prepares, the LiteRT runners before LiteRT allocates anything.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ModelFormatError
from .model import Operator, Subgraph, Tensor

#: The default bound on what one run of a graph allocates: every activation (graph inputs and
#: op outputs, which run_all keeps) plus the temporaries of the op that needs the most. The
#: estimate is generous (a full MobileBERT: 2 MiB int8, 11 MiB dynamic-range; DeepLabv3 and
#: SSD-MobileNet, the largest of 20 public models measured: 75 MiB), so that what it admits
#: runs within a few hundred MB whatever a file declares.
MAX_RUN_BYTES = 512 << 20

# Bytes of temporaries per element, as the kernels here compute: int64 accumulators and float64
# GEMM operands for each output element (8 + 8) and a float64 copy of each input (the weights'
# copy in the GEMM's float type included).
_TEMP_BYTES_PER_OUTPUT = 16
_TEMP_BYTES_PER_INPUT = 8

_ELEMENTWISE_BINARY = frozenset({"ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "DIV", "MAXIMUM", "MINIMUM"})
# ops whose output has their (first) input's shape
_SAME_SHAPE = frozenset({"TANH", "LOGISTIC", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE", "CAST", "RSQRT",
                         "SOFTMAX"})


def quoted(name: str) -> str:
    """A model-supplied name for a message: quoted, with newlines and control characters escaped."""
    return repr(str(name))


def _shape(t: Tensor | None) -> tuple[int, ...] | None:
    return None if t is None else tuple(int(d) for d in t.shape)


def _broadcast(shapes: list[tuple[int, ...]], what: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ModelFormatError(f"{what}: input shapes {' and '.join(str(list(s)) for s in shapes)} "
                               f"do not broadcast") from None


def infer_output_shape(op: Operator, tensors: tuple[Tensor, ...]) -> tuple[int, ...] | None:
    """The shape ``op`` computes from its inputs' declared shapes (LiteRT's Prepare), for the ops
    whose result can outgrow their inputs, and for those that keep or permute their input's
    shape (so that a wrong declaration is reported at the op that makes it, not at a later op
    whose inputs it breaks); None for the others (their result is never larger than an input,
    and the run-time check compares it)."""
    what = f"operator {op.index} ({op.opcode})"
    ins = [tensors[i] if i >= 0 else None for i in op.inputs]
    shapes = [_shape(t) for t in ins]
    options = op.options
    if op.opcode in _SAME_SHAPE and shapes and shapes[0] is not None:
        return shapes[0]
    if op.opcode == "TRANSPOSE" and len(ins) == 2 and None not in shapes and ins[1].data is not None:
        perm = [int(p) for p in np.asarray(ins[1].data).reshape(-1)]
        rank = len(shapes[0])
        if sorted(p + rank if p < 0 else p for p in perm) != list(range(rank)):
            return None                     # the kernel's own check words it
        return tuple(shapes[0][p] for p in perm)
    if op.opcode in _ELEMENTWISE_BINARY and len(shapes) == 2 and None not in shapes:
        return _broadcast(shapes, what)
    if op.opcode == "FULLY_CONNECTED" and len(shapes) >= 2 and None not in shapes[:2]:
        x, w = shapes[0], shapes[1]
        if len(w) != 2:
            raise ModelFormatError(f"{what}: weights of shape {list(w)}, expected [units, depth]")
        units, depth = w
        if options.get("keep_num_dims"):
            return x[:-1] + (units,)
        size = math.prod(x)
        if depth == 0 or size % depth:
            raise ModelFormatError(f"{what}: an input of shape {list(x)} is not rows of the weights' "
                                   f"depth {depth}")
        return (size // depth, units)
    if op.opcode == "BATCH_MATMUL" and len(shapes) == 2 and None not in shapes:
        lhs, rhs = shapes
        if len(lhs) < 2 or len(rhs) < 2:
            raise ModelFormatError(f"{what}: operands of shapes {list(lhs)} and {list(rhs)}, "
                                   f"need rank 2 or more")
        m, k = (lhs[-1], lhs[-2]) if options.get("adj_x") else (lhs[-2], lhs[-1])
        k2, n = (rhs[-1], rhs[-2]) if options.get("adj_y") else (rhs[-2], rhs[-1])
        if k != k2:
            raise ModelFormatError(f"{what}: operands of shapes {list(lhs)} and {list(rhs)} have "
                                   f"depths {k} and {k2}")
        return _broadcast([lhs[:-2], rhs[:-2]], what) + (m, n)
    if op.opcode == "GATHER" and len(shapes) == 2 and None not in shapes:
        params, indices = shapes
        axis = int(options.get("axis", 0))
        batch_dims = int(options.get("batch_dims", 0))
        if axis < 0:
            axis += len(params)
        if batch_dims < 0:
            batch_dims += len(indices)
        if not 0 <= axis < len(params) or not 0 <= batch_dims <= min(axis, len(indices)):
            raise ModelFormatError(f"{what}: axis {options.get('axis', 0)} (batch_dims "
                                   f"{options.get('batch_dims', 0)}) does not fit params of shape "
                                   f"{list(params)} and indices of shape {list(indices)}")
        return params[:axis] + indices[batch_dims:] + params[axis + 1:]
    if op.opcode == "CONCATENATION" and shapes and None not in shapes:
        rank = len(shapes[0])
        axis = int(options.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank or any(len(s) != rank or s[:axis] + s[axis + 1:] !=
                                       shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
            raise ModelFormatError(f"{what}: inputs of shapes {', '.join(str(list(s)) for s in shapes[:4])}"
                                   f"{', ...' if len(shapes) > 4 else ''} do not concatenate along axis "
                                   f"{options.get('axis', 0)}")
        return shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]
    if op.opcode in ("TILE", "BROADCAST_TO", "FILL") and len(ins) >= 2 and ins[1] is not None \
            and ins[1].data is not None and shapes[0] is not None:
        # ops the NumPy interpreter does not run but LiteRT does: their size comes from a
        # constant (tile.cc multiples, broadcast_to.cc shape, fill.cc dims), and LiteRT
        # allocates it whatever the output declares
        values = [int(v) for v in np.asarray(ins[1].data).reshape(-1)]
        if any(v < 0 for v in values):
            return None
        if op.opcode == "TILE":
            if len(values) != len(shapes[0]):
                return None
            return tuple(d * m for d, m in zip(shapes[0], values))
        if op.opcode == "BROADCAST_TO":
            return _broadcast([shapes[0], tuple(values)], what)
        return tuple(values)
    if op.opcode in ("PAD", "PADV2", "MIRROR_PAD") and len(ins) >= 2 and ins[1] is not None and ins[1].data is not None:
        x = shapes[0]
        pads = np.asarray(ins[1].data).astype(np.int64).reshape(-1)
        if x is None or pads.size != 2 * len(x) or (pads < 0).any():
            return None                     # the kernel's own check words it (pad.cc's Prepare)
        return tuple(int(d + a + b) for d, (a, b) in zip(x, pads.reshape(-1, 2)))
    return None


def _is_dynamic(t: Tensor) -> bool:
    """A tensor whose shape signature has a free (-1) dimension: its declared shape is what the
    converter wrote before the run resizes it."""
    return t.shape_signature is not None and -1 in t.shape_signature


def _human_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


def check_graph(graph: Subgraph, max_run_bytes: int = MAX_RUN_BYTES) -> None:
    """Refuse, in one line, a graph whose ops compute other shapes than they declare, or whose
    run would allocate more than ``max_run_bytes`` (its activations plus one op's temporaries).

    Nothing is computed: shapes and sizes come from the declarations alone."""
    tensors = graph.tensors
    # elements of each tensor: the declared count, or the inferred one where that is larger (a
    # dynamic tensor's declared shape is a placeholder: LiteRT allocates what its op computes)
    elements = [t.size for t in tensors]
    for op in graph.operators:
        inferred = infer_output_shape(op, tensors)
        if inferred is None or not op.outputs or op.outputs[0] < 0:
            continue
        out = tensors[op.outputs[0]]
        elements[op.outputs[0]] = max(elements[op.outputs[0]], math.prod(inferred))
        if _is_dynamic(out) or any(_is_dynamic(tensors[i]) for i in op.inputs if i >= 0):
            continue                        # the shapes are settled when the run resizes them
        if inferred != _shape(out):
            raise ModelFormatError(
                f"operator {op.index} ({op.opcode}) computes shape {list(inferred)} for tensor {op.outputs[0]} "
                f"({quoted(out.name)}), but the model declares {list(out.shape)}")

    activations = {i for i in graph.inputs if i >= 0 and tensors[i].data is None}
    activations.update(i for op in graph.operators for i in op.outputs if i >= 0)
    held = sum(elements[i] * tensors[i].dtype.itemsize for i in activations)
    temporaries, worst = 0, None
    for op in graph.operators:
        need = _TEMP_BYTES_PER_OUTPUT * sum(elements[i] for i in op.outputs if i >= 0) + \
            _TEMP_BYTES_PER_INPUT * sum(elements[i] for i in op.inputs if i >= 0)
        if need > temporaries:
            temporaries, worst = need, op
    if held + temporaries > max_run_bytes:
        peak = f", operator {worst.index} ({worst.opcode}) needs ~{_human_bytes(temporaries)} of temporaries" \
            if worst is not None else ""
        raise ModelFormatError(
            f"a run of this graph would allocate ~{_human_bytes(held + temporaries)}: its activations take "
            f"{_human_bytes(held)}{peak}; over the limit of {_human_bytes(max_run_bytes)} per run (max_run_bytes)")
