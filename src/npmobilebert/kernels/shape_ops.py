"""Ops that move values without arithmetic: RESHAPE, TRANSPOSE, STRIDED_SLICE, SLICE, GATHER,
PAD / PADV2, CONCATENATION, EXPAND_DIMS, SQUEEZE.

Quantized tensors pass through unchanged: TFLite requires (and the converter emits) the same
scale and zero point on input and output of these ops; CONCATENATION int8 has no rescaling path
(concatenation.cc rejects mismatched scales) and int16 copies raw values whatever the scales.
Shapes come from the model's output tensors, which are static for the models this project runs.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, ModelFormatError
from .base import OpContext, PreparedOp, register, zero_point_of


def _static_shape(ctx: OpContext):
    return tuple(ctx.outputs[0].shape)


@register("RESHAPE", "EXPAND_DIMS", "SQUEEZE")
def prepare_reshape(ctx: OpContext) -> PreparedOp:
    shape = _static_shape(ctx)
    return PreparedOp(ctx, lambda ins: [ins[0].reshape(shape)], {"shape": shape},
                      "tflite/kernels/reshape.cc")


@register("TRANSPOSE")
def prepare_transpose(ctx: OpContext) -> PreparedOp:
    perm_t = ctx.inputs[1]

    def run(inputs):
        return [np.ascontiguousarray(np.transpose(inputs[0], inputs[1].astype(np.int64)))]
    params = {"perm": perm_t.data.tolist()} if perm_t.data is not None else {}
    return PreparedOp(ctx, run, params, "tflite/kernels/internal/reference/transpose.h")


def _mask_bit(mask: int, i: int) -> bool:
    return bool((mask >> i) & 1)


@register("STRIDED_SLICE")
def prepare_strided_slice(ctx: OpContext) -> PreparedOp:
    """strided_slice.cc: begin/end/strides per dim, with begin/end/shrink-axis masks.

    ``offset=True`` makes end relative to begin. ellipsis_mask and new_axis_mask are rejected:
    the converter does not emit them for our models.
    """
    o = ctx.options
    if o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0):
        raise ctx.unsupported("ellipsis_mask / new_axis_mask are not supported")
    begin_mask, end_mask = o.get("begin_mask", 0), o.get("end_mask", 0)
    shrink_mask, offset = o.get("shrink_axis_mask", 0), bool(o.get("offset", False))
    out_shape = _static_shape(ctx)

    def run(inputs):
        x, begin, end, strides = inputs[0], inputs[1], inputs[2], inputs[3]
        index = []
        for dim in range(len(begin)):
            b, e, s = int(begin[dim]), int(end[dim]), int(strides[dim])
            if offset:
                e = b + e
            if _mask_bit(shrink_mask, dim):
                index.append(b)  # a single element; the dim disappears
                continue
            start = None if _mask_bit(begin_mask, dim) else b
            stop = None if _mask_bit(end_mask, dim) else e
            index.append(slice(start, stop, s))
        return [np.ascontiguousarray(x[tuple(index)]).reshape(out_shape)]
    return PreparedOp(ctx, run, {}, "tflite/kernels/strided_slice.cc")


@register("SLICE")
def prepare_slice(ctx: OpContext) -> PreparedOp:
    def run(inputs):
        x, begin, size = inputs
        index = tuple(slice(int(b), None if int(n) == -1 else int(b) + int(n))
                      for b, n in zip(begin, size))
        return [np.ascontiguousarray(x[index])]
    return PreparedOp(ctx, run, {}, "tflite/kernels/slice.cc")


@register("GATHER")
def prepare_gather(ctx: OpContext) -> PreparedOp:
    axis = ctx.options.get("axis", 0)
    batch_dims = ctx.options.get("batch_dims", 0)
    if batch_dims:
        raise ctx.unsupported("batch_dims != 0 is not supported")
    x_t = ctx.inputs[0]

    def run(inputs):
        params, indices = inputs[0], inputs[1]
        limit = params.shape[axis]
        if indices.size and (indices.min() < 0 or indices.max() >= limit):
            bad = int(indices[(indices < 0) | (indices >= limit)].flat[0])
            raise InputError(f"operator {ctx.op.index} (GATHER): index {bad} is outside [0, {limit})"
                             f" of tensor '{x_t.name}'")
        return [np.take(params, indices.astype(np.int64), axis=axis)]
    return PreparedOp(ctx, run, {"axis": axis}, "tflite/kernels/gather.cc")


@register("PAD", "PADV2")
def prepare_pad(ctx: OpContext) -> PreparedOp:
    """pad.cc: quantized tensors pad with the output zero point (PAD) or the given value (PADV2).

    Like pad.cc's Prepare, the paddings are checked against the shapes before anything is
    allocated: a corrupt model must not make np.pad build a huge array.
    """
    x_t, pads_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    default_value = zero_point_of(out_t) if out_t.quantization is not None else 0

    def checked(paddings: np.ndarray) -> np.ndarray:
        pads = np.asarray(paddings).astype(np.int64).reshape(-1, 2)
        if pads.shape[0] != len(x_t.shape) or (pads < 0).any() or \
                tuple(np.asarray(x_t.shape) + pads.sum(axis=1)) != tuple(out_t.shape):
            raise ModelFormatError(
                f"operator {ctx.op.index} (PAD): paddings {pads.tolist()} do not turn shape "
                f"{list(x_t.shape)} into the declared {list(out_t.shape)}")
        return pads

    constant_pads = checked(pads_t.data) if pads_t.data is not None else None

    def run(inputs):
        pads = constant_pads if constant_pads is not None else checked(inputs[1])
        value = inputs[2].reshape(()) if len(inputs) > 2 and inputs[2] is not None else default_value
        return [np.pad(inputs[0], pads, mode="constant", constant_values=value)]
    return PreparedOp(ctx, run, {"pad_value": default_value}, "tflite/kernels/pad.cc")


@register("CONCATENATION")
def prepare_concatenation(ctx: OpContext) -> PreparedOp:
    axis = ctx.options.get("axis", 0)
    activation = ctx.options.get("fused_activation_function", "NONE")
    if activation not in ("NONE", None):
        raise ctx.unsupported("a fused activation on CONCATENATION is not supported")
    out_t = ctx.outputs[0]
    out_q = out_t.quantization
    for t in ctx.inputs:
        if out_q is None or t.quantization is None:
            continue
        same_zero_point = t.quantization.zero_points[0] == out_q.zero_points[0]
        same_scale = t.quantization.scales[0] == out_q.scales[0]
        if out_t.dtype == np.int16:
            # concatenation.cc Prepare only demands zero points of 0 for int16; Eval then copies
            # the raw values (reference_ops::Concatenation, no ConcatenationWithScaling): an input
            # with another scale is *not* rescaled. We copy raw values too, to stay bit-exact.
            if not same_zero_point:
                raise ctx.unsupported("int16 inputs with a non-zero zero point")
        elif not (same_scale and same_zero_point):
            raise ctx.unsupported("inputs whose quantization differs from the output's")

    def run(inputs):
        return [np.concatenate(inputs, axis=axis)]
    return PreparedOp(ctx, run, {"axis": axis}, "tflite/kernels/concatenation.cc")
