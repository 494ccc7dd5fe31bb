"""BATCH_MATMUL.

Mirrors ``tflite/kernels/batch_matmul.cc`` (Prepare, EvalInt8Int8, EvalInt16, EvalHybrid) and
``tflite/kernels/internal/reference/batch_matmul.h``. Unlike FULLY_CONNECTED, the integer path
still requantizes with a fixed-point (multiplier, shift) pair, whose real multiplier is
``double(float(lhs_scale * rhs_scale)) / double(out_scale)`` (GetQuantizedConvolutionMultipler
without bias: the scale product is taken in float32).

The hybrid path (float lhs, constant int8 rhs) quantizes every lhs row on the fly, as the hybrid
FULLY_CONNECTED does, and scales the int32 products back to float32. Its reference kernel looks
up the per-row scaling factors, offsets and weight row sums with a per-dimension stride (see
``_hybrid_batch_index``), which is only the flat index when at most one batch dim is not 1:
we reproduce that indexing, not the intended one.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import (FLOAT_MBQM_LIMIT, multiply_by_quantized_multiplier,
                          multiply_by_quantized_multiplier_float, multiply_by_quantized_multiplier_int64,
                          multiply_by_quantized_multiplier_single_round, quantize_multiplier,
                          requantize_fp32)
from .base import (OpContext, PreparedOp, clamp_cast, dtype_limits,
                   gemm_float_type, register,
                   scale_of, sequential_float_matmul, zero_point_of)
from .fully_connected import hybrid_params, hybrid_weight_scales, quantize_rows


def _orient(ctx: OpContext):
    """adj_x / adj_y: transpose the last two dims of an operand before the product."""
    adj_x = bool(ctx.options.get("adj_x"))
    adj_y = bool(ctx.options.get("adj_y"))

    def lhs(a):
        return np.swapaxes(a, -1, -2) if adj_x else a

    def rhs(b):
        return np.swapaxes(b, -1, -2) if adj_y else b
    return lhs, rhs


@register("BATCH_MATMUL")
def prepare_batch_matmul(ctx: OpContext) -> PreparedOp:
    lhs_t, rhs_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    lhs_of, rhs_of = _orient(ctx)
    out_shape = tuple(out_t.shape)

    if lhs_t.dtype == np.float32 and rhs_t.dtype == np.float32:
        def run_float(inputs):
            out = sequential_float_matmul(lhs_of(inputs[0]), rhs_of(inputs[1]))
            return [_declared_shape(out, out_shape)]
        return PreparedOp(ctx, run_float, {}, "tflite/kernels/internal/reference/batch_matmul.h (float)")

    if lhs_t.dtype == np.float32 and rhs_t.dtype == np.int8 and out_t.dtype == np.float32:
        return _prepare_hybrid(ctx)

    if lhs_t.dtype not in (np.int8, np.int16) or rhs_t.dtype != lhs_t.dtype:
        raise ctx.unsupported("this dtype combination is not supported yet")

    lhs_offset, rhs_offset = -zero_point_of(lhs_t), -zero_point_of(rhs_t)
    out_zp = zero_point_of(out_t)
    lo, hi = dtype_limits(out_t.dtype)    # BATCH_MATMUL has no fused activation
    # int16 accumulates in int64 and uses the int64 MultiplyByQuantizedMultiplier overload,
    # which first rounds the multiplier to 16 bits (common.cc).
    fixed_point = (multiply_by_quantized_multiplier_int64 if lhs_t.dtype == np.int16
                   else multiply_by_quantized_multiplier)
    strategy = rule_name = ctx.numerics.strategy("batch_matmul_requantize")
    if strategy == "fp32-rhs-zero-point-dropped" and lhs_t.dtype == np.int8:
        # LiteRT 2.0.x's delegate takes every int8 BATCH_MATMUL and XNNPACK computes it as if
        # the rhs zero point were 0 (numerics.py: the rule and how it was found)
        strategy, rhs_offset = "fp32", 0
    elif strategy.startswith("fp32") and (lhs_t.dtype != np.int8 or zero_point_of(rhs_t) != 0):
        # xnnpack_delegate.cc VisitBatchMatMulNode takes int8 only with a zero rhs zero point;
        # the others run in LiteRT's builtin kernel (fixed point)
        strategy = rule_name = "fixed-point"
    rule = ctx.numerics.rule("batch_matmul_requantize", rule_name)
    if strategy == "fixed-point-f64":
        # TFLite Micro: the same GetQuantizedConvolutionMultipler, whose build in the tflite-micro
        # package multiplies the scales in double (see fully_connected._requantize_fixed_point)
        real_multiplier = (np.float64(scale_of(lhs_t)) * np.float64(scale_of(rhs_t))
                           / np.float64(scale_of(out_t)))
    else:
        # LiteRT: kernel_util.cc GetQuantizedConvolutionMultipler, a float32 product of the scales
        product_scale = np.float32(scale_of(lhs_t) * scale_of(rhs_t))
        real_multiplier = np.float64(product_scale) / np.float64(scale_of(out_t))
    multiplier, shift = quantize_multiplier(real_multiplier)
    # XNNPACK (subgraph/batch-matrix-multiply.c): a_scale * b_scale / out_scale in float32
    fp32_scale = np.float32(np.float32(scale_of(lhs_t) * scale_of(rhs_t)) / scale_of(out_t))

    depth = lhs_t.shape[-2] if ctx.options.get("adj_x") else lhs_t.shape[-1]
    qmin, qmax = dtype_limits(lhs_t.dtype)
    lhs_limit = max(abs(qmin + lhs_offset), abs(qmax + lhs_offset))
    rhs_limit = max(abs(qmin + rhs_offset), abs(qmax + rhs_offset))
    gemm_type = gemm_float_type(depth, lhs_limit, rhs_limit)
    # the accumulator's bound decides, once, whether the fixed-point requantization can run in
    # float64 (exact there, and faster: fixedpoint.multiply_by_quantized_multiplier_float)
    float_form = (strategy in ("fixed-point", "fixed-point-f64")
                  and fixed_point is multiply_by_quantized_multiplier
                  and shift <= 0 and depth * lhs_limit * rhs_limit < FLOAT_MBQM_LIMIT)

    def requantize(acc):                                   # exact integers -> output dtype
        if float_form:
            return multiply_by_quantized_multiplier_float(acc, multiplier, shift, out_zp, lo, hi, out_t.dtype,
                                                          x_bound=depth * lhs_limit * rhs_limit)
        if strategy == "fp32":
            return clamp_cast(requantize_fp32(acc, fp32_scale) + out_zp, lo, hi, out_t.dtype)
        if strategy == "single-round":
            return clamp_cast(multiply_by_quantized_multiplier_single_round(acc.astype(np.int64), multiplier, shift)
                              + out_zp, lo, hi, out_t.dtype)
        return clamp_cast(fixed_point(acc.astype(np.int64), multiplier, shift) + out_zp, lo, hi, out_t.dtype)

    def run(inputs):
        # offsets applied in the GEMM's float type: exact, the values are small integers
        lhs = lhs_of(inputs[0].astype(gemm_type) + gemm_type(lhs_offset))
        rhs = rhs_of(inputs[1].astype(gemm_type) + gemm_type(rhs_offset))
        acc = np.matmul(lhs, rhs)                           # [..., rows, cols], exact integers
        return [_declared_shape(requantize(acc), out_shape)]

    params = {"real_multiplier": real_multiplier, "multiplier": multiplier, "shift": shift,
              "lhs_offset": lhs_offset, "rhs_offset": rhs_offset, "output_offset": out_zp}
    if strategy == "fp32":
        params["scale"] = float(fp32_scale)
    return PreparedOp(ctx, run, params, rule.source)


def _declared_shape(values: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """The product in the declared output shape, behind any leading axes the operands carry
    beyond the model's rank (Interpreter.run_batch adds one: the batch of inputs)."""
    extra = max(values.ndim - len(out_shape), 0)
    return values.reshape(values.shape[:extra] + out_shape)


def _extend5(shape) -> tuple[int, ...]:
    """RuntimeShape::ExtendedShape(5, shape): leading ones up to rank 5."""
    return (1,) * (5 - len(shape)) + tuple(shape)


def _hybrid_batch_index(own: tuple[int, ...], out_batch: tuple[int, ...], stride: int) -> np.ndarray:
    """reference_ops::BatchMatMul (hybrid): the offset of an output batch (b0, b1, b2) into the
    per-row arrays of one operand is ``sum(b_i * (stride if own dim i != 1 else 0))`` -- the
    ``ioff_ext`` / ``woff_ext`` strides are the row count for every dim, not the dim's extent.
    own: the operand's three extended batch dims; returns an int array of shape out_batch."""
    grids = np.meshgrid(*[np.arange(n) for n in out_batch], indexing="ij")
    index = np.zeros(out_batch, dtype=np.int64)
    for grid, dim in zip(grids, own):
        if dim != 1:
            index = index + grid * stride
    return index


def _compressed_shapes(lhs_shape, rhs_shape, adj_x: bool):
    """batch_matmul.cc Eval: with rhs [..., 1, X, Y] and lhs [..., Q, R, S] (ranks > 2, no
    adj_x) the lhs is viewed as [..., Q*R, S] and the rhs as [..., X, Y]. It changes the batch
    dims, hence the hybrid kernel's indexing."""
    lhs_shape, rhs_shape = list(lhs_shape), list(rhs_shape)
    if not adj_x and len(lhs_shape) > 2 and len(rhs_shape) > 2 and rhs_shape[-3] == 1:
        lhs_shape = lhs_shape[:-3] + [lhs_shape[-3] * lhs_shape[-2], lhs_shape[-1]]
        rhs_shape = rhs_shape[:-3] + rhs_shape[-2:]
    return tuple(lhs_shape), tuple(rhs_shape)


def _prepare_hybrid(ctx: OpContext) -> PreparedOp:
    """float32 x int8 -> float32: batch_matmul.cc EvalHybrid + reference_ops::BatchMatMul
    (the overload with scaling factors)."""
    lhs_t, rhs_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    if rhs_t.data is None:
        raise ctx.unsupported("a hybrid BATCH_MATMUL needs constant int8 weights")
    adj_x, adj_y = bool(ctx.options.get("adj_x")), bool(ctx.options.get("adj_y"))
    asymmetric = bool(ctx.options.get("asymmetric_quantize_inputs"))
    per_channel, tensor_scale = hybrid_weight_scales(ctx, rhs_t)
    out_shape = tuple(out_t.shape)

    lhs_shape, rhs_shape = _compressed_shapes(lhs_t.shape, rhs_t.shape, adj_x)
    # the weights as the kernel reads them: [..., cols, depth] (transposed unless adj_y)
    weights = rhs_t.data.reshape(rhs_shape).astype(np.int64)
    if not adj_y:
        weights = np.swapaxes(weights, -1, -2)
    cols, depth = weights.shape[-2], weights.shape[-1]
    w_ext = _extend5(weights.shape)
    if asymmetric and w_ext[0] != 1:
        # row sums are computed for extended dims 1-2 only; dim 0's would be uninitialised memory
        raise ctx.unsupported("hybrid BATCH_MATMUL with asymmetric inputs and 5-D weights")
    # ReductionSumVector over the weight rows of extended dims 1 and 2: [w1 * w2 * cols]
    row_sums = weights.reshape(-1, depth)[:w_ext[1] * w_ext[2] * cols].sum(axis=1)
    if per_channel is not None and len(per_channel) < cols:
        raise ctx.unsupported("per-channel weight scales shorter than the output columns")
    # the quantized rows are int8 (|q| <= 128) before the offset correction below: their
    # integer GEMM is exact in the float type this bound picks (float32 up to depth ~1000)
    w_limit = int(np.abs(weights).max(initial=0))
    gemm_type = gemm_float_type(depth, 128, w_limit)
    weights_gemm = np.swapaxes(weights.reshape(w_ext), -1, -2).astype(gemm_type)

    def run(inputs):
        lhs = inputs[0].reshape(lhs_shape)
        if adj_x:
            lhs = np.swapaxes(lhs, -1, -2)                          # TransposeRowsColumns
        rows = lhs.shape[-2]                                        # [..., rows, depth]
        l_ext = _extend5(lhs.shape)
        q, factors, offsets = quantize_rows(lhs.reshape(-1, depth), asymmetric)
        if per_channel is None:
            factors = (factors * tensor_scale).astype(np.float32)  # scaling_factors[b] *= scale
        out_batch = tuple(max(a, b) for a, b in zip(l_ext[:3], w_ext[:3]))
        # exact int32 dot products, broadcast over the batch dims: [*out_batch, rows, cols]
        total = np.matmul(q.reshape(l_ext).astype(gemm_type, copy=False), weights_gemm).astype(np.int64)
        total = np.broadcast_to(total, out_batch + (rows, cols))
        row = _hybrid_batch_index(l_ext[:3], out_batch, rows)[..., None] + np.arange(rows)
        batch_factor = factors[row][..., None]                       # [*out_batch, rows, 1]
        # total -= row_sum * batch_offset: float32 arithmetic (the offset is a float), truncated
        # back to int32 -- done for symmetric inputs too, where the offset is 0
        correction = np.float32(0)
        if asymmetric:
            col = _hybrid_batch_index(w_ext[:3], out_batch, cols)[..., None] + np.arange(cols)
            batch_offset = offsets[row].astype(np.float32)[..., None]
            correction = row_sums[col][..., None, :].astype(np.float32) * batch_offset
        total = np.trunc((total.astype(np.float32) - correction).astype(np.float32)).astype(np.int64)
        scale = batch_factor
        if per_channel is not None:
            scale = (batch_factor * per_channel[:cols]).astype(np.float32)
        # out_ptr[idx] += scale * total, on an output filled with 0.0f
        out = (np.float32(0) + (scale * total.astype(np.float32)).astype(np.float32))
        return [out.astype(np.float32).reshape(out_shape)]

    params = hybrid_params(asymmetric, per_channel, tensor_scale, row_sums)
    return PreparedOp(ctx, run, params,
                      "tflite/kernels/batch_matmul.cc EvalHybrid + "
                      "neon_tensor_utils.cc (Symmetric/AsymmetricQuantizeFloats) + "
                      "reference/batch_matmul.h BatchMatMul (hybrid overload)")
