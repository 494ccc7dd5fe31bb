"""Run a .tflite graph op by op in NumPy with TFLite's own integer arithmetic.

    model = load_model("model.tflite")
    interp = Interpreter(model)                 # prepares every op once (multipliers, LUTs, ...)
    logits, = interp.run([attention_mask, input_ids, token_type_ids])
    every = interp.run_all(inputs)               # tensor index -> value, every non-constant tensor

An ``observer(step, inputs, outputs)`` passed to ``run`` sees each op as it executes: the CLI's
``--trace`` is such an observer.
"""

from __future__ import annotations

import ctypes
import os
from typing import Callable, Mapping, Sequence

import numpy as np

from .batching import run_batched
from .feeds import order_inputs
from .fusion import fuse_table_chains
from .errors import InputError, ModelFormatError, NpMobileBertError, UnsupportedOpError
from .kernels import KERNELS, PreparedOp, prepare_op
from .model import Model, Operator, Tensor, load_model
from .numerics import Profile, get_profile
from .static_checks import MAX_RUN_BYTES, check_graph

Observer = Callable[[PreparedOp, list, list], None]

#: The default cap on one activation (a tensor the interpreter computes or is given): a
#: corrupt or hostile model may declare shapes of terabytes, which must be refused before
#: anything is allocated, not discovered by the out-of-memory killer.
MAX_TENSOR_BYTES = 1 << 30

#: What a batch of inputs run together (run_batch) may hold in activations, by default: dataset
#: commands size their batches so that N x activation_bytes() stays under it.
BATCH_ACTIVATION_BYTES = 512 << 20

# The highest version of each op that LiteRT 2.3.0's builtin resolver registers (probed with
# single-op models).  A higher version comes from a newer converter and may mean semantics the
# kernels here do not know; LiteRT itself refuses it ("Didn't find op for builtin opcode").
MAX_OP_VERSIONS = {
    "ADD": 6, "BATCH_MATMUL": 4, "CAST": 9, "CONCATENATION": 7, "DEQUANTIZE": 9,
    "EXPAND_DIMS": 1, "FULLY_CONNECTED": 14, "GATHER": 8, "LOGISTIC": 3, "MEAN": 3, "MUL": 8,
    "PAD": 6, "PADV2": 6, "QUANTIZE": 6, "RELU": 3, "RELU6": 3, "RESHAPE": 1, "RSQRT": 3,
    "SLICE": 8, "SOFTMAX": 4, "SQUARED_DIFFERENCE": 2, "SQUEEZE": 2, "STRIDED_SLICE": 8, "SUB": 5,
    "SUM": 2, "TANH": 3, "TRANSPOSE": 9,
}

# TFLite's Prepare checks NumInputs/NumOutputs before it touches a tensor; the kernels here
# index their inputs directly, so the interpreter checks the counts for them.
# opcode -> (required inputs, optional inputs after them (None: any number, all required), outputs)
OP_ARITY = {
    "ADD": (2, 0, 1), "SUB": (2, 0, 1), "MUL": (2, 0, 1),
    "FULLY_CONNECTED": (2, 1, 1), "BATCH_MATMUL": (2, 0, 1),
    "SOFTMAX": (1, 0, 1), "TANH": (1, 0, 1), "LOGISTIC": (1, 0, 1), "RELU": (1, 0, 1),
    "RELU6": (1, 0, 1), "QUANTIZE": (1, 0, 1), "DEQUANTIZE": (1, 0, 1), "CAST": (1, 0, 1),
    "RESHAPE": (1, 1, 1), "EXPAND_DIMS": (2, 0, 1), "SQUEEZE": (1, 0, 1), "TRANSPOSE": (2, 0, 1),
    "STRIDED_SLICE": (4, 0, 1), "SLICE": (3, 0, 1), "GATHER": (2, 0, 1), "PAD": (2, 1, 1),
    "PADV2": (2, 1, 1), "CONCATENATION": (1, None, 1), "MEAN": (2, 0, 1), "SUM": (2, 0, 1),
    "RSQRT": (1, 0, 1), "SQUARED_DIFFERENCE": (2, 0, 1),
}

# Tensor types whose values are not fixed-size numbers: no kernel here reads or writes them.
_UNSUPPORTED_TYPES = frozenset({"STRING", "RESOURCE", "VARIANT"})

# Ops that run other subgraphs: a graph with them is not a straight line of ops.
CONTROL_FLOW_OPS = frozenset({"WHILE", "IF", "CALL_ONCE", "CALL"})


class Interpreter:
    """A prepared plan for one subgraph: its ops in order, ready to run on inputs."""

    def __init__(self, model: Model | str | os.PathLike, subgraph: int = 0,
                 max_tensor_bytes: int = MAX_TENSOR_BYTES, numerics: str | Profile | None = None,
                 max_run_bytes: int = MAX_RUN_BYTES):
        """Check the graph and prepare every op; nothing the size of an activation is allocated.

        ``model``: a :class:`Model` (``load_model``), or the path of a .tflite file to load.

        ``max_tensor_bytes`` caps the declared size of every activation (graph inputs and op
        outputs): a model declaring a larger one is refused here, before any run allocates it.
        ``max_run_bytes`` caps what a run allocates in all (static_checks.check_graph), after
        every op's output shape is inferred from its inputs' and compared with the declared one:
        a hostile model is refused before any op -- constant folding included -- computes.
        ``numerics``: whose arithmetic to compute (numerics.py): "litert-ref" (the default),
        "tflm" or "xnnpack".
        """
        if isinstance(model, (str, os.PathLike)):
            model = load_model(model)
        elif not isinstance(model, Model):
            raise TypeError(f"Interpreter() takes a Model (load_model) or a model file's path, "
                            f"not {type(model).__name__}")
        self.numerics: Profile = get_profile(numerics)
        if not 0 <= subgraph < len(model.subgraphs):
            raise InputError(f"subgraph {subgraph} does not exist: the model has {len(model.subgraphs)}")
        self.model = model
        self.graph = model.subgraphs[subgraph]
        self.tensors: tuple[Tensor, ...] = self.graph.tensors
        self.max_tensor_bytes = int(max_tensor_bytes)
        for op in self.graph.operators:
            _check_supported(op)
            self._check_tensor_kinds(op)
        for op in self.graph.operators:
            self._check_arity(op)
        self._check_order()
        self._check_sizes()
        check_graph(self.graph, max_run_bytes)
        # what each tensor must hold, as _check_outputs compares it on every run
        self._declared = [(tuple(t.shape), t.dtype.kind, t.dtype.itemsize) for t in self.tensors]
        self.plan: list[PreparedOp] = [self._prepare(op) for op in self.graph.operators]
        self._fold_constants()
        # run() without an observer: table ops fused (fusion.py), each intermediate let go after
        # its last reader
        self._run_plan = fuse_table_chains(self.plan, self.tensors, set(self.graph.outputs))
        self._dead_after = self._last_uses(self._run_plan)
        keep_freed_memory()

    # -- graph facts -----------------------------------------------------------------------------

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.graph.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.graph.outputs]

    def _check_tensor_kinds(self, op: Operator) -> None:
        """Tensors no kernel here handles, refused by what they are before a kernel meets them
        and says less: STRING values (LiteRT's variable-length string buffers), and quantization
        that per-tensor/per-channel scales do not describe (blockwise INT4 weights, ...)."""
        for i in (*op.inputs, *op.outputs):
            t = self.tensors[i] if i >= 0 else None
            if t is None:
                continue
            where = f"tensor {i} ({_quoted(t.name)}) of operator {op.index} ({op.name} v{op.version})"
            if t.type_name in _UNSUPPORTED_TYPES:
                raise UnsupportedOpError(f"{t.type_name} tensors are not implemented by the NumPy "
                                         f"interpreter: {where}")
            if t.quantization_details is not None:
                raise UnsupportedOpError(f"{t.quantization_details} quantization not implemented "
                                         f"({t.type_name} {where})")

    def _check_arity(self, op: Operator) -> None:
        """Input and output counts, absent (-1) inputs only where the op allows them."""
        if op.opcode not in OP_ARITY:
            return  # a kernel added without an entry: its prepare checks what it needs
        required, optional, n_outputs = OP_ARITY[op.opcode]
        what = f"operator {op.index} ({op.opcode})"
        most = None if optional is None else required + optional
        if len(op.inputs) < required or (most is not None and len(op.inputs) > most):
            expected = (f"at least {required}" if most is None
                        else f"{required}" if most == required else f"{required} to {most}")
            raise ModelFormatError(f"{what} has {_count(len(op.inputs), 'input')}; the op takes {expected}")
        for position, i in enumerate(op.inputs):
            if i < 0 and (optional is None or position < required):
                raise ModelFormatError(f"{what} input {position} is absent (-1), but the op requires it")
        if len(op.outputs) != n_outputs:
            raise ModelFormatError(f"{what} has {_count(len(op.outputs), 'output')}; the op writes {n_outputs}")

    def _check_order(self) -> None:
        """Every op input must be a constant, a graph input or an earlier op's output; every
        tensor is written once, never over a graph input or a constant; every graph output exists.

        Executing the ops in file order, this also rules out cycles: an op in a cycle reads a
        tensor that only a later op (itself, at the latest) writes.
        """
        constants = {t.index for t in self.tensors if t.data is not None}
        inputs = set(self.graph.inputs)
        ready = inputs | constants
        written: dict[int, int] = {}
        for op in self.graph.operators:
            for i in op.inputs:
                if i >= 0 and i not in ready:
                    raise ModelFormatError(
                        f"operator {op.index} ({op.opcode}) reads tensor {i} "
                        f"('{self.tensors[i].name}') before any operator writes it")
            for i in op.outputs:
                name = f"tensor {i} ('{self.tensors[i].name}')" if i >= 0 else ""
                if i < 0:
                    raise ModelFormatError(f"operator {op.index} ({op.opcode}) has an absent (-1) output")
                if i in written:
                    raise ModelFormatError(f"operator {op.index} ({op.opcode}) writes {name}, "
                                           f"which operator {written[i]} already wrote")
                if i in inputs or i in constants:
                    kind = "a graph input" if i in inputs else "a constant"
                    raise ModelFormatError(f"operator {op.index} ({op.opcode}) writes {name}, which is {kind}")
                written[i] = op.index
            ready.update(op.outputs)
        for position, i in enumerate(self.graph.outputs):
            if i not in ready:
                raise ModelFormatError(f"graph output {position} is tensor {i} ('{self.tensors[i].name}'), "
                                       f"which no operator writes")

    def _check_sizes(self) -> None:
        """Refuse activations whose declared size is over the cap, before allocating any."""
        activations = set(self.graph.inputs)
        for op in self.graph.operators:
            activations.update(i for i in (*op.inputs, *op.outputs) if i >= 0)
        for i in sorted(activations):
            t = self.tensors[i]
            if t.data is None and t.nbytes > self.max_tensor_bytes:
                raise ModelFormatError(
                    f"tensor {i} ('{t.name}') declares shape {list(t.shape)} of {t.type_name}: "
                    f"{_human_bytes(t.nbytes)}, over the interpreter's limit of "
                    f"{_human_bytes(self.max_tensor_bytes)} per tensor (max_tensor_bytes)")

    def _prepare(self, op: Operator) -> PreparedOp:
        try:
            return prepare_op(op, self.tensors, self.numerics)
        except NpMobileBertError:
            raise
        except Exception as exc:  # noqa: BLE001 - see _kernel_failure
            raise _kernel_failure(op, "prepare", exc) from exc

    # -- inputs ----------------------------------------------------------------------------------

    def bind_inputs(self, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Check and order the inputs: a list in graph order, or a dict by tensor name."""
        specs = self.input_tensors
        inputs = order_inputs(inputs, [t.name for t in specs])
        return [_coerce_input(_as_array(value, spec), spec) for value, spec in zip(inputs, specs)]

    # -- running ---------------------------------------------------------------------------------

    def run_all(self, inputs, observer: Observer | None = None) -> dict[int, np.ndarray]:
        """Execute every op; return every non-constant tensor (inputs included) and every graph
        output (a graph may return a constant as is) by index."""
        values: dict[int, np.ndarray] = dict(zip(self.graph.inputs, self.bind_inputs(inputs)))
        for step in self.plan:
            args = self._arguments(step.ctx.op, values)
            outs = self._execute(step, args)
            values.update(zip(step.ctx.op.outputs, outs))
            if observer is not None:
                observer(step, args, outs)
        for i in self.graph.outputs:
            if i not in values:
                values[i] = self.tensors[i].data
        return values

    def _arguments(self, op: Operator, values: dict[int, np.ndarray]) -> list:
        """An op's input arrays: computed values, else constant data; None for absent inputs."""
        return [None if i < 0 else values[i] if i in values else self.tensors[i].data for i in op.inputs]

    def _execute(self, step: PreparedOp, args: list) -> list:
        """Run one prepared op; a kernel failure becomes a one-line error naming the op."""
        try:
            outs = step.run(args)
        except NpMobileBertError:
            raise
        except Exception as exc:  # noqa: BLE001 - see _kernel_failure
            raise _kernel_failure(step.ctx.op, "run", exc) from exc
        self._check_outputs(step.ctx.op, outs)
        return outs

    def _fold_constants(self) -> None:
        """Run once, here, every op whose inputs are all constants (e.g. the DEQUANTIZE of a
        float16 weight) and let later runs return that result -- as LiteRT evaluates such ops in
        Prepare. The tensors still appear in run_all and to observers."""
        known: dict[int, np.ndarray] = {}
        for step in self.plan:
            op = step.ctx.op
            if not all(i < 0 or i in known or self.tensors[i].data is not None for i in op.inputs):
                continue
            outs = self._execute(step, self._arguments(op, known))
            for out in outs:
                if isinstance(out, np.ndarray):
                    out.flags.writeable = False      # shared by every run: nobody may change it
            known.update(zip(op.outputs, outs))
            step.run = lambda _args, _outs=list(outs): list(_outs)

    def _check_outputs(self, op: Operator, outs) -> None:
        """What an op computed must be what the model declares: later ops (and the sizes checked
        in __init__) rely on the declared shapes, so a mismatch stops the run here."""
        declared = self._declared
        if len(outs) == len(op.outputs) and all(
                (getattr(out, "shape", None), getattr(out, "dtype", _NO_DTYPE).kind,
                 getattr(out, "dtype", _NO_DTYPE).itemsize) == declared[i]
                for i, out in zip(op.outputs, outs)):
            return                                  # the common case, without building messages
        if len(outs) != len(op.outputs):
            raise ModelFormatError(f"operator {op.index} ({op.opcode}) computed {len(outs)} outputs, "
                                   f"the model declares {len(op.outputs)}")
        for i, out in zip(op.outputs, outs):
            t = self.tensors[i]
            if np.shape(out) != tuple(t.shape) and not _resolves_unknown_shape(t, np.shape(out)):
                raise ModelFormatError(
                    f"operator {op.index} ({op.opcode}) computes shape {list(np.shape(out))} for tensor {i} "
                    f"('{t.name}'), but the model declares {list(t.shape)}")
            dtype = np.result_type(out)
            # kind and width, not byte order: the model's dtypes are little-endian, NumPy's native
            if (dtype.kind, dtype.itemsize) != (t.dtype.kind, t.dtype.itemsize):
                raise ModelFormatError(
                    f"operator {op.index} ({op.opcode}) computes {dtype} values for tensor {i} "
                    f"('{t.name}'), but the model declares {t.type_name}")

    def run(self, inputs, observer: Observer | None = None) -> list[np.ndarray]:
        """Execute the graph; return its outputs in graph order.

        Without an observer each intermediate is let go after the last op that reads it, so
        the allocator hands its (cache-warm) memory to the next ops: peak memory is the live
        working set, not every tensor of the run. Chains of int8 table ops run as one table
        (fusion.py): same outputs, fewer passes; an observer sees every op unfused.
        """
        if observer is not None:
            values = self.run_all(inputs, observer)
        else:
            values = dict(zip(self.graph.inputs, self.bind_inputs(inputs)))
            for step, dead in zip(self._run_plan, self._dead_after):
                outs = self._execute(step, self._arguments(step.ctx.op, values))
                values.update(zip(step.ctx.op.outputs, outs))
                for i in dead:
                    del values[i]
        return [values[i] if i in values else self.tensors[i].data for i in self.graph.outputs]

    # -- running N inputs together (batching.py) ------------------------------------------------

    def run_batch(self, inputs_list: Sequence, observer: Observer | None = None) -> list[list[np.ndarray]]:
        """Execute the graph on N inputs together; return each input's outputs, in graph order,
        exactly as ``run`` would give them one by one.

        Every op runs once over an extra leading axis (batching.py): the GEMMs of all N inputs
        are one larger GEMM, a table op one gather, so the per-op cost is paid once per batch.
        An ``observer(step, inputs, outputs)`` sees each op unfused, with every computed tensor
        as ``[N, *declared shape]`` (a constant as itself).
        """
        if observer is not None:
            values, batched = self._run_batched(inputs_list, self.plan, None, observer)
        else:
            values, batched = self._run_batched(inputs_list, self._run_plan, self._dead_after, None)
        outputs = [values[i] if i in values else self.tensors[i].data for i in self.graph.outputs]
        return [[out[k] if i in batched else out for i, out in zip(self.graph.outputs, outputs)]
                for k in range(len(inputs_list))]

    def run_batch_all(self, inputs_list: Sequence, observer: Observer | None = None) -> list[dict[int, np.ndarray]]:
        """``run_all`` for each of N inputs, executed together as in ``run_batch``."""
        values, batched = self._run_batched(inputs_list, self.plan, None, observer)
        for i in self.graph.outputs:
            values.setdefault(i, self.tensors[i].data)
        return [{i: value[k] if i in batched else value for i, value in values.items()}
                for k in range(len(inputs_list))]

    def activation_bytes(self) -> int:
        """What one run's activations can hold at most: every tensor the graph computes or is
        given, all alive at once (a run without an observer frees most of them earlier). A
        batch of N inputs needs N times this: the bound dataset commands size batches by."""
        constants = {t.index for t in self.tensors if t.data is not None}
        computed = set(self.graph.inputs)
        for op in self.graph.operators:
            computed.update(i for i in op.outputs if i >= 0 and i not in constants)
        return sum(self.tensors[i].nbytes for i in computed)

    def batch_size(self, most: int, max_bytes: int | None = None) -> int:
        """How many inputs (1 to ``most``) to run together within ``max_bytes`` of activations
        (default BATCH_ACTIVATION_BYTES)."""
        max_bytes = BATCH_ACTIVATION_BYTES if max_bytes is None else max_bytes
        return max(1, min(most, max_bytes // max(self.activation_bytes(), 1)))

    def _run_batched(self, inputs_list, plan, dead_after, observer):
        """Run ``plan`` on N inputs: (tensor index -> value, the indices holding [N, ...] values)."""
        bound = []
        for k, inputs in enumerate(inputs_list):
            try:
                bound.append(self.bind_inputs(inputs))
            except InputError as exc:
                raise InputError(f"input set {k} of the batch: {exc}") from None
        if not bound:
            raise InputError("run_batch needs at least one input set")
        n = len(bound)
        values: dict[int, np.ndarray] = {i: np.stack([b[k] for b in bound])
                                         for k, i in enumerate(self.graph.inputs)}
        batched = set(self.graph.inputs)
        for position, step in enumerate(plan):
            op = step.ctx.op
            args = self._arguments(op, values)
            flags = [i in batched for i in op.inputs]
            if any(flags):
                outs = self._execute_batched(step, args, flags, n)
                batched.update(op.outputs)
            else:                                   # constants only: the same for every input
                outs = self._execute(step, args)
            values.update(zip(op.outputs, outs))
            if observer is not None:
                observer(step, args, outs)
            if dead_after is not None:
                for i in dead_after[position]:
                    del values[i]
        return values, batched

    def _execute_batched(self, step: PreparedOp, args: list, flags: list[bool], n: int) -> list:
        """One prepared op on N inputs (batching.run_batched), its outputs checked as _execute
        checks a single run's: each input's slice has the declared shape and type."""
        try:
            outs = run_batched(step, args, flags, n, self.tensors)
        except NpMobileBertError:
            raise
        except Exception as exc:  # noqa: BLE001 - see _kernel_failure
            raise _kernel_failure(step.ctx.op, "run", exc) from exc
        if any(getattr(out, "shape", (None,))[:1] != (n,) for out in outs):
            raise ModelFormatError(f"operator {step.ctx.op.index} ({step.ctx.op.opcode}) lost the batch "
                                   f"axis of a batched run")
        self._check_outputs(step.ctx.op, [out[0] for out in outs])
        return outs

    def _last_uses(self, plan: list[PreparedOp]) -> list[list[int]]:
        """For each step of ``plan``, the computed tensors no later step reads and the graph
        does not output (an output nobody reads dies right after the step that wrote it)."""
        last_use: dict[int, int] = {i: -1 for i in self.graph.inputs}
        for position, step in enumerate(plan):
            for i in step.ctx.op.outputs:
                last_use[i] = position
            for i in step.ctx.op.inputs:
                if i in last_use:
                    last_use[i] = position
        dead_after: list[list[int]] = [[] for _ in plan]
        for i, position in last_use.items():
            if i not in self.graph.outputs and position >= 0:
                dead_after[position].append(i)
        return dead_after


_NO_DTYPE = np.dtype("V")      # stands in for a dtype where a kernel returned a non-array


def _resolves_unknown_shape(tensor: Tensor, shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` fills in the unknown dimensions of a tensor the model declares with a
    dynamic shape: -1 in its shape_signature, or ``shape: []`` beside a signature of some rank
    (the converter's way of saying "known at run time").  LiteRT's kernels resize such tensors
    in Prepare; the declared shape is only a placeholder."""
    signature = tensor.shape_signature
    if signature is None or not (-1 in signature or (tensor.shape == () and signature)):
        return False
    return len(shape) == len(signature) and all(s in (-1, d) for s, d in zip(signature, shape))


def _check_supported(op: Operator) -> None:
    """Control flow and op versions beyond what the kernels know: a clear UnsupportedOpError."""
    if op.opcode in CONTROL_FLOW_OPS:
        called = [f"{k[:-len('_subgraph_index')] or k} {v}" for k, v in op.options.items()
                  if k.endswith("subgraph_index")]
        runs = f" (it runs subgraphs: {', '.join(called)})" if called else ""
        raise UnsupportedOpError(
            f"operator {op.index} ({op.opcode} v{op.version}) is control flow{runs}: "
            f"the NumPy interpreter runs one straight-line graph")
    if op.opcode == "CUSTOM":
        raise UnsupportedOpError(f"custom op {op.name}: not implemented by the NumPy interpreter "
                                 f"(operator {op.index})")
    if op.opcode not in KERNELS:
        # Checked before the graph's order: a stateful op (LSTM, SVDF) reads its state tensors
        # before anything writes them, and the op, not its state, is what is missing.
        raise UnsupportedOpError(f"operator {op.index} ({op.name} v{op.version}): this op is not "
                                 f"implemented by the NumPy interpreter")
    most = MAX_OP_VERSIONS.get(op.opcode)
    if op.version < 1 or (most is not None and op.version > most):
        known = f"versions 1 to {most}" if most is not None else "versions from 1"
        raise UnsupportedOpError(
            f"operator {op.index} ({op.opcode} v{op.version}): unknown op version; "
            f"{op.opcode} has {known}")


def _kernel_failure(op: Operator, stage: str, exc: Exception) -> ModelFormatError:
    """A kernel that raised something other than a package error met tensors it cannot handle.

    The interpreter checks what every op shares (counts, order, declared sizes and shapes);
    what each op needs of its operands beyond that (matching depths, quantization parameters,
    sane constant indices) is the kernel's to check.  Whatever a kernel misses still becomes a
    one-line error naming the op, never a traceback; the original exception is the __cause__.
    """
    detail = " ".join(str(exc).split())
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return ModelFormatError(
        f"operator {op.index} ({op.opcode} v{op.version}) cannot {stage} on this model's tensors "
        f"({type(exc).__name__}: {detail})")


_MALLOPT_DONE = False


def keep_freed_memory() -> None:
    """Tell glibc's malloc to keep freed memory for reuse (once per process; a no-op elsewhere).

    A transformer's temporaries are a few hundred KiB each, above malloc's default mmap
    threshold (128 KiB, raised only as blocks are freed) and trim threshold: by default many
    come straight from the kernel as fresh zeroed pages and go back on free, so each op pays
    page faults for memory it just released. Allocating them from the heap and not trimming
    it makes the whole int8 model ~13% faster (measured side by side) at the same peak RSS:
    what the process frees stays mapped, which is the working set it needs again next op.
    """
    global _MALLOPT_DONE
    if _MALLOPT_DONE:
        return
    _MALLOPT_DONE = True
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):        # not glibc (macOS, Windows, musl without mallopt)
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_TRIM_THRESHOLD, 256 << 20)     # keep up to 256 MiB of free heap top mapped
    mallopt(M_MMAP_THRESHOLD, 32 << 20)      # blocks below 32 MiB (glibc's maximum) from the heap


def _quoted(name: str) -> str:
    """A tensor name (file data) for a message: quoted, escaped, one line."""
    return repr(name)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _human_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


def _as_array(value, spec: Tensor) -> np.ndarray:
    """np.asarray, with what it refuses (ragged lists, objects) as an InputError."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"input '{spec.name}' is not an array: {' '.join(str(exc).split())}") from None


def _coerce_input(value: np.ndarray, spec: Tensor) -> np.ndarray:
    """Accept an input of the right shape whose values the tensor's dtype holds exactly."""
    if tuple(value.shape) != tuple(spec.shape):
        raise InputError(f"input '{spec.name}' has shape {list(spec.shape)}, got {list(value.shape)}")
    if value.dtype == spec.dtype:
        return value
    if np.issubdtype(spec.dtype, np.integer) and np.issubdtype(value.dtype, np.integer):
        info = np.iinfo(spec.dtype)
        if value.size == 0 or (value.min() >= info.min and value.max() <= info.max):
            return value.astype(spec.dtype)
    if np.issubdtype(spec.dtype, np.floating) and np.issubdtype(value.dtype, np.floating):
        return value.astype(spec.dtype)
    raise InputError(f"input '{spec.name}' is {spec.type_name}, got {value.dtype}")
