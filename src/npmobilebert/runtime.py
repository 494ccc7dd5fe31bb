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
"""

from __future__ import annotations

import os
import warnings
from importlib import metadata
from typing import Mapping, Sequence

import numpy as np

from .errors import InputError, NpMobileBertError

RESOLVERS = ("ref", "builtin", "default")

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


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


class LiteRTRunner:
    """One LiteRT interpreter over a model, with tensors allocated and ready to run."""

    def __init__(self, model: str | os.PathLike | bytes, resolver: str = "ref",
                 num_threads: int = 1, preserve_all_tensors: bool = True):
        if resolver not in RESOLVERS:
            raise NpMobileBertError(f"unknown resolver '{resolver}': choose one of {', '.join(RESOLVERS)}")
        mod, _ = _backend()
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
        try:
            with warnings.catch_warnings():
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
        self.input_details = self._interp.get_input_details()
        self.output_details = self._interp.get_output_details()
        count = _model_tensor_count(content)
        # The model's own tensors; kernel temporaries come after them (see the module docstring).
        self._n_model_tensors = count

    # -- inputs ------------------------------------------------------------------------------------

    def _bind(self, inputs: Sequence | Mapping) -> list[np.ndarray]:
        details = self.input_details
        names = [d["name"] for d in details]
        if isinstance(inputs, Mapping):
            unknown = sorted(set(inputs) - set(names))
            missing = [n for n in names if n not in inputs]
            if unknown or missing:
                raise InputError(f"inputs by name: expected {names}, missing {missing}, unknown {unknown}")
            inputs = [inputs[n] for n in names]
        else:
            inputs = list(inputs)
        if len(inputs) != len(details):
            raise InputError(f"the model takes {len(details)} inputs ({', '.join(names)}), "
                              f"got {len(inputs)}")
        bound = []
        for value, d in zip(inputs, details):
            arr = np.asarray(value)
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
        if arr.dtype.kind in "iub" and want.kind in "iu":
            info = np.iinfo(want)
            if arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max):
                return arr.astype(want)
            raise InputError(f"input '{name}': values outside the {want.name} range "
                              f"[{info.min}, {info.max}]")
        raise InputError(f"input '{name}': expected dtype {want.name}, got {arr.dtype.name}")

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
