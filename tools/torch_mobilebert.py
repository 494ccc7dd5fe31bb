"""build_mobilebert.py's MobileBERT in PyTorch, for training; weights move both ways by Keras layer name.

Training runs in torch (faster on this CPU than Keras' fit, and batch-size free); conversion
runs from the Keras model of build_mobilebert.py, which is what the TFLite converter knows. So
this module computes exactly the Keras graph (same layers, same order, same mask constant) and
its parameters are keyed by the Keras layer names, stored in the Keras layout (Dense kernels
``[in, out]``): ``from_keras`` / ``to_keras`` copy them without any reshaping logic, and
``to_keras`` checks the two frameworks' logits agree before anything is converted.

Batches here are ``[batch, seq]`` with any seq (padding to the longest in the batch); the Keras
model is ``[1, seq_len]``. They compute the same thing for a real token as long as the text is
followed by at least one [PAD] (the trigram embedding of the last real token reads its
right-hand neighbour: the [PAD] embedding in the converted model), which ``pad_for_student``
guarantees.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (before TensorFlow loads: importing it later segfaults, torch 2.14 + TF 2.21)
from torch import nn

import keras
from build_mobilebert import (
    MobileBertConfig,
    NoNorm,
    PositionAndTypeEmbedding,
    TokenEmbedding,
    build_model,
)


def _sep(name: str) -> str:
    return name.replace("/", "__")   # parameter names may not hold '.'; keep them readable


class TorchMobileBert(nn.Module):
    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.cfg = cfg
        self.p = nn.ParameterDict()
        self._shapes: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        E, H, B, I = cfg.embedding_size, cfg.hidden, cfg.intra_bottleneck, cfg.intermediate
        self._add("word_embeddings", [("embeddings", (cfg.vocab_size, E))])
        self._dense("embedding_transformation", 3 * E, H)
        self._add("pos_type", [("position_embeddings", (cfg.max_position, H)),
                               ("token_type_embeddings", (cfg.type_vocab_size, H))])
        self._norm("embeddings_norm", H, cfg.residual_scale, cfg.residual_shift)
        for i in range(cfg.num_layers):
            p = f"layer_{i}"
            for part in ("bneck_input", "bneck_attn"):
                self._dense(f"{p}_{part}_dense", H, B)
                self._norm(f"{p}_{part}_norm", B)
            self._dense(f"{p}_query", B, B)
            self._dense(f"{p}_key", B, B)
            self._dense(f"{p}_value", H, B)
            self._dense(f"{p}_attn_output_dense", B, B)
            self._norm(f"{p}_attn_output_norm", B, cfg.residual_scale, cfg.residual_shift)
            for j in range(cfg.num_ffn):
                self._dense(f"{p}_ffn_{j}_intermediate", B, I)
                self._dense(f"{p}_ffn_{j}_output_dense", I, B)
                self._norm(f"{p}_ffn_{j}_norm", B, cfg.residual_scale, cfg.residual_shift)
            self._dense(f"{p}_out_bneck_dense", B, H)
            self._norm(f"{p}_out_bneck_norm", H, cfg.residual_scale, cfg.residual_shift)
        self._dense("logits", H, cfg.num_labels)

    # -- parameters, keyed "<keras layer>__<weight>" in Keras' order and layout
    def _add(self, layer: str, weights: list[tuple[str, tuple[int, ...]]]) -> None:
        self._shapes[layer] = weights
        for name, shape in weights:
            self.p[_sep(f"{layer}/{name}")] = nn.Parameter(torch.zeros(shape))

    def _dense(self, layer: str, fan_in: int, fan_out: int) -> None:
        self._add(layer, [("kernel", (fan_in, fan_out)), ("bias", (fan_out,))])

    def _norm(self, layer: str, d: int, scale: bool = True, shift: bool = True) -> None:
        if shift:                                                      # else folded away: no layer
            self._add(layer, [("gamma", (d,)), ("beta", (d,))][not scale:])

    def w(self, layer: str, name: str) -> torch.Tensor:
        return self.p[_sep(f"{layer}/{name}")]

    def dense(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w(layer, "kernel") + self.w(layer, "bias")

    def norm(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        weights = [name for name, _ in self._shapes.get(layer, [])]   # NoNorm: folded away, shift, or both
        if "gamma" in weights:
            x = x * self.w(layer, "gamma")
        return x + self.w(layer, "beta") if "beta" in weights else x

    # -- the graph of build_mobilebert.build_model, batched
    def embeddings(self, ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        e = self.w("word_embeddings", "embeddings")[ids]            # [b, s] -> [b, s, E]
        nxt = nn.functional.pad(e[:, 1:], (0, 0, 0, 1))              # token t+1, zero at end
        prv = nn.functional.pad(e[:, :-1], (0, 0, 1, 0))             # token t-1, zero at start
        x = self.dense("embedding_transformation", torch.cat([nxt, e, prv], -1))  # [b, s, H]
        seq = ids.shape[1]
        x = x + self.w("pos_type", "position_embeddings")[:seq] \
              + self.w("pos_type", "token_type_embeddings")[token_type_ids]
        return self.norm("embeddings_norm", x)

    def attention(self, p: str, shared, h, mask_add, qkv: list | None = None) -> torch.Tensor:
        b, s, _ = h.shape
        heads, hd = self.cfg.num_heads, self.cfg.head_dim

        def split(x):   # [b, s, B] -> [b, heads, s, hd]
            return x.view(b, s, heads, hd).transpose(1, 2)

        projections = [self.dense(f"{p}_query", shared), self.dense(f"{p}_key", shared), self.dense(f"{p}_value", h)]
        if qkv is not None:
            qkv.append(projections)                                   # 3 x [b, s, B]
        q, k, v = map(split, projections)
        scale = 1.0 / math.sqrt(hd) if self.cfg.attention_scale else 1.0     # False: folded into Q
        scores = (q @ k.transpose(-1, -2)) * scale + mask_add             # [b, heads, s, s]
        ctx = torch.softmax(scores, -1) @ v                           # [b, heads, s, hd]
        return ctx.transpose(1, 2).reshape(b, s, heads * hd)          # [b, s, B]

    def layer(self, i: int, h, mask_add, qkv: list | None = None) -> torch.Tensor:
        p = f"layer_{i}"
        layer_input = self.norm(f"{p}_bneck_input_norm", self.dense(f"{p}_bneck_input_dense", h))
        shared = self.norm(f"{p}_bneck_attn_norm", self.dense(f"{p}_bneck_attn_dense", h))
        ctx = self.attention(p, shared, h, mask_add, qkv)
        x = self.norm(f"{p}_attn_output_norm", self.dense(f"{p}_attn_output_dense", ctx) + layer_input)
        for j in range(self.cfg.num_ffn):
            f = f"{p}_ffn_{j}"
            inner = torch.relu(self.dense(f"{f}_intermediate", x))
            x = self.norm(f"{f}_norm", self.dense(f"{f}_output_dense", inner) + x)
        out = self.dense(f"{p}_out_bneck_dense", x) + h
        return self.norm(f"{p}_out_bneck_norm", out)

    def hidden_states(self, input_ids, attention_mask, token_type_ids=None,
                      qkv: list | None = None) -> list[torch.Tensor]:
        """[b, s] ids, mask (1 real / 0 pad) -> [embeddings, layer 1, ..., layer L], each [b, s, H].
        With a list ``qkv``, each layer appends its [query, key, value] projections ([b, s, B])."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask_add = ((1.0 - attention_mask.float()) * self.cfg.mask_value)[:, None, None, :]
        states = [self.embeddings(input_ids, token_type_ids)]
        for i in range(self.cfg.num_layers):
            states.append(self.layer(i, states[-1], mask_add, qkv))
        return states

    def classify(self, last_state: torch.Tensor) -> torch.Tensor:
        return self.dense("logits", last_state[:, 0])                 # first token: [b, s, H] -> [b, labels]

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        """[b, s] ids, mask (1 real / 0 pad) -> logits [b, labels]."""
        return self.classify(self.hidden_states(input_ids, attention_mask, token_type_ids)[-1])

    # -- Keras <-> torch
    def keras_weights(self) -> dict[str, list[np.ndarray]]:
        return {layer: [self.w(layer, n).detach().numpy().astype(np.float32) for n, _ in weights]
                for layer, weights in self._shapes.items()}

    def load_keras_weights(self, weights: dict[str, list[np.ndarray]]) -> None:
        with torch.no_grad():
            for layer, names in self._shapes.items():
                for (name, shape), value in zip(names, weights[layer]):
                    if tuple(value.shape) != shape:
                        raise ValueError(f"{layer}/{name}: shape {value.shape}, expected {shape}")
                    self.w(layer, name).copy_(torch.from_numpy(np.asarray(value, np.float32)))


def _weighted_layers(model):
    kinds = (NoNorm, TokenEmbedding, PositionAndTypeEmbedding, keras.layers.Dense)
    return [layer for layer in model.layers if isinstance(layer, kinds)]


def from_keras(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in _weighted_layers(model)}


def to_keras(student: TorchMobileBert, check_ids: list[np.ndarray]):
    """The Keras model (batch 1, seq_len) holding the student's weights; raises if its logits
    disagree with torch's by more than float32 noise on ``check_ids``."""
    cfg = student.cfg
    model = build_model(cfg)
    weights = student.keras_weights()
    for layer in _weighted_layers(model):
        layer.set_weights(weights[layer.name])
    worst = 0.0
    for ids in check_ids:
        feed = {"input_ids": np.zeros((1, cfg.seq_len), np.int32),
                "attention_mask": np.zeros((1, cfg.seq_len), np.int32),
                "token_type_ids": np.zeros((1, cfg.seq_len), np.int32)}
        feed["input_ids"][0, : len(ids)] = ids
        feed["attention_mask"][0, : len(ids)] = 1
        k_logits = np.asarray(model(feed)["logits"])
        with torch.no_grad():
            t_logits = student(torch.from_numpy(feed["input_ids"]).long(),
                               torch.from_numpy(feed["attention_mask"]).long()).numpy()
        worst = max(worst, float(np.abs(k_logits - t_logits).max() / (np.abs(t_logits).max() + 1e-6)))
    if worst > 1e-3:   # float32 with different summation orders agrees to ~1e-6 relative
        raise RuntimeError(f"Keras and torch logits differ by {worst:.2e} relative")
    return model, worst
