"""Run a .tflite graph op by op in NumPy with TFLite's own integer arithmetic.

    model = load_model("model.tflite")
    interp = Interpreter(model)                 # prepares every op once (multipliers, LUTs, ...)
    logits, = interp.run([attention_mask, input_ids, token_type_ids])
    every = interp.run_all(inputs)               # tensor index -> value, every non-constant tensor

An ``observer(step, inputs, outputs)`` passed to ``run`` sees each op as it executes: the CLI's
``--trace`` is such an observer.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import InputError, ModelFormatError
from .kernels import PreparedOp, prepare_op
from .model import Model, Tensor

Observer = Callable[[PreparedOp, list, list], None]


class Interpreter:
    """A prepared plan for one subgraph: its ops in order, ready to run on inputs."""

    def __init__(self, model: Model, subgraph: int = 0):
        self.model = model
        self.graph = model.subgraphs[subgraph]
        self.tensors: tuple[Tensor, ...] = self.graph.tensors
        self._check_order()
        self.plan: list[PreparedOp] = [prepare_op(op, self.tensors) for op in self.graph.operators]

    # -- graph facts -----------------------------------------------------------------------------

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.graph.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.graph.outputs]

    def _check_order(self) -> None:
        """Every op input must be a constant, a graph input or an earlier op's output."""
        ready = set(self.graph.inputs) | {t.index for t in self.tensors if t.data is not None}
        for op in self.graph.operators:
            for i in op.inputs:
                if i >= 0 and i not in ready:
                    raise ModelFormatError(
                        f"operator {op.index} ({op.opcode}) reads tensor {i} "
                        f"('{self.tensors[i].name}') before any operator writes it")
            ready.update(op.outputs)

    # -- inputs ----------------------------------------------------------------------------------

    def bind_inputs(self, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Check and order the inputs: a list in graph order, or a dict by tensor name."""
        specs = self.input_tensors
        if isinstance(inputs, Mapping):
            names = [t.name for t in specs]
            unknown = sorted(set(inputs) - set(names))
            missing = [n for n in names if n not in inputs]
            if unknown or missing:
                raise InputError(f"inputs by name: expected {names}, missing {missing}, unknown {unknown}")
            inputs = [inputs[n] for n in names]
        if len(inputs) != len(specs):
            raise InputError(f"the model takes {len(specs)} inputs "
                             f"({', '.join(t.name for t in specs)}), got {len(inputs)}")
        return [_coerce_input(np.asarray(value), spec) for value, spec in zip(inputs, specs)]

    # -- running ---------------------------------------------------------------------------------

    def run_all(self, inputs, observer: Observer | None = None) -> dict[int, np.ndarray]:
        """Execute every op; return every non-constant tensor (inputs included) by index."""
        values: dict[int, np.ndarray] = dict(zip(self.graph.inputs, self.bind_inputs(inputs)))
        constants = self.tensors
        for step in self.plan:
            args = [None if i < 0 else values[i] if i in values else constants[i].data
                    for i in step.ctx.op.inputs]
            outs = step.run(args)
            for i, out in zip(step.ctx.op.outputs, outs):
                values[i] = out
            if observer is not None:
                observer(step, args, outs)
        return values

    def run(self, inputs, observer: Observer | None = None) -> list[np.ndarray]:
        """Execute the graph; return its outputs in graph order."""
        values = self.run_all(inputs, observer)
        return [values[i] if i in values else self.tensors[i].data for i in self.graph.outputs]


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
