"""tools/fold_norms.py: the residual NoNorms (scale and shift) and the attention scores' 1/sqrt(head_dim)
folded into the dense layers compute the same function, and the int8 model the real converter makes
from it has no per-channel MUL left, no ADD of a NoNorm's shift and no scalar MUL on the scores."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tools, pytest.mark.slow]     # converts with TensorFlow

TOOLS = Path(__file__).resolve().parent.parent / "tools"


@pytest.fixture(scope="module")
def tools():
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    sys.path.insert(0, str(TOOLS))
    import build_mobilebert
    import convert
    import fold_norms

    return build_mobilebert, convert, fold_norms


@pytest.fixture(scope="module")
def tiny(tools):
    build_mobilebert, convert, _ = tools
    cfg = build_mobilebert.MobileBertConfig(
        vocab_size=128, seq_len=12, num_layers=2, hidden=32, intra_bottleneck=16,
        intermediate=32, num_ffn=3, num_heads=2, embedding_size=16, num_labels=3,
    )
    return cfg, build_mobilebert.build_trained_like(cfg, seed=3), convert.calibration_samples(cfg, 16, seed=4)


def test_folded_model_computes_the_same_logits(tools, tiny):
    build_mobilebert, convert, fold_norms = tools
    cfg, model, calib = tiny
    folded = fold_norms.fold_residual_scales(model, cfg, calib)
    folded = fold_norms.fold_attention_scale(folded, dataclasses.replace(cfg, residual_scale=False, residual_shift=False))
    assert not any(layer.scale for layer in folded.layers if isinstance(layer, build_mobilebert.AttentionProbs))
    norms = [layer.name for layer in model.layers if isinstance(layer, build_mobilebert.NoNorm)]
    assert len(norms) == 1 + cfg.num_layers * (4 + cfg.num_ffn)
    left = [layer.name for layer in folded.layers if isinstance(layer, build_mobilebert.NoNorm)]
    # the residual NoNorms are gone whole (scale and shift); the bottlenecks' stay for the converter
    assert sorted(left) == sorted(n for n in norms if n.endswith(("bneck_input_norm", "bneck_attn_norm")))
    assert len(left) == 2 * cfg.num_layers
    for ids in convert.random_id_lists(cfg, 10, seed=5):
        sample = convert.ids_to_sample(ids, cfg.seq_len)
        want = np.asarray(model(sample)["logits"], np.float64)
        got = np.asarray(folded(sample)["logits"], np.float64)
        # The folded weights are the products of float32 weights, rounded once more to float32
        # (relative 6e-8 each); through 2 layers of ~20 roundings that stays far below 1e-5.
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def _constant_operands(path, opcode: str) -> tuple[int, int]:
    """(ops of that type with a per-channel constant input, ... with a scalar constant input)."""
    from npmobilebert.model import load_model

    graph = load_model(path).subgraphs[0]
    sizes = [[graph.tensors[i].size for i in op.inputs if graph.tensors[i].is_constant]
             for op in graph.operators if op.opcode == opcode]
    return sum(1 for c in sizes if any(n > 1 for n in c)), sum(1 for c in sizes if c and max(c) == 1)


def test_int8_model_of_the_folded_model_has_no_per_channel_mul_nor_shift_add(tools, tiny, tmp_path):
    _, convert, _ = tools
    cfg, model, _ = tiny
    model.save(tmp_path / "m.keras")
    plain = convert.run(cfg, ["int8"], str(tmp_path), "plain", calib_n=16, show=False,
                        keras_model=str(tmp_path / "m.keras"))
    folded = convert.run(cfg, ["int8"], str(tmp_path), "folded", calib_n=16, show=False,
                         keras_model=str(tmp_path / "m.keras"), fold_residual=True, fold_attention=True)
    # unfolded, per channel: the embeddings' NoNorm and, per layer, the attention output's, the
    # FFNs' but the last (only a dense layer reads it: the converter folds it) and the output
    # bottleneck's; by a scalar: the attention mask's (1 - mask) * mask_value and each layer's scores
    assert _constant_operands(plain["int8"]["path"], "MUL") == (1 + cfg.num_layers * (1 + cfg.num_ffn), 1 + cfg.num_layers)
    assert _constant_operands(folded["int8"]["path"], "MUL") == (0, 1)
    # ADDs of a constant: each of those NoNorms' shift and the position table; folded, the table alone
    assert _constant_operands(plain["int8"]["path"], "ADD") == (2 + cfg.num_layers * (1 + cfg.num_ffn), 0)
    assert _constant_operands(folded["int8"]["path"], "ADD") == (1, 0)
    meta = convert.read_metadata(Path(folded["int8"]["path"]).read_bytes())
    assert b'"residual_scale": false' in meta and b'"attention_scale": false' in meta
    # and it still classifies as the float model does on the calibration-like inputs
    ref = convert.interpreter(folded["int8"]["path"], reference=True).get_signature_runner()
    agree = 0
    for ids in convert.random_id_lists(cfg, 20, seed=7):
        sample = convert.ids_to_sample(ids, cfg.seq_len)
        agree += int(np.argmax(ref(**sample)["logits"]) == np.argmax(np.asarray(model(sample)["logits"])))
    assert agree >= 18
