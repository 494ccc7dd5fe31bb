"""A thin wrapper over the real LiteRT (TFLite) runtime, the oracle the NumPy interpreter matches.

    runner = LiteRTRunner("model.tflite", resolver="ref")   # LiteRT's reference kernels
    logits, = runner.run([attention_mask, input_ids, token_type_ids])
    every = runner.run_all(inputs)                           # tensor index -> copy of its value

Resolvers (``RESOLVERS``):

* ``"ref"``     -- ``BUILTIN_REF``: the reference kernels; the NumPy interpreter is bit-identical
  to these.
* ``"builtin"`` -- ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``: the optimized kernels, no XNNPACK.
* ``"default"`` -- ``AUTO``: what an application gets, optimized kernels plus the XNNPACK delegate.

What ``run_all`` can see (found by experiment with ai-edge-litert 2.3.0):

* It needs ``preserve_all_tensors=True``.  Without it the arena reuses the memory of intermediate
  tensors, so reading one after ``invoke`` silently returns another tensor's bytes (plain
  kernels), or fails with "Tensor data is null" (tensors inside an XNNPACK partition).
* Kernels add temporaries (scratch tensors) after the model's own tensors; some have no shape and
  ``get_tensor`` on them can *crash the process* (segfault), others have a shape and an empty
  name.  ``run_all`` therefore only reads the model's own tensors (indices below the subgraph's
  tensor count in the flatbuffer) and only those whose details LiteRT can report.
* An absent optional input (index -1) is not a tensor at all; a tensor that LiteRT cannot read
  (``ValueError``: no shape, null data) is skipped, so the result may lack some indices.
* With ``"default"`` and ``preserve_all_tensors=True`` LiteRT hands XNNPACK one op per partition,
  so every intermediate is readable (its float values differ from the reference kernels in the
  last bits, as the optimized arithmetic does by design).

A second oracle, another runtime in another Python (``SubprocessRunner``): tflite-runtime 2.14,
the last standalone wheel, needs numpy<2 and so cannot share this environment.  It runs as a
worker process (``WORKER_SCRIPT``, self-contained: it imports only numpy and tflite_runtime);
inputs and every readable model tensor travel through .npz files in a temporary directory, by
the same rules as ``run_all`` above, and one more (found by experiment with tflite-runtime 2.14.0):

* ``experimental_preserve_all_tensors`` does *not* stop 2.14's in-place kernels from writing
  their output over an input's buffer (e.g. the SUB after the attention-mask CAST overwrites
  the CAST's output), so reading intermediates after ``invoke`` returns later values.  Graph
  outputs are never shared in place, so the worker loads a copy of the model whose subgraph
  outputs list every op output too (the original outputs first; kernels and signatures are
  unchanged).  With it, 2.14's reference kernels agree with ours on every float32 tensor.
* In 2.14, ``AUTO`` with ``preserve_all_tensors`` silently becomes
  ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``: its ``"default"`` is ``"builtin"`` (no XNNPACK).

    runner = SubprocessRunner("/opt/tfrt/bin/python", "model.tflite", resolver="ref")
    runner.name                                   # "tflite-runtime 2.14.0"
    every = runner.run_all(inputs)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from importlib import metadata
from typing import Mapping, Sequence

import numpy as np

from .feeds import order_inputs
from .errors import InputError, NpMobileBertError

RESOLVERS = ("ref", "builtin", "default")
RUNTIMES = ("litert", "tflite-runtime", "tflm")
#: the environment variable naming a Python that has tflite-runtime (``verify --runtime tflite-runtime``)
TFLITE_RUNTIME_PYTHON_ENV = "NPMOBILEBERT_TFLITE_RUNTIME_PYTHON"

_RESOLVER_TYPES = {
    "ref": "BUILTIN_REF",
    "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    "default": "AUTO",
}


def _backend():
    """(interpreter module, distribution name), preferring ai-edge-litert over tflite-runtime."""
    try:
        from ai_edge_litert import interpreter as mod

        return mod, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod  # type: ignore[import-not-found]

        return mod, "tflite-runtime"
    except ImportError:
        pass
    raise NpMobileBertError(
        "no LiteRT runtime installed: pip install ai-edge-litert (or tflite-runtime)")


def runtime_name() -> str:
    """The runtime in use and its version, e.g. ``"ai-edge-litert 2.3.0"``."""
    _, dist = _backend()
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = "unknown version"
    return f"{dist} {version}"


def _model_tensor_count(content: bytes) -> int | None:
    """How many tensors subgraph 0 declares in the flatbuffer (None when it cannot be read)."""
    try:
        from ai_edge_litert.schema_py_generated import Model as _Model
    except ImportError:
        try:
            from tflite.Model import Model as _Model  # type: ignore[import-not-found]
        except ImportError:
            return None
    try:
        m = _Model.GetRootAs(content, 0)
        if m.SubgraphsLength() < 1:
            return None
        return int(m.Subgraphs(0).TensorsLength())
    except Exception:  # a corrupt model: LiteRT itself will say so
        return None


def _every_op_output_as_graph_output(content: bytes) -> tuple[bytes, list[int]] | None:
    """(a copy of the model whose subgraph 0 outputs list every op output after its own outputs,
    its own output indices); None when the model cannot be rewritten (LiteRT will say why)."""
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema

        model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
        sg = model.subgraphs[0]
        own = [int(i) for i in (sg.outputs if sg.outputs is not None else [])]
        seen = set(own)
        extra = []
        for op in sg.operators or []:
            for i in (op.outputs if op.outputs is not None else []):
                if i >= 0 and int(i) not in seen:
                    seen.add(int(i))
                    extra.append(int(i))
        sg.outputs = np.array(own + extra, dtype=np.int32)
        builder = flatbuffers.Builder(max(1024, len(content) + 4096))
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output()), own
    except Exception:  # noqa: BLE001 - a corrupt or unusual model: load it as it is
        return None


def check_before_litert(model_source) -> None:
    """Refuse, in one line, what LiteRT would run out of memory on or crash on, before it sees the
    model: ``model_source`` is a path, bytes or a loaded Model.

    LiteRT allocates every activation a graph declares and computes constant ops in Prepare, so
    the shape and memory checks of the NumPy interpreter (static_checks.check_graph) apply to it
    too; and it aborts or segfaults (found with ai-edge-litert 2.3.0, reference and XNNPACK
    kernels alike) on quantization the loader accepts: a zero or negative scale, and per-channel
    quantization on an activation (its kernels read one scale there). What else crashes it is
    caught by ``_probe_in_child``.
    """
    from .model import Model, load_model
    from .static_checks import check_graph, quoted

    model = model_source if isinstance(model_source, Model) else load_model(model_source)
    for graph in model.subgraphs:
        prefix = f"subgraph {graph.index} " if graph.index else ""
        for t in graph.tensors:
            q = t.quantization
            if q is None:
                continue
            if (q.scales <= 0).any():
                bad = float(q.scales[q.scales <= 0][0])
                raise NpMobileBertError(
                    f"{prefix}tensor {t.index} ({quoted(t.name)}) has the quantization scale {bad:g}: "
                    f"scales must be positive (LiteRT crashes on this model)")
            if q.per_channel and t.data is None:
                raise NpMobileBertError(
                    f"{prefix}tensor {t.index} ({quoted(t.name)}) is an activation quantized per channel "
                    f"({q.scales.size} scales): LiteRT takes per-channel quantization on constant "
                    f"weights only (it crashes on this model)")
        check_graph(graph)


#: How long the probe may take before it is given up (the parent then loads the model itself).
_PROBE_TIMEOUT_S = 60.0


def _probe_in_child(mod, content: bytes, op_resolver) -> None:
    """Load, allocate and invoke the model once (inputs of zeros) in a forked child, so that a
    crash inside LiteRT -- a CHECK failure's abort, a segfault -- is this one-line error instead
    of the death of the command. The child prints nothing (its stdout and stderr are /dev/null:
    LiteRT logs its errors there natively, before raising); when LiteRT refuses to load the model
    the child sends the reason back and it is raised here, so that the in-process load, which
    would print the native log lines, never happens."""
    if not hasattr(os, "fork"):
        return
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # "This process is multi-threaded, use of fork() may lead to deadlocks": the child only
        # runs LiteRT, which starts its own threads, and it is waited for with a time limit
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            try:
                interp = mod.Interpreter(model_content=content, num_threads=1,
                                         experimental_op_resolver_type=op_resolver)
                interp.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                os.write(write_end, _one_line(e).encode("utf-8", "replace"))
                raise
            for d in interp.get_input_details():
                interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
            interp.invoke()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + _PROBE_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            return
        time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        refusal = pipe.read().decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        raise NpMobileBertError(f"LiteRT crashed ({name}) on this model when loading and running it "
                                f"once (in a child process)")
    if refusal:
        raise NpMobileBertError(f"LiteRT cannot load the model: {refusal}")


def check_litert_survives(model_path: str | os.PathLike, resolver: str = "ref") -> None:
    """check_before_litert, then LiteRT loads and runs the model once in a child process: a
    model that crashes LiteRT (or that it refuses) is a one-line error here. For the callers
    whose LiteRT runs elsewhere (bench's workers)."""
    mod, _ = _backend()
    check_before_litert(model_path)
    with open(model_path, "rb") as f:
        content = f.read()
    _probe_in_child(mod, content, getattr(mod.OpResolverType, _RESOLVER_TYPES[resolver]))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


class _Runner:
    """What both runners share: binding inputs (by position or name) to the input details."""

    input_details: list[dict]
    name: str

    # -- inputs ------------------------------------------------------------------------------------

    def _bind(self, inputs: Sequence | Mapping) -> list[np.ndarray]:
        details = self.input_details
        inputs = order_inputs(inputs, [d["name"] for d in details])
        bound = []
        for value, d in zip(inputs, details):
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError) as e:  # ragged nested lists, objects
                raise InputError(f"input '{d['name']}' is not an array: {_one_line(e)}") from None
            want = np.dtype(d["dtype"])
            if arr.dtype != want:
                arr = self._cast(arr, want, d["name"])
            shape = tuple(int(s) for s in d["shape"])
            if arr.shape != shape:
                raise InputError(f"input '{d['name']}': expected shape {list(shape)}, got {list(arr.shape)}")
            bound.append(np.array(arr, order="C", copy=True))  # keeps 0-d arrays 0-d
        return bound

    @staticmethod
    def _cast(arr: np.ndarray, want: np.dtype, name: str) -> np.ndarray:
        """Integers convert to another integer type when every value fits, floats to the float type
        (as the NumPy interpreter accepts them); nothing else converts."""
        if arr.dtype.kind == "f" and want.kind == "f":
            return arr.astype(want)
        if want.kind == "S" and arr.dtype.kind in "OS":
            return arr          # STRING: LiteRT takes an array of bytes objects (or fixed bytes) as it is
        if arr.dtype.kind in "iub" and want.kind in "iu":
            info = np.iinfo(want)
            if arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max):
                return arr.astype(want)
            raise InputError(f"input '{name}': values outside the {want.name} range "
                              f"[{info.min}, {info.max}]")
        raise InputError(f"input '{name}': expected dtype {want.name}, got {arr.dtype.name}")


class LiteRTRunner(_Runner):
    """One LiteRT interpreter over a model, with tensors allocated and ready to run."""

    def __init__(self, model: str | os.PathLike | bytes, resolver: str = "ref",
                 num_threads: int = 1, preserve_all_tensors: bool = True):
        if resolver not in RESOLVERS:
            raise NpMobileBertError(f"unknown resolver '{resolver}': choose one of {', '.join(RESOLVERS)}")
        mod, _ = _backend()
        self.name = runtime_name()
        self.note = ""
        if isinstance(model, (bytes, bytearray, memoryview)):
            content = bytes(model)
            self.path = None
        else:
            self.path = os.fspath(model)
            try:
                with open(self.path, "rb") as f:
                    content = f.read()
            except OSError as e:
                raise NpMobileBertError(f"cannot read model {self.path}: {e.strerror or e}") from e
        self.resolver = resolver
        self.preserve_all_tensors = bool(preserve_all_tensors)
        op_resolver = getattr(mod.OpResolverType, _RESOLVER_TYPES[resolver])
        check_before_litert(self.path if self.path is not None else content)
        _probe_in_child(mod, content, op_resolver)
        printed: list[str] = []
        try:
            # LiteRT's C++ logs "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on fd 2
            # (tflite/minimal_logging, which TF_CPP_MIN_LOG_LEVEL does not silence): it is caught
            # here; anything else it prints is passed on, unless loading fails (the error is
            # then one line, which carries LiteRT's message).
            with warnings.catch_warnings(), _native_stderr(printed):
                # LiteRT warns that preserve_all_tensors with AUTO/BUILTIN is for debugging: it is.
                warnings.simplefilter("ignore", UserWarning)
                self._interp = mod.Interpreter(
                    model_content=content,
                    num_threads=int(num_threads),
                    experimental_op_resolver_type=op_resolver,
                    experimental_preserve_all_tensors=self.preserve_all_tensors,
                )
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise NpMobileBertError(f"LiteRT cannot load the model: {_one_line(e)}") from e
        for line in printed:
            if not line.startswith("INFO: "):
                print(line, file=sys.stderr)
        self.input_details = self._interp.get_input_details()
        self.output_details = self._interp.get_output_details()
        count = _model_tensor_count(content)
        # The model's own tensors; kernel temporaries come after them (see the module docstring).
        self._n_model_tensors = count

    # -- running -----------------------------------------------------------------------------------

    def _invoke(self, inputs) -> None:
        for arr, d in zip(self._bind(inputs), self.input_details):
            self._interp.set_tensor(d["index"], arr)
        try:
            self._interp.invoke()
        except (ValueError, RuntimeError) as e:
            raise NpMobileBertError(f"LiteRT invoke failed: {_one_line(e)}") from e

    def run(self, inputs) -> list[np.ndarray]:
        """Run once; copies of the outputs in model output order."""
        self._invoke(inputs)
        return [np.array(self._interp.get_tensor(d["index"]), copy=True) for d in self.output_details]

    def run_all(self, inputs) -> dict[int, np.ndarray]:
        """Run once; a copy of every model tensor LiteRT can read, constants included, by index."""
        if not self.preserve_all_tensors:
            raise NpMobileBertError("run_all needs preserve_all_tensors=True: otherwise LiteRT reuses "
                                    "the memory of intermediate tensors")
        self._invoke(inputs)
        out: dict[int, np.ndarray] = {}
        # get_tensor_details() lists only tensors with readable details (name, shape, type); calling
        # get_tensor on the others can crash the process, so they are never touched.
        for d in self._interp.get_tensor_details():
            i = int(d["index"])
            if self._n_model_tensors is not None and i >= self._n_model_tensors:
                continue  # a kernel temporary
            if self._n_model_tensors is None and not d["name"]:
                continue  # unnamed: a kernel temporary
            try:
                value = self._interp.get_tensor(i)
            except ValueError:
                continue  # e.g. "Tensor data is null": not readable after this invoke
            out[i] = np.array(value, copy=True)
        return out

    def tensor_details(self) -> list[dict]:
        """LiteRT's details for the model's own tensors."""
        return [d for d in self._interp.get_tensor_details()
                if self._n_model_tensors is None or d["index"] < self._n_model_tensors]


# ------------------------------------------------------------------------------------------------
# TensorFlow Lite Micro, through the tflite-micro package's Python interpreter


def tflm_available() -> bool:
    """Whether the ``tflite-micro`` package (the ``[tflm]`` extra) can be imported."""
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


#: tflite-micro memory_planner/linear_memory_planner.h kMaxBufferCount: the planner behind
#: kPreserveAllTensors holds at most this many tensors ("Too many buffers (max is 1024)").
TFLM_LINEAR_PLANNER_MAX_BUFFERS = 1024


@contextlib.contextmanager
def _native_stderr(lines: list[str]):
    """Collect what native code writes to file descriptor 2 (TFLite Micro's MicroPrintf) into
    ``lines`` instead of the terminal, so that an error stays one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line.strip() for line in sink.read().decode(errors="replace").splitlines()
                         if line.strip())


class TFLMRunner(_Runner):
    """TensorFlow Lite Micro's interpreter (``tflite-micro`` package) over a model.

    What it can see (found by experiment with tflite-micro 0.dev20261023):

    * With ``kPreserveAllTensors`` every tensor keeps its own arena memory, so ``GetTensor``
      after ``invoke`` reads each intermediate (flat or shaped: reshaped to the model's shapes).
    * That mode plans with the linear planner, which holds at most 1024 tensors: a full-size
      MobileBERT (24 layers, ~1,080 activations) does not load. Such a model runs with the
      default (greedy) planner on a copy whose graph outputs list every op output (kernels
      unchanged), each then read with ``get_output`` -- the same trick as for tflite-runtime.
    * TFLite Micro registers its own op set: a model with an op or dtype it lacks (e.g. int16
      GATHER in 16x8 models) fails at load; what TFLite Micro printed becomes the one-line error.
    """

    def __init__(self, model: str | os.PathLike | bytes, arena_size: int | None = None):
        try:
            from tflite_micro.python.tflite_micro import runtime as tflm
        except ImportError as e:
            raise NpMobileBertError("TensorFlow Lite Micro is not installed: pip install "
                                    "tflite-micro (the [tflm] extra)") from e
        from .model import load_model

        content = bytes(model) if isinstance(model, (bytes, bytearray, memoryview)) else None
        if content is None:
            try:
                with open(os.fspath(model), "rb") as f:
                    content = f.read()
            except OSError as e:
                raise NpMobileBertError(f"cannot read model {os.fspath(model)}: {e.strerror or e}") from e
        self._model = load_model(content)
        check_before_litert(self._model)   # TFLM's kernels are LiteRT's reference kernels
        try:
            version = metadata.version("tflite-micro")
        except metadata.PackageNotFoundError:
            version = "unknown version"
        self.name = f"tflite-micro {version}"
        self.note = ""
        graph = self._model.subgraphs[0]
        self._inputs = list(graph.inputs)
        self.input_details = [{"name": self._model.tensors[i].name, "index": i,
                               "dtype": self._model.tensors[i].dtype,
                               "shape": self._model.tensors[i].shape} for i in self._inputs]
        self._outputs = list(graph.outputs)
        self._computed = [i for op in graph.operators for i in op.outputs if i >= 0]
        # every activation stays alive in either mode: the arena holds them all, plus slack
        activations = sum(t.nbytes for t in self._model.tensors if t.data is None)
        arena = arena_size or max(len(content) * 2, activations * 2 + (1 << 20))
        config = tflm.InterpreterConfig.kPreserveAllTensors
        self._output_position: dict[int, int] | None = None
        if len(self._inputs) + len(self._computed) > TFLM_LINEAR_PLANNER_MAX_BUFFERS:
            rewritten = _every_op_output_as_graph_output(content)
            if rewritten is None:
                raise NpMobileBertError("TFLite Micro cannot hold this many tensors and the model "
                                        "cannot be rewritten to expose them")
            content, own = rewritten
            order = own + [i for i in self._computed if i not in set(own)]
            self._output_position = {i: k for k, i in enumerate(order)}
            config = tflm.InterpreterConfig.kAllocationRecording
        printed: list[str] = []
        try:
            with _native_stderr(printed):
                self._interp = tflm.Interpreter.from_bytes(content, arena_size=arena,
                                                           intrepreter_config=config)
        except (ValueError, RuntimeError) as e:
            said = "; ".join(printed[-3:])
            raise NpMobileBertError(f"TFLite Micro cannot load the model: {_one_line(e)}"
                                    + (f" ({said})" if said else "")) from e
        self._fed: list[np.ndarray] = []

    def _invoke(self, inputs) -> None:
        self._fed = self._bind(inputs)
        for k, arr in enumerate(self._fed):
            self._interp.set_input(arr, k)
        printed: list[str] = []
        try:
            with _native_stderr(printed):
                self._interp.invoke()
        except (ValueError, RuntimeError) as e:
            said = "; ".join(printed[-3:])
            raise NpMobileBertError(f"TFLite Micro invoke failed: {_one_line(e)}"
                                    + (f" ({said})" if said else "")) from e

    def _tensor(self, index: int) -> np.ndarray:
        if index in self._inputs:
            return np.array(self._fed[self._inputs.index(index)], copy=True)
        if self._output_position is not None:
            value = self._interp.get_output(self._output_position[index])
        else:
            value = self._interp.GetTensor(index, 0)["tensor_data"]
        return np.array(value, copy=True).reshape(self._model.tensors[index].shape)

    def run(self, inputs) -> list[np.ndarray]:
        """Run once; copies of the outputs in model output order."""
        self._invoke(inputs)
        return [self._tensor(i) for i in self._outputs]

    def run_all(self, inputs) -> dict[int, np.ndarray]:
        """Run once; a copy of every graph input and op output, by tensor index."""
        self._invoke(inputs)
        return {i: self._tensor(i) for i in self._inputs + self._computed}


# ------------------------------------------------------------------------------------------------
# tflite-runtime (or any runtime) in another Python: a worker process


#: The worker run by ``SubprocessRunner`` in the other Python.  Self-contained on purpose: it
#: imports only numpy and tflite_runtime, never npmobilebert (which that Python may not have).
#: argv: model path, resolver type name (BUILTIN_REF ...), the model's own tensor count (-1:
#: unknown), threads, how many of the subgraph outputs are the model's own (-1: all).  Protocol on its original stdout (one JSON object a line; the runtime's own
#: prints are redirected to stderr): first {"ok", "version", "inputs", "outputs"} or {"error"};
#: then for each request line {"in": npz, "out": npz, "all": bool} from stdin, {"ok": true} or
#: {"error"}.  Inputs are named "t<index>" in the .npz, results too.
WORKER_SCRIPT = r"""
import json, os, sys
proto = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)      # whatever the runtime prints goes to stderr, not into the protocol


def say(obj):
    proto.write(json.dumps(obj) + "\n")
    proto.flush()


def error(e):
    say({"error": " ".join(("%s: %s" % (type(e).__name__, e)).split())})


try:
    import numpy as np
    from tflite_runtime import interpreter as tfl
    import tflite_runtime
    version = getattr(tflite_runtime, "__version__", "unknown version")
except Exception as e:
    error(e)
    sys.exit(0)

model_path, resolver = sys.argv[1], sys.argv[2]
n_model, threads, n_outputs = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
try:
    it = tfl.Interpreter(model_path=model_path, num_threads=threads,
                         experimental_op_resolver_type=getattr(tfl.OpResolverType, resolver),
                         experimental_preserve_all_tensors=True)
    it.allocate_tensors()
except Exception as e:
    say({"load_error": " ".join(str(e).split()), "version": version})
    sys.exit(0)


def details(ds):
    return [{"name": d["name"], "index": int(d["index"]), "shape": [int(x) for x in d["shape"]],
             "dtype": np.dtype(d["dtype"]).str} for d in ds]


inputs, outputs = it.get_input_details(), it.get_output_details()
if n_outputs >= 0:
    outputs = outputs[:n_outputs]     # the others were added only to keep them from in-place reuse
say({"ok": True, "version": version, "inputs": details(inputs), "outputs": details(outputs)})
for line in sys.stdin:
    try:
        req = json.loads(line)
        with np.load(req["in"]) as z:
            for d in inputs:
                it.set_tensor(d["index"], z["t%d" % d["index"]])
        it.invoke()
        out = {}
        if req["all"]:
            # get_tensor_details() lists only tensors with readable details; kernel temporaries
            # (indices past the model's own tensors) are never touched: get_tensor on a shapeless
            # one can crash the process.
            for d in it.get_tensor_details():
                i = int(d["index"])
                if (n_model >= 0 and i >= n_model) or (n_model < 0 and not d["name"]):
                    continue
                try:
                    out["t%d" % i] = np.array(it.get_tensor(i), copy=True)
                except ValueError:
                    continue      # e.g. "Tensor data is null"
        else:
            for d in outputs:
                out["t%d" % d["index"]] = np.array(it.get_tensor(d["index"]), copy=True)
        np.savez(req["out"], **out)
        say({"ok": True})
    except Exception as e:
        error(e)
"""


def _can_import_tflite_runtime(python: str) -> bool:
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        import importlib.util
        return importlib.util.find_spec("tflite_runtime") is not None
    try:
        return subprocess.run([python, "-c", "import tflite_runtime"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def tflite_runtime_python(explicit: str | None = None) -> str:
    """The Python to run tflite-runtime in: ``explicit``, else $NPMOBILEBERT_TFLITE_RUNTIME_PYTHON,
    else this interpreter when it can import tflite_runtime; otherwise a clear error."""
    if explicit:
        return explicit
    env = os.environ.get(TFLITE_RUNTIME_PYTHON_ENV)
    if env:
        return env
    if _can_import_tflite_runtime(sys.executable):
        return sys.executable
    raise NpMobileBertError(
        "tflite-runtime is not installed here: pass --runtime-python PATH (a Python that can "
        f"import tflite_runtime, e.g. a venv with tflite-runtime==2.14.0 and numpy<2) or set "
        f"{TFLITE_RUNTIME_PYTHON_ENV}")


class SubprocessRunner(_Runner):
    """tflite-runtime's interpreter over a model, in a worker process of another Python.

    The same ``run`` / ``run_all`` as ``LiteRTRunner``; ``name`` is e.g. "tflite-runtime 2.14.0".
    The worker loads the model once and serves every run; ``close()`` (or ``with``) ends it.
    """

    def __init__(self, python_exe: str | os.PathLike, model_path: str | os.PathLike,
                 resolver: str = "ref", num_threads: int = 1, timeout_s: float = 600.0):
        if resolver not in RESOLVERS:
            raise NpMobileBertError(f"unknown resolver '{resolver}': choose one of {', '.join(RESOLVERS)}")
        self.python = os.fspath(python_exe)
        self.path = os.fspath(model_path)
        self.resolver = resolver
        self.timeout_s = timeout_s
        self.name = "tflite-runtime"
        # tflite_runtime/interpreter.py turns AUTO into BUILTIN_WITHOUT_DEFAULT_DELEGATES when
        # experimental_preserve_all_tensors is set (which run_all needs)
        self.note = ("tflite-runtime runs the AUTO resolver as BUILTIN_WITHOUT_DEFAULT_DELEGATES when "
                     "every tensor is kept: 'default' is 'builtin' here, without XNNPACK"
                     if resolver == "default" else "")
        self._proc = None
        try:
            with open(self.path, "rb") as f:
                content = f.read()
        except OSError as e:
            raise NpMobileBertError(f"cannot read model {self.path}: {e.strerror or e}") from e
        count = _model_tensor_count(content)
        self._n_model_tensors = count
        self._tmp = tempfile.TemporaryDirectory(prefix="npmobilebert_rt_")
        load_path, n_outputs = os.path.abspath(self.path), -1
        rewritten = _every_op_output_as_graph_output(content)
        del content
        if rewritten is not None:
            # see the module docstring: intermediates that in-place kernels cannot overwrite
            load_path = os.path.join(self._tmp.name, "model.tflite")
            with open(load_path, "wb") as f:
                f.write(rewritten[0])
            n_outputs = len(rewritten[1])
            del rewritten
        self._stderr = open(os.path.join(self._tmp.name, "stderr.txt"), "w+b")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        try:
            self._proc = subprocess.Popen(
                [self.python, "-c", WORKER_SCRIPT, load_path, _RESOLVER_TYPES[resolver],
                 str(-1 if count is None else count), str(int(num_threads)), str(n_outputs)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                text=True, env=env, cwd=self._tmp.name)
        except OSError as e:
            self.close()
            raise NpMobileBertError(f"cannot start {self.python} for tflite-runtime: "
                                    f"{e.strerror or e}") from e
        hello = self._reply("starting")
        if "version" in hello:
            self.name = f"tflite-runtime {hello['version']}"
        if "load_error" in hello:
            self.close()
            raise NpMobileBertError(f"{self.name} cannot load the model: {_one_line(hello['load_error'])}")
        if "error" in hello:
            self.close()
            raise NpMobileBertError(f"tflite-runtime does not run in {self.python}: {_one_line(hello['error'])}")
        self.input_details = [dict(d, dtype=np.dtype(d["dtype"])) for d in hello["inputs"]]
        self.output_details = [dict(d, dtype=np.dtype(d["dtype"])) for d in hello["outputs"]]

    # -- the worker --------------------------------------------------------------------------------

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            lines = [ln for ln in self._stderr.read().decode("utf-8", "replace").splitlines()
                     if ln.strip() and not ln.startswith("INFO:")]
        except (OSError, ValueError):
            return ""
        return _one_line(lines[-1]) if lines else ""

    def _reply(self, doing: str) -> dict:
        proc = self._proc
        if proc is None:
            raise NpMobileBertError(f"{self.name} worker is closed")
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            tail = self._stderr_tail()
            self.close()
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise NpMobileBertError(f"{self.name} ({self.python}) {how} while {doing}"
                                    + (f": {tail}" if tail else ""))
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise NpMobileBertError(f"{self.name} worker said something unexpected: {_one_line(line)}") from None

    def _request(self, inputs, everything: bool) -> dict[int, np.ndarray]:
        bound = self._bind(inputs)
        if self._proc is None:
            raise NpMobileBertError(f"{self.name} worker is closed")
        in_path = os.path.join(self._tmp.name, "in.npz")
        out_path = os.path.join(self._tmp.name, "out.npz")
        np.savez(in_path, **{f"t{d['index']}": a for a, d in zip(bound, self.input_details)})
        if os.path.exists(out_path):
            os.unlink(out_path)
        try:
            self._proc.stdin.write(json.dumps({"in": in_path, "out": out_path, "all": everything}) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reply (none) tells why
        reply = self._reply("running the model")
        if "error" in reply:
            raise NpMobileBertError(f"{self.name} invoke failed: {_one_line(reply['error'])}")
        with np.load(out_path) as z:
            return {int(k[1:]): z[k] for k in z.files}

    def run(self, inputs) -> list[np.ndarray]:
        """Run once; the outputs in model output order."""
        got = self._request(inputs, everything=False)
        return [got[d["index"]] for d in self.output_details]

    def run_all(self, inputs) -> dict[int, np.ndarray]:
        """Run once; every model tensor the runtime can read, constants included, by index."""
        return self._request(inputs, everything=True)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
            self._stderr = None
        if getattr(self, "_tmp", None) is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def make_runner(runtime: str, model_path: str | os.PathLike, resolver: str = "ref",
                python: str | None = None) -> _Runner:
    """``"litert"`` (in process) or ``"tflite-runtime"`` (in ``python``, see tflite_runtime_python)."""
    if runtime == "litert":
        return LiteRTRunner(model_path, resolver=resolver)
    if runtime == "tflite-runtime":
        return SubprocessRunner(tflite_runtime_python(python), model_path, resolver=resolver)
    if runtime == "tflm":
        return TFLMRunner(model_path)
    raise NpMobileBertError(f"unknown runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
