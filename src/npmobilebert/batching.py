"""How each prepared op runs on N inputs at once (``Interpreter.run_batch``).

A batched activation is the op's tensor with one extra leading axis, ``[N, *declared shape]``;
constants (and ops computed from constants only) stay as they are. Each op takes the batch axis
in the way its arithmetic allows while giving every input exactly the values of its own run:

* elementwise ops (every output element a function of the matching input elements: ADD, MUL,
  the int8 tables, QUANTIZE, ...): the kernel itself on the batched operands, ranks aligned so
  that NumPy broadcasting pairs the same elements as in a single run;
* row ops (FULLY_CONNECTED, SOFTMAX: each row of the last axis computed on its own): the kernel
  on ``[N, ...]`` -- one GEMM of N times the rows, each output element summed over the same
  depth in the same order, so exact integer GEMMs and the reference-order float sum
  (sequential_float_matmul) give the same bits;
* BATCH_MATMUL (int8/int16/float): the kernel on rank-aligned operands, whose leading batch axis
  np.matmul broadcasts like any other batch dimension;
* moves (RESHAPE, EXPAND_DIMS, SQUEEZE, TRANSPOSE with a constant permutation, GATHER of a
  constant table along axis 0): the same move with the batch axis kept first;
* every other op (STRIDED_SLICE, PAD, CONCATENATION, MEAN/SUM, the hybrid BATCH_MATMUL, ops
  added later): once per input, the results stacked -- their single-run code unchanged.
"""

from __future__ import annotations

import numpy as np

from .kernels import PreparedOp

ELEMENTWISE_OPS = frozenset({"ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "RSQRT", "TANH", "LOGISTIC",
                             "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE", "CAST"})
ROW_OPS = frozenset({"SOFTMAX"})
RESHAPE_OPS = frozenset({"RESHAPE", "EXPAND_DIMS", "SQUEEZE"})


def run_batched(step: PreparedOp, args: list, batched: list[bool], n: int, tensors) -> list:
    """The outputs of ``step`` for N inputs, each ``[N, *declared]``. ``args``: the op's inputs,
    ``[N, ...]`` where ``batched`` says so, else the constant value (None: absent)."""
    op = step.ctx.op
    opcode = op.opcode
    out_shapes = [tuple(tensors[i].shape) for i in op.outputs]
    if opcode in ELEMENTWISE_OPS:
        rank = len(out_shapes[0])
        return step.run([_aligned(a, rank) if b else a for a, b in zip(args, batched)])
    if opcode in ROW_OPS:
        return step.run(args)
    if opcode == "FULLY_CONNECTED" and batched[0] and not any(batched[1:]):
        return _fully_connected(step, args, out_shapes[0])
    if opcode == "BATCH_MATMUL" and step.ctx.inputs[1].dtype == step.ctx.inputs[0].dtype:
        rank = max(len(tensors[i].shape) for i in op.inputs[:2])
        outs = step.run([_aligned(a, rank) if b else a for a, b in zip(args, batched)])
        return [outs[0].reshape((n,) + out_shapes[0])]
    if opcode in RESHAPE_OPS and batched[0]:
        return [args[0].reshape((n,) + out_shapes[0])]
    if opcode == "TRANSPOSE" and batched[0] and not batched[1]:
        perm = np.asarray(args[1]).astype(np.int64).reshape(-1)
        rank = args[0].ndim - 1
        if len(perm) == rank and sorted(perm % max(rank, 1)) == list(range(rank)):
            return step.run([args[0], np.concatenate([[0], perm % rank + 1])])
    if (opcode == "GATHER" and batched == [False, True] and op.options.get("batch_dims", 0) == 0
            and op.options.get("axis", 0) % max(args[0].ndim, 1) == 0):
        return step.run(args)                       # np.take along axis 0: [N, *indices, ...]
    return _each_input(step, args, batched, n)


def _aligned(a: np.ndarray, rank: int) -> np.ndarray:
    """A batched ``[N, *shape]`` operand with ones inserted after N up to ``rank`` dims of its
    own: broadcasting then matches its dims with the other operands' as in a single run."""
    missing = rank - (a.ndim - 1)
    return a if missing <= 0 else a.reshape(a.shape[:1] + (1,) * missing + a.shape[1:])


def _fully_connected(step: PreparedOp, args: list, out_shape: tuple) -> list:
    """All N inputs' rows through one GEMM. The hybrid kernel skips the product when its whole
    input is zero (IsZeroVector); an all-zero input among others goes its own way, so that it
    takes that branch as in its own run."""
    x = args[0]
    n = x.shape[0]
    if x.dtype == np.float32 and step.ctx.inputs[1].dtype == np.int8 and n > 1:
        zero = ~x.reshape(n, -1).any(axis=1)
        if zero.any() and not zero.all():
            out = np.empty((n,) + out_shape, np.float32)
            for which in (zero, ~zero):
                out[which] = _fully_connected(step, [x[which], *args[1:]], out_shape)[0]
            return [out]
    return [step.run(args)[0].reshape((n,) + out_shape)]


def _each_input(step: PreparedOp, args: list, batched: list[bool], n: int) -> list:
    """The op run once per input on its own slices, the outputs stacked along a new axis 0."""
    per_input = [step.run([a[k] if b else a for a, b in zip(args, batched)]) for k in range(n)]
    return [np.stack([outs[j] for outs in per_input]) for j in range(len(per_input[0]))]
