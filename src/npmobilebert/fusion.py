"""Table fusion for the plain run: two int8 lookup-table ops become one.

Quantized int8 ADD / SUB / MUL are tables of their own integer results (Int8PairTable: 256 x 256
entries, each computed with the kernel's TFLite arithmetic). When such an op has one constant
operand and its output feeds a single other table op, the pair is one table -- the first op's
result indexes the second's -- and the tensor between them is never materialised. MobileBERT
has two such chains in every layer:

* NoNorm's ``x * gamma + beta`` (MUL, then ADD, both by per-channel constants): one
  ``[channels, 256]`` table, indexed by channel and x;
* the attention scores' ``scores * scale + mask`` (MUL by a scalar, then ADD of the computed
  mask): one 256 x 256 table of (score, mask).

The composed table holds exactly the values the two ops give in turn, so outputs stay
bit-identical. Only ``Interpreter.run`` without an observer uses the fused plan: tracing, dumps
and verify see every tensor the model declares, from the unfused plan.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter

import numpy as np

from .kernels.base import INT8_VALUES, Int8PairTable, PreparedOp


def fuse_table_chains(plan: list[PreparedOp], tensors, graph_outputs) -> list[PreparedOp]:
    """The plan with each fusable (table op -> table op) pair replaced by one step."""
    readers = Counter(i for step in plan for i in step.ctx.op.inputs if i >= 0)
    producer = {i: k for k, step in enumerate(plan) for i in step.ctx.op.outputs}
    fused: dict[int, PreparedOp] = {}          # plan position of the second op -> the fused step
    absorbed: set[int] = set()                 # plan positions of first ops folded into a fused step
    for k2, second in enumerate(plan):
        if second.pair_table is None:
            continue
        for position, between in enumerate(second.ctx.op.inputs):
            k1 = producer.get(between)
            # (a first op has this one reader, so no other pair can have absorbed it)
            if (k1 is None or k1 in fused or plan[k1].pair_table is None
                    or readers[between] != 1 or between in graph_outputs):
                continue
            step = _compose(plan[k1], second, position, tensors)
            if step is not None:
                fused[k2] = step
                absorbed.add(k1)
                break
    return [fused.get(k, step) for k, step in enumerate(plan) if k not in absorbed]


def _compose(first: PreparedOp, second: PreparedOp, position: int, tensors) -> PreparedOp | None:
    """``second`` reading ``first``'s output at input ``position`` as one step, or None when
    the pair is not one of the two table shapes above."""
    op1, op2 = first.ctx.op, second.ctx.op
    computed = [q for q, i in enumerate(op1.inputs) if tensors[i].data is None]
    if len(computed) != 1:
        return None                           # both computed: the pair would need a 3-D table
    q = computed[0]
    x_id, constant = op1.inputs[q], tensors[op1.inputs[1 - q]].data
    x_shape, other_id = tuple(tensors[x_id].shape), op2.inputs[1 - position]
    if not x_shape or np.broadcast_shapes(x_shape, constant.shape) != x_shape:
        return None                           # the constant would widen x: keep the ops apart
    # the ops' own integer arithmetic on just the values needed: their 256 x 256 tables need not
    # be built for a plain run
    compute1, compute2 = first.pair_table.compute, second.pair_table.compute

    def first_op(x_values, c):                # op1 with its operands in their own order
        return compute1(x_values, c) if q == 0 else compute1(c, x_values)

    def second_op(y_values, other):
        return compute2(y_values, other) if position == 0 else compute2(other, y_values)

    other = tensors[other_id].data
    if other is not None:                     # both constants: a per-channel unary table
        channels = x_shape[-1]
        c, u = _along_last_axis(constant, channels), _along_last_axis(other, channels)
        if c is None or u is None or np.broadcast_shapes(x_shape, other.shape) != x_shape:
            return None
        # [channels * 256], built on first use: opening a model stays cheap
        table = functools.cache(lambda: second_op(first_op(INT8_VALUES[None, :], c[:, None]),
                                                  u[:, None]).reshape(-1))
        row_starts = np.arange(channels, dtype=np.int32) * 256

        def run_channel_table(inputs):
            # [..., channels] int8 -> index channel * 256 + (x as uint8) -> [..., channels]
            return [np.take(table(), np.add(inputs[0].view(np.uint8), row_starts, dtype=np.int32))]
        return _fused_step(first, second, (x_id,), run_channel_table)
    if constant.size != 1:
        return None                           # per-channel constant, computed other: 3-D again
    scalar = constant.reshape(1)
    if position == 0:                         # pair table over (x, other)
        pair = Int8PairTable(lambda x, other_values: second_op(first_op(x, scalar), other_values))
    else:                                     # over (other, x)
        pair = Int8PairTable(lambda other_values, x: second_op(first_op(x, scalar), other_values))
    inputs = (x_id, other_id) if position == 0 else (other_id, x_id)
    return _fused_step(first, second, inputs, lambda ins: [pair(ins[0], ins[1])])


def _along_last_axis(values: np.ndarray, channels: int) -> np.ndarray | None:
    """A constant that varies at most along the last axis, as a [channels] vector."""
    if values.size == 1:
        return np.full(channels, values.reshape(-1)[0])
    if values.size == channels and values.shape[-1] == channels:
        return values.reshape(channels)
    return None


def _fused_step(first: PreparedOp, second: PreparedOp, inputs: tuple, run) -> PreparedOp:
    """The second op's step, reading ``inputs`` instead: errors and output checks name it."""
    op = dataclasses.replace(second.ctx.op, inputs=inputs)
    rule = f"{first.ctx.op.opcode} {first.ctx.op.index} fused into this op's table; {second.rule}"
    return PreparedOp(dataclasses.replace(second.ctx, op=op), run, second.params, rule)

