"""MEAN and SUM.

Mirrors ``tflite/kernels/reduce.cc`` as the reference resolver registers it (Register_MEAN_REF,
Register_SUM_REF) and ``tflite/kernels/internal/reference/reduce.h``:

- float32 SUM (EvalGeneric -> EvalType): one running float32 sum per output element, adding the
  input elements in row-major order, from 0 -- or, when every dim is reduced, from the first
  element (ReduceAllDims; single-threaded, as our LiteRT runner is).
- float32 MEAN (reference_ops::Mean<float, float>): the same running sum from 0, divided by the
  element count in float32.
- int8 / int16 MEAN (EvalQuantizedMean -> QuantizedMeanOrSum, compute_sum=false): an int32 sum,
  minus zero_point * count, requantized by in_scale / out_scale with 1/count folded into the
  multiplier. The optimized kernels' special cases (4-D spatial means) are not on this path.
- int8 SUM (EvalSum -> QuantizedMeanOrSum, compute_sum=true): the reference branch passes
  ``GetTensorData<uint8_t>`` for input and output whatever the tensor type, so an int8 tensor is
  summed *as uint8* (-1 reads as 255) and the result is clamped to [0, 255] and stored as a byte
  that reads back as int8. We reproduce that. (int16 SUM would reinterpret int16 buffers as bytes
  and leave half the output unwritten: not reproducible, so not supported.)
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from .base import OpContext, PreparedOp, register, scale_of, zero_point_of

RULE = "tflite/kernels/reduce.cc (reference) + reference/reduce.h"


def resolve_axes(axes, rank: int) -> tuple[int, ...]:
    """ResolveAxis: negative axes wrap, duplicates are dropped."""
    resolved: list[int] = []
    for a in np.asarray(axes, dtype=np.int64).reshape(-1):
        a = int(a) + rank if a < 0 else int(a)
        if not 0 <= a < rank:
            raise ValueError(f"axis {a} is outside a rank-{rank} input")
        if a not in resolved:
            resolved.append(a)
    return tuple(resolved)


def rows_to_reduce(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """[kept dims..., count]: the reduced dims moved last in input order, so that each row lists
    its elements in the row-major order the reference Reduce loop visits them."""
    reduced = sorted(axes)
    kept = [d for d in range(x.ndim) if d not in reduced]
    moved = np.transpose(x, kept + reduced)
    return moved.reshape(moved.shape[:len(kept)] + (-1,))


def sequential_sum(rows: np.ndarray, start=None) -> np.ndarray:
    """float32 sum of each row in order, one rounding per addition (no pairwise summation):
    ``((start + r0) + r1) + ...``; start None begins with r0 itself."""
    rows = np.asarray(rows, dtype=np.float32)
    if start is None:
        total = rows[..., 0].copy()
        first = 1
    else:
        total = np.full(rows.shape[:-1], start, dtype=np.float32)
        first = 0
    for k in range(first, rows.shape[-1]):
        total += rows[..., k]
    return total


@register("MEAN", "SUM")
def prepare_reduce(ctx: OpContext) -> PreparedOp:
    x_t, axes_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    out_shape = tuple(out_t.shape)
    const_axes = None if axes_t.data is None else resolve_axes(axes_t.data, len(x_t.shape))

    def axes_of(inputs) -> tuple[int, ...]:
        return const_axes if const_axes is not None else resolve_axes(inputs[1], inputs[0].ndim)

    if x_t.dtype == np.float32:
        return _prepare_float(ctx, axes_of, out_shape)
    if x_t.dtype in (np.int8, np.int16):
        if ctx.op.opcode == "SUM" and x_t.dtype == np.int16:
            raise ctx.unsupported("the reference int16 SUM reads the int16 buffer as bytes")
        return _prepare_quantized(ctx, axes_of, out_shape)
    raise ctx.unsupported("this dtype is not supported")


def _prepare_float(ctx: OpContext, axes_of, out_shape) -> PreparedOp:
    is_mean = ctx.op.opcode == "MEAN"

    def run(inputs):
        x = inputs[0]
        axes = axes_of(inputs)
        rows = rows_to_reduce(x, axes)                              # [kept..., count]
        count = rows.shape[-1]
        if is_mean:
            # reference_ops::Mean: temp_sum from 0, then temp_sum / (float) count
            out = sequential_sum(rows, np.float32(0)) / np.float32(count)
        elif len(axes) == x.ndim and count > 0:
            out = sequential_sum(rows)                              # ReduceAllDims: from x[0]
        else:
            out = sequential_sum(rows, np.float32(0))               # ReduceGeneric: from 0
        return [np.asarray(out, dtype=np.float32).reshape(out_shape)]

    return PreparedOp(ctx, run, {}, RULE + f" ({ctx.op.opcode} float)")


def mean_multiplier(multiplier: int, shift: int, count: int) -> tuple[int, int]:
    """QuantizedMeanOrSum (compute_sum=false): fold 1/count into the multiplier, dividing
    multiplier << s by count with s = floor(log2(count)) clamped to 32 and to 31 + shift."""
    s = min(count.bit_length() - 1, 32, 31 + shift)
    return int((multiplier << s) // count), shift - s


def _prepare_quantized(ctx: OpContext, axes_of, out_shape) -> PreparedOp:
    x_t, out_t = ctx.inputs[0], ctx.outputs[0]
    is_sum = ctx.op.opcode == "SUM"
    # PrepareMeanOrSum: double(in_scale) / double(out_scale)
    multiplier, shift = fp.quantize_multiplier(np.float64(scale_of(x_t)) / np.float64(scale_of(out_t)))
    in_zp, out_zp = zero_point_of(x_t), zero_point_of(out_t)
    # SUM's reference branch works on uint8 views of the int8 buffers (see the module docstring)
    as_bytes = is_sum and x_t.dtype == np.int8
    work_dtype = np.uint8 if as_bytes else out_t.dtype
    lo, hi = int(np.iinfo(work_dtype).min), int(np.iinfo(work_dtype).max)

    def run(inputs):
        x = inputs[0]
        if as_bytes:
            x = x.view(np.uint8)
        axes = axes_of(inputs)
        rows = rows_to_reduce(x.astype(np.int64), axes)            # [kept..., count]
        count = rows.shape[-1]
        temp_sum = fp.wrap_int32(rows.sum(axis=-1))                # int32 accumulation
        m, s = (multiplier, shift) if is_sum else mean_multiplier(multiplier, shift, count)
        shifted_sum = fp.wrap_int32(temp_sum - in_zp * count)
        out = fp.multiply_by_quantized_multiplier(shifted_sum, m, s) + out_zp
        out = np.clip(out, lo, hi).astype(work_dtype)
        return [out.view(out_t.dtype).reshape(out_shape)]

    params = {"multiplier": multiplier, "shift": shift, "input_zero_point": in_zp,
              "output_zero_point": out_zp, "reads_int8_as_uint8": as_bytes}
    return PreparedOp(ctx, run, params, RULE + f" ({ctx.op.opcode} QuantizedMeanOrSum)")
