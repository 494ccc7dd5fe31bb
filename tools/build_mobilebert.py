"""Build a MobileBERT sequence classifier in Keras 3, faithful to Google's MobileBERT.

The default config is ``uncased_L-24_H-128_B-512_A-4_F-4_OPT`` — the one behind the
published MobileBERT checkpoints — with the options that config sets:

* use_bottleneck=True, key_query_shared_bottleneck=True
* normalization_type="no_norm"  (NoNorm: x * gamma + beta, no statistics)
* hidden_act="relu", trigram_input=True, classifier_activation=False

The layer structure mirrors HuggingFace ``modeling_mobilebert.py``; the comments name
the HF module each piece corresponds to.  Batch is fixed to 1 so every shape in the
converted TFLite model is static.

Usage as a library::

    from build_mobilebert import MobileBertConfig, build_model, init_trained_like
    cfg = MobileBertConfig(num_layers=2, hidden=64, ...)
    model = build_model(cfg)
    init_trained_like(model, seed=0)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import keras
import tensorflow as tf

try:
    from keras import ops
except ImportError:
    # Keras 2 (TensorFlow <= 2.15, used to make the older-converter fixtures) has no keras.ops:
    # the few ops this builder uses, as the TensorFlow ops Keras 3 lowers them to.
    import types

    ops = types.SimpleNamespace(
        pad=lambda x, pad_width: tf.pad(x, pad_width),
        concatenate=lambda xs, axis=0: tf.concat(xs, axis=axis),
        cast=tf.cast,
        reshape=tf.reshape,
        transpose=lambda x, axes=None: tf.transpose(x, perm=axes),
        matmul=tf.matmul,
        softmax=lambda x, axis=-1: tf.nn.softmax(x, axis=axis),
    )

# Names of the Keras inputs.  The TFLite converter orders the signature inputs
# alphabetically: attention_mask, input_ids, token_type_ids.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"


@dataclass
class MobileBertConfig:
    vocab_size: int = 30522
    seq_len: int = 128
    num_layers: int = 24
    hidden: int = 512  # width of the residual stream between layers
    intra_bottleneck: int = 128  # "true hidden size" inside a layer
    intermediate: int = 512  # FFN inner width
    num_ffn: int = 4  # FFNs per layer (num_feedforward_networks)
    num_heads: int = 4
    embedding_size: int = 128
    type_vocab_size: int = 2
    max_position: int = 512
    num_labels: int = 3
    # Additive attention-mask constant: masked key positions get
    # ``(1 - attention_mask) * mask_value`` added to their scores.
    #
    # BERT uses -10000 (HF even uses finfo.min).  In float that is harmless, but in a
    # full-integer model the tensor ``scores + mask`` feeding SOFTMAX gets ONE int8
    # scale covering [min_score + mask_value, max_score]: with -10000 the step is
    # ~40, so every real score rounds to the same level and attention collapses.
    # A constant only a few times larger than the real score range masks just as
    # well: the int8 softmax output step is 1/256 and exp(-20) ~ 2e-9 is far below
    # it.  With init_trained_like's weights the spread of real scores within a row is
    # median ~15 (full model), and the measured probability mass leaking onto padded
    # keys at -20 is < 3e-5, while the SOFTMAX input step stays ~0.2.
    # -10000 stays selectable (``mask_value=-10000.0``) to reproduce the collapse.
    mask_value: float = -20.0
    # Whether the NoNorms that follow a residual ADD (the embeddings' and, in every layer, the
    # attention output's, each FFN's and the output bottleneck's) learn a per-channel scale, as
    # Google's MobileBERT does. False: they only shift (x + beta), so the int8 model has no
    # per-channel MUL on its residual streams -- the op LiteRT's reference and XNNPACK round
    # differently (docs/agreement_by_rule_unfolded.json). fold_norms.py turns a trained scaled model into
    # an equal unscaled one.
    residual_scale: bool = True
    # Whether those NoNorms exist at all once unscaled. False (needs residual_scale=False): their
    # shift lives in the bias of the dense layer writing each stream (fold_norms.py), so the int8
    # model has no ADD of a constant after each residual ADD either -- XNNPACK requantizes those
    # ADDs' outputs differently from LiteRT's reference (23 of 24 label flips between them on the
    # shipped student before this fold: models/README.md).
    residual_shift: bool = True
    # Whether AttentionProbs multiplies the scores by 1 / sqrt(head_dim) (as trained), or the
    # query dense layer already carries that factor (False: fold_norms.fold_attention_scale). In a
    # full-integer model the product is an int8 MUL by a scalar, which LiteRT's reference and
    # XNNPACK round differently, as they do the NoNorms' MULs.
    attention_scale: bool = True

    def __post_init__(self) -> None:
        if self.intra_bottleneck % self.num_heads:
            raise ValueError("intra_bottleneck must be divisible by num_heads")
        if self.seq_len > self.max_position:
            raise ValueError("seq_len must be <= max_position")
        if self.num_ffn < 1:
            raise ValueError("num_ffn must be >= 1")
        if self.residual_scale and not self.residual_shift:
            raise ValueError("residual NoNorms with a scale need their shift (residual_shift=True)")

    @property
    def head_dim(self) -> int:
        return self.intra_bottleneck // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="npmobilebert")
class NoNorm(keras.layers.Layer):
    """MobileBERT's replacement for LayerNorm: elementwise ``x * gamma + beta``
    (``scale=False``: ``x + beta``, no gamma weight).

    No mean/variance — that is what makes MobileBERT cheap on device, and also why
    nothing re-normalises the residual stream (see ``init_trained_like``).
    """

    def __init__(self, scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def build(self, input_shape):
        d = input_shape[-1]
        if self.scale:
            self.gamma = self.add_weight(name="gamma", shape=(d,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(d,), initializer="zeros")

    def call(self, x):
        return (x * self.gamma if self.scale else x) + self.beta

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="npmobilebert")
class TokenEmbedding(keras.layers.Layer):
    """Word-embedding lookup as a bare GATHER.

    keras.layers.Embedding goes through ``ops.take``, which wraps the gather in
    ``where(ids < 0, ids + n, ids)`` and so adds LESS/SELECT ops that no real
    MobileBERT .tflite has; ``tf.gather`` converts to a single GATHER.
    """

    def __init__(self, vocab_size, dim, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.dim = dim

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.vocab_size, self.dim), initializer="zeros"
        )

    def call(self, ids):
        return tf.gather(self.embeddings, ids)  # [1, seq] -> [1, seq, dim]

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}


@keras.saving.register_keras_serializable(package="npmobilebert")
class TrigramConcat(keras.layers.Layer):
    """trigram_input: each token sees its right and left neighbours' embeddings.

    HF: cat([pad(e[:, 1:], end), e, pad(e[:, :-1], start)], dim=2).
    """

    def call(self, e):
        # e: [1, seq, E]
        next_tok = ops.pad(e[:, 1:, :], [[0, 0], [0, 1], [0, 0]])  # token t+1, zero at end
        prev_tok = ops.pad(e[:, :-1, :], [[0, 0], [1, 0], [0, 0]])  # token t-1, zero at start
        return ops.concatenate([next_tok, e, prev_tok], axis=-1)  # [1, seq, 3E]


@keras.saving.register_keras_serializable(package="npmobilebert")
class PositionAndTypeEmbedding(keras.layers.Layer):
    """Adds position embeddings (positions 0..seq-1) and token-type embeddings."""

    def __init__(self, max_position, type_vocab_size, **kwargs):
        super().__init__(**kwargs)
        self.max_position = max_position
        self.type_vocab_size = type_vocab_size

    def build(self, input_shape):
        x_shape, _ = input_shape
        d = x_shape[-1]
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(self.max_position, d), initializer="zeros"
        )
        self.token_type_embeddings = self.add_weight(
            name="token_type_embeddings", shape=(self.type_vocab_size, d), initializer="zeros"
        )

    def call(self, inputs):
        x, token_type_ids = inputs  # [1, seq, H], [1, seq] int32
        seq = x.shape[1]
        # Positions are fixed (0..seq-1), so this slice is a constant the converter folds.
        pos = self.position_embeddings[:seq]  # [seq, H]
        typ = tf.gather(self.token_type_embeddings, token_type_ids)  # [1, seq, H]
        return x + pos[None, :, :] + typ

    def get_config(self):
        return {
            **super().get_config(),
            "max_position": self.max_position,
            "type_vocab_size": self.type_vocab_size,
        }


@keras.saving.register_keras_serializable(package="npmobilebert")
class AdditiveMask(keras.layers.Layer):
    """attention_mask (1 real / 0 pad) -> additive mask, broadcast over heads and queries."""

    def __init__(self, mask_value, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def call(self, attention_mask):
        m = ops.cast(attention_mask, "float32")  # [1, seq]
        add = (1.0 - m) * self.mask_value  # 0 for real tokens, mask_value for pads
        return add[:, None, None, :]  # [1, 1, 1, seq]

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


def _split_heads(x, num_heads):
    # [1, seq, D] -> [1, heads, seq, D/heads]
    seq, d = x.shape[1], x.shape[2]
    x = ops.reshape(x, (1, seq, num_heads, d // num_heads))
    return ops.transpose(x, (0, 2, 1, 3))


@keras.saving.register_keras_serializable(package="npmobilebert")
class AttentionProbs(keras.layers.Layer):
    """softmax(Q K^T / sqrt(head_dim) + mask), per head (``scale=False``: softmax(Q K^T + mask),
    the factor already in Q).

    A separate layer (rather than fused with the context product) so the
    probabilities can be inspected when checking attention is not degenerate.
    """

    def __init__(self, num_heads, scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.scale = scale

    def call(self, inputs):
        q, k, mask_add = inputs  # [1, seq, D], [1, seq, D], [1, 1, 1, seq]
        head_dim = q.shape[-1] // self.num_heads
        qh = _split_heads(q, self.num_heads)  # [1, h, seq, hd]
        kh = _split_heads(k, self.num_heads)  # [1, h, seq, hd]
        scores = ops.matmul(qh, ops.transpose(kh, (0, 1, 3, 2)))  # [1, h, seq, seq]
        if self.scale:
            scores = scores * (1.0 / math.sqrt(head_dim))
        return ops.softmax(scores + mask_add, axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "scale": self.scale}


@keras.saving.register_keras_serializable(package="npmobilebert")
class AttentionContext(keras.layers.Layer):
    """probs @ V, heads merged back: [1, h, seq, seq] x [1, seq, D] -> [1, seq, D]."""

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads

    def call(self, inputs):
        probs, v = inputs
        seq, d = v.shape[1], v.shape[2]
        vh = _split_heads(v, self.num_heads)  # [1, h, seq, hd]
        ctx = ops.matmul(probs, vh)  # [1, h, seq, hd]
        ctx = ops.transpose(ctx, (0, 2, 1, 3))  # [1, seq, h, hd]
        return ops.reshape(ctx, (1, seq, d))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package="npmobilebert")
class FirstToken(keras.layers.Layer):
    """Pooler with classifier_activation=False: just the [CLS] hidden state."""

    def call(self, x):
        return x[:, 0, :]  # [1, seq, H] -> [1, H]


CUSTOM_OBJECTS = {
    c.__name__: c
    for c in (NoNorm, TokenEmbedding, TrigramConcat, PositionAndTypeEmbedding, AdditiveMask,
              AttentionProbs, AttentionContext, FirstToken)
}


# --------------------------------------------------------------------------- blocks


def _dense(units, name):
    return keras.layers.Dense(units, name=name)


def residual_norm(cfg: MobileBertConfig, x, name: str):
    """The NoNorm after a residual ADD, as the config has it: scaled, shift only, or none."""
    return NoNorm(cfg.residual_scale, name=name)(x) if cfg.residual_shift else x


def embeddings(cfg: MobileBertConfig, input_ids, token_type_ids):
    """HF MobileBertEmbeddings.  [1, seq] ids -> [1, seq, hidden]."""
    e = TokenEmbedding(cfg.vocab_size, cfg.embedding_size, name="word_embeddings")(
        input_ids
    )  # [1, seq, E]
    e = TrigramConcat(name="trigram")(e)  # [1, seq, 3E]
    x = _dense(cfg.hidden, "embedding_transformation")(e)  # [1, seq, 3E] -> [1, seq, H]
    x = PositionAndTypeEmbedding(cfg.max_position, cfg.type_vocab_size, name="pos_type")(
        [x, token_type_ids]
    )
    return residual_norm(cfg, x, "embeddings_norm")


def bottleneck(cfg, h, p):
    """HF Bottleneck (key_query_shared_bottleneck).  h: [1, seq, H].

    Returns (shared, layer_input): both [1, seq, B].  Query and key both read
    ``shared``; value reads the full-width h; ``layer_input`` is the residual
    for the attention output.
    """
    layer_input = NoNorm(name=f"{p}_bneck_input_norm")(
        _dense(cfg.intra_bottleneck, f"{p}_bneck_input_dense")(h)  # [seq, H] -> [seq, B]
    )
    shared = NoNorm(name=f"{p}_bneck_attn_norm")(
        _dense(cfg.intra_bottleneck, f"{p}_bneck_attn_dense")(h)  # [seq, H] -> [seq, B]
    )
    return shared, layer_input


def self_attention(cfg, shared, h, layer_input, mask_add, p):
    """HF MobileBertAttention: self-attention + MobileBertSelfOutput.  -> [1, seq, B]."""
    q = _dense(cfg.intra_bottleneck, f"{p}_query")(shared)  # [seq, B] -> [seq, B]
    k = _dense(cfg.intra_bottleneck, f"{p}_key")(shared)  # [seq, B] -> [seq, B]
    v = _dense(cfg.intra_bottleneck, f"{p}_value")(h)  # [seq, H] -> [seq, B]
    probs = AttentionProbs(cfg.num_heads, cfg.attention_scale, name=f"{p}_attn_probs")([q, k, mask_add])
    ctx = AttentionContext(cfg.num_heads, name=f"{p}_attn_context")([probs, v])  # [seq, B]
    out = _dense(cfg.intra_bottleneck, f"{p}_attn_output_dense")(ctx)  # [seq, B] -> [seq, B]
    out = keras.layers.Add(name=f"{p}_attn_residual")([out, layer_input])
    return residual_norm(cfg, out, f"{p}_attn_output_norm")


def ffn(cfg, x, p):
    """HF FFNLayer (intermediate + FFNOutput).  [1, seq, B] -> [1, seq, B]."""
    inner = keras.layers.Dense(cfg.intermediate, activation="relu", name=f"{p}_intermediate")(
        x
    )  # [seq, B] -> [seq, I]
    out = _dense(cfg.intra_bottleneck, f"{p}_output_dense")(inner)  # [seq, I] -> [seq, B]
    out = keras.layers.Add(name=f"{p}_residual")([out, x])
    return residual_norm(cfg, out, f"{p}_norm")


def mobilebert_layer(cfg, h, mask_add, i):
    """HF MobileBertLayer.  [1, seq, H] -> [1, seq, H]."""
    p = f"layer_{i}"
    shared, layer_input = bottleneck(cfg, h, p)
    x = self_attention(cfg, shared, h, layer_input, mask_add, p)  # [seq, B]
    # num_feedforward_networks - 1 stacked FFNs (HF MobileBertLayer.ffn) ...
    for j in range(cfg.num_ffn - 1):
        x = ffn(cfg, x, f"{p}_ffn_{j}")
    # ... then the final one (HF intermediate + MobileBertOutput) ...
    y = ffn(cfg, x, f"{p}_ffn_{cfg.num_ffn - 1}")  # [seq, B]
    # ... and the output bottleneck (HF OutputBottleneck) back to the residual width.
    out = _dense(cfg.hidden, f"{p}_out_bneck_dense")(y)  # [seq, B] -> [seq, H]
    out = keras.layers.Add(name=f"{p}_out_bneck_residual")([out, h])
    return residual_norm(cfg, out, f"{p}_out_bneck_norm")


def build_model(cfg: MobileBertConfig) -> keras.Model:
    """The full classifier: (input_ids, attention_mask, token_type_ids) -> logits."""
    shape = (cfg.seq_len,)
    input_ids = keras.Input(shape, batch_size=1, dtype="int32", name="input_ids")
    attention_mask = keras.Input(shape, batch_size=1, dtype="int32", name="attention_mask")
    token_type_ids = keras.Input(shape, batch_size=1, dtype="int32", name="token_type_ids")

    mask_add = AdditiveMask(cfg.mask_value, name="additive_mask")(attention_mask)
    h = embeddings(cfg, input_ids, token_type_ids)  # [1, seq, H]
    for i in range(cfg.num_layers):
        h = mobilebert_layer(cfg, h, mask_add, i)
    cls = FirstToken(name="first_token")(h)  # [1, H]
    logits = keras.layers.Dense(cfg.num_labels, name=OUTPUT_NAME)(cls)  # [1, labels]
    return keras.Model(
        inputs={"input_ids": input_ids, "attention_mask": attention_mask,
                "token_type_ids": token_type_ids},
        outputs={OUTPUT_NAME: logits},
        name="mobilebert",
    )


# --------------------------------------------------------------------------- weights

# Kernel std = gain / sqrt(fan_in), by role.  MobileBERT has no LayerNorm, so the
# residual stream is only kept in range by these choices:
#  * branches that ADD into a residual get gain < 1, so 24 layers x (1 + num_ffn)
#    additions grow the variance slowly rather than geometrically;
#  * query/key get gain ~1.5 so scores have std ~ a few: attention is peaked
#    enough to have structure but nowhere near one-hot;
#  * NoNorm gamma has mean slightly below 1: over 24 layers the product of
#    per-layer gammas damps the residual stream, like a trained model's norms do.
_GAINS = {
    "embedding_transformation": 1.0,
    "bneck_input_dense": 1.0,
    "bneck_attn_dense": 1.0,
    "query": 1.2,
    "key": 1.2,
    "value": 1.0,
    "attn_output_dense": 0.6,
    "intermediate": 1.4,  # ReLU halves the variance; sqrt(2) restores it
    "output_dense": 0.5,
    "out_bneck_dense": 0.25,
    "logits": 1.0,
}


def _role(name: str) -> str:
    for role in sorted(_GAINS, key=len, reverse=True):
        if name.endswith(role):
            return role
    raise KeyError(name)


def init_trained_like(model: keras.Model, seed: int = 0) -> None:
    """Deterministic random weights that look trained.

    Keras' defaults are useless for a converter test: NoNorm(gamma=1, beta=0) and
    zero biases are folded away, hiding the very MUL/ADD ops a real checkpoint has.
    So every gamma is ~1 with spread, every beta and bias is non-zero, and kernels
    are scaled (see ``_GAINS``) so activations stay O(1)-O(10) through 24 layers.
    Layers are visited in model order; the same seed gives the same weights.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, TokenEmbedding):
            # std 1: the embedding transformation then maps to unit-ish scale.
            w = rng.normal(0.0, 1.0, layer.embeddings.shape)
            layer.set_weights([w.astype(np.float32)])
        elif isinstance(layer, PositionAndTypeEmbedding):
            pos = rng.normal(0.0, 0.3, layer.position_embeddings.shape)
            typ = rng.normal(0.0, 0.3, layer.token_type_embeddings.shape)
            layer.set_weights([pos.astype(np.float32), typ.astype(np.float32)])
        elif isinstance(layer, NoNorm):
            d = layer.beta.shape[0]
            gamma = rng.normal(0.95, 0.15, d)
            beta = rng.normal(0.0, 0.1, d)
            layer.set_weights([gamma.astype(np.float32), beta.astype(np.float32)][not layer.scale:])
        elif isinstance(layer, keras.layers.Dense):
            fan_in, fan_out = layer.kernel.shape
            gain = _GAINS[_role(layer.name)]
            kernel = rng.normal(0.0, gain / math.sqrt(fan_in), (fan_in, fan_out))
            bias = rng.normal(0.0, 0.05, fan_out)
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])


def build_trained_like(cfg: MobileBertConfig, seed: int = 0) -> keras.Model:
    model = build_model(cfg)
    init_trained_like(model, seed)
    return model


# --------------------------------------------------------------------------- inputs and checks


def random_inputs(cfg: MobileBertConfig, rng: np.random.Generator,
                  min_len: int = 4, max_len: int | None = None) -> dict[str, np.ndarray]:
    """One random BERT-style sample: [CLS] ids... [SEP] then zero padding.

    Ids avoid 0..103 (pad / unused / special) when the vocab is big enough.
    """
    seq = cfg.seq_len
    max_len = seq if max_len is None else min(max_len, seq)
    min_len = max(1, min(min_len, max_len))
    n = int(rng.integers(min_len, max_len + 1))
    ids = np.zeros(seq, np.int32)
    lo = 104 if cfg.vocab_size > 200 else 1
    ids[:n] = rng.integers(lo, cfg.vocab_size, n)
    if cfg.vocab_size > 102 and n >= 2:
        ids[0], ids[n - 1] = 101, 102  # [CLS] ... [SEP]
    mask = np.zeros(seq, np.int32)
    mask[:n] = 1
    return {
        "input_ids": ids[None],
        "attention_mask": mask[None],
        "token_type_ids": np.zeros((1, seq), np.int32),
    }


def activation_report(model: keras.Model, samples: list[dict[str, np.ndarray]]) -> dict:
    """Std / abs-max of every NoNorm output and attention entropy stats.

    Used to check the trained-like init: hidden states O(1)-O(10) at every depth,
    attention neither one-hot nor uniform.
    """
    names = [l.name for l in model.layers if isinstance(l, (NoNorm, AttentionProbs))]
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    stats: dict[str, dict[str, float]] = {}
    for s in samples:
        outs = probe(s)
        n_real = int(s["attention_mask"].sum())
        for name, out in zip(names, outs):
            out = np.asarray(out)
            st = stats.setdefault(name, {"std": 0.0, "absmax": 0.0, "max_prob": 0.0,
                                         "entropy_ratio": 0.0})
            if name.endswith("attn_probs"):
                p = out[0, :, :n_real, :n_real]  # real queries x real keys
                # probability mass leaking onto padded keys (mask too weak?)
                leak = 1.0 - p.sum(-1)
                st["pad_mass"] = max(st.get("pad_mass", 0.0), float(leak.max()))
                ent = -(p * np.log(np.maximum(p, 1e-12))).sum(-1)
                st["max_prob"] += float(p.max(-1).mean()) / len(samples)
                st["entropy_ratio"] += float(ent.mean() / math.log(max(n_real, 2))) / len(samples)
            else:
                x = out[0, :n_real]
                st["std"] += float(x.std()) / len(samples)
                st["absmax"] = max(st["absmax"], float(np.abs(x).max()))
    return stats


if __name__ == "__main__":  # quick self-check of the init
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=4)
    a = ap.parse_args()
    cfg = MobileBertConfig(num_layers=a.layers, seq_len=a.seq_len)
    model = build_trained_like(cfg, a.seed)
    rng = np.random.default_rng(123)
    samples = [random_inputs(cfg, rng) for _ in range(a.samples)]
    for name, st in activation_report(model, samples).items():
        if name.endswith("attn_probs"):
            print(f"{name:32s} max_prob {st['max_prob']:.3f} entropy/log(n) {st['entropy_ratio']:.3f} pad_mass {st['pad_mass']:.1e}")
        else:
            print(f"{name:32s} std {st['std']:8.3f} absmax {st['absmax']:8.3f}")
    print("logits", np.asarray(model(samples[0])[OUTPUT_NAME]))
