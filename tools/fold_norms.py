"""Fold MobileBERT's residual-stream NoNorms (per-channel scale and shift) into its dense layers.

Why: in a full-integer model each NoNorm after a residual ADD is an int8 MUL by a per-channel
constant, and LiteRT's reference MUL rounds twice (a Q31 high multiply, then a rounding shift)
where XNNPACK rounds the float32 product once: ~1 product in 256 differs by one step, the largest
source of label disagreement between the two runtimes (docs/agreement_by_rule_unfolded.json). The
converter folds a NoNorm into an adjacent FULLY_CONNECTED, but not one on a residual stream: its
input is an ADD, and its output is both read by dense layers and added to further down.

How (exact in real arithmetic): carry each residual stream in per-channel coordinates instead of
multiplying it. Where the model computes ``y = gamma * z + beta`` with ``z = dense(...) + y_prev``,
the folded model keeps ``r = y / D`` with ``D = gamma * D_prev``:

    r = (dense(...) / D_prev + beta / D) + r_prev          (no NoNorm left: no MUL, no ADD)

so every dense layer writing into the stream has its output columns divided by the stream's
coordinate there and the NoNorm's shift ``beta / D`` added to its bias, every dense layer reading
it has its input rows multiplied by it, and the embeddings (a dense layer plus two tables) absorb
their own NoNorm whole. The shift matters as much as the scale: left as ``r + beta / D`` it is an
int8 ADD of a constant after each residual ADD, whose output XNNPACK requantizes differently from
the reference (23 of 24 label flips on the shipped student before this fold: models/README.md,
"Why LiteRT's two resolvers agree"). Two streams exist: the 512-wide one between layers (from the
embeddings to the classifier) and, in each layer, the 128-wide one inside (from the input
bottleneck to the output bottleneck).

Each stream's starting coordinate is free, and it decides what per-tensor int8 sees: ``D`` grows
by a product of gammas along the stream, so a poor start leaves some channels' values tiny next to
others. The start chosen here makes every channel's range, divided by its coordinate, 1 in
geometric mean over the stream's tensors (measured on calibration inputs): channels quantize with
steps in proportion to their own range, not the widest channel's.

    model = fold_residual_scales(keras_model, cfg, calibration_samples)   # residual_scale/_shift=False

The attention scores' 1 / sqrt(head_dim) is the same kind of constant: an int8 MUL by a scalar after
each layer's Q K^T (reference: two roundings; XNNPACK: one). It folds exactly into the query dense
layer, whose kernel and bias take the factor (``fold_attention_scale``; attention_scale=False).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from build_mobilebert import MobileBertConfig, build_model


def _stream_layers(cfg: MobileBertConfig) -> tuple[list[tuple[str, str | None]], list[list[tuple[str, str | None]]]]:
    """The NoNorms along each residual stream, in order, each with the ADD feeding it (None where
    the ADD is inside the layer before, as in the embeddings; or where a dense layer feeds it)."""
    outer = [("embeddings_norm", None)] + [(f"layer_{i}_out_bneck_norm", f"layer_{i}_out_bneck_residual")
                                           for i in range(cfg.num_layers)]
    inner = [[(f"layer_{i}_bneck_input_norm", None), (f"layer_{i}_attn_output_norm", f"layer_{i}_attn_residual")]
             + [(f"layer_{i}_ffn_{j}_norm", f"layer_{i}_ffn_{j}_residual") for j in range(cfg.num_ffn)]
             for i in range(cfg.num_layers)]
    return outer, inner


def channel_ranges(model: keras.Model, names: list[str], samples: list[dict]) -> dict[str, np.ndarray]:
    """Per-channel max |value| of the named layers' outputs over the samples' real tokens."""
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    ranges = {n: 0.0 for n in names}
    for sample in samples:
        real = sample["attention_mask"][0].astype(bool)
        for n, out in zip(names, probe(sample)):
            ranges[n] = np.maximum(ranges[n], np.abs(np.asarray(out)[0, real]).max(0))
    return ranges


def stream_coordinates(gammas: list[np.ndarray], ranges: list[tuple[np.ndarray, np.ndarray | None]]) -> list[np.ndarray]:
    """One stream: its NoNorms' gammas in order and, for each, the ranges of its output and of
    the ADD before it (None: no ADD). -> the coordinate D of each NoNorm's output.

    With start 1, D_k is the running product of the gammas; the ADD before NoNorm k is carried in
    D_{k-1}. The start c divides every D; it is the per-channel geometric mean of range / D over
    the stream's tensors, so that each channel's carried values span ~1."""
    cumulative = np.cumprod(np.stack(gammas).astype(np.float64), axis=0)           # [k, d]
    if not np.all(cumulative):
        raise ValueError("a NoNorm gamma is 0: that channel's stream cannot be carried unscaled")
    size = np.abs(cumulative)
    carried = []
    for k, (out_range, add_range) in enumerate(ranges):
        carried.append(out_range / size[k])
        if add_range is not None:
            carried.append(add_range / size[k - 1])
    carried = np.stack(carried)                                                     # [tensors, d]
    floor = carried.max() * 1e-6                                                   # dead channels
    start = np.exp(np.log(np.maximum(carried, floor)).mean(0))                     # [d]
    return [c * start for c in cumulative]


def fold_residual_scales(model: keras.Model, cfg: MobileBertConfig, samples: list[dict]) -> keras.Model:
    """A ``residual_scale=False, residual_shift=False`` model computing the same function as
    ``model`` (see the module docstring); ``samples`` (calibration inputs) choose each stream's
    starting coordinate."""
    if not cfg.residual_scale:
        raise ValueError("the model's residual NoNorms have no scale to fold")
    w = _weights(model)
    outer, inner = _stream_layers(cfg)
    names = [n for stream in [outer, *inner] for pair in stream for n in pair if n is not None]
    ranges = channel_ranges(model, names, samples)

    def coordinates(stream):
        return stream_coordinates([w[norm][0] for norm, _ in stream],
                                  [(ranges[norm], add and ranges[add]) for norm, add in stream])

    def reads(dense: str, d: np.ndarray) -> None:      # input rows: the stream's true values are d * r
        w[dense][0] *= d[:, None]

    def writes(dense: str, d: np.ndarray, norm: str, d_after: np.ndarray) -> None:
        """Output columns into a stream carried in d; the NoNorm after the residual ADD (true
        ``gamma * z + beta``, carried ``z / d + beta / d_after``) leaves only its shift, which the
        ADD passes through unchanged, so it joins this bias and the NoNorm goes."""
        w[dense][0] /= d
        w[dense][1] = w[dense][1] / d + w.pop(norm)[1] / d_after

    # -- the stream between layers: embeddings -> layer outputs -> classifier
    outer_d = coordinates(outer)
    gamma, beta = w.pop("embeddings_norm")             # the embeddings absorb their own NoNorm
    emb = gamma / outer_d[0]
    kernel, bias = w["embedding_transformation"]
    w["embedding_transformation"] = [kernel * emb, bias * emb + beta / outer_d[0]]
    w["pos_type"] = [table * emb for table in w["pos_type"]]
    for i, inner_stream in enumerate(inner):
        p, d_in, d_out = f"layer_{i}", outer_d[i], outer_d[i + 1]
        for dense in ("bneck_input_dense", "bneck_attn_dense", "value"):
            reads(f"{p}_{dense}", d_in)
        writes(f"{p}_out_bneck_dense", d_in, f"{p}_out_bneck_norm", d_out)
        # -- the stream inside layer i: input bottleneck -> attention output -> FFNs -> output bottleneck
        inner_d = coordinates(inner_stream)
        w[f"{p}_bneck_input_norm"] = [x / inner_d[0] for x in w[f"{p}_bneck_input_norm"]]  # keeps its scale
        writes(f"{p}_attn_output_dense", inner_d[0], f"{p}_attn_output_norm", inner_d[1])
        for j in range(cfg.num_ffn):
            reads(f"{p}_ffn_{j}_intermediate", inner_d[j + 1])
            writes(f"{p}_ffn_{j}_output_dense", inner_d[j + 1], f"{p}_ffn_{j}_norm", inner_d[j + 2])
        reads(f"{p}_out_bneck_dense", inner_d[-1])
    reads("logits", outer_d[-1])

    return _rebuild(cfg, w, residual_scale=False, residual_shift=False)


def fold_attention_scale(model: keras.Model, cfg: MobileBertConfig) -> keras.Model:
    """An ``attention_scale=False`` model computing the same function as ``model``: each layer's
    query dense layer multiplied by 1 / sqrt(head_dim), so the scores need no scaling
    (``(c q) k^T = c (q k^T)``: the same function up to one float32 rounding of each query weight)."""
    if not cfg.attention_scale:
        raise ValueError("the model's attention scores are already unscaled")
    factor = 1.0 / np.sqrt(cfg.head_dim)
    w = _weights(model)
    for name in w:
        if name.endswith("_query"):
            w[name] = [x * factor for x in w[name]]
    return _rebuild(cfg, w, attention_scale=False)


def _weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Each layer's weights by layer name, in float64 (folding multiplies before rounding once)."""
    return {layer.name: [np.asarray(x, np.float64) for x in layer.get_weights()] for layer in model.layers
            if layer.get_weights()}


def _rebuild(cfg: MobileBertConfig, weights: dict[str, list[np.ndarray]], **changes) -> keras.Model:
    """The model of ``cfg`` with ``changes``, each layer's weights taken by name from ``weights``."""
    model = build_model(dataclasses.replace(cfg, **changes))
    for layer in model.layers:
        if layer.get_weights():             # a layer missing here would keep its initial weights
            layer.set_weights([x.astype(np.float32) for x in weights[layer.name]])
    return model
