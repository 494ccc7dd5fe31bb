"""FULLY_CONNECTED.

Mirrors ``tflite/kernels/fully_connected.cc`` (Prepare, EvalQuantized, EvalFloat,
EvalHybridDense) and, for the reference resolver,
``tflite/kernels/internal/reference/integer_ops/fully_connected.h``. Since 2025 the reference
integer kernels requantize in double precision:
``acc_scaled = (int32) round((double) acc * (double) in_scale * filter_scale / out_scale)``
instead of the (multiplier, shift) fixed-point pair that the optimized kernels still use.

The hybrid path (float input, int8 weights: dynamic-range models) quantizes each input row on
the fly (``BatchQuantizeFloats``), takes exact int32 dot products with the weights and scales
them back to float32 (``MatrixBatchVectorMultiplyAccumulate``), on top of the bias. On x86
LiteRT's tensor_utils are the SSE ones for the product and the NEON_2_SSE-emulated Neon ones for
the quantization (see fixedpoint.py): the latter round differently from the portable code.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..fixedpoint import (asymmetric_quantize_floats, double_requantizer, multiply_by_quantized_multiplier,
                          multiply_by_quantized_multiplier_int64, quantize_multipliers,
                          symmetric_quantize_floats)
from .base import (OpContext, PreparedOp, activation_range, clamp_cast, dtype_limits,
                   float_activation, gemm_float_type, register, scale_of, sequential_float_matmul,
                   transposed_on_first_use, weights_in_scratch, zero_point_of)


def exact_row_sums(weights: np.ndarray) -> np.ndarray:
    """[units, depth] int8 -> int64 [units]: each row's sum, accumulated in int32 where that is
    exact (|sum| <= depth * 128 < 2**31): twice as fast as int64 on a model's worth of weights,
    which every open of a model sums."""
    accumulator = np.int32 if weights.shape[-1] < 2**24 else np.int64
    return weights.sum(axis=-1, dtype=accumulator).astype(np.int64)


def _output_shape(ctx: OpContext, x: np.ndarray, units: int) -> tuple[int, ...]:
    # keep_num_dims keeps the input's leading dims; otherwise the output is [batches, units]
    if ctx.options.get("keep_num_dims"):
        return x.shape[:-1] + (units,)
    return (x.size // ctx.inputs[1].shape[-1], units)


@register("FULLY_CONNECTED")
def prepare_fully_connected(ctx: OpContext) -> PreparedOp:
    x, w = ctx.inputs[0], ctx.inputs[1]
    if ctx.options.get("weights_format", 0) != 0:
        raise ctx.unsupported("shuffled weights format is not supported")
    if x.dtype in (np.int8, np.int16) and w.dtype == np.int8:
        return _prepare_integer(ctx)
    if x.dtype == np.float32 and w.dtype == np.float32:
        return _prepare_float(ctx)
    if x.dtype == np.float32 and w.dtype == np.int8 and ctx.outputs[0].dtype == np.float32:
        return _prepare_hybrid(ctx)
    raise ctx.unsupported("this dtype combination is not supported yet")


# ----------------------------------------------------------------------------------------------
# Requantization strategies (numerics.py RULES["fc_requantize"]): (ctx, input scale, weight
# scales, output scale, output store, accumulator bound) -> (acc -> output values, trace
# params). ``acc`` is the accumulator with the bias, float64 exact integers [batches, units],
# the strategy's to overwrite, |acc| <= the bound; the store is (zero point, activation min,
# activation max, dtype).
# ----------------------------------------------------------------------------------------------

def _requantize_double(ctx: OpContext, x_scale, w_scales, out_scale, store, acc_bound):
    """LiteRT reference (2025): ``(int32) round((double) acc * effective_scale)`` with the
    effective scale double(in) * double(filter) / double(out), in that order
    (FullyConnectedPerChannel with float scales; per-tensor weights the same)."""
    effective_scale = np.float64(x_scale) * w_scales.astype(np.float64) / np.float64(out_scale)
    return double_requantizer(effective_scale, *store, acc_bound), {"effective_scale": effective_scale}


def _requantize_fixed_point(ctx: OpContext, x_scale, w_scales, out_scale, store, acc_bound):
    """TFLite Micro (fully_connected_common.cc CalculateOpDataFullyConnected):
    QuantizeMultiplier(double(in) * double(filter) / double(out)) per channel, and per tensor
    too. There it comes from kernel_util.cc GetQuantizedConvolutionMultipler, whose source
    (tflite-micro 90b983c, 2026-08) writes a float32 product,
    ``static_cast<double>(input->params.scale * filter->params.scale)``, but whose build in the
    tflite-micro package (0.dev20261023) converts both scales to double before multiplying (its
    _runtime.so: cvtss2sd, cvtss2sd, mulsd): measured against the package, the float32 product
    is 1 LSB off on rare accumulators. The accumulator then goes through
    MultiplyByQuantizedMultiplier -- the int64 overload (16-bit multiplier) when the bias is
    int64, as in 16x8 models."""
    reals = np.float64(x_scale) * w_scales.astype(np.float64) / np.float64(out_scale)
    multipliers, shifts = quantize_multipliers(reals)
    bias_t = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    wide = (bias_t.dtype == np.int64 if bias_t is not None else ctx.inputs[0].dtype == np.int16)
    multiply = multiply_by_quantized_multiplier_int64 if wide else multiply_by_quantized_multiplier

    zero_point, lo, hi, dtype = store

    def requantize(acc):
        return clamp_cast(multiply(acc.astype(np.int64), multipliers, shifts) + zero_point, lo, hi, dtype)
    return requantize, {"output_multiplier": multipliers, "output_shift": shifts,
                        "int64_accumulator": wide}


def _requantize_fp32(ctx: OpContext, x_scale, w_scales, out_scale, store, acc_bound):
    """XNNPACK qs8-qc8w gemm, fp32 requantization: the float32 scale in_scale * filter_scale /
    out_scale per channel (fully-connected-nc.c), (float) acc times it, rounded to nearest-even."""
    scales = (np.float32(x_scale) * w_scales.astype(np.float32) / np.float32(out_scale)).astype(np.float32)
    zero_point, lo, hi, dtype = store

    def requantize(acc):
        return clamp_cast(fp.requantize_fp32(acc, scales) + zero_point, lo, hi, dtype)
    return requantize, {"scale": scales}


REQUANTIZERS = {"double": _requantize_double, "fixed-point": _requantize_fixed_point,
                "fp32": _requantize_fp32}


def _prepare_integer(ctx: OpContext) -> PreparedOp:
    """int8 x int8 -> int8 (full-integer models) and int16 x int8 -> int16 (16x8 models)."""
    x_t, w_t, out_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    bias_t = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    units, depth = w_t.shape[0], w_t.shape[-1]
    w_scales = w_t.quantization.scales.astype(np.float32)
    per_channel = len(w_scales) > 1
    # Per-channel weights are symmetric by spec: the kernel ignores their zero point. Per-tensor
    # weights keep theirs (weights_offset) for backward compatibility.
    w_offset = 0 if per_channel else -zero_point_of(w_t)
    x_offset = -zero_point_of(x_t)
    out_zp = zero_point_of(out_t)
    lo, hi = activation_range(ctx.options.get("fused_activation_function"), out_t)
    weights = w_t.data.reshape(units, depth)                                 # [units, depth] int8
    # sum((x + x_off) * (w + w_off)) = x @ (w + w_off) + x_off * sum(w + w_off): the input offset
    # folds into the bias once
    weight_sums = exact_row_sums(weights) + depth * w_offset
    folded_bias = x_offset * weight_sums
    if bias_t is not None:
        if bias_t.data is None:
            raise ctx.unsupported("a non-constant bias is not supported")
        folded_bias = folded_bias + bias_t.data.astype(np.int64)
    x_limit = max(abs(v) for v in dtype_limits(x_t.dtype))
    w_limit = max(abs(int(weights.min(initial=0)) + w_offset), abs(int(weights.max(initial=0)) + w_offset))
    gemm_type = gemm_float_type(depth, x_limit, w_limit)
    # The bias joins the accumulator in the GEMM's own type when every sum stays exact there
    # (|acc| + |bias| < 2**24 for float32): a float32 pass instead of a float64 one, ~20% of
    # the requantization on 128-wide outputs. Otherwise in float64 (exact: |sum| < 2**53).
    sum_bound = depth * x_limit * w_limit + int(np.abs(folded_bias).max(initial=0))
    bias_type = gemm_type if gemm_type is np.float64 or sum_bound < 2**24 else np.float64
    folded_bias = folded_bias.astype(bias_type)
    weights_t = transposed_on_first_use(weights)                           # [depth, units]
    strategy = ctx.numerics.strategy("fc_requantize")
    if strategy == "fp32" and x_t.dtype != np.int8:
        # XNNPACK takes no 16x8 FULLY_CONNECTED: LiteRT's builtin kernel runs it, with the
        # reference's values (measured: tiny_16x8, every tensor identical to the default resolver)
        strategy = "double"
    rule = ctx.numerics.rule("fc_requantize", strategy)
    requantize, requant_params = REQUANTIZERS[rule.name](ctx, scale_of(x_t), w_scales, scale_of(out_t),
                                                         (out_zp, lo, hi, out_t.dtype), sum_bound)

    def run(inputs):
        x = inputs[0]
        w = weights_in_scratch(weights_t(), gemm_type, w_offset)            # [depth, units]
        acc = np.matmul(x.reshape(-1, depth).astype(gemm_type), w)          # exact integers
        if bias_type is gemm_type:
            acc += folded_bias
            acc = acc.astype(np.float64, copy=False)
        else:
            acc = acc.astype(np.float64)                # then add: faster than a mixed-type add
            acc += folded_bias
        out = requantize(acc)                                               # [batches, units]
        return [out.reshape(_output_shape(ctx, x, units))]

    params = {"input_offset": x_offset, "weights_offset": w_offset, "output_offset": out_zp,
              **requant_params, "per_channel": per_channel,
              "activation_min": lo, "activation_max": hi}
    return PreparedOp(ctx, run, params, rule.source)


def _prepare_float(ctx: OpContext) -> PreparedOp:
    """float32: x @ W^T + b, then the fused activation (reference_ops::FullyConnected float)."""
    w_t = ctx.inputs[1]
    bias_t = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    units, depth = w_t.shape[0], w_t.shape[-1]
    # weights are constant, or (float16 models) the output of a DEQUANTIZE op -- folded once by
    # the interpreter, so the same array comes back every run: transpose it once, too
    transposed = {}
    if w_t.data is not None:
        transposed[id(w_t.data)] = (w_t.data, np.ascontiguousarray(w_t.data.reshape(units, depth).T))
    activation = ctx.options.get("fused_activation_function")

    def weights_for(w: np.ndarray) -> np.ndarray:          # [units, depth] -> [depth, units]
        source, t = transposed.get(id(w), (None, None))
        if source is not w:
            t = np.ascontiguousarray(w.reshape(units, depth).T)
            if not w.flags.writeable:                       # a folded constant: cache it
                transposed.clear()
                transposed[id(w)] = (w, t)
        return t

    def run(inputs):
        x = inputs[0]
        weights_t = weights_for(inputs[1])
        out = sequential_float_matmul(x.reshape(-1, depth), weights_t)
        if bias_t is not None:
            out = out + inputs[2]
        out = float_activation(out, activation)
        return [out.reshape(_output_shape(ctx, x, units))]

    return PreparedOp(ctx, run, {}, "tflite/kernels/internal/reference/fully_connected.h (float)")


def quantize_rows(rows: np.ndarray, asymmetric: bool):
    """BatchQuantizeFloats (portable_tensor_utils.h): each row [..., depth] quantized on its own
    by tensor_utils::{Symmetric,Asymmetric}QuantizeFloats.

    Returns int8 values (as float32 integers), float32 scaling factors [...] and int64 offsets
    [...] (zero for the symmetric scheme). Shared by the hybrid FULLY_CONNECTED and BATCH_MATMUL
    kernels.
    """
    if asymmetric:
        return asymmetric_quantize_floats(rows)
    q, factors = symmetric_quantize_floats(rows)
    return q, factors, np.zeros(factors.shape, dtype=np.int64)


def hybrid_params(asymmetric: bool, per_channel, tensor_scale, row_sums) -> dict:
    """What a hybrid (dynamic-range) FULLY_CONNECTED / BATCH_MATMUL shows in a trace."""
    return {"asymmetric_quantize_inputs": asymmetric, "per_channel": per_channel is not None,
            "weights_scale": per_channel if per_channel is not None else tensor_scale,
            "row_sums": row_sums}


def hybrid_weight_scales(ctx: OpContext, w_t) -> tuple[np.ndarray | None, np.float32]:
    """VerifyPerChannelQuantization: more than one scale is per-channel (returned as a float32
    array), otherwise the single float32 scale is folded into every row's scaling factor."""
    q = w_t.quantization
    if q is None:
        raise ctx.unsupported("hybrid weights without quantization parameters")
    if np.any(q.zero_points != 0):
        raise ctx.unsupported("hybrid weights with a non-zero zero point")
    scales = q.scales.astype(np.float32)
    if len(scales) > 1:
        return scales, np.float32(1)
    return None, scales[0]


def _prepare_hybrid(ctx: OpContext) -> PreparedOp:
    """float32 x int8 -> float32: fully_connected.cc EvalHybridDense. The int32 products are
    exact whichever tensor_utils variant computes them; the float part is
    ``result = bias + float(dot) * (row factor [* channel scale])``, one rounding per step."""
    w_t = ctx.inputs[1]
    bias_t = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    units, depth = w_t.shape[0], w_t.shape[-1]
    asymmetric = bool(ctx.options.get("asymmetric_quantize_inputs"))
    activation = ctx.options.get("fused_activation_function")
    per_channel, tensor_scale = hybrid_weight_scales(ctx, w_t)
    if w_t.data is None:
        raise ctx.unsupported("hybrid weights that are not constant")
    weights = w_t.data.reshape(units, depth)                        # int8, zero-copy
    row_sums = exact_row_sums(weights)                              # ReductionSumVector, [units]
    # The kernel's dot - row_sum * offset is sum(w * (q - offset)) exactly (int32, no overflow):
    # one GEMM on the centred input, |q - offset| <= 255, whose bound picks the float type
    w_limit = max(abs(int(weights.min(initial=0))), int(weights.max(initial=0)))
    gemm_type = gemm_float_type(depth, 255 if asymmetric else 127, w_limit)
    weights_t = transposed_on_first_use(weights)                   # [depth, units]

    def run(inputs):
        x = inputs[0]
        rows = x.reshape(-1, depth)                                 # [batches, depth]
        # Output = a copy of the bias per batch (VectorBatchVectorAssign) or zeros; the
        # products are added to it below (as bias + 0.0f without a bias: -0.0 becomes 0.0)
        base = inputs[2] if bias_t is not None else np.float32(0)
        if not rows.any():
            # IsZeroVector over the whole input: the kernel skips the product entirely
            out = np.zeros((rows.shape[0], units), dtype=np.float32)
            out[...] = base
        else:
            if asymmetric:      # quantized and centred on the row's offset in one go
                centred, factors, _ = asymmetric_quantize_floats(rows, centred=True)
            else:
                centred, factors, _ = quantize_rows(rows, asymmetric)
            if per_channel is None:
                factors = (factors * tensor_scale).astype(np.float32)   # scaling_factors[b] *= scale
                scale = factors[:, None]
            else:
                scale = (factors[:, None] * per_channel[None, :]).astype(np.float32)
            # int32 dot products minus row_sums[row] * input_offset[batch], exact integers
            dot = np.matmul(centred.astype(gemm_type, copy=False), weights_in_scratch(weights_t(), gemm_type))
            out = dot.astype(np.float32, copy=False)           # (float) dotprod: rounds once
            out *= scale
            out += base
        out = float_activation(out, activation)                     # ApplyActivationToVector
        return [out.reshape(_output_shape(ctx, x, units))]

    params = hybrid_params(asymmetric, per_channel, tensor_scale, row_sums)
    return PreparedOp(ctx, run, params,
                      "tflite/kernels/fully_connected.cc EvalHybridDense + "
                      "neon_tensor_utils.cc (Symmetric/AsymmetricQuantizeFloats) + "
                      "sse_tensor_utils.cc MatrixBatchVectorMultiplyAccumulate")
